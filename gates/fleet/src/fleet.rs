//! [`Fleet`]: an elastic gate's partitions, the machines a cloud launched for
//! them, the agents on those machines and the attempts they run.
//!
//! The agents are the truth about attempts: each says on every session which
//! attempts it holds. The cloud is the truth about machines: at start the
//! fleet lists its machines by tag and adopts them. Until every adopted
//! machine's agent is back (or its machine is terminated), the fleet does not
//! answer listings, so gantryd never takes a gate restart for lost machines.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gantry_gate::{GateError, JobHub, PartitionId, Result};
use gantry_proto::AgentName;
use gantry_proto::pki::AgentIssuer;
use gantry_proto::v1::{
    AgentHello, Capacity, Flavor, GateJob, GateJobState, Partition, PartitionState,
};
use tokio::sync::watch;

use crate::config::FleetConfig;
use crate::machines::{MachineState, Machines};
use crate::session::Session;
use crate::tokens::JoinTokens;
use crate::tunnels::Tunnels;

/// How often the fleet checks timeouts.
const TICK: Duration = Duration::from_secs(1);
/// How often it looks for machines no partition owns.
const ORPHAN_SWEEP: Duration = Duration::from_secs(60);

/// The machine within a partition; partitions have one machine each.
pub const MACHINE: &str = "m0";

/// A partition as the fleet holds it.
pub(crate) struct Part {
    pub flavor: String,
    pub state: PartitionState,
    pub message: String,
    /// The cloud's ids of its machines.
    pub machines: Vec<String>,
    /// What its agent offers, once it said hello.
    pub capacity: Option<Capacity>,
    pub queue: Option<Capacity>,
    pub session: Option<Arc<Session>>,
    /// Since when it is creating, or its agent silent.
    pub since: Instant,
    /// Found at start with an agent that had registered before: the fleet's
    /// listings wait for that agent.
    pub adopted: bool,
}

impl Part {
    fn new(flavor: &str, machines: Vec<String>, message: &str) -> Self {
        Part {
            flavor: flavor.to_string(),
            state: PartitionState::Creating,
            message: message.to_string(),
            machines,
            capacity: None,
            queue: None,
            session: None,
            since: Instant::now(),
            adopted: false,
        }
    }

    pub fn to_proto(&self, id: &str) -> Partition {
        Partition {
            partition_id: id.to_string(),
            flavor: self.flavor.clone(),
            state: self.state as i32,
            message: self.message.clone(),
            capacity: self.capacity,
            native_id: self.machines.join(","),
            queue: self.queue,
        }
    }
}

#[derive(Default)]
pub(crate) struct State {
    pub partitions: HashMap<String, Part>,
    pub attempts: HashMap<String, GateJob>,
    pub next_serial: u64,
    /// Machines terminated because no partition owned them.
    pub orphans_terminated: u64,
}

/// An elastic gate's partitions, machines, agents and attempts.
pub struct Fleet<M> {
    pub(crate) machines: M,
    pub(crate) config: FleetConfig,
    pub(crate) issuer: AgentIssuer,
    pub(crate) tokens: JoinTokens,
    pub(crate) tunnels: Tunnels,
    pub(crate) hub: JobHub,
    state: Mutex<State>,
    /// Serializes CreatePartition, so that a retry never launches twice.
    pub(crate) creating: tokio::sync::Mutex<()>,
    settled: watch::Sender<bool>,
    flavors: Mutex<Option<Vec<Flavor>>>,
    started: Instant,
}

