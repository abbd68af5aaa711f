//! Prometheus metrics, the same way in every Gantry process: one recorder
//! (the `metrics` crate's macros record into it), served as Prometheus text
//! on `GET /metrics` over plain HTTP on an address of its own, off unless a
//! process is given `--metrics-listen` (gantryd: `metrics_listen`); and
//! [`GrpcMetricsLayer`], which counts and times every gRPC call a server
//! answers or gantryd makes to a gate.
//!
//! Names follow Prometheus' conventions: a `gantry_` prefix, base units
//! (`_seconds`), `_total` on counters. Durations are histograms with fixed
//! buckets, so they can be summed across instances.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::Either;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tonic::codegen::http;

use crate::per_call::{CallFuture, code_of};

/// Buckets of a request's or a pass's time: half a millisecond to a minute.
const FAST_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Buckets of a job's time in the queue or running: a tenth of a second
/// to a week. (A `Full` matcher wins over the `_seconds` suffix below: the
/// exporter tries full names first.)
const JOB_BUCKETS: &[f64] = &[
    0.1, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0, 86400.0,
    259200.0, 604800.0,
];

/// Buckets of a count per batch (the store's commit batch size).
const COUNT_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// The histograms measured in job time rather than request time.
pub const JOB_HISTOGRAMS: &[&str] = &["gantry_job_queue_wait_seconds", "gantry_job_run_seconds"];

