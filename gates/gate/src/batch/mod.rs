//! Gates over a batch system (Slurm, Grid Engine, ...), once: a
//! [`BatchSystem`] says how to talk to one system — its queues, how to
//! submit, find, observe and cancel a job — and [`BatchProvider`] does the
//! rest of the gate contract on it: partitions and attempt records on disk,
//! the batch script, submitting each attempt exactly once (also across a
//! gate that dies mid-submit), the poll loop, finding every job again after
//! a restart, logs and staging through the [`Host`] the commands run on.
//!
//! Each queue is a flavor; a Gantry partition of it stands for the whole
//! queue, READY at once (the batch system queues what does not fit). Each
//! attempt is one batch job started in `work-dir/attempts/<id>/work`, with
//! its output in that directory, so the work directory must be on a file
//! system the compute nodes share.

mod args;
mod owner;
mod poll;
mod provider;
mod records;
pub mod script;
mod submit;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use gantry_proto::v1::{Capacity, GateJob, GateJobState, Partition, PartitionState};
use tokio::sync::Notify;

use crate::error::{GateError, Result};
use crate::host::Host;
use crate::hub::JobHub;
use crate::ids::AttemptId;
use crate::spec::JobSpec;
pub use args::BatchArgs;
pub use records::{AttemptRecord, PartitionRecord, read_all, write_json};
pub use submit::{check_fits, hms};

/// One queue of a batch system (a Slurm partition, a Grid Engine cluster
/// queue): a flavor of the gate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Queue {
    /// Its name, which jobs are submitted to.
    pub name: String,
    /// What its nodes that can run jobs now offer, summed.
    pub capacity: Capacity,
    /// Its largest node, usable now or not (what one job could ever get):
    /// CPUs, memory bytes, GPUs.
    pub largest: (u32, u64, u32),
    /// Its nodes in all, usable now or not (what one job could ever span).
    pub node_count: u32,
    /// Its time limit in seconds (0: none).
    pub max_seconds: u64,
    /// The time a job that asks for none gets, in seconds (0: the limit).
    pub default_seconds: u64,
    /// Whether it is the system's default queue.
    pub default: bool,
    /// Why it cannot run jobs now, when it cannot.
    pub unavailable: Option<String>,
}

/// What the batch system says of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    /// In Gantry's terms.
    pub state: GateJobState,
    /// Why, in words a person can read, naming the system (`Slurm: PENDING
    /// (Resources)`); empty when running or succeeded.
    pub reason: String,
    /// The job's exit code once ended (128 + N for signal N).
    pub exit_code: Option<i32>,
    /// It ended because its node was lost, not by its own doing.
    pub lost: bool,
    /// Unix seconds it started (0: not yet, or not known).
    pub start_time: i64,
    /// Unix seconds it ended (0: not known).
    pub end_time: i64,
}

impl JobStatus {
    /// A job in `state` for `reason`, with no times or exit code.
    pub fn new(state: GateJobState, reason: impl Into<String>) -> Self {
        Self {
            state,
            reason: reason.into(),
            exit_code: None,
            lost: false,
            start_time: 0,
            end_time: 0,
        }
    }
}

/// A job the gate follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Watched {
    /// The batch system's job id.
    pub id: u64,
    /// The gate asked the system to cancel it.
    pub cancelled: bool,
}

/// One job to submit.
pub struct Submit<'a> {
    /// The attempt's directory: `stdout` and `stderr` go there.
    pub dir: &'a Path,
    /// Where the job runs: the attempt's `work/`, or the task's own directory.
    pub cwd: &'a Path,
    /// The attempt, which the job must carry (a comment, its name) so that
    /// [`BatchSystem::find`] finds it.
    pub attempt: &'a AttemptId,
    /// The queue to submit to.
    pub queue: &'a Queue,
    /// What to run.
    pub spec: &'a JobSpec,
    /// The batch script ([`script::batch_script`]).
    pub script: &'a str,
    /// The login environment of the account the job runs as (PATH, HOME,
    /// USER, LOGNAME, SHELL): the job starts from it and the batch script
    /// adds the task's own; nothing of the gate's environment reaches it.
    pub login_env: &'a BTreeMap<String, String>,
}