/// How an attempt's states rank: a report never moves one back.
fn rank(state: i32) -> u8 {
    match GateJobState::try_from(state).unwrap_or(GateJobState::Unspecified) {
        GateJobState::Unspecified => 0,
        GateJobState::Pending => 1,
        GateJobState::Running => 2,
        _ => 3,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl<M: Machines> Fleet<M> {
    /// The fleet of `machines`, adopting the machines the cloud already has
    /// for this gate. Start [`Fleet::run`] beside it.
    pub async fn open(
        machines: M,
        config: FleetConfig,
        issuer: AgentIssuer,
    ) -> Result<Arc<Self>, OpenError> {
        std::fs::create_dir_all(&config.state_dir)
            .map_err(|e| OpenError(format!("--state-dir {}: {e}", config.state_dir.display())))?;
        let tokens = JoinTokens::open(&config.state_dir)
            .map_err(|e| OpenError(format!("join tokens: {e}")))?;
        let found = machines
            .list(None)
            .await
            .map_err(|e| OpenError(format!("listing this gate's machines: {e}")))?;
        let mut state = State::default();
        let mut strays = Vec::new();
        for machine in found {
            if machine.state == MachineState::Terminated {
                continue;
            }
            if PartitionId::parse("partition", &machine.partition).is_err() {
                strays.push(machine.id);
                continue;
            }
            let waiting = tokens.unused(&machine.partition);
            let part = state
                .partitions
                .entry(machine.partition.clone())
                .or_insert_with(|| {
                    let mut part = Part::new(&machine.flavor, Vec::new(), "");
                    if waiting {
                        part.message = "waiting for its agent to register".into();
                    } else {
                        part.adopted = true;
                        part.message =
                            "waiting for its agent to reconnect after the gate restarted".into();
                    }
                    part
                });
            part.machines.push(machine.id);
        }
        let adopted = state.partitions.values().filter(|p| p.adopted).count();
        tracing::info!(
            partitions = state.partitions.len(),
            adopted,
            "found this gate's machines"
        );
        let (settled, _) = watch::channel(adopted == 0);
        let fleet = Arc::new(Fleet {
            machines,
            config,
            issuer,
            tokens,
            tunnels: Tunnels::default(),
            hub: JobHub::default(),
            state: Mutex::new(state),
            creating: tokio::sync::Mutex::new(()),
            settled,
            flavors: Mutex::new(None),
            started: Instant::now(),
        });
        if !strays.is_empty() {
            fleet.terminate_orphans(strays).await;
        }
        Ok(fleet)
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The flavors, asked of the cloud once.
    pub(crate) async fn flavors(&self) -> Result<Vec<Flavor>> {
        if let Some(flavors) = self
            .flavors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            return Ok(flavors);
        }
        let flavors = self.machines.flavors().await?;
        *self.flavors.lock().unwrap_or_else(|p| p.into_inner()) = Some(flavors.clone());
        Ok(flavors)
    }

    /// Wait until every adopted machine's agent is back or its machine terminated.
    pub(crate) async fn settled(&self) {
        let mut rx = self.settled.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    /// Take in `job` from partition `partition`'s agent (or a reply), keeping
    /// the newest state, and announce it if it changed.
    pub(crate) fn record(&self, state: &mut State, job: GateJob) {
        let changed = match state.attempts.get(&job.attempt_id) {
            Some(old) if rank(old.state) > rank(job.state) => false,
            Some(old) => old != &job,
            None => true,
        };
        if changed {
            state.attempts.insert(job.attempt_id.clone(), job.clone());
            self.hub.publish(job);
        }
    }

    /// End every unended attempt of `partition` as FAILED with `reason`.
    pub(crate) fn fail_attempts(
        &self,
        state: &mut State,
        partition: &str,
        reason: &str,
        lost: bool,
    ) {
        self.end_attempts(state, partition, GateJobState::Failed, reason, lost);
    }

    /// End every unended attempt of `partition` in `end` with `reason`
    /// (CANCELLED when its partition is deleted, as gate.proto says).
    pub(crate) fn end_attempts(
        &self,
        state: &mut State,
        partition: &str,
        end: GateJobState,
        reason: &str,
        lost: bool,
    ) {
        let ended: Vec<GateJob> = state
            .attempts
            .values()
            .filter(|j| j.partition_id == partition && !j.state().is_final())
            .map(|j| GateJob {
                state: end as i32,
                reason: reason.to_string(),
                end_time_ms: now_ms(),
                lost,
                ..j.clone()
            })
            .collect();
        for job in ended {
            self.record(state, job);
        }
    }

    /// An agent opened a session and said hello. Refused (and told to power
    /// off) when its partition is gone.
    pub(crate) fn hello(&self, session: Arc<Session>, hello: AgentHello) -> Result<()> {
        let agent = session.agent.clone();
        let mut state = self.state();
        let gone = match state.partitions.get(&agent.partition) {
            None => Some("its partition is not known to the gate"),
            Some(p) if matches!(p.state, PartitionState::Deleting | PartitionState::Deleted) => {
                Some("its partition was deleted")
            }
            Some(p) if p.state == PartitionState::Failed => Some("its partition failed"),
            Some(_) => None,
        };
        if let Some(reason) = gone {
            session.power_off(reason);
            return Err(GateError::FailedPrecondition(format!(
                "agent {}: {reason}; power off",
                agent_label(&agent)
            )));
        }
        let part = state
            .partitions
            .get_mut(&agent.partition)
            .expect("checked above");
        part.session = Some(session);
        part.state = PartitionState::Ready;
        part.message = format!("agent up on {}", hello.hostname);
        part.capacity = hello.resources;
        part.queue = hello.queue;
        part.since = Instant::now();
        part.adopted = false;
        let held: std::collections::HashSet<String> =
            hello.jobs.iter().map(|j| j.attempt_id.clone()).collect();
        for job in hello.jobs {
            self.agent_job(&mut state, &agent, job);
        }
        let forgotten: Vec<GateJob> = state
            .attempts
            .values()
            .filter(|j| j.partition_id == agent.partition && !held.contains(&j.attempt_id))
            .filter(|j| !j.state().is_final())
            .map(|j| GateJob {
                state: GateJobState::Failed as i32,
                reason: "lost: the machine's agent no longer knows this attempt".into(),
                end_time_ms: now_ms(),
                lost: true,
                ..j.clone()
            })
            .collect();
        for job in forgotten {
            self.record(&mut state, job);
        }
        self.check_settled(&state);
        tracing::info!(agent = %agent_label(&agent), "agent registered");
        Ok(())
    }

    /// A change of an attempt, from partition `agent.partition`'s agent.
    pub(crate) fn agent_job(&self, state: &mut State, agent: &AgentName, job: GateJob) {
        if job.partition_id != agent.partition {
            tracing::warn!(
                agent = %agent_label(agent),
                attempt = %job.attempt_id,
                "ignoring an attempt an agent reported for another partition"
            );
            return;
        }
        self.record(state, job);
    }

    /// A session ended; the partition's agent is silent from now on unless
    /// a newer session replaced it.
    pub(crate) fn disconnected(&self, agent: &AgentName, serial: u64) {
        let mut state = self.state();
        if let Some(part) = state.partitions.get_mut(&agent.partition)
            && part.session.as_ref().is_some_and(|s| s.serial == serial)
        {
            part.session = None;
            part.since = Instant::now();
            if part.state == PartitionState::Ready {
                part.message = "its agent is not connected".into();
            }
            tracing::info!(agent = %agent_label(agent), "agent disconnected");
        }
    }

    /// The session of `partition`'s agent, or why there is none.
    pub(crate) fn session(&self, partition: &str) -> Result<Arc<Session>> {
        let state = self.state();
        let part = state
            .partitions
            .get(partition)
            .ok_or_else(|| GateError::no_partition(partition))?;
        part.session.clone().ok_or_else(|| {
            GateError::Unavailable(format!(
                "the agent of partition {partition} is not connected ({})",
                part.message
            ))
        })
    }

    fn check_settled(&self, state: &State) {
        if !*self.settled.borrow() && !state.partitions.values().any(|p| p.adopted) {
            self.settled.send_replace(true);
            tracing::info!("every adopted machine's agent is back");
        }
    }

    /// Keep timeouts until the process ends: provisioning, silent agents,
    /// adopted machines whose agent never came back, and machines no
    /// partition owns.
    pub async fn run(self: Arc<Self>) {
        let mut last_sweep = Instant::now();
        loop {
            tokio::time::sleep(TICK).await;
            self.enforce_timeouts().await;
            if last_sweep.elapsed() >= ORPHAN_SWEEP {
                last_sweep = Instant::now();
                self.sweep_orphans().await;
            }
        }
    }

    async fn enforce_timeouts(&self) {
        let mut doomed: Vec<(String, String, bool)> = Vec::new();
        {
            let state = self.state();
            let grace_over = self.started.elapsed() >= self.config.agent_timeout;
            for (id, part) in &state.partitions {
                let why = match part.state {
                    PartitionState::Creating if part.adopted && grace_over => Some((
                        format!(
                            "its agent did not reconnect within {}s of the gate's restart; its machine was terminated",
                            self.config.agent_timeout.as_secs()
                        ),
                        true,
                    )),
                    PartitionState::Creating
                        if !part.adopted
                            && part.since.elapsed() >= self.config.provision_timeout =>
                    {
                        Some((
                            format!(
                                "no agent registered within {}s; its machine was terminated",
                                self.config.provision_timeout.as_secs()
                            ),
                            false,
                        ))
                    }
                    PartitionState::Ready
                        if part.session.is_none()
                            && part.since.elapsed() >= self.config.agent_timeout =>
                    {
                        Some((
                            format!(
                                "its agent was silent for {}s; its machine was terminated",
                                self.config.agent_timeout.as_secs()
                            ),
                            true,
                        ))
                    }
                    _ => None,
                };
                if let Some((why, lost)) = why {
                    doomed.push((id.clone(), why, lost));
                }
            }
        }
        for (id, why, lost) in doomed {
            let ids = self.state().partitions.get(&id).map(|p| p.machines.clone());
            let Some(ids) = ids else { continue };
            if let Err(err) = self.machines.terminate(&ids).await {
                tracing::warn!(partition = %id, error = %err, "cannot terminate a failed partition's machines yet");
                continue;
            }
            tracing::warn!(partition = %id, machines = ?ids, reason = %why, "partition failed");
            let mut state = self.state();
            if let Some(part) = state.partitions.get_mut(&id) {
                part.state = PartitionState::Failed;
                part.message = why.clone();
                part.adopted = false;
                part.session = None;
            }
            let reason = if lost {
                format!("lost: machine {} of partition {id}: {why}", ids.join(","))
            } else {
                why.clone()
            };
            self.fail_attempts(&mut state, &id, &reason, lost);
            self.check_settled(&state);
        }
    }

    /// Terminate this gate's machines that no partition owns.
    async fn sweep_orphans(&self) {
        let machines = match self.machines.list(None).await {
            Ok(machines) => machines,
            Err(err) => {
                tracing::warn!(error = %err, "cannot list machines to look for orphans");
                return;
            }
        };
        let orphans: Vec<String> = {
            let state = self.state();
            machines
                .into_iter()
                .filter(|m| m.state != MachineState::Terminated)
                .filter(|m| !state.partitions.contains_key(&m.partition))
                .map(|m| m.id)
                .collect()
        };
        if !orphans.is_empty() {
            self.terminate_orphans(orphans).await;
        }
    }

    async fn terminate_orphans(&self, ids: Vec<String>) {
        match self.machines.terminate(&ids).await {
            Ok(()) => {
                let mut state = self.state();
                state.orphans_terminated += ids.len() as u64;
                metrics::counter!("gantry_machines_reconciled_total").increment(ids.len() as u64);
                tracing::warn!(
                    machines = ?ids,
                    total = state.orphans_terminated,
                    "terminated machines that no partition owns"
                );
            }
            Err(err) => {
                tracing::warn!(machines = ?ids, error = %err, "cannot terminate orphaned machines")
            }
        }
    }

    /// How many machines the fleet terminated because no partition owned them.
    pub fn orphans_terminated(&self) -> u64 {
        self.state().orphans_terminated
    }

    /// A new session serial.
    pub(crate) fn next_serial(&self) -> u64 {
        let mut state = self.state();
        state.next_serial += 1;
        state.next_serial
    }

    /// A partition's record for a new machine, before it is launched.
    pub(crate) fn insert_creating(
        &self,
        id: &str,
        flavor: &str,
        machines: Vec<String>,
        message: &str,
    ) -> Partition {
        let mut state = self.state();
        let part = state
            .partitions
            .entry(id.to_string())
            .or_insert_with(|| Part::new(flavor, Vec::new(), message));
        for m in machines {
            if !part.machines.contains(&m) {
                part.machines.push(m);
            }
        }
        part.to_proto(id)
    }
}

/// `gate/partition/machine`, for logs.
pub(crate) fn agent_label(agent: &AgentName) -> String {
    format!("{}/{}/{}", agent.gate, agent.partition, agent.machine)
}

/// Why a fleet could not open: its state directory, its join tokens, or
/// the cloud's listing of its machines.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct OpenError(String);
