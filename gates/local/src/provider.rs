//! [`LocalProvider`]: the gate operations on this machine.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use gantry_gate::{
    AttemptId, Description, FileChunks, GateError, GlobSet, JobHub, JobSpec, LogSource,
    PartitionId, Provider, Result, is_final, stage_in_dir, stage_out_dir,
};
use gantry_proto::v1::{
    Capabilities, Capacity, Flavor, GateJob, GateJobState, LogStream, Partition, StageInResponse,
};

use crate::alloc::{NoFit, Pool};
use crate::config::LocalConfig;
use crate::host::Host;
use crate::launch;
use crate::layout::{AttemptDir, ExitRecord};
use crate::partitions::{HOST_FLAVOR, Partitions};
use crate::recover;
use crate::state::{Attempt, Pending, State};

/// Runs jobs as processes on this machine, each under its own `gantry-shim`.
/// Cheap to clone. Dropping it leaves running jobs alone: a new provider on
/// the same work directory picks them up.
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
    state: Mutex<State>,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// An attempt's shim is gone: record its end (see [`State::finish`]).
    pub fn finish(&self, attempt_id: &str, exit: Option<ExitRecord>) {
        self.state().finish(&self.hub, attempt_id, exit);
    }
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
        let mut pool = Pool::new(capacity.cpus, capacity.gpus, capacity.memory_bytes);
        let found = recover::scan(&attempts_dir).map_err(io("scan", &attempts_dir))?;
        let mut attempts = HashMap::with_capacity(found.len());
        let mut watching = Vec::new();
        for f in found {
            let alloc = f.running.map(|_| f.record.alloc.clone());
            if let (Some(alloc), Some(shim)) = (&alloc, f.running) {
                pool.restore(alloc);
                watching.push((f.record.attempt_id.clone(), f.dir.clone(), shim));
            }
            tracing::info!(attempt = %f.job.attempt_id, state = ?f.job.state(), "recovered attempt");
            let attempt = Attempt {
                job: f.job,
                dir: f.dir,
                alloc,
                shim: f.running,
                cancel: false,
            };
            attempts.insert(f.record.attempt_id, attempt);
        }
        let inner = Arc::new(Inner {
            config: LocalConfig { work_dir, ..config },
            host,
            capacity,
            queue,
            attempts_dir,
            hub: JobHub::default(),
            state: Mutex::new(State {
                attempts,
                pool,
                partitions,
                pending: Default::default(),
            }),
        });
        if !watching.is_empty() {
            tokio::spawn(recover::watch_recovered(Arc::downgrade(&inner), watching));
        }
        Ok(Self { inner })
    }

    /// The provider around `inner` (for its background tasks).
    pub(crate) fn from_inner(inner: Arc<Inner>) -> Self {
        Self { inner }
    }

    fn dir(&self, attempt: &AttemptId) -> AttemptDir {
        AttemptDir::new(&self.inner.attempts_dir, attempt.as_str())
    }

    /// Start the shim of an attempt already registered as PENDING.
    async fn launch(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: &JobSpec,
    ) -> Result<GateJob> {
        let inner = &self.inner;
        let dir = self.dir(attempt);
        let alloc = inner.state().attempts[attempt.as_str()]
            .alloc
            .clone()
            .unwrap_or_default();
        let record = launch::prepare(&dir, attempt, partition, spec, &alloc)?;
        let mut child = match launch::spawn_shim(&inner.config, &inner.host, &dir, &record) {
            Ok(child) => child,
            Err(err) => {
                let _ = std::fs::remove_file(dir.file("attempt.json"));
                return Err(err);
            }
        };
        let announced = launch::announcement(&mut child).await;
        let id = attempt.to_string();
        let Some(pids) = announced else {
            // The job could not start; the shim's exit.json says why.
            let _ = child.wait().await;
            inner.finish(&id, ExitRecord::read(&dir));
            return self.get_job(attempt).await;
        };
        let job = {
            let mut state = inner.state();
            let a = state
                .attempts
                .get_mut(&id)
                .expect("registered before launch");
            a.job.set_state(GateJobState::Running);
            a.job.native_id = pids.job.pid.to_string();
            a.job.start_time_ms = pids.start_ms;
            a.shim = Some(pids.shim);
            if a.cancel {
                a.signal_stop();
            }
            a.job.clone()
        };
        inner.hub.publish(job.clone());
        let waiter = self.clone();
        tokio::spawn(async move {
            let _ = child.wait().await;
            waiter.inner.finish(&id, ExitRecord::read(&dir));
            waiter.drain().await;
        });
        Ok(job)
    }

    /// Start waiting attempts, oldest first, while the head fits. (Boxed:
    /// starting an attempt spawns the task that drains again when it ends.)
    pub(crate) fn drain(&self) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        let this = self.clone();
        Box::pin(async move { this.drain_now().await })
    }

    async fn drain_now(&self) {
        loop {
            let next = {
                let mut state = self.inner.state();
                let Some(want) = state.pending.front().map(|p| p.spec.resources) else {
                    return;
                };
                let Ok(alloc) = state.pool.allocate(want) else {
                    return;
                };
                let head = state.pending.pop_front().expect("has a head");
                match state.attempts.get_mut(head.attempt.as_str()) {
                    Some(a) if !is_final(a.job.state()) => {
                        a.alloc = Some(alloc);
                        a.job.reason.clear();
                    }
                    _ => {
                        state.pool.release(&alloc);
                        continue;
                    }
                }
                head
            };
            if let Err(e) = self
                .launch(&next.attempt, &next.partition, &next.spec)
                .await
            {
                // Nobody is waiting on a call to retry it: the attempt fails.
                self.inner.state().end_unstarted(
                    &self.inner.hub,
                    next.attempt.as_str(),
                    GateJobState::Failed,
                    &format!("could not start: {e}"),
                );
            }
        }
    }
}

