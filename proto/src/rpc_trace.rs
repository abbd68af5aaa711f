//! One span per gRPC call, joined across Gantry's processes: a client
//! call's span sends its W3C trace context (`traceparent`) in the request's
//! metadata, and the server's span for that call continues the same trace.
//! A handler names the job (or attempt) a call is about with
//! [`record_job`] / [`record_attempt`], so a job's calls can be found in
//! any trace backend by `job_id`.
//!
//! The layer does nothing in a process that exports no traces
//! ([`crate::telemetry::exporting`]): the log does not need a span per call,
//! and the hot path pays nothing for it.

use std::task::{Context, Poll};

use futures::future::Either;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::codegen::http;
use tracing::Instrument as _;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::per_call::{CallFuture, code_of};

/// Name the job the current call is about (a no-op outside a call's span).
pub fn record_job(job_id: u64) {
    // As a signed integer: OpenTelemetry has no unsigned one, and an
    // unsigned value would be exported as a string.
    tracing::Span::current().record("job_id", job_id as i64);
}

/// Name the attempt (a gate's name for one run of a job) the current call
/// is about.
pub fn record_attempt(attempt_id: &str) {
    tracing::Span::current().record("attempt_id", attempt_id);
}

/// A span for work done for job `job_id` outside any call (gantryd
/// starting it on a gate): the gate's calls it makes join its trace. A
/// disabled span unless traces are exported.
pub fn job_span(name: &'static str, job_id: u64, site: &str) -> tracing::Span {
    if !crate::telemetry::exporting() {
        return tracing::Span::none();
    }
    let job_id = job_id as i64;
    tracing::info_span!(target: "gantry::job", "job", otel.name = name, job_id, site)
}

/// Makes [`RpcTrace`]: a span per call, as the server of the calls or as
/// their client. Apply it after [`crate::telemetry::init`].
#[derive(Clone, Copy, Debug)]
pub struct RpcTraceLayer {
    client: bool,
}

impl RpcTraceLayer {
    /// Calls this server answers: their spans continue the caller's trace.
    pub fn server() -> Self {
        Self { client: false }
    }

    /// Calls this process makes: their spans are children of the current
    /// span, and their context goes with the request.
    pub fn client() -> Self {
        Self { client: true }
    }
}

impl<S> tower::Layer<S> for RpcTraceLayer {
    type Service = RpcTrace<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RpcTrace {
            inner,
            client: self.client,
            on: crate::telemetry::exporting(),
        }
    }
}

/// The service [`RpcTraceLayer`] wraps around another.
#[derive(Clone, Debug)]
pub struct RpcTrace<S> {
    inner: S,
    client: bool,
    /// Whether this process exports traces.
    on: bool,
}

impl<S, B, RB> tower::Service<http::Request<B>> for RpcTrace<S>
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

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        if !self.on {
            return Either::Left(self.inner.call(request));
        }
        let path = request.uri().path().trim_start_matches('/');
        let (service, method) = path.split_once('/').unwrap_or((path, ""));
        let span = tracing::info_span!(
            target: "gantry::rpc",
            "rpc",
            otel.name = %path,
            otel.kind = if self.client { "client" } else { "server" },
            otel.status_code = Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            rpc.grpc.status_code = Empty,
            job_id = Empty,
            attempt_id = Empty,
        );
        if self.client {
            let context = span.context();
            let headers = request.headers_mut();
            opentelemetry::global::get_text_map_propagator(|p| {
                p.inject_context(&context, &mut HeaderInjector(headers));
            });
        } else {
            let parent = opentelemetry::global::get_text_map_propagator(|p| {
                p.extract(&HeaderExtractor(request.headers()))
            });
            let _ = span.set_parent(parent);
        }
        let call = {
            let _entered = span.enter();
            self.inner.call(request)
        };
        let status_span = span.clone();
        let client = self.client;
        Either::Right(Box::pin(
            async move {
                let result = call.await;
                let code = code_of(&result);
                status_span.record("rpc.grpc.status_code", code as i64);
                if is_error(code, client) {
                    status_span.record("otel.status_code", "ERROR");
                }
                result
            }
            .instrument(span),
        ))
    }
}

/// Whether a call that ended with `code` is an error span, as OpenTelemetry's
/// gRPC conventions say: every code but OK for a client; for a server only
/// those that say the server failed (a NOT_FOUND or an INVALID_ARGUMENT is
/// the caller's, and the call was answered as it should be).
fn is_error(code: tonic::Code, client: bool) -> bool {
    use tonic::Code;
    match code {
        Code::Ok => false,
        Code::Unknown
        | Code::DeadlineExceeded
        | Code::Unimplemented
        | Code::Internal
        | Code::Unavailable
        | Code::DataLoss => true,
        _ => client,
    }
}

/// Reads the trace context from a request's metadata.
struct HeaderExtractor<'a>(&'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(http::HeaderName::as_str).collect()
    }
}

/// Writes the trace context into a request's metadata.
struct HeaderInjector<'a>(&'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}
