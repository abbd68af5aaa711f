//! The gate operations of an elastic gate: partitions are machines a cloud
//! launches, attempts run on the agents of those machines.

use std::collections::BTreeMap;
use std::sync::Arc;

use gantry_gate::{
    AttemptId, Connection, Description, FileChunks, GateError, GlobSet, JobHub, JobSpec, LogReader,
    LogSource, PartitionId, Provider, Result,
};
use gantry_proto::v1::{
    Capabilities, GateJob, GateJobState, LogStream, OpenTunnel, Partition, PartitionState,
    ReadLogRequest, StageInResponse, StartJobRequest, TunnelData, agent_command::Body as Command,
    agent_reply::Body as Reply,
};

use futures::StreamExt;
use gantry_proto::splice::{SPLICE_CHUNK, splice};

use crate::boot::{Boot, boot_script};
use crate::fleet::{Fleet, MACHINE};
use crate::machines::{Launch, Machines};
use crate::session::Session;
use crate::tokens::Grant;

/// The fleet as a gate's [`Provider`].
pub struct FleetProvider<M> {
    fleet: Arc<Fleet<M>>,
}

impl<M> FleetProvider<M> {
    /// Serve `fleet`'s partitions and attempts through the gate API.
    pub fn new(fleet: Arc<Fleet<M>>) -> Self {
        Self { fleet }
    }
}

fn unexpected(reply: Reply) -> GateError {
    GateError::Internal(format!("the node agent answered out of turn: {reply:?}"))
}

impl<M: Machines> FleetProvider<M> {
    fn known_partition(&self, id: &PartitionId) -> Result<Partition> {
        let state = self.fleet.state();
        state
            .partitions
            .get(id.as_str())
            .map(|p| p.to_proto(id.as_str()))
            .ok_or_else(|| GateError::no_partition(id.as_str()))
    }

    /// Whether attempts can start on `id` now. A partition adopted after a
    /// restart whose agent is not back yet may already run the attempt
    /// (its StartJob may have reached the agent before the gate died): that
    /// is UNAVAILABLE, asked again later with the same attempt, never
    /// FAILED_PRECONDITION, which would have gantryd start a new attempt.
    fn ready_for_jobs(&self, id: &PartitionId) -> Result<()> {
        let state = self.fleet.state();
        let part = state
            .partitions
            .get(id.as_str())
            .ok_or_else(|| GateError::no_partition(id.as_str()))?;
        match part.state {
            PartitionState::Ready => Ok(()),
            PartitionState::Creating if part.adopted => Err(GateError::Unavailable(format!(
                "partition {id}: {}",
                part.message
            ))),
            _ => Err(GateError::FailedPrecondition(format!(
                "partition {id} is not ready: {}",
                part.message
            ))),
        }
    }

    /// An attempt as the fleet last heard of it.
    fn attempt_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        self.fleet
            .state()
            .attempts
            .get(attempt.as_str())
            .cloned()
            .ok_or_else(|| GateError::no_attempt(attempt.as_str()))
    }
}

#[tonic::async_trait]
impl<M: Machines> Provider for FleetProvider<M> {
    fn hub(&self) -> &JobHub {
        &self.fleet.hub
    }

    async fn describe(&self) -> Result<Description> {
        Ok(Description {
            provider: self.fleet.machines.provider().to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            capabilities: Capabilities {
                staging: self.fleet.machines.storage().is_some(),
                log_follow: true,
                elastic: true,
                chdir: false,
                secret_env: true,
                port_forward: true,
            },
            flavors: self.fleet.flavors().await?,
            images: Vec::new(),
            run_as: None,
        })
    }

