//! [`LocalProvider`]: the gate operations on this machine.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use gantry_gate::{
    AttemptId, Connection, Description, FileChunks, GateError, GlobSet, JobHub, JobSpec, LogSource,
    PartitionId, Provider, Result, RunAs, attempt_found, connect_loopback, log_file_name,
    stage_in_dir, stage_out_dir,
};
use gantry_proto::v1::{
    Capabilities, Capacity, Flavor, GateJob, GateJobState, LogStream, Partition, StageInResponse,
};

use crate::alloc::{NoFit, Pool};
use crate::config::LocalConfig;
use crate::host::Host;
use crate::layout::AttemptDir;
use crate::link::{self, Link};
use crate::partitions::{HOST_FLAVOR, Partitions};
use crate::protocol::{Command, Event};
use crate::state::{Attempt, Pending, State};

mod queue;

/// Runs jobs as processes on this machine through the work directory's
/// `gantry-supervisor`. Cheap to clone. Dropping it leaves running jobs
/// alone: a new provider on the same work directory picks them up.
#[derive(Clone)]
pub struct LocalProvider {
    inner: Arc<Inner>,
}

/// Shared by the provider and its background tasks.
pub struct Inner {
    config: LocalConfig,
    host: Host,
    capacity: Capacity,
    /// What waits beyond `capacity` (see [`LocalConfig::queue_factor`]).
    queue: Capacity,
    attempts_dir: std::path::PathBuf,
    hub: JobHub,
    link: Link,
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Take in one event from the supervisor.
    fn on_event(&self, event: Event) {
        match event {
            Event::Started {
                attempt,
                pid,
                start_ms,
                after,
            } => {
                let mut state = self.state();
                state.started(&self.hub, &attempt, pid, start_ms, after.as_deref());
                // One more runs: one more can be queued behind it.
                self.drain_locked(&mut state);
            }
            Event::Exited {
                attempt,
                exit,
                passed_to,
            } => {
                let mut state = self.state();
                state.finish(&self.hub, &attempt, &exit, passed_to.as_deref());
                self.drain_locked(&mut state);
            }
            Event::Known(_) | Event::Synced { .. } => {}
        }
    }

    /// Ask the supervisor to stop an attempt's job (its end arrives as an
    /// event); UNAVAILABLE while the supervisor cannot be reached.
    fn stop(&self, attempt: &Attempt, reason: &str) -> Result<()> {
        if attempt.sent && !attempt.job.state().is_final() {
            let command = Command::Stop {
                attempt: attempt.job.attempt_id.clone(),
                reason: reason.into(),
            };
            self.link.send(&command)?;
        }
        Ok(())
    }
}