fn not_found_or<T>(value: Option<T>, attempt: &AttemptId) -> Result<T> {
    value.ok_or_else(|| GateError::no_attempt(attempt.as_str()))
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
        };
        Ok(Description {
            provider: "local".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities {
                staging: true,
                log_follow: true,
                elastic: false,
            },
            flavors: vec![flavor],
            images: Vec::new(),
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
        for attempt in state.attempts.values_mut() {
            if attempt.job.partition_id == id.as_str() && !is_final(attempt.job.state()) {
                attempt.signal_stop();
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
        {
            let mut state = self.inner.state();
            if let Some(existing) = state.attempts.get(attempt.as_str()) {
                return Ok(existing.job.clone());
            }
            state.partitions.check_ready(partition.as_str())?;
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
            // First come, first started: nothing overtakes a waiting attempt.
            let now = if state.pending.is_empty() {
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
                shim: None,
                cancel: false,
            };
            state.attempts.insert(attempt.to_string(), entry);
            if waits {
                state.pending.push_back(Pending {
                    attempt: attempt.clone(),
                    partition: partition.clone(),
                    spec,
                });
                return Ok(job);
            }
        }
        let result = self.launch(attempt, partition, &spec).await;
        if result.is_err() {
            // Nothing runs: forget the attempt so a retry starts it afresh.
            let mut state = self.inner.state();
            if let Some(alloc) = state
                .attempts
                .remove(attempt.as_str())
                .and_then(|a| a.alloc)
            {
                state.pool.release(&alloc);
            }
        }
        result
    }

    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let state = self.inner.state();
        not_found_or(
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
        let a = not_found_or(state.attempts.get_mut(attempt.as_str()), attempt)?;
        if !is_final(a.job.state()) {
            a.signal_stop();
        }
        Ok(a.job.clone())
    }

    async fn release_job(&self, attempt: &AttemptId) -> Result<()> {
        {
            let mut state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str()) {
                if !is_final(a.job.state()) {
                    return Err(GateError::FailedPrecondition(format!(
                        "attempt `{attempt}` has not ended; cancel it and wait for its end first"
                    )));
                }
                state.attempts.remove(attempt.as_str());
            }
        }
        let dir = self.dir(attempt).dir;
        tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(GateError::io(format!("remove {}", dir.display()))(e))
            }
            _ => Ok(()),
        })
        .await
        .map_err(|e| GateError::Internal(format!("release task failed: {e}")))?
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
        let a = not_found_or(state.attempts.get(attempt.as_str()), attempt)?;
        let name = if stream == LogStream::Stderr {
            "stderr"
        } else {
            "stdout"
        };
        Ok(LogSource::File(a.dir.file(name)))
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
                return Err(GateError::FailedPrecondition(format!(
                    "attempt `{attempt}` has started; stage files in before StartJob"
                )));
            }
        }
        stage_in_dir(&self.dir(attempt).work(), files).await
    }

    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        let state = self.inner.state();
        let a = not_found_or(state.attempts.get(attempt.as_str()), attempt)?;
        if !is_final(a.job.state()) {
            return Err(GateError::FailedPrecondition(format!(
                "attempt `{attempt}` has not ended; stage out after it ends"
            )));
        }
        Ok(stage_out_dir(a.dir.work(), globs))
    }
}
