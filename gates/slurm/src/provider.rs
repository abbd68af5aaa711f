//! [`SlurmProvider`]: the gate operations on a Slurm cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gantry_gate::{
    AttemptId, Description, FileChunks, GateError, GlobSet, Host, JobHub, JobSpec, LogSource,
    PartitionId, Provider, Result, attempt_found, log_file_name,
};
use gantry_proto::v1::{
    Capabilities, Capacity, Flavor, GateJob, GateJobState, LogStream, Partition, PartitionState,
    StageInResponse,
};
use tokio::sync::Notify;

use crate::commands::{self, JobRecords, SlurmPartition};
use crate::records::{AttemptRecord, PartitionRecord, read_all, write_json};
use crate::script;
mod poll;
mod submit;

use submit::Submission;

/// How the gate reaches its cluster and where it keeps attempts.
#[derive(Clone)]
pub struct SlurmConfig {
    /// Where Slurm's commands run and the work directory is: this machine
    /// or a login node over SSH.
    pub host: Arc<dyn Host>,
    /// Partitions and attempts, on `host`; must be on a file system the
    /// compute nodes share (jobs run in `attempts/<id>/work` and write their
    /// logs there). A relative path is relative to the host's starting
    /// directory (the login directory over SSH).
    pub work_dir: PathBuf,
    /// How often the gate asks Slurm for its jobs' states.
    pub poll: Duration,
    /// How many times a partition's capacity gantryd may hand the gate
    /// beyond it (Slurm queues the rest).
    pub queue_factor: u32,
}

/// How long what `sinfo` said is reused.
const CLUSTER_TTL: Duration = Duration::from_secs(2);

/// Runs jobs on a Slurm cluster. Cheap to clone.
#[derive(Clone)]
pub struct SlurmProvider {
    inner: Arc<Inner>,
}

struct Inner {
    config: SlurmConfig,
    attempts_dir: PathBuf,
    partitions_dir: PathBuf,
    hub: JobHub,
    state: Mutex<State>,
    cluster: tokio::sync::Mutex<Option<(Instant, Vec<SlurmPartition>)>>,
    /// Wakes the poller early (after a submit or a cancel).
    wake: Arc<Notify>,
    /// Where the cluster keeps finished jobs, asked once when first needed.
    job_records: tokio::sync::OnceCell<JobRecords>,
}

#[derive(Default)]
struct State {
    partitions: BTreeMap<String, PartitionRecord>,
    attempts: HashMap<String, Attempt>,
    /// Attempts whose sbatch failed without saying whether Slurm took the
    /// job (their record, with no Slurm id, is still on disk): a next try
    /// looks for the job by its comment first. A restarted gate finds
    /// them all in `open`.
    unsure: HashSet<String>,
}

struct Attempt {
    record: AttemptRecord,
    job: GateJob,
    dir: PathBuf,
    /// CancelJob came while it was being submitted.
    cancel: bool,
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster's partitions (from `sinfo`, at most [`CLUSTER_TTL`] old).
    async fn cluster(&self) -> Result<Vec<SlurmPartition>> {
        let mut cached = self.cluster.lock().await;
        if let Some((at, parts)) = cached.as_ref()
            && at.elapsed() < CLUSTER_TTL
        {
            return Ok(parts.clone());
        }
        let parts = commands::partitions(self.host()).await?;
        *cached = Some((Instant::now(), parts.clone()));
        Ok(parts)
    }

    /// Where the cluster keeps the records of finished jobs.
    async fn job_records(&self) -> Result<JobRecords> {
        self.job_records
            .get_or_try_init(|| commands::job_records(self.host()))
            .await
            .copied()
    }

    /// Where commands run and files are.
    fn host(&self) -> &dyn Host {
        self.config.host.as_ref()
    }

    async fn slurm_partition(&self, name: &str) -> Result<Option<SlurmPartition>> {
        Ok(self.cluster().await?.into_iter().find(|p| p.name == name))
    }