/// Follow the supervisor's events; when the connection is lost (the
/// supervisor died or exited), connect again (starting a new one) and take
/// in its snapshot. Ends when the provider is dropped.
async fn follow(inner: Weak<Inner>, mut events: link::Events) {
    loop {
        while let Some(event) = link::next_event(&mut events).await {
            let Some(inner) = inner.upgrade() else { return };
            inner.on_event(event);
        }
        let mut delay = Duration::from_millis(50);
        loop {
            let Some(strong) = inner.upgrade() else {
                return;
            };
            strong.link.detach();
            tracing::warn!("lost the job supervisor; reconnecting");
            match link::connect(&strong.config.work_dir, &strong.config.supervisor).await {
                Ok(mut connection) => {
                    // Snapshot first, then commands: a start sent before the
                    // snapshot is taken in would be judged lost.
                    let mut state = strong.state();
                    let snapshot = std::mem::take(&mut connection.snapshot);
                    state.sync(&strong.hub, &strong.attempts_dir, snapshot);
                    strong.link.attach(&connection);
                    strong.drain_locked(&mut state);
                    drop(state);
                    events = connection.events;
                    break;
                }
                Err(e) => tracing::warn!(error = %e, "cannot reach the job supervisor"),
            }
            drop(strong);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}

/// Jobs run as their owners reach their directories under `work_dir`:
/// make it searchable by all (it is the gate's own), and refuse a parent
/// that is not, saying which.
fn reachable_by_every_account(work_dir: &std::path::Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &std::path::Path| {
        std::fs::metadata(p)
            .map(|m| m.permissions().mode())
            .map_err(GateError::io(format!("stat {}", p.display())))
    };
    let own = mode(work_dir)?;
    if own & 0o001 == 0 {
        let searchable = std::fs::Permissions::from_mode(own | 0o011);
        std::fs::set_permissions(work_dir, searchable)
            .map_err(GateError::io(format!("chmod {}", work_dir.display())))?;
    }
    for parent in work_dir.ancestors().skip(1) {
        let parent_mode = mode(parent)?;
        if parent_mode & 0o001 == 0 {
            return Err(GateError::Internal(format!(
                "--run-as owner: jobs could not reach their directories under {}: {} is not \
                 searchable by other accounts (mode {:o}); `chmod o+x` it or choose another --work-dir",
                work_dir.display(),
                parent.display(),
                parent_mode & 0o7777
            )));
        }
    }
    Ok(())
}

impl LocalProvider {
    /// Open the gate's work directory (creating it), recover the partitions
    /// and attempts a previous gate left, and start watching those whose
    /// jobs still run. Must be called inside a tokio runtime.
    pub async fn open(config: LocalConfig) -> Result<Self> {
        let io = |what: &str, path: &std::path::Path| {
            GateError::io(format!("{what} {}", path.display()))
        };
        std::fs::create_dir_all(&config.work_dir).map_err(io("create", &config.work_dir))?;
        let work_dir = config
            .work_dir
            .canonicalize()
            .map_err(io("resolve", &config.work_dir))?;
        let attempts_dir = work_dir.join("attempts");
        std::fs::create_dir_all(&attempts_dir).map_err(io("create", &attempts_dir))?;
        if matches!(config.run_as, RunAs::Owner(_)) {
            reachable_by_every_account(&work_dir)?;
        }
        let host = Host::detect();
        let capacity = Capacity {
            cpus: config.cpus.unwrap_or(host.cpu_ids.len() as u32),
            memory_bytes: config.memory_bytes.unwrap_or(host.memory_bytes),
            gpus: host.gpus,
            nodes: 1,
        };
        let factor = config.queue_factor;
        let queue = Capacity {
            cpus: capacity.cpus.saturating_mul(factor),
            memory_bytes: capacity.memory_bytes.saturating_mul(u64::from(factor)),
            gpus: capacity.gpus.saturating_mul(factor),
            nodes: 0,
        };
        let partitions = Partitions::load(
            work_dir.join("partitions"),
            capacity,
            queue,
            host.hostname.clone(),
        )?;
        let pool = Pool::new(capacity.cpus, capacity.gpus, capacity.memory_bytes);
        let connection = link::connect(&work_dir, &config.supervisor).await?;
        let inner = Arc::new(Inner {
            config: LocalConfig { work_dir, ..config },
            host,
            capacity,
            queue,
            attempts_dir,
            hub: JobHub::default(),
            link: Link::default(),
            state: Mutex::new(State {
                attempts: HashMap::new(),
                pool,
                partitions,
                pending: Default::default(),
                chained: Default::default(),
            }),
        });
        inner.link.attach(&connection);
        inner
            .state()
            .sync(&inner.hub, &inner.attempts_dir, connection.snapshot);
        tokio::spawn(follow(Arc::downgrade(&inner), connection.events));
        Ok(Self { inner })
    }

    /// The working directory of an ended attempt, whose files may be staged
    /// out (by the harness, or by a node agent uploading them).
    pub fn ended_work_dir(&self, attempt: &AttemptId) -> Result<std::path::PathBuf> {
        let state = self.inner.state();
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        if !a.job.state().is_final() {
            return Err(GateError::stage_out_running(attempt));
        }
        Ok(a.dir.work())
    }

    fn dir(&self, attempt: &AttemptId) -> AttemptDir {
        AttemptDir::new(&self.inner.attempts_dir, attempt.as_str())
    }
}

#[tonic::async_trait]
impl Provider for LocalProvider {
    fn hub(&self) -> &JobHub {
        &self.inner.hub
    }

    async fn describe(&self) -> Result<Description> {
        let flavor = Flavor {
            name: HOST_FLAVOR.into(),
            capacity: Some(self.inner.capacity),
            price_per_hour: 0.0,
            currency: String::new(),
            max_partitions: 1,
            max_walltime_seconds: 0,
            available: true,
            unavailable_reason: String::new(),
            // Its one flavor: there is no choice to guide.
            is_default: false,
            default_walltime_seconds: 0,
        };
        Ok(Description {
            provider: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities {
                staging: true,
                log_follow: true,
                elastic: false,
                chdir: true,
                secret_env: true,
                port_forward: true,
            },
            flavors: vec![flavor],
            images: Vec::new(),
            run_as: Some(self.inner.config.run_as.info()),
        })
    }

    async fn create_partition(
        &self,
        id: &PartitionId,
        flavor: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Partition> {
        self.inner.state().partitions.create(id, flavor, labels)
    }

    async fn get_partition(&self, id: &PartitionId) -> Result<Partition> {
        self.inner.state().partitions.get(id)
    }

    async fn delete_partition(&self, id: &PartitionId) -> Result<Partition> {
        let mut state = self.inner.state();
        let partition = state.partitions.delete(id)?;
        let waiting: Vec<String> = state
            .pending
            .iter()
            .filter(|p| p.partition.as_str() == id.as_str())
            .map(|p| p.attempt.to_string())
            .collect();
        for attempt in waiting {
            state.end_pending(&self.inner.hub, &attempt, "its partition was deleted");
        }
        state
            .chained
            .retain(|p| p.partition.as_str() != id.as_str());
        for attempt in state.attempts.values() {
            if attempt.job.partition_id == id.as_str() {
                self.inner.stop(attempt, "cancelled")?;
            }
        }
        Ok(partition)
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        Ok(self.inner.state().partitions.list())
    }

    async fn start_job(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: JobSpec,
    ) -> Result<GateJob> {
        // Looked up before the lock: the account databases may be remote (NSS).
        let account = self.inner.config.run_as.local_account(&spec.owner);
        {
            let mut state = self.inner.state();
            if let Some(existing) = state.attempts.get(attempt.as_str()) {
                return Ok(existing.job.clone());
            }
            let account = account?;
            state.partitions.check_ready(partition.as_str())?;
            if spec.layout.nodes > 1 {
                return Err(GateError::invalid(
                    "task.resources.nodes",
                    format!(
                        "asks for {} nodes; the local gate is one machine (use a Slurm site)",
                        spec.layout.nodes
                    ),
                ));
            }
            let refused = |no| match no {
                NoFit::Never(m) => GateError::invalid("task.resources", m),
                NoFit::NotNow(m) => GateError::ResourceExhausted(m),
            };
            state.pool.check_shape(spec.resources).map_err(refused)?;
            let mut job = GateJob {
                attempt_id: attempt.to_string(),
                partition_id: partition.to_string(),
                job_id: spec.job_id,
                ..Default::default()
            };
            job.set_state(GateJobState::Pending);
            // First come, first started: nothing overtakes a waiting attempt
            // (queued, or waiting to follow a running one).
            let now = if state.pending.is_empty() && state.chained.is_empty() {
                state.pool.allocate(spec.resources)
            } else {
                Err(NoFit::NotNow("others wait before it".into()))
            };
            let alloc = match now {
                Ok(alloc) => Some(alloc),
                Err(NoFit::NotNow(why)) => {
                    let (cpus, memory) = state.pending_load();
                    let queue = self.inner.queue;
                    let room = cpus + u64::from(spec.resources.cpus.max(1))
                        <= u64::from(queue.cpus)
                        && memory + spec.resources.memory_bytes <= queue.memory_bytes;
                    if !room {
                        return Err(GateError::ResourceExhausted(format!(
                            "{why}; and the gate's queue is full ({} waiting)",
                            state.pending.len()
                        )));
                    }
                    job.reason = format!(
                        "waiting for a free slot on this host ({} ahead)",
                        state.pending.len()
                    );
                    None
                }
                Err(no) => return Err(refused(no)),
            };
            let waits = alloc.is_none();
            let entry = Attempt {
                job: job.clone(),
                dir: self.dir(attempt),
                alloc,
                sent: false,
                moved: None,
            };
            state.attempts.insert(attempt.to_string(), entry);
            let pending = Pending {
                attempt: attempt.clone(),
                partition: partition.clone(),
                spec,
                account,
            };
            if waits {
                state.pending.push_back(pending);
                self.inner.drain_locked(&mut state);
                return Ok(job);
            }
            let held = state.attempts[attempt.as_str()]
                .alloc
                .clone()
                .unwrap_or_default();
            if let Err(e) = self.inner.launch(&mut state, &pending, &held, false) {
                // Nothing runs: forget the attempt so a retry starts it afresh.
                if let Some(alloc) = state
                    .attempts
                    .remove(attempt.as_str())
                    .and_then(|a| a.alloc)
                {
                    state.pool.release(&alloc);
                }
                return Err(e);
            }
            // RUNNING follows on the watch stream once the supervisor started it.
            Ok(job)
        }
    }

    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let state = self.inner.state();
        attempt_found(
            state.attempts.get(attempt.as_str()).map(|a| a.job.clone()),
            attempt,
        )
    }

    async fn cancel_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let mut state = self.inner.state();
        state.end_pending(
            &self.inner.hub,
            attempt.as_str(),
            "cancelled before it started",
        );
        // One queued in the supervisor must not be moved to a free slot now.
        state.unchain(attempt.as_str());
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        self.inner.stop(a, "cancelled")?;
        Ok(a.job.clone())
    }

    async fn release_job(&self, attempt: &AttemptId) -> Result<()> {
        {
            let mut state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str())
                && !a.job.state().is_final()
            {
                return Err(GateError::release_running(attempt));
            }
            // The supervisor removes the directory (also of an attempt that
            // never started but had files staged in).
            self.inner.link.send(&Command::Forget {
                attempt: attempt.to_string(),
            })?;
            state.attempts.remove(attempt.as_str());
        }
        Ok(())
    }

    async fn list_jobs(&self) -> Result<Vec<GateJob>> {
        Ok(self
            .inner
            .state()
            .attempts
            .values()
            .map(|a| a.job.clone())
            .collect())
    }

    async fn log_source(&self, attempt: &AttemptId, stream: LogStream) -> Result<LogSource> {
        let state = self.inner.state();
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        Ok(LogSource::File(a.dir.file(log_file_name(stream))))
    }

    async fn stage_in(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        {
            let state = self.inner.state();
            state.partitions.check_ready(partition.as_str())?;
            if state.attempts.contains_key(attempt.as_str()) {
                return Err(GateError::stage_in_started(attempt));
            }
        }
        stage_in_dir(&self.dir(attempt).work(), files).await
    }

    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        Ok(stage_out_dir(self.ended_work_dir(attempt)?, globs))
    }

    async fn forward_port(&self, attempt: &AttemptId, port: u16) -> Result<Box<dyn Connection>> {
        let job = self.get_job(attempt).await?;
        connect_loopback(attempt, &job, port).await
    }
}
