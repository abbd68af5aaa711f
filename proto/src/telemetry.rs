//! One logging setup for every Gantry binary: `RUST_LOG` wins, else the
//! given default; `GANTRY_LOG_FORMAT=json` switches to JSON lines.

use tracing_subscriber::EnvFilter;

/// Install the global tracing subscriber, writing to stderr.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("GANTRY_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
