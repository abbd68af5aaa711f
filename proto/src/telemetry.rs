//! One logging setup for every Gantry binary: `RUST_LOG` wins, else the
//! given default; `GANTRY_LOG_FORMAT=json` switches to JSON lines; colour
//! only when stderr is a terminal.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Install the global tracing subscriber, writing to stderr. An event that
/// cannot be written (stderr on a full disk) is dropped.
pub fn init(default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour codes only for a person at a terminal, never in a log file.
        .with_ansi(std::io::stderr().is_terminal())
        // A log on a full disk must not take the process down: the default
        // reports a failed write with `eprintln!`, which panics when stderr
        // cannot be written (and the event's buffer then grows for ever).
        .log_internal_errors(false);
    if std::env::var("GANTRY_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}
