//! gantryd's outgoing links: one per gate and one to the scheduler. Each is
//! a reconcile loop: it (re)connects, compares what the other side has with
//! what the store says should be, and acts on every commit after that.

pub mod gate;
mod gate_files;
mod in_flight;
mod known_partitions;
pub mod scheduler;
pub mod sites;

use std::collections::HashMap;
use std::sync::Arc;

use gantry_proto::metrics::GrpcMetrics;
use gantry_proto::rpc_trace::RpcTrace;
use tonic::transport::Channel;

use crate::config::Config;
use crate::files::Files;
use crate::store::Store;
pub use sites::{SiteInfo, Sites};

/// gantryd's client of one gate: its channel, each call traced (when traces
/// are exported) and counted and timed (`gantry_gate_request*`).
pub type GateClient = gantry_proto::v1::gate_client::GateClient<RpcTrace<GrpcMetrics<Channel>>>;

/// What every link shares.
#[derive(Clone)]
pub struct Ctx {
    /// The configuration.
    pub config: Arc<Config>,
    /// The database.
    pub store: Store,
    /// Sites' health and descriptions.
    pub sites: Arc<Sites>,
    /// gantryd's files.
    pub files: Files,
    /// A client per gate (lazy channels; cheap to clone).
    pub gates: Arc<HashMap<String, GateClient>>,
}

/// Largest gRPC message gantryd sends or accepts from its peers.
pub const MAX_MESSAGE: usize = 64 << 20;

impl Ctx {
    /// The client of one gate.
    pub fn gate(&self, site: &str) -> Option<GateClient> {
        self.gates.get(site).cloned()
    }
}
