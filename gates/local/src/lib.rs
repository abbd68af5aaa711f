//! A Gantry gate that runs jobs as processes on this machine.
//!
//! [`LocalProvider`] implements [`gantry_gate::Provider`]: one partition of
//! flavor "host"; each attempt lives in `work-dir/attempts/<attempt_id>/`
//! and its job runs under the work directory's one `gantry-supervisor`
//! ([`supervisor`]), which outlives the gate, so a gate that restarts (even
//! after SIGKILL) finds every attempt again.

mod alloc;
mod config;
mod host;
mod launch;
mod layout;
mod link;
mod partitions;
pub mod protocol;
mod provider;
mod state;
pub mod supervisor;

pub use config::{DEFAULT_QUEUE_FACTOR, LocalConfig};
pub use link::default_binary as default_supervisor;
pub use partitions::HOST_FLAVOR;
pub use protocol::LOST_REASON;
pub use provider::LocalProvider;
