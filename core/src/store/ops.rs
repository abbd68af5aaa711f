//! The operations the writer applies, one after another inside the batch
//! transaction. Every state change goes through [`Tx::transition`],
//! which checks the state table, saves the row and appends the event.

use std::collections::HashMap;

use gantry_proto::v1::{GateJob, JobState, PartitionState};

use super::rows::{ArrayView, JobRow, PartitionRow, now_ms};
use super::sql::{MAX_IN_LIST, in_list};
use super::tx::{Tx, fits};
use crate::error::{CoreError, Result};
use crate::job::state::{self, is_end};
use crate::job::{Resources, ValidSpec};

/// A job to create.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The checked spec.
    pub spec: ValidSpec,
    /// The owning user.
    pub owner: String,
    /// The submitting identity when it is not the owner ("" otherwise).
    pub submitted_by: String,
    /// De-duplication key, scoped to the owner.
    pub request_id: Option<String>,
    /// Whether the submitter may name other users' jobs in `after`.
    pub is_admin: bool,
}

/// The valid part of a scheduler's plan, as gantryd commits it.
#[derive(Debug, Clone, Default)]
pub struct PlanOps {
    /// New partitions: id, site, flavor, capacity of the flavor.
    pub creates: Vec<(String, String, String, Resources)>,
    /// Jobs to place: job id, partition id.
    pub starts: Vec<(u64, String)>,
    /// Idle partitions to delete.
    pub deletes: Vec<String>,
    /// The walltime a job that asked for none gets on a flavor, by site
    /// and flavor: its default time, else its limit; flavors with neither
    /// are absent.
    pub default_walltimes: HashMap<String, HashMap<String, u64>>,
}

/// One change to make durably.
#[derive(Debug, Clone)]
pub enum Op {
    /// Accept a job.
    Submit(Box<NewJob>),
    /// Cancel a job (ended jobs are left as they are).
    Cancel {
        /// The job.
        job_id: u64,
        /// Who cancels.
        actor: String,
        /// Why.
        reason: String,
    },
    /// Hold or release a queued job.
    Hold {
        /// The job.
        job_id: u64,
        /// Who.
        actor: String,
        /// Hold (true) or release (false).
        hold: bool,
    },
    /// Commit a plan's decisions; refused ones are reported back.
    Plan(PlanOps),
    /// Pending reasons from the scheduler (no event; not a state change).
    Reasons(Vec<(u64, String)>),
    /// What a gate says about one of its attempts.
    GateReport {
        /// The gate's site name.
        site: String,
        /// The attempt's state on the gate.
        job: GateJob,
    },
    /// Move an attempt's job forward (PROVISIONING, STAGING_IN).
    Advance {
        /// The job.
        job_id: u64,
        /// The attempt that must still be current.
        attempt_id: String,
        /// The new state.
        to: JobState,
        /// Who.
        actor: String,
        /// What happened.
        message: String,
    },
    /// Outputs were copied back (or could not be): end the job.
    FinishStaging {
        /// The job.
        job_id: u64,
        /// The attempt that must still be current.
        attempt_id: String,
        /// The stored output paths.
        outputs: Vec<String>,
        /// Why staging failed, if it did.
        error: Option<String>,
    },
    /// The attempt could not start (its partition went away): queue again.
    Requeue {
        /// The job.
        job_id: u64,
        /// The attempt that must still be current.
        attempt_id: String,
        /// Why.
        reason: String,
    },
    /// The attempt failed outside the process (lost by the gate, start refused).
    FailAttempt {
        /// The job.
        job_id: u64,
        /// The attempt that must still be current.
        attempt_id: String,
        /// Who noticed.
        actor: String,
        /// Why.
        reason: String,
        /// Its compute was lost, not the job's doing: the job is queued
        /// again while it has retries (`JobSpec.retries`).
        lost: bool,
    },
    /// A partition's state as its gate reports it.
    Partition {
        /// The partition.
        id: String,
        /// The new state.
        state: PartitionState,
        /// Its capacity, when the gate told it.
        capacity: Option<Resources>,
        /// What its gate queues beyond the capacity, when the gate told it.
        queue: Option<Resources>,
        /// Why, for people.
        message: String,
        /// The gate refused to provision it for good (INVALID_ARGUMENT,
        /// FAILED_PRECONDITION: a bad image, a setting the provider
        /// refuses): the jobs waiting for it fail with its message
        /// instead of waiting for another partition that would fail alike.
        refused: bool,
    },
}

