//! What a cloud does for the fleet: launch, list and terminate machines.
//! An elastic gate implements [`Machines`] for its cloud; the fleet does the
//! rest (partitions, agents, attempts).

use std::collections::BTreeMap;

use gantry_gate::{PartitionId, Result};
use gantry_proto::v1::Flavor;

use crate::storage::Storage;

/// A machine's life as its cloud reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineState {
    /// Launched, not yet running.
    Pending,
    /// Running (its agent may or may not be up).
    Running,
    /// Shutting down or stopping.
    Stopping,
    /// Gone for good.
    Terminated,
}

/// One machine the cloud holds for this gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// The cloud's id (an EC2 instance id).
    pub id: String,
    /// The partition its tags name, as found (not necessarily a valid id).
    pub partition: String,
    /// Its flavor (an instance type).
    pub flavor: String,
    /// Its state.
    pub state: MachineState,
}

/// What to launch for a partition.
#[derive(Debug, Clone, Copy)]
pub struct Launch<'a> {
    /// The partition the machine is for; tag it so that it can be found.
    pub partition: &'a PartitionId,
    /// The flavor to launch.
    pub flavor: &'a str,
    /// Labels gantryd asked to put on the machine (as tags).
    pub labels: &'a BTreeMap<String, String>,
    /// The boot script (user-data) that starts the agent.
    pub boot_script: &'a str,
}

/// A cloud's machines, as an elastic gate reaches them. Every method may be
/// retried; [`Machines::launch`] must be called only after [`Machines::list`]
/// found no machine of the partition (the fleet does this).
#[tonic::async_trait]
pub trait Machines: Send + Sync + 'static {
    /// The kind of provider: "aws", "azure".
    fn provider(&self) -> &'static str;

    /// The flavors the operator offers, with their resources and prices.
    async fn flavors(&self) -> Result<Vec<Flavor>>;

    /// Launch one machine so that powering it off ends it (EC2:
    /// InstanceInitiatedShutdownBehavior=terminate), that accepts no inbound
    /// connection, and that carries this gate's and the partition's tags.
    /// Capacity and quota errors are [`GateError::ResourceExhausted`], a
    /// setting the cloud refuses is [`GateError::InvalidArgument`].
    ///
    /// [`GateError::ResourceExhausted`]: gantry_gate::GateError::ResourceExhausted
    /// [`GateError::InvalidArgument`]: gantry_gate::GateError::InvalidArgument
    async fn launch(&self, launch: Launch<'_>) -> Result<Machine>;

    /// This gate's machines that are not terminated; of one partition when given.
    async fn list(&self, partition: Option<&PartitionId>) -> Result<Vec<Machine>>;

    /// Terminate these machines; terminating one already gone succeeds.
    async fn terminate(&self, ids: &[String]) -> Result<()>;

    /// The object store for staging files, if the operator gave one.
    fn storage(&self) -> Option<&dyn Storage> {
        None
    }
}