    fn to_partition(&self, record: &PartitionRecord, slurm: Option<&SlurmPartition>) -> Partition {
        let capacity = slurm.map(capacity_of).unwrap_or_default();
        let factor = self.config.queue_factor;
        let queue = Capacity {
            cpus: capacity.cpus.saturating_mul(factor),
            memory_bytes: capacity.memory_bytes.saturating_mul(u64::from(factor)),
            gpus: capacity.gpus.saturating_mul(factor),
            nodes: capacity.nodes.saturating_mul(factor),
        };
        let message = match slurm {
            None => format!("Slurm partition {} no longer exists", record.flavor),
            Some(p) => p.unavailable().unwrap_or_default(),
        };
        Partition {
            partition_id: record.partition_id.clone(),
            flavor: record.flavor.clone(),
            state: PartitionState::Ready as i32,
            message,
            capacity: Some(capacity),
            native_id: record.flavor.clone(),
            queue: Some(queue),
        }
    }
}

/// What one partition of `p` offers.
fn capacity_of(p: &SlurmPartition) -> Capacity {
    Capacity {
        cpus: p.cpus,
        memory_bytes: p.memory_bytes,
        gpus: p.gpus,
        nodes: p.nodes,
    }
}

impl SlurmProvider {
    /// Open the work directory, take back the partitions and attempts a
    /// previous gate left (finding by their comment the Slurm jobs it had
    /// not written down yet), and start polling Slurm.
    pub async fn open(config: SlurmConfig) -> Result<Self> {
        let host = config.host.as_ref();
        host.create_dir_all(&config.work_dir).await?;
        let work_dir = host.canonicalize(&config.work_dir).await?;
        let attempts_dir = work_dir.join("attempts");
        let partitions_dir = work_dir.join("partitions");
        for d in [&attempts_dir, &partitions_dir] {
            host.create_dir_all(d).await?;
        }
        let mut state = State::default();
        for (_, p) in read_all::<PartitionRecord>(host, &partitions_dir, None).await? {
            state.partitions.insert(p.partition_id.clone(), p);
        }
        let mut unsubmitted = Vec::new();
        for (path, record) in
            read_all::<AttemptRecord>(host, &attempts_dir, Some("attempt.json")).await?
        {
            let dir = path.parent().expect("in a directory").to_path_buf();
            if record.slurm_job_id == 0 {
                unsubmitted.push((dir, record));
                continue;
            }
            state
                .attempts
                .insert(record.attempt_id.clone(), attempt(record, dir));
        }
        let inner = Arc::new(Inner {
            config: SlurmConfig { work_dir, ..config },
            attempts_dir,
            partitions_dir,
            hub: JobHub::default(),
            state: Mutex::new(state),
            cluster: tokio::sync::Mutex::new(None),
            wake: Arc::new(Notify::new()),
            job_records: tokio::sync::OnceCell::new(),
        });
        let provider = Self { inner };
        provider.adopt(unsubmitted).await?;
        provider.inner.poll().await?;
        let wake = provider.inner.wake.clone();
        let every = provider.inner.config.poll;
        tokio::spawn(poll::poller(Arc::downgrade(&provider.inner), wake, every));
        Ok(provider)
    }

    /// Attempts a previous gate wrote down but whose Slurm id it did not:
    /// the Slurm job carrying the attempt's comment, if any, is theirs;
    /// otherwise sbatch never took them and they are forgotten (gantryd
    /// starts again what the gate does not list).
    async fn adopt(&self, unsubmitted: Vec<(PathBuf, AttemptRecord)>) -> Result<()> {
        if unsubmitted.is_empty() {
            return Ok(());
        }
        let by_comment = commands::jobs_by_comment(self.inner.host()).await?;
        for (dir, mut record) in unsubmitted {
            match by_comment.get(&script::comment(&record.attempt_id)) {
                Some(&id) => {
                    record.slurm_job_id = id;
                    write_json(self.inner.host(), &dir.join("attempt.json"), &record).await?;
                    tracing::info!(attempt = %record.attempt_id, slurm_job = id, "found the Slurm job of an attempt");
                    self.inner
                        .state()
                        .attempts
                        .insert(record.attempt_id.clone(), attempt(record, dir));
                }
                None => {
                    tracing::info!(attempt = %record.attempt_id, "forgetting an attempt Slurm never took");
                    self.inner.host().remove_dir_all(&dir).await?;
                }
            }
        }
        Ok(())
    }

    fn dir(&self, attempt: &AttemptId) -> PathBuf {
        self.inner.attempts_dir.join(attempt.as_str())
    }
}

