//! A Gantry gate that runs jobs as processes on this machine.
//!
//! [`LocalProvider`] implements [`gantry_gate::Provider`]: one partition of
//! flavor "host"; each attempt lives in `work-dir/attempts/<attempt_id>/`
//! and runs under its own `gantry-shim`, which outlives the gate, so a gate
//! that restarts (even after SIGKILL) finds every attempt again.

mod alloc;
mod config;
mod host;
mod launch;
mod layout;
mod partitions;
mod provider;
mod recover;
mod state;

pub use config::{DEFAULT_QUEUE_FACTOR, LocalConfig, default_shim};
pub use layout::LOST_REASON;
pub use partitions::HOST_FLAVOR;
pub use provider::LocalProvider;