/// How to talk to one batch system, through commands run on a [`Host`].
#[tonic::async_trait]
pub trait BatchSystem: Send + Sync + 'static {
    /// Its name as its users say it, in reasons and messages: `Slurm`.
    fn name(&self) -> &'static str;

    /// What it calls a queue, with its name: `Slurm partition`.
    fn queue_kind(&self) -> &'static str;

    /// The `provider` of Describe: `slurm`.
    fn provider(&self) -> &'static str;

    /// Its queues, which are the gate's flavors.
    async fn queues(&self, host: &dyn Host) -> Result<Vec<Queue>>;

    /// Refuse, as INVALID_ARGUMENT, what `queue` can never run beyond the
    /// sizes and time limit the provider checks itself.
    fn check(&self, queue: &Queue, spec: &JobSpec) -> Result<()> {
        let _ = (queue, spec);
        Ok(())
    }

    /// Shell lines of the batch script that write the job's hosts, one per
    /// line, to the file `hostfile` (already quoted) and export
    /// `GANTRY_NODELIST` (them, comma-separated).
    fn nodelist_lines(&self, hostfile: &str) -> String;

    /// Submit a job; its id. A refusal for what the job asks is
    /// INVALID_ARGUMENT (nothing was submitted); any other error leaves it
    /// unknown whether the system took it.
    async fn submit(&self, host: &dyn Host, job: Submit<'_>) -> Result<u64>;

    /// The ids of the jobs carrying `attempts` that the system knows
    /// (queued, running or in its records of finished jobs), by attempt id.
    async fn find(&self, host: &dyn Host, attempts: &[&str]) -> Result<BTreeMap<String, u64>>;

    /// What the system says of `jobs` now; a job it has no word of (yet or
    /// any more) is left out.
    async fn observe(&self, host: &dyn Host, jobs: &[Watched]) -> Result<BTreeMap<u64, JobStatus>>;

    /// Cancel a job (fine when it already ended).
    async fn cancel(&self, host: &dyn Host, id: u64) -> Result<()>;
}

/// How the gate reaches its cluster and where it keeps attempts.
#[derive(Clone)]
pub struct BatchConfig {
    /// Where the system's commands run and the work directory is: this
    /// machine or a login node over SSH.
    pub host: Arc<dyn Host>,
    /// Partitions and attempts, on `host`; must be on a file system the
    /// compute nodes share (jobs run in `attempts/<id>/work` and write their
    /// logs there). A relative path is relative to the host's starting
    /// directory (the login directory over SSH).
    pub work_dir: PathBuf,
    /// How often the gate asks the system for its jobs' states.
    pub poll: Duration,
    /// How many times a partition's capacity gantryd may hand the gate
    /// beyond it (the system queues the rest).
    pub queue_factor: u32,
    /// Whose account jobs run as.
    pub run_as: crate::RunAs,
}

/// How long what [`BatchSystem::queues`] said is reused.
const QUEUES_TTL: Duration = Duration::from_secs(2);

/// How long an unfinished job may be unknown to the system (gone from its
/// queue, not yet in its records of finished jobs) before it counts as lost.
pub const MISSING_GRACE: Duration = Duration::from_secs(60);

/// A gate on a batch system. Cheap to clone.
pub struct BatchProvider<B: BatchSystem> {
    inner: Arc<Inner<B>>,
}

impl<B: BatchSystem> Clone for BatchProvider<B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

struct Inner<B> {
    system: B,
    config: BatchConfig,
    attempts_dir: PathBuf,
    partitions_dir: PathBuf,
    hub: JobHub,
    state: Mutex<State>,
    queues: tokio::sync::Mutex<Option<(Instant, Vec<Queue>)>>,
    /// Wakes the poller early (after a submit or a cancel).
    wake: Arc<Notify>,
    /// The accounts jobs were submitted as.
    logins: owner::Logins,
}

#[derive(Default)]
struct State {
    partitions: BTreeMap<String, PartitionRecord>,
    attempts: HashMap<String, Attempt>,
    /// Attempts whose submit failed without saying whether the system took
    /// the job (their record, with no job id, is still on disk): a next try
    /// looks for the job first. A restarted gate finds them all in `open`.
    unsure: HashSet<String>,
}

struct Attempt {
    record: AttemptRecord,
    job: GateJob,
    dir: PathBuf,
    /// When the system was first seen to have no word of it.
    missing_since: Option<Instant>,
}

impl<B: BatchSystem> Inner<B> {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where commands run and files are.
    fn host(&self) -> &dyn Host {
        self.config.host.as_ref()
    }

    /// Who submits `owner`'s job, and the environment it starts from.
    async fn submitter(&self, owner: &str) -> Result<owner::Submitter> {
        owner::submitter(&self.config.run_as, &self.logins, self.host(), owner).await
    }

    /// The system's queues (at most [`QUEUES_TTL`] old).
    async fn queues(&self) -> Result<Vec<Queue>> {
        let mut cached = self.queues.lock().await;
        if let Some((at, queues)) = cached.as_ref()
            && at.elapsed() < QUEUES_TTL
        {
            return Ok(queues.clone());
        }
        let queues = self.system.queues(self.host()).await?;
        *cached = Some((Instant::now(), queues.clone()));
        Ok(queues)
    }

    async fn queue(&self, name: &str) -> Result<Option<Queue>> {
        Ok(self.queues().await?.into_iter().find(|q| q.name == name))
    }

