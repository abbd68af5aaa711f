//! The built-in Gantry scheduler process: priority, FIFO, EASY backfill.
//!
//! gantryd opens one `Session` stream (see `proto/gantry/v1/scheduler.proto`),
//! sends the full picture and then changes; the scheduler keeps its own
//! [`View`] and answers with plans. The pieces:
//!
//! - [`domain`]: validated types (what gantryd says, what a plan holds);
//!   `convert` turns `gantry.v1` messages into them and plans back.
//! - [`View`]: sites, partitions and jobs, with an ordered queue.
//! - [`policy::pass`]: one scheduling pass over the view.
//! - [`Session`]: one stream's state without the network.
//! - [`SchedulerService`]: the tonic service (only the core may call it).

mod candidates;
mod convert;
pub mod domain;
mod error;
mod job;
pub mod policy;
mod reservation;
mod satisfy;
mod service;
mod session;
mod sites;
mod slots;
mod view;

pub use error::{InvalidField, Result, SessionError};
pub use policy::{PassOutput, PolicyConfig, pass};
pub use satisfy::{format_bytes, format_walltime};
pub use service::{SchedulerService, SessionStopper};
pub use session::{Planned, Session};
pub use view::View;

/// Describe the scheduler's own metrics (their help text on `/metrics`).
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "gantry_scheduler_pass_seconds",
        metrics::Unit::Seconds,
        "Time of one scheduling pass"
    );
    metrics::describe_gauge!(
        "gantry_scheduler_queued_jobs",
        "Jobs waiting in the scheduler's view after its last pass"
    );
}