/// What the link to a gate must do after a report.
#[derive(Debug, Clone)]
pub enum GateVerdict {
    /// Nothing.
    Nothing,
    /// The attempt is over for gantryd: tell the gate to forget it.
    Release,
    /// The job ended without staging (cancelled): copy what logs it has,
    /// best effort, then release the attempt.
    SaveLogsAndRelease(Box<JobRow>),
    /// gantryd does not want this attempt to run: cancel it, then release.
    Cancel,
    /// Copy the job's outputs back, then [`Op::FinishStaging`].
    StageOut(Box<JobRow>),
}

/// The answer to an [`Op`].
#[derive(Debug, Clone)]
pub enum Outcome {
    /// A job (after the op), and whether the op created it.
    Job(Box<JobRow>, bool),
    /// An array's id (read it after the commit), and whether the op created it.
    Array(u64, bool),
    /// An array this op created, as it stands after the commit.
    NewArray(Box<ArrayView>),
    /// Job ids of placements refused in a plan, with why.
    Refused(Vec<(u64, String)>),
    /// What to do about a gate report.
    Gate(GateVerdict),
    /// Done; nothing to return.
    Done,
}

impl Tx<'_> {
    /// Apply one op.
    pub async fn apply(&mut self, op: Op) -> Result<Outcome> {
        match op {
            Op::Submit(new) => self.submit(*new).await,
            Op::Cancel {
                job_id,
                actor,
                reason,
            } => {
                let message = if reason.is_empty() {
                    format!("cancelled by {actor}")
                } else {
                    format!("cancelled by {actor}: {reason}")
                };
                if let Some(tasks) = self.open_tasks(job_id).await? {
                    for id in tasks {
                        let mut task = self.load(id).await?;
                        self.transition(&mut task, JobState::Cancelled, &actor, &message)
                            .await?;
                    }
                    return Ok(Outcome::Array(job_id, false));
                }
                let mut job = self.load(job_id).await?;
                if !is_end(job.state) {
                    self.transition(&mut job, JobState::Cancelled, &actor, &message)
                        .await?;
                }
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::Hold {
                job_id,
                actor,
                hold,
            } => {
                if let Some(tasks) = self.open_tasks(job_id).await? {
                    // An array: its QUEUED tasks only; the others are past holding.
                    for id in tasks {
                        let mut task = self.load(id).await?;
                        if task.state == JobState::Queued {
                            self.set_held(&mut task, &actor, hold)?;
                        }
                    }
                    return Ok(Outcome::Array(job_id, false));
                }
                let mut job = self.load(job_id).await?;
                self.set_held(&mut job, &actor, hold)?;
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::Plan(plan) => self.plan(plan).await,
            Op::Reasons(reasons) => {
                // One statement per distinct reason (most jobs wait for the same).
                let mut by_reason: HashMap<String, Vec<u64>> = HashMap::new();
                for (id, reason) in reasons {
                    if self.is_cached(id) {
                        // Changed in this batch: change the cached row, or the flush would undo it.
                        if let Some(mut job) =
                            self.job(id).await?.filter(|j| j.state == JobState::Queued)
                        {
                            job.reason = reason;
                            self.save(&job);
                        }
                        continue;
                    }
                    by_reason.entry(reason).or_default().push(id);
                }
                for (reason, ids) in by_reason {
                    for chunk in ids.chunks(MAX_IN_LIST) {
                        let (marks, values) = in_list(chunk);
                        let text = format!(
                            "UPDATE jobs SET reason = ? WHERE id IN ({marks}) AND state = ? AND held = 0 AND deps_pending = 0"
                        );
                        let mut query = sqlx::query(self.backend.sql(&text)).bind(reason.clone());
                        for &id in values {
                            query = query.bind(id as i64);
                        }
                        query
                            .bind(JobState::Queued as i32)
                            .execute(&mut *self.conn)
                            .await?;
                        self.writes += 1;
                    }
                }
                Ok(Outcome::Done)
            }
            Op::GateReport { site, job } => self.gate_report(&site, job).await,
            Op::Advance {
                job_id,
                attempt_id,
                to,
                actor,
                message,
            } => {
                let mut job = self.load(job_id).await?;
                if job.attempt_id == attempt_id
                    && job.state != to
                    && state::check(job.state, to).is_ok()
                {
                    self.transition(&mut job, to, &actor, &message).await?;
                }
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::FinishStaging {
                job_id,
                attempt_id,
                outputs,
                error,
            } => {
                let mut job = self.load(job_id).await?;
                if job.attempt_id == attempt_id && job.state == JobState::StagingOut {
                    job.outputs = outputs;
                    let ok = job.exit_code == Some(0) && job.reason.is_empty() && error.is_none();
                    let message = match (&error, job.reason.is_empty()) {
                        (Some(e), _) => format!("staging out failed: {e}"),
                        (None, false) => job.reason.clone(),
                        (None, true) => format!("exit code {}", job.exit_code.unwrap_or(0)),
                    };
                    let to = if ok {
                        JobState::Completed
                    } else {
                        JobState::Failed
                    };
                    let actor = format!("gate/{}", job.site);
                    self.transition(&mut job, to, &actor, &message).await?;
                }
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::Requeue {
                job_id,
                attempt_id,
                reason,
            } => {
                let mut job = self.load(job_id).await?;
                if job.attempt_id == attempt_id && state::check(job.state, JobState::Queued).is_ok()
                {
                    self.transition(&mut job, JobState::Queued, "gantryd", &reason)
                        .await?;
                }
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::FailAttempt {
                job_id,
                attempt_id,
                actor,
                reason,
                lost,
            } => {
                let mut job = self.load(job_id).await?;
                let current = job.attempt_id == attempt_id && !is_end(job.state);
                if current && !(lost && self.requeue_lost(&mut job, &actor, &reason).await?) {
                    self.transition(&mut job, JobState::Failed, &actor, &reason)
                        .await?;
                }
                Ok(Outcome::Job(Box::new(job), true))
            }
            Op::Partition {
                id,
                state,
                capacity,
                queue,
                message,
                refused,
            } => {
                self.partition_update(&id, state, capacity, queue, &message, refused)
                    .await
            }
        }
    }

    /// Hold or release one job (a no-op when it already is).
    fn set_held(&mut self, job: &mut JobRow, actor: &str, hold: bool) -> Result<()> {
        if job.held == hold {
            return Ok(());
        }
        if hold && job.state != JobState::Queued {
            return Err(CoreError::Precondition(format!(
                "job {} is {}; only a QUEUED job can be held",
                job.id,
                state::name(job.state)
            )));
        }
        job.held = hold;
        if job.state == JobState::Queued {
            job.reason = if hold { "held".into() } else { String::new() };
        }
        let message = if hold {
            format!("held by {actor}")
        } else {
            format!("released by {actor}")
        };
        let from = job.state;
        self.record(job, from, actor, &message);
        Ok(())
    }

    async fn plan(&mut self, plan: PlanOps) -> Result<Outcome> {
        let now = now_ms();
        for (id, site, flavor, capacity) in plan.creates {
            if self.partition(&id).await?.is_some() {
                continue;
            }
            sqlx::query(self.backend.sql(
                "INSERT INTO partitions (id, site, flavor, state, cpus, memory, gpus, nodes, created_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            ))
            .bind(&id)
            .bind(&site)
            .bind(&flavor)
            .bind(PartitionState::Creating as i32)
            .bind(capacity.cpus as i64)
            .bind(capacity.memory as i64)
            .bind(capacity.gpus as i64)
            .bind(capacity.nodes as i64)
            .bind(now)
            .execute(&mut *self.conn)
            .await?;
            let row = self.partition(&id).await?.expect("just inserted");
            self.partitions.push(row);
            self.writes += 1;
        }
        let ids: Vec<u64> = plan.starts.iter().map(|(id, _)| *id).collect();
        self.prefetch_jobs(&ids).await?;
        let mut refused = Vec::new();
        for (job_id, partition_id) in plan.starts {
            match self
                .place(job_id, &partition_id, &plan.default_walltimes)
                .await?
            {
                Ok(()) => {}
                Err(why) => refused.push((job_id, why)),
            }
        }
        for id in plan.deletes {
            let Some(mut p) = self.partition(&id).await? else {
                continue;
            };
            let busy = self
                .state
                .used
                .get(&id)
                .is_some_and(|u| u.cpus > 0 || u.memory > 0);
            if p.is_live() && !busy {
                p.state = PartitionState::Deleting;
                p.message = "idle".into();
                self.save_partition(&p).await?;
            }
        }
        Ok(Outcome::Refused(refused))
    }

    async fn place(
        &mut self,
        job_id: u64,
        partition_id: &str,
        default_walltimes: &HashMap<String, HashMap<String, u64>>,
    ) -> Result<Result<(), String>> {
        let Some(mut job) = self.job(job_id).await? else {
            return Ok(Err("no such job".into()));
        };
        if job.state != JobState::Queued || job.held || job.deps_pending > 0 {
            return Ok(Err(format!(
                "job is {} (held {}, waiting on {} jobs)",
                state::name(job.state),
                job.held,
                job.deps_pending
            )));
        }
        let Some(partition) = self.partition(partition_id).await? else {
            return Ok(Err(format!("partition {partition_id} does not exist")));
        };
        if !partition.is_live() {
            return Ok(Err(format!("partition {partition_id} is not live")));
        }
        if !job.req_site.is_empty() && job.req_site != partition.site {
            return Ok(Err(format!("job asks for site {}", job.req_site)));
        }
        let used = self
            .state
            .used
            .get(partition_id)
            .copied()
            .unwrap_or_default();
        // It must fit the partition alone, and with the others within what
        // the partition runs plus what its gate queues.
        let mut room = partition.capacity;
        super::tx::add(&mut room, partition.queue, 1);
        if !fits(Resources::default(), job.resources, partition.capacity)
            || !fits(used, job.resources, room)
        {
            return Ok(Err(format!("partition {partition_id} has no room")));
        }
        job.site = partition.site.clone();
        job.partition_id = partition.id.clone();
        job.flavor = partition.flavor.clone();
        if job.walltime == 0
            && let Some(w) = default_walltimes
                .get(&partition.site)
                .and_then(|flavors| flavors.get(&partition.flavor))
        {
            // As a batch system gives a job without a time limit its
            // partition's default; the gate enforces it like any other.
            job.walltime = *w;
        }
        job.attempt_id = uuid::Uuid::now_v7().to_string();
        job.placed_ms = now_ms();
        let message = format!(
            "placed on site {} (partition {})",
            partition.site, partition.id
        );
        self.transition(&mut job, JobState::Scheduled, "scheduler", &message)
            .await?;
        Ok(Ok(()))
    }

    async fn save_partition(&mut self, p: &PartitionRow) -> Result<()> {
        sqlx::query(self.backend.sql(
            "UPDATE partitions SET state = ?, message = ?, cpus = ?, memory = ?, gpus = ?, nodes = ?, \
             queue_cpus = ?, queue_memory = ?, queue_gpus = ? WHERE id = ?",
        ))
            .bind(p.state as i32)
            .bind(&p.message)
            .bind(p.capacity.cpus as i64)
            .bind(p.capacity.memory as i64)
            .bind(p.capacity.gpus as i64)
            .bind(p.capacity.nodes as i64)
            .bind(p.queue.cpus as i64)
            .bind(p.queue.memory as i64)
            .bind(p.queue.gpus as i64)
            .bind(&p.id)
            .execute(&mut *self.conn)
            .await?;
        self.partition_rows.insert(p.id.clone(), p.clone());
        self.partitions.push(p.clone());
        self.writes += 1;
        Ok(())
    }

    async fn partition_update(
        &mut self,
        id: &str,
        state: PartitionState,
        capacity: Option<Resources>,
        queue: Option<Resources>,
        message: &str,
        refused: bool,
    ) -> Result<Outcome> {
        let Some(mut p) = self.partition(id).await? else {
            return Ok(Outcome::Done);
        };
        let changed = p.state != state
            || capacity.is_some_and(|c| c != p.capacity)
            || queue.is_some_and(|q| q != p.queue)
            || p.message != message;
        // A partition never comes back from deletion.
        let terminal = matches!(p.state, PartitionState::Deleted | PartitionState::Failed);
        if !changed
            || terminal
            || (p.state == PartitionState::Deleting && state == PartitionState::Ready)
        {
            return Ok(Outcome::Done);
        }
        p.state = state;
        p.message = message.to_string();
        if let Some(c) = capacity {
            p.capacity = c;
        }
        if let Some(q) = queue {
            p.queue = q;
        }
        self.save_partition(&p).await?;
        if matches!(
            state,
            PartitionState::Deleted | PartitionState::Failed | PartitionState::Deleting
        ) {
            for mut job in self.jobs_on_partition(id).await? {
                let why = if refused {
                    format!("site {} cannot provision it: {message}", job.site)
                } else {
                    format!("partition {id} is {}: {message}", state.as_str_name())
                };
                if !refused && state::check(job.state, JobState::Queued).is_ok() {
                    self.transition(&mut job, JobState::Queued, "gantryd", &why)
                        .await?;
                } else {
                    self.transition(&mut job, JobState::Failed, "gantryd", &why)
                        .await?;
                }
            }
        }
        Ok(Outcome::Done)
    }
}