    fn to_partition(&self, record: &PartitionRecord, queue: Option<&Queue>) -> Partition {
        let capacity = queue.map(|q| q.capacity).unwrap_or_default();
        let factor = self.config.queue_factor;
        let queued = Capacity {
            cpus: capacity.cpus.saturating_mul(factor),
            memory_bytes: capacity.memory_bytes.saturating_mul(u64::from(factor)),
            gpus: capacity.gpus.saturating_mul(factor),
            nodes: capacity.nodes.saturating_mul(factor),
        };
        let message = match queue {
            None => format!(
                "{} {} no longer exists",
                self.system.queue_kind(),
                record.flavor
            ),
            Some(q) => q.unavailable.clone().unwrap_or_default(),
        };
        Partition {
            partition_id: record.partition_id.clone(),
            flavor: record.flavor.clone(),
            state: PartitionState::Ready as i32,
            message,
            capacity: Some(capacity),
            native_id: record.flavor.clone(),
            queue: Some(queued),
        }
    }

    fn dir(&self, attempt: &AttemptId) -> PathBuf {
        self.attempts_dir.join(attempt.as_str())
    }
}

impl<B: BatchSystem> BatchProvider<B> {
    /// Open the work directory, take back the partitions and attempts a
    /// previous gate left (finding the jobs it had not written down yet),
    /// and start polling the system.
    pub async fn open(system: B, config: BatchConfig) -> Result<Self> {
        let host = config.host.as_ref();
        host.create_dir_all(&config.work_dir).await?;
        let work_dir = host.canonicalize(&config.work_dir).await?;
        let attempts_dir = work_dir.join("attempts");
        let partitions_dir = work_dir.join("partitions");
        for d in [&attempts_dir, &partitions_dir] {
            host.create_dir_all(d).await?;
        }
        if matches!(config.run_as, crate::RunAs::Owner(_)) {
            // Jobs run as their owners pass through to their own directories.
            let dirs = [&work_dir, &attempts_dir].map(|d| d.to_string_lossy().into_owned());
            let args = [&["o+x".to_string()], &dirs[..]].concat();
            host.run("chmod", &args, None).await?;
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
            if record.native_job_id == 0 {
                unsubmitted.push((dir, record));
                continue;
            }
            state
                .attempts
                .insert(record.attempt_id.clone(), attempt(record, dir));
        }
        let inner = Arc::new(Inner {
            system,
            config: BatchConfig { work_dir, ..config },
            attempts_dir,
            partitions_dir,
            hub: JobHub::default(),
            state: Mutex::new(state),
            queues: tokio::sync::Mutex::new(None),
            wake: Arc::new(Notify::new()),
            logins: owner::Logins::default(),
        });
        let provider = Self { inner };
        provider.adopt(unsubmitted).await?;
        provider.inner.poll().await?;
        let wake = provider.inner.wake.clone();
        let every = provider.inner.config.poll;
        tokio::spawn(poll::poller(Arc::downgrade(&provider.inner), wake, every));
        Ok(provider)
    }

    /// Attempts a previous gate wrote down but whose job id it did not: the
    /// job carrying the attempt, if any, is theirs; otherwise the system
    /// never took them and they are forgotten (gantryd starts again what the
    /// gate does not list).
    async fn adopt(&self, unsubmitted: Vec<(PathBuf, AttemptRecord)>) -> Result<()> {
        if unsubmitted.is_empty() {
            return Ok(());
        }
        let name = self.inner.system.name();
        let ids: Vec<&str> = unsubmitted
            .iter()
            .map(|(_, r)| r.attempt_id.as_str())
            .collect();
        let found = self.inner.system.find(self.inner.host(), &ids).await?;
        for (dir, mut record) in unsubmitted {
            match found.get(&record.attempt_id) {
                Some(&id) => {
                    record.native_job_id = id;
                    write_json(self.inner.host(), &dir.join("attempt.json"), &record).await?;
                    tracing::info!(attempt = %record.attempt_id, job = id, "found the {name} job of an attempt");
                    self.inner
                        .state()
                        .attempts
                        .insert(record.attempt_id.clone(), attempt(record, dir));
                }
                None => {
                    tracing::info!(attempt = %record.attempt_id, "forgetting an attempt {name} never took");
                    self.inner.host().remove_dir_all(&dir).await?;
                }
            }
        }
        Ok(())
    }
}

fn attempt(record: AttemptRecord, dir: PathBuf) -> Attempt {
    let mut job = GateJob {
        attempt_id: record.attempt_id.clone(),
        partition_id: record.partition_id.clone(),
        job_id: record.job_id,
        native_id: if record.native_job_id == 0 {
            String::new()
        } else {
            record.native_job_id.to_string()
        },
        ..Default::default()
    };
    job.set_state(GateJobState::Pending);
    Attempt {
        record,
        job,
        dir,
        missing_since: None,
    }
}

/// `name`, which is not one of `queues`: INVALID_ARGUMENT naming them.
fn no_queue(kind: &str, name: &str, queues: &[Queue]) -> GateError {
    let names: Vec<&str> = queues.iter().map(|q| q.name.as_str()).collect();
    GateError::invalid(
        "flavor",
        format!("no {kind} `{name}`; this cluster has: {}", names.join(", ")),
    )
}
