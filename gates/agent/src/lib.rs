//! `gantry-agent`: the node agent of Gantry's elastic gates. A machine's
//! boot script starts it with its gate's address, the installation's CA
//! certificate and a one-time join token. It makes its own key, joins
//! ([`identity`]), dials out to the gate and keeps one session open
//! ([`session`]), running the attempts the gate hands it with the local
//! gate's runner (`gantry-gate-local`'s [`LocalProvider`] and its
//! `gantry-supervisor`). Without its gate for its cut-off time, or when told
//! its partition is deleted, it powers the machine off ([`cutoff`]). It knows
//! nothing of clouds: what runs it decides what powering off means.
//!
//! [`LocalProvider`]: gantry_gate_local::LocalProvider

pub mod cutoff;
pub mod files;
pub mod identity;
pub mod session;

pub use cutoff::DeadMansSwitch;
pub use identity::{AgentIdentity, GateAddress};
pub use session::Agent;