/// The process's recorder, installed once.
static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the process's recorder (once; later calls return the same one).
pub fn recorder() -> Result<PrometheusHandle, std::io::Error> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let job = JOB_HISTOGRAMS
        .iter()
        .map(|name| Matcher::Full(name.to_string()));
    let mut builder = PrometheusBuilder::new();
    for matcher in job {
        builder = builder
            .set_buckets_for_metric(matcher, JOB_BUCKETS)
            .map_err(std::io::Error::other)?;
    }
    let handle = builder
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), FAST_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full("gantry_store_commit_ops".into()),
                COUNT_BUCKETS,
            )
        })
        .map_err(std::io::Error::other)?
        .install_recorder()
        .map_err(std::io::Error::other)?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Serve `GET /metrics` on `listen` (plain HTTP; `host:port`, port 0 for
/// any) until the process ends; returns the bound address. `what` names
/// the process in the log line.
pub async fn serve(listen: &str, what: &str) -> Result<SocketAddr, std::io::Error> {
    let handle = recorder()?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot listen for metrics on {listen}: {e}"),
        )
    })?;
    let addr = listener.local_addr()?;
    describe_grpc();
    metrics::gauge!("gantry_build_info", "version" => env!("CARGO_PKG_VERSION"), "program" => what.to_string()).set(1.0);
    // Histograms' windows and the recorder's idle entries are kept up here
    // rather than on a scrape.
    let upkeep = handle.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tick.tick().await;
            upkeep.run_upkeep();
        }
    });
    tokio::spawn(async move {
        loop {
            let stream = match listener.accept().await {
                Ok((stream, _)) => stream,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot accept a metrics connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let answer = answer(&handle, &request);
                    async move { Ok::<_, Infallible>(answer) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    tracing::info!(%addr, "metrics at http://{addr}/metrics");
    Ok(addr)
}

/// The answer to one HTTP request: the metrics on `GET /metrics`.
fn answer(handle: &PrometheusHandle, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let (status, content_type, body) = match (request.method(), request.uri().path()) {
        (&hyper::Method::GET | &hyper::Method::HEAD, "/metrics") => (
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            handle.render(),
        ),
        (_, "/metrics") => (
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET /metrics\n".to_string(),
        ),
        _ => (
            StatusCode::NOT_FOUND,
            "text/plain",
            "Gantry's metrics are at /metrics\n".to_string(),
        ),
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    response
}

fn describe_grpc() {
    metrics::describe_counter!(
        "gantry_grpc_server_handled_total",
        "gRPC calls this server answered, by method and status code"
    );
    metrics::describe_histogram!(
        "gantry_grpc_server_handling_seconds",
        metrics::Unit::Seconds,
        "Time from a gRPC call's arrival to its response headers (a unary call's whole handling), by method"
    );
    metrics::describe_counter!(
        "gantry_gate_requests_total",
        "gRPC calls gantryd made to a gate, by site, method and status code"
    );
    metrics::describe_histogram!(
        "gantry_gate_request_seconds",
        metrics::Unit::Seconds,
        "Time of gantryd's gRPC calls to a gate until its response headers, by site and method"
    );
    metrics::describe_gauge!(
        "gantry_build_info",
        "1, labelled with the program and its version"
    );
}

/// A tower layer that counts and times gRPC calls: on a server (every
/// method, its status code) or on gantryd's client of one gate (by site).
/// The code is read from the response's headers, which carry it for a call
/// refused or failed before its first message (a unary error); a call whose
/// status comes only in its trailers counts as OK. Apply it after
/// [`serve`] (or [`recorder`]): in a process that serves no metrics it
/// passes calls through untouched.
#[derive(Clone, Debug, Default)]
pub struct GrpcMetricsLayer {
    /// The gate's site name on gantryd's client of it; `None` on a server.
    site: Option<Arc<str>>,
}

impl GrpcMetricsLayer {
    /// Calls this server answers.
    pub fn server() -> Self {
        Self { site: None }
    }

    /// Calls gantryd makes to the gate of `site`.
    pub fn gate(site: &str) -> Self {
        Self {
            site: Some(site.into()),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            site: self.site.clone(),
            // Without a recorder (metrics off) a call costs nothing more.
            on: HANDLE.get().is_some(),
        }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    site: Option<Arc<str>>,
    /// Whether this process serves metrics (its recorder was installed
    /// before the layer was applied).
    on: bool,
}

impl<S, B, RB> tower::Service<http::Request<B>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<RB>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    RB: 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = CallFuture<S::Future, S::Response, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if !self.on {
            return Either::Left(self.inner.call(request));
        }
        let record = Record {
            method: request.uri().path().trim_start_matches('/').to_string(),
            site: self.site.clone(),
            started: Instant::now(),
            code: None,
        };
        let call = self.inner.call(request);
        Either::Right(Box::pin(async move {
            // The whole record moves in (not just the field set below), so
            // it is dropped, and recorded, when the call ends or is dropped.
            let mut record = record;
            let result = call.await;
            record.ended(code_of(&result));
            result
        }))
    }
}

/// One call's metrics, recorded when it is dropped: with its code once it
/// has one, as CANCELLED when its caller went away first (a deadline, a
/// reset stream), so the slowest calls are not the ones left out.
struct Record {
    method: String,
    site: Option<Arc<str>>,
    started: Instant,
    code: Option<tonic::Code>,
}

impl Record {
    /// The call ended with `code`.
    fn ended(&mut self, code: tonic::Code) {
        self.code = Some(code);
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        let code = self.code.unwrap_or(tonic::Code::Cancelled);
        // A method no service has: one label for all, so that a caller
        // cannot grow the metrics without bound by inventing paths.
        let method = if code == tonic::Code::Unimplemented {
            "unknown".to_string()
        } else {
            std::mem::take(&mut self.method)
        };
        let seconds = self.started.elapsed().as_secs_f64();
        let code = code_name(code);
        match self.site.take() {
            None => {
                metrics::counter!("gantry_grpc_server_handled_total", "method" => method.clone(), "code" => code).increment(1);
                metrics::histogram!("gantry_grpc_server_handling_seconds", "method" => method)
                    .record(seconds);
            }
            Some(site) => {
                let site = site.to_string();
                metrics::counter!("gantry_gate_requests_total", "site" => site.clone(), "method" => method.clone(), "code" => code).increment(1);
                metrics::histogram!("gantry_gate_request_seconds", "site" => site, "method" => method)
                    .record(seconds);
            }
        }
    }
}

/// A status code as gRPC's documentation writes it (`NOT_FOUND`).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "CANCELLED",
        Unknown => "UNKNOWN",
        InvalidArgument => "INVALID_ARGUMENT",
        DeadlineExceeded => "DEADLINE_EXCEEDED",
        NotFound => "NOT_FOUND",
        AlreadyExists => "ALREADY_EXISTS",
        PermissionDenied => "PERMISSION_DENIED",
        ResourceExhausted => "RESOURCE_EXHAUSTED",
        FailedPrecondition => "FAILED_PRECONDITION",
        Aborted => "ABORTED",
        OutOfRange => "OUT_OF_RANGE",
        Unimplemented => "UNIMPLEMENTED",
        Internal => "INTERNAL",
        Unavailable => "UNAVAILABLE",
        DataLoss => "DATA_LOSS",
        Unauthenticated => "UNAUTHENTICATED",
    }
}