fn attempt(record: AttemptRecord, dir: PathBuf) -> Attempt {
    let mut job = GateJob {
        attempt_id: record.attempt_id.clone(),
        partition_id: record.partition_id.clone(),
        job_id: record.job_id,
        native_id: if record.slurm_job_id == 0 {
            String::new()
        } else {
            record.slurm_job_id.to_string()
        },
        ..Default::default()
    };
    job.set_state(GateJobState::Pending);
    Attempt {
        record,
        job,
        dir,
        cancel: false,
    }
}

#[tonic::async_trait]
impl Provider for SlurmProvider {
    fn hub(&self) -> &JobHub {
        &self.inner.hub
    }

    async fn describe(&self) -> Result<Description> {
        let flavors = self
            .inner
            .cluster()
            .await?
            .iter()
            .map(|p| Flavor {
                name: p.name.clone(),
                capacity: Some(capacity_of(p)),
                price_per_hour: 0.0,
                currency: String::new(),
                // One Gantry partition stands for the whole Slurm partition.
                max_partitions: 1,
                max_walltime_seconds: p.max_seconds,
                available: p.unavailable().is_none(),
                unavailable_reason: p.unavailable().unwrap_or_default(),
            })
            .collect();
        Ok(Description {
            provider: "slurm".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities {
                staging: true,
                log_follow: true,
                elastic: false,
                chdir: true,
                secret_env: true,
                port_forward: false,
            },
            flavors,
            images: Vec::new(),
        })
    }

    async fn create_partition(
        &self,
        id: &PartitionId,
        flavor: &str,
        _labels: &BTreeMap<String, String>,
    ) -> Result<Partition> {
        let slurm = self.inner.slurm_partition(flavor).await?;
        let existing = self.inner.state().partitions.get(id.as_str()).cloned();
        let record = match (existing, &slurm) {
            (Some(r), _) => r,
            (None, None) => {
                let names: Vec<String> = self
                    .inner
                    .cluster()
                    .await?
                    .into_iter()
                    .map(|p| p.name)
                    .collect();
                return Err(GateError::invalid(
                    "flavor",
                    format!(
                        "no Slurm partition `{flavor}`; this cluster has: {}",
                        names.join(", ")
                    ),
                ));
            }
            (None, Some(_)) => {
                let record = PartitionRecord {
                    partition_id: id.to_string(),
                    flavor: flavor.to_string(),
                };
                {
                    let mut state = self.inner.state();
                    if let Some(other) = state.partitions.values().find(|r| r.flavor == flavor) {
                        // Describe says max_partitions 1: one Gantry
                        // partition stands for the whole Slurm partition.
                        return Err(GateError::ResourceExhausted(format!(
                            "Slurm partition `{flavor}` already has Gantry partition {}; \
                             a flavor here holds one at a time",
                            other.partition_id
                        )));
                    }
                    // Held before the write, so a racing create finds it.
                    state.partitions.insert(id.to_string(), record.clone());
                }
                let path = self.inner.partitions_dir.join(format!("{id}.json"));
                if let Err(e) = write_json(self.inner.host(), &path, &record).await {
                    self.inner.state().partitions.remove(id.as_str());
                    return Err(e);
                }
                record
            }
        };
        Ok(self.inner.to_partition(&record, slurm.as_ref()))
    }

