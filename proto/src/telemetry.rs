//! One logging and tracing setup for every Gantry binary.
//!
//! Logs: `RUST_LOG` wins, else the given default; `GANTRY_LOG_FORMAT=json`
//! switches to JSON lines; colour only when stderr is a terminal.
//!
//! Traces: when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set, Gantry's spans — one per
//! gRPC call ([`crate::rpc_trace`]) and a few around the work a job goes
//! through — are exported over OTLP/gRPC, with the W3C trace context carried
//! on every call between Gantry's processes. The other standard `OTEL_*`
//! variables apply (`OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_BSP_SCHEDULE_DELAY`, `OTEL_EXPORTER_OTLP_HEADERS`, ...). `RUST_LOG`
//! filters the log only: what is exported is Gantry's own spans at INFO.

use std::io::IsTerminal;
use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithTonicConfig as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::filter::{EnvFilter, FilterFn, LevelFilter};
use tracing_subscriber::prelude::*;
use tracing_subscriber::{Layer, Registry};

/// The environment variables that turn OTLP export on.
const ENDPOINT_VARS: [&str; 2] = [
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
];

/// Whether this process exports traces (set once, by [`init`]).
static EXPORTING: OnceLock<bool> = OnceLock::new();

/// Whether this process exports its spans over OTLP: [`crate::rpc_trace`]
/// makes a span per call only then.
pub fn exporting() -> bool {
    EXPORTING.get().copied().unwrap_or(false)
}

/// Keeps the trace exporter of a service; dropping it (at the end of
/// `main`) sends the spans still queued. Holds nothing when tracing is off.
#[must_use = "dropping it at once stops the export of traces"]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(err) = provider.shutdown()
        {
            tracing::warn!(error = %err, "could not send the last traces");
        }
    }
}

/// Install the global subscriber of a service (`program`, e.g. `gantryd`):
/// the log on stderr, and OTLP export of its spans when an endpoint is
/// configured (see the module's documentation). Call it inside the tokio
/// runtime. A wrong OTLP setting is reported in the log; the service runs
/// on without traces.
pub fn init(program: &str, default_filter: &str) -> Telemetry {
    let endpoint = endpoint();
    let (provider, failure) = match endpoint.as_deref().map(|e| otlp_provider(program, e)) {
        Some(Ok(provider)) => (Some(provider), None),
        Some(Err(err)) => (None, Some(err)),
        None => (None, None),
    };
    let _ = EXPORTING.set(provider.is_some());
    let traces = provider.as_ref().map(|provider| {
        opentelemetry::global::set_text_map_propagator(
            opentelemetry_sdk::propagation::TraceContextPropagator::new(),
        );
        let layer = tracing_opentelemetry::layer()
            .with_tracer(provider.tracer("gantry"))
            .with_filter(
                FilterFn::new(|meta| {
                    meta.target().starts_with("gantry") && *meta.level() <= tracing::Level::INFO
                })
                // Nothing above INFO is exported: without the hint, the
                // subscriber's maximum level would be TRACE for every crate.
                .with_max_level_hint(LevelFilter::INFO),
            );
        Box::new(layer) as Traces
    });
    install(traces, default_filter);
    if let Some(err) = failure {
        tracing::error!(error = %err, "cannot export traces over OTLP; running without them");
    } else if let (Some(endpoint), Some(_)) = (&endpoint, &provider) {
        tracing::info!(%endpoint, "exporting traces over OTLP");
    }
    Telemetry { provider }
}

/// Install the global subscriber with the log only (the CLI).
pub fn init_logs(default_filter: &str) {
    install(None, default_filter);
}

/// The log's directives that keep the exported spans out of it.
const LOG_ONLY: [&str; 2] = ["gantry::rpc=off", "gantry::job=off"];

/// A layer that exports spans.
type Traces = Box<dyn Layer<Registry> + Send + Sync>;

/// Install the global subscriber: `traces`, if any, and the log on stderr
/// filtered by `RUST_LOG`, else `default_filter`.
fn install(traces: Option<Traces>, default_filter: &str) {
    // The spans made for export stay out of the log, which reads the same
    // whether or not traces are exported.
    let filter = LOG_ONLY.iter().fold(
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter)),
        |filter, directive| filter.add_directive(directive.parse().expect("a directive")),
    );
    let log = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        // A log on a full disk must not take the process down: the default
        // reports a failed write with `eprintln!`, which panics when stderr
        // cannot be written (and the event's buffer then grows for ever).
        .log_internal_errors(false);
    let registry = tracing_subscriber::registry().with(traces);
    let _ = if std::env::var("GANTRY_LOG_FORMAT").as_deref() == Ok("json") {
        registry.with(log.json().with_filter(filter)).try_init()
    } else {
        registry.with(log.with_filter(filter)).try_init()
    };
}

/// The configured OTLP endpoint, if any.
fn endpoint() -> Option<String> {
    ENDPOINT_VARS
        .iter()
        .find_map(|var| std::env::var(var).ok().filter(|v| !v.trim().is_empty()))
}

/// The tracer provider of `program` exporting to `endpoint`.
fn otlp_provider(program: &str, endpoint: &str) -> Result<SdkTracerProvider, String> {
    let mut exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic();
    if endpoint.starts_with("https://") {
        // An HTTPS collector is checked against the system's CA roots.
        exporter =
            exporter.with_tls_config(tonic::transport::ClientTlsConfig::new().with_native_roots());
    }
    let exporter = exporter
        .build()
        .map_err(|err| format!("OTLP endpoint {endpoint}: {err}"))?;
    let mut resource = opentelemetry_sdk::Resource::builder();
    // The program's name unless the operator named the service.
    let named = std::env::var_os("OTEL_SERVICE_NAME").is_some()
        || std::env::var("OTEL_RESOURCE_ATTRIBUTES").is_ok_and(|attributes| {
            attributes
                .split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    if !named {
        resource = resource.with_service_name(program.to_string());
    }
    let resource = resource
        .with_attribute(opentelemetry::KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION"),
        ))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build())
}
