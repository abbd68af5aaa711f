//! The gate side of Gantry's node agents, shared by every elastic gate
//! (AWS, Azure): a cloud implements [`Machines`]; the fleet turns it into a
//! gate ([`serve`]): partitions are machines it launches with a boot script
//! ([`boot_script`]) that starts `gantry-agent` with a one-time join token
//! ([`JoinTokens`]); agents trade the token for a certificate of the gate's
//! own agent issuer, dial in, and run the attempts the gate hands them
//! (`proto/gantry/v1/agent.proto`).

mod boot;
mod config;
mod fleet;
mod machines;
mod provider;
mod serve;
mod service;
mod session;
mod staging;
mod storage;
mod tokens;
mod tunnels;

pub use boot::{Boot, boot_script};
pub use config::{FleetArgs, FleetConfig};
pub use fleet::{Fleet, MACHINE, OpenError};
pub use machines::{Launch, Machine, MachineState, Machines};
pub use provider::FleetProvider;
pub use serve::{fleet_config, serve};
pub use service::{AgentService, SILENCE};
pub use session::{COMMAND_TIMEOUT, Session, error_reply};
pub use storage::{Bytes, Storage};
pub use tokens::{DEFAULT_TOKEN_TTL, Grant, JoinTokens, TokenError};
pub use tunnels::TUNNEL_WITHIN;