    async fn get_partition(&self, id: &PartitionId) -> Result<Partition> {
        let record = self
            .inner
            .state()
            .partitions
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| GateError::no_partition(id.as_str()))?;
        let slurm = self.inner.slurm_partition(&record.flavor).await?;
        Ok(self.inner.to_partition(&record, slurm.as_ref()))
    }

    async fn delete_partition(&self, id: &PartitionId) -> Result<Partition> {
        let (record, jobs) = {
            let mut state = self.inner.state();
            let Some(record) = state.partitions.remove(id.as_str()) else {
                return Ok(Partition {
                    partition_id: id.to_string(),
                    state: PartitionState::Deleted as i32,
                    ..Default::default()
                });
            };
            let jobs: Vec<u64> = state
                .attempts
                .values()
                .filter(|a| a.record.partition_id == id.as_str() && !a.job.state().is_final())
                .map(|a| a.record.slurm_job_id)
                .filter(|&j| j != 0)
                .collect();
            (record, jobs)
        };
        for job in jobs {
            commands::scancel(self.inner.host(), job).await?;
        }
        self.inner
            .host()
            .remove_file(&self.inner.partitions_dir.join(format!("{id}.json")))
            .await?;
        let mut p = self.inner.to_partition(&record, None);
        p.state = PartitionState::Deleted as i32;
        p.message = "deleted".into();
        Ok(p)
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        let records: Vec<PartitionRecord> =
            self.inner.state().partitions.values().cloned().collect();
        let cluster = self.inner.cluster().await?;
        Ok(records
            .iter()
            .map(|r| {
                let slurm = cluster.iter().find(|p| p.name == r.flavor);
                self.inner.to_partition(r, slurm)
            })
            .collect())
    }

    async fn start_job(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: JobSpec,
    ) -> Result<GateJob> {
        let flavor = {
            let state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str()) {
                return Ok(a.job.clone());
            }
            state
                .partitions
                .get(partition.as_str())
                .map(|p| p.flavor.clone())
                .ok_or_else(|| GateError::no_partition(partition.as_str()))?
        };
        let slurm = self.inner.slurm_partition(&flavor).await?.ok_or_else(|| {
            GateError::FailedPrecondition(format!("Slurm partition {flavor} no longer exists"))
        })?;
        Self::check_fits(&slurm, &spec)?;
        let record = AttemptRecord {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            job_id: spec.job_id,
            slurm_job_id: 0,
        };
        {
            // Claimed before sbatch, so a concurrent repeat submits nothing.
            let mut state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str()) {
                return Ok(a.job.clone());
            }
            state.attempts.insert(
                attempt.to_string(),
                self::attempt(record, self.dir(attempt)),
            );
        }
        let submitted = self.submit(attempt, partition, &flavor, &spec).await;
        let (job, cancel) = {
            let mut state = self.inner.state();
            match submitted {
                Err(e) => {
                    state.attempts.remove(attempt.as_str());
                    return Err(e);
                }
                Ok(submitted) => {
                    let a = state
                        .attempts
                        .get_mut(attempt.as_str())
                        .expect("claimed above");
                    match submitted {
                        Submission::Taken(id) => {
                            a.record.slurm_job_id = id;
                            a.job.native_id = id.to_string();
                            a.job.reason = "Slurm: PENDING".into();
                        }
                        Submission::Unrecorded(reason) => {
                            tracing::error!(%attempt, %reason, "refusing a start");
                            a.job.set_state(GateJobState::Failed);
                            a.job.reason = reason;
                            a.job.end_time_ms = poll::now_ms();
                        }
                    }
                    let id = a.record.slurm_job_id;
                    (a.job.clone(), (a.cancel && id != 0).then_some(id))
                }
            }
        };
        if let Some(id) = cancel {
            commands::scancel(self.inner.host(), id).await?;
        }
        self.inner.hub.publish(job.clone());
        self.inner.wake.notify_one();
        Ok(job)
    }

    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let state = self.inner.state();
        attempt_found(
            state.attempts.get(attempt.as_str()).map(|a| a.job.clone()),
            attempt,
        )
    }

    async fn cancel_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let (job, id) = {
            let mut state = self.inner.state();
            let a = attempt_found(state.attempts.get_mut(attempt.as_str()), attempt)?;
            if a.record.slurm_job_id == 0 {
                a.cancel = true;
            }
            (a.job.clone(), a.record.slurm_job_id)
        };
        if !job.state().is_final() && id != 0 {
            commands::scancel(self.inner.host(), id).await?;
            self.inner.wake.notify_one();
        }
        Ok(job)
    }

    async fn release_job(&self, attempt: &AttemptId) -> Result<()> {
        {
            let mut state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str())
                && !a.job.state().is_final()
            {
                return Err(GateError::release_running(attempt));
            }
            state.attempts.remove(attempt.as_str());
            state.unsure.remove(attempt.as_str());
        }
        self.inner.host().remove_dir_all(&self.dir(attempt)).await
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
        Ok(self.inner.host().log(a.dir.join(log_file_name(stream))))
    }

    async fn stage_in(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        {
            let state = self.inner.state();
            if !state.partitions.contains_key(partition.as_str()) {
                return Err(GateError::no_partition(partition.as_str()));
            }
            if state.attempts.contains_key(attempt.as_str()) {
                return Err(GateError::stage_in_started(attempt));
            }
        }
        let work = self.dir(attempt).join("work");
        self.inner.host().stage_in(&work, files).await
    }

    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        let state = self.inner.state();
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        if !a.job.state().is_final() {
            return Err(GateError::stage_out_running(attempt));
        }
        Ok(self.inner.host().stage_out(a.dir.join("work"), globs))
    }
}