    async fn create_partition(
        &self,
        id: &PartitionId,
        flavor: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Partition> {
        let _one_at_a_time = self.fleet.creating.lock().await;
        if let Ok(known) = self.known_partition(id) {
            return Ok(known);
        }
        if !self.fleet.flavors().await?.iter().any(|f| f.name == flavor) {
            return Err(GateError::invalid(
                "flavor",
                format!("`{flavor}` is not a flavor of this gate; see `gantry sites`"),
            ));
        }
        // A launch whose answer was lost (or a gate restarted in between)
        // left a machine with the partition's tag: take it, never a second.
        let found = self.fleet.machines.list(Some(id)).await?;
        if !found.is_empty() {
            let ids = found.into_iter().map(|m| m.id).collect();
            return Ok(self.fleet.insert_creating(
                id.as_str(),
                flavor,
                ids,
                "waiting for its agent to register",
            ));
        }
        let config = &self.fleet.config;
        let token = self
            .fleet
            .tokens
            .mint(
                Grant {
                    partition: id.to_string(),
                    machine: MACHINE.into(),
                },
                config.token_ttl,
            )
            .map_err(|e| GateError::Unavailable(e.to_string()))?;
        let server_name = format!("{}.gate.{}", config.gate, config.installation);
        let script = boot_script(&Boot {
            gate_address: &config.agent_address,
            gate_server_name: &server_name,
            ca_pem: &config.ca_pem,
            token: &token,
            cut_off: config.cut_off,
            prelude: &config.boot_prelude,
            partition: id.as_str(),
            machine: MACHINE,
        });
        let machine = self
            .fleet
            .machines
            .launch(Launch {
                partition: id,
                flavor,
                labels,
                boot_script: &script,
            })
            .await?;
        tracing::info!(partition = %id, machine = %machine.id, flavor, "launched a machine");
        Ok(self.fleet.insert_creating(
            id.as_str(),
            flavor,
            vec![machine.id],
            "booting; waiting for its agent to register",
        ))
    }

    async fn get_partition(&self, id: &PartitionId) -> Result<Partition> {
        self.known_partition(id)
    }

    async fn delete_partition(&self, id: &PartitionId) -> Result<Partition> {
        let known = 'known: {
            let mut state = self.fleet.state();
            let Some(part) = state.partitions.get_mut(id.as_str()) else {
                break 'known None;
            };
            part.state = PartitionState::Deleting;
            part.message = "terminating its machines".into();
            let session = part.session.take();
            let flavor = part.flavor.clone();
            self.fleet.end_attempts(
                &mut state,
                id.as_str(),
                GateJobState::Cancelled,
                "its partition was deleted",
                false,
            );
            Some((flavor, session))
        };
        let Some((flavor, session)) = known else {
            return self.finish_delete(id, String::new()).await;
        };
        if let Some(session) = session {
            session.power_off("the partition was deleted");
        }
        self.finish_delete(id, flavor).await
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        self.fleet.settled().await;
        let state = self.fleet.state();
        Ok(state
            .partitions
            .iter()
            .map(|(id, p)| p.to_proto(id))
            .collect())
    }

    async fn start_job(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: JobSpec,
    ) -> Result<GateJob> {
        if let Ok(job) = self.attempt_job(attempt) {
            return Ok(job);
        }
        self.ready_for_jobs(partition)?;
        if spec.layout.nodes > 1 {
            return Err(GateError::invalid(
                "task.resources.nodes",
                "this gate's partitions are one machine each; a job spans one node",
            ));
        }
        if spec.chdir.is_some() {
            // Describe does not flag chdir: a machine made for the job has
            // no directory of the user's to run in.
            return Err(GateError::invalid(
                "task.chdir",
                "this gate's machines hold no directory of yours; stage the job's files in instead",
            ));
        }
        let session = self.fleet.session(partition.as_str())?;
        self.fleet
            .fetch_inputs(&session, attempt, partition.as_str())
            .await?;
        let start = Command::StartJob(StartJobRequest {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            task: Some(spec.to_task()),
        });
        self.job_command(&session, start, attempt).await
    }

    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        self.attempt_job(attempt)
    }

    async fn cancel_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let job = self.attempt_job(attempt)?;
        if job.state().is_final() {
            return Ok(job);
        }
        let session = self.fleet.session(&job.partition_id)?;
        let cancel = Command::CancelJob(gantry_proto::v1::GateCancelJobRequest {
            attempt_id: attempt.to_string(),
        });
        self.job_command(&session, cancel, attempt).await
    }

    async fn release_job(&self, attempt: &AttemptId) -> Result<()> {
        let Ok(job) = self.attempt_job(attempt) else {
            return Ok(());
        };
        if !job.state().is_final() {
            return Err(GateError::release_running(attempt));
        }
        let live = {
            let state = self.fleet.state();
            state
                .partitions
                .get(&job.partition_id)
                .is_some_and(|p| p.state == PartitionState::Ready)
        };
        if live {
            let session = self.fleet.session(&job.partition_id)?;
            let release = Command::ReleaseJob(gantry_proto::v1::GateReleaseJobRequest {
                attempt_id: attempt.to_string(),
            });
            match session.call(release, attempt.as_str()).await {
                Ok(_) | Err(GateError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        self.fleet.state().attempts.remove(attempt.as_str());
        self.fleet.forget_files(attempt).await;
        Ok(())
    }

    async fn list_jobs(&self) -> Result<Vec<GateJob>> {
        self.fleet.settled().await;
        Ok(self.fleet.state().attempts.values().cloned().collect())
    }

    async fn stage_in(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        self.known_partition(partition)?;
        if self.attempt_job(attempt).is_ok() {
            return Err(GateError::stage_in_started(attempt));
        }
        self.fleet.stage_in(attempt, files).await
    }

    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        let job = self.attempt_job(attempt)?;
        if !job.state().is_final() {
            return Err(GateError::stage_out_running(attempt));
        }
        let session = self.fleet.session(&job.partition_id)?;
        self.fleet.stage_out(&session, attempt, globs).await
    }

    async fn log_source(&self, attempt: &AttemptId, stream: LogStream) -> Result<LogSource> {
        let job = self.attempt_job(attempt)?;
        Ok(LogSource::Reader(Box::new(AgentLog {
            fleet: self.fleet.clone(),
            partition: job.partition_id,
            attempt: attempt.to_string(),
            stream,
        })))
    }

    /// Ask the attempt's agent to connect to the port, then carry the
    /// connection over the agent's Tunnel call.
    async fn forward_port(&self, attempt: &AttemptId, port: u16) -> Result<Box<dyn Connection>> {
        let job = self.attempt_job(attempt)?;
        let session = self.fleet.session(&job.partition_id)?;
        let mut expected = self.fleet.tunnels.expect(&session.agent);
        let open = OpenTunnel {
            tunnel_id: expected.id.clone(),
            attempt_id: attempt.to_string(),
            port: u32::from(port),
        };
        session
            .call(Command::OpenTunnel(open), attempt.as_str())
            .await?;
        let call = expected.arrival().await?;
        let (near, far) = tokio::io::duplex(2 * SPLICE_CHUNK);
        let head = futures::stream::iter((!call.head.is_empty()).then_some(Ok(call.head)));
        let rest = call.incoming.map(|m| m.map(|m| m.data));
        tokio::spawn(splice(far, head.chain(rest), call.out, |data| TunnelData {
            tunnel_id: String::new(),
            data,
        }));
        Ok(Box::new(near))
    }
}

impl<M: Machines> FleetProvider<M> {
    /// Send a command the agent answers with the attempt's state, take that
    /// state in, and return the attempt as the fleet now holds it.
    async fn job_command(
        &self,
        session: &Session,
        command: Command,
        attempt: &AttemptId,
    ) -> Result<GateJob> {
        let reply = session.call(command, attempt.as_str()).await?;
        let Reply::Job(job) = reply else {
            return Err(unexpected(reply));
        };
        let mut state = self.fleet.state();
        self.fleet.agent_job(&mut state, &session.agent, job);
        state
            .attempts
            .get(attempt.as_str())
            .cloned()
            .ok_or_else(|| GateError::Internal("the agent answered for another attempt".into()))
    }

    /// DELETED once the cloud lists none of the partition's machines;
    /// otherwise ask it (again) to terminate them.
    async fn finish_delete(&self, id: &PartitionId, flavor: String) -> Result<Partition> {
        let left = self.fleet.machines.list(Some(id)).await?;
        if left.is_empty() {
            self.fleet.state().partitions.remove(id.as_str());
            return Ok(Partition {
                partition_id: id.to_string(),
                flavor,
                state: PartitionState::Deleted as i32,
                message: "every machine is terminated".into(),
                ..Default::default()
            });
        }
        let ids: Vec<String> = left.iter().map(|m| m.id.clone()).collect();
        self.fleet.machines.terminate(&ids).await?;
        Ok(Partition {
            partition_id: id.to_string(),
            flavor,
            state: PartitionState::Deleting as i32,
            message: format!("terminating {}", ids.join(",")),
            native_id: ids.join(","),
            ..Default::default()
        })
    }
}

/// An attempt's log, read from its agent piece by piece.
struct AgentLog<M> {
    fleet: Arc<Fleet<M>>,
    partition: String,
    attempt: String,
    stream: LogStream,
}

#[tonic::async_trait]
impl<M: Machines> LogReader for AgentLog<M> {
    async fn read_at(&mut self, offset: u64, max: usize) -> Result<Vec<u8>> {
        let session = self.fleet.session(&self.partition)?;
        let reply = session
            .call(
                Command::ReadLog(ReadLogRequest {
                    attempt_id: self.attempt.clone(),
                    stream: self.stream as i32,
                    offset,
                    max_bytes: max.min(u32::MAX as usize) as u32,
                }),
                &self.attempt,
            )
            .await?;
        match reply {
            Reply::Data(data) => Ok(data),
            other => Err(unexpected(other)),
        }
    }
}
