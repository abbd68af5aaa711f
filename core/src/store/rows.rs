//! The rows gantryd stores, as domain types, and their wire forms.

use gantry_proto::v1::{self, JobState, PartitionState};
use prost::Message;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::job::Resources;
use crate::job::state;

/// A job as stored.
#[derive(Debug, Clone, Default)]
pub struct JobRow {
    /// The job id.
    pub id: u64,
    /// The owning user.
    pub owner: String,
    /// The submitting identity when not the owner.
    pub submitted_by: String,
    /// The normalized spec.
    pub spec: v1::JobSpec,
    /// Current state.
    pub state: JobState,
    /// Why it is in its state.
    pub reason: String,
    /// Exit code of the process, when known.
    pub exit_code: Option<i32>,
    /// Scheduling priority.
    pub priority: i32,
    /// What it needs.
    pub resources: Resources,
    /// Walltime seconds (0 = none).
    pub walltime: u64,
    /// Site asked for ("" = any).
    pub req_site: String,
    /// Site placed on.
    pub site: String,
    /// Partition placed on.
    pub partition_id: String,
    /// Current attempt.
    pub attempt_id: String,
    /// Held by a user.
    pub held: bool,
    /// Dependencies not yet completed.
    pub deps_pending: u32,
    /// Unix ms of submission.
    pub submit_ms: i64,
    /// Unix ms of placement.
    pub placed_ms: i64,
    /// Unix ms the process started.
    pub start_ms: i64,
    /// Unix ms it ended.
    pub end_ms: i64,
    /// Sequence number of its last event.
    pub last_seq: u64,
    /// Stored output paths.
    pub outputs: Vec<String>,
    /// The client's de-duplication key, if it gave one.
    pub request_id: Option<String>,
    /// For a task of an array, the array's id; 0 otherwise.
    pub array_id: u64,
    /// For a task of an array, its index.
    pub array_index: u32,
    /// Times it went back to the queue after its compute was lost.
    pub requeues: u32,
    /// Its partition's flavor, once placed (a Slurm partition's name).
    pub flavor: String,
    /// The provider's id of its run (a Slurm job id, a pid), once the gate said.
    pub native_id: String,
}

/// The columns [`JobRow::from_row`] reads, for SELECTs.
pub const JOB_COLUMNS: &str = "id, owner, submitted_by, spec, state, reason, exit_code, priority, \
     cpus, memory, gpus, nodes, walltime, req_site, site, partition_id, attempt_id, held, \
     deps_pending, submit_ms, placed_ms, start_ms, end_ms, last_seq, outputs, client_request_id, \
     array_id, array_index, requeues, flavor, native_id";

impl JobRow {
    /// Whether the job has ended with secrets, which the commit that ended
    /// it deletes (see `Tx::flush`).
    pub fn ended_with_secrets(&self) -> bool {
        state::is_end(self.state) && !self.spec.secret_env.is_empty()
    }

    /// Decode a row selected with [`JOB_COLUMNS`].
    pub fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        let outputs: String = row.try_get("outputs")?;
        Ok(Self {
            id: row.try_get::<i64, _>("id")? as u64,
            owner: row.try_get("owner")?,
            submitted_by: row.try_get("submitted_by")?,
            spec: spec_from_row(row)?,
            state: state::from_i32(row.try_get("state")?),
            reason: row.try_get("reason")?,
            exit_code: row.try_get("exit_code")?,
            priority: row.try_get("priority")?,
            resources: resources_from_row(row)?,
            walltime: row.try_get::<i64, _>("walltime")? as u64,
            req_site: row.try_get("req_site")?,
            site: row.try_get("site")?,
            partition_id: row.try_get("partition_id")?,
            attempt_id: row.try_get("attempt_id")?,
            held: row.try_get::<i64, _>("held")? != 0,
            deps_pending: row.try_get::<i64, _>("deps_pending")? as u32,
            submit_ms: row.try_get("submit_ms")?,
            placed_ms: row.try_get("placed_ms")?,
            start_ms: row.try_get("start_ms")?,
            end_ms: row.try_get("end_ms")?,
            last_seq: row.try_get::<i64, _>("last_seq")? as u64,
            outputs: outputs.lines().map(str::to_string).collect(),
            request_id: row.try_get("client_request_id")?,
            array_id: row.try_get::<i64, _>("array_id")? as u64,
            array_index: row.try_get::<i64, _>("array_index")? as u32,
            requeues: row.try_get::<i64, _>("requeues")? as u32,
            flavor: row.try_get("flavor")?,
            native_id: row.try_get("native_id")?,
        })
    }

    /// The job on the wire.
    pub fn to_proto(&self) -> v1::Job {
        v1::Job {
            id: self.id,
            owner: self.owner.clone(),
            submitted_by: self.submitted_by.clone(),
            spec: Some(self.spec.clone()),
            state: self.state as i32,
            reason: self.reason.clone(),
            exit_code: self.exit_code,
            site: self.site.clone(),
            partition_id: self.partition_id.clone(),
            attempt_id: self.attempt_id.clone(),
            held: self.held,
            submit_time_ms: self.submit_ms,
            start_time_ms: self.start_ms,
            end_time_ms: self.end_ms,
            last_event_seq: self.last_seq,
            output_files: self.outputs.clone(),
            array_id: self.array_id,
            array_index: self.array_index,
            array: None,
            requeues: self.requeues,
            walltime_seconds: self.walltime,
            flavor: self.flavor.clone(),
            native_id: self.native_id.clone(),
        }
    }

    /// The job as the scheduler sees it.
    pub fn to_sched(&self) -> v1::SchedJob {
        let sched_state = if self.state == JobState::Queued && !self.held && self.deps_pending == 0
        {
            v1::SchedJobState::Queued
        } else if state::is_active(self.state) {
            v1::SchedJobState::Active
        } else {
            v1::SchedJobState::Gone
        };
        v1::SchedJob {
            job_id: self.id,
            state: sched_state as i32,
            priority: self.priority,
            resources: Some(self.resources.into()),
            walltime_seconds: self.walltime,
            site: self.req_site.clone(),
            partition_id: self.partition_id.clone(),
            start_time_ms: if self.start_ms > 0 {
                self.start_ms
            } else {
                self.placed_ms
            },
        }
    }
}

/// An array of tasks as stored; its tasks are jobs whose `array_id` is its
/// id, with consecutive ids from `first_task_id` in index order.
#[derive(Debug, Clone)]
pub struct ArrayRow {
    /// The array's id, from the job id sequence (no job has it).
    pub id: u64,
    /// The owning user.
    pub owner: String,
    /// The submitting identity when not the owner.
    pub submitted_by: String,
    /// The spec as submitted (with `array` set), defaults filled in.
    pub spec: v1::JobSpec,
    /// How many tasks.
    pub task_count: u64,
    /// The id of the task with the lowest index.
    pub first_task_id: u64,
    /// Unix ms of submission.
    pub submit_ms: i64,
    /// The client's de-duplication key, if it gave one.
    pub request_id: Option<String>,
}

/// The columns [`ArrayRow::from_row`] reads.
pub const ARRAY_COLUMNS: &str =
    "id, owner, submitted_by, spec, task_count, first_task_id, submit_ms, client_request_id";

impl ArrayRow {
    /// Decode a row selected with [`ARRAY_COLUMNS`].
    pub fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get::<i64, _>("id")? as u64,
            owner: row.try_get("owner")?,
            submitted_by: row.try_get("submitted_by")?,
            spec: spec_from_row(row)?,
            task_count: row.try_get::<i64, _>("task_count")? as u64,
            first_task_id: row.try_get::<i64, _>("first_task_id")? as u64,
            submit_ms: row.try_get("submit_ms")?,
            request_id: row.try_get("client_request_id")?,
        })
    }
}

/// An array with how many of its tasks are in each state.
#[derive(Debug, Clone)]
pub struct ArrayView {
    /// The array.
    pub row: ArrayRow,
    /// Tasks per state, states with none left out.
    pub counts: Vec<(JobState, u64)>,
    /// The highest exit code of a FAILED task, if any.
    pub max_failed_exit: Option<i32>,
}

impl ArrayView {
    /// The array's state as a whole: RUNNING while any task is placed, QUEUED
    /// while others wait, then FAILED, CANCELLED or COMPLETED.
    pub fn state(&self) -> JobState {
        let count = |s: JobState| {
            self.counts
                .iter()
                .find(|(state, _)| *state == s)
                .map_or(0, |(_, n)| *n)
        };
        let ended: u64 = self
            .counts
            .iter()
            .filter(|(s, _)| state::is_end(*s))
            .map(|(_, n)| n)
            .sum();
        if ended >= self.row.task_count {
            if count(JobState::Failed) > 0 {
                JobState::Failed
            } else if count(JobState::Cancelled) > 0 {
                JobState::Cancelled
            } else {
                JobState::Completed
            }
        } else if self.counts.iter().any(|(s, _)| state::is_active(*s)) {
            JobState::Running
        } else {
            JobState::Queued
        }
    }

    /// The array on the wire: a Job whose `array` is set.
    pub fn to_proto(&self) -> v1::Job {
        let state = self.state();
        let failed = self
            .counts
            .iter()
            .find(|(s, _)| *s == JobState::Failed)
            .map_or(0, |(_, n)| *n);
        let row = &self.row;
        v1::Job {
            id: row.id,
            owner: row.owner.clone(),
            submitted_by: row.submitted_by.clone(),
            spec: Some(row.spec.clone()),
            state: state as i32,
            reason: if failed > 0 {
                format!("{failed} of {} tasks failed", row.task_count)
            } else {
                String::new()
            },
            exit_code: match state {
                JobState::Completed => Some(0),
                // A task that failed without an exit code (lost, walltime) still fails the array.
                JobState::Failed => Some(self.max_failed_exit.filter(|&c| c > 0).unwrap_or(1)),
                _ => None,
            },
            submit_time_ms: row.submit_ms,
            array: Some(v1::ArraySummary {
                indices: row.spec.array.clone(),
                task_count: row.task_count,
                first_task_id: row.first_task_id,
                counts: self
                    .counts
                    .iter()
                    .map(|(s, n)| v1::StateCount {
                        state: *s as i32,
                        count: *n,
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }
}

/// A partition as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionRow {
    /// gantryd's id.
    pub id: String,
    /// Its site.
    pub site: String,
    /// Its flavor.
    pub flavor: String,
    /// Its state.
    pub state: PartitionState,
    /// Why, for people.
    pub message: String,
    /// What it offers (known once the gate answered, else the flavor's).
    pub capacity: Resources,
    /// What its gate queues beyond `capacity` (zero until the gate says).
    pub queue: Resources,
    /// Unix ms the intent was committed.
    pub created_ms: i64,
}

impl PartitionRow {
    /// Decode a `SELECT *` row.
    pub fn from_row(row: &AnyRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            id: row.try_get("id")?,
            site: row.try_get("site")?,
            flavor: row.try_get("flavor")?,
            state: PartitionState::try_from(row.try_get::<i32, _>("state")?)
                .unwrap_or(PartitionState::Unspecified),
            message: row.try_get("message")?,
            capacity: resources_from_row(row)?,
            queue: Resources {
                cpus: row.try_get::<i64, _>("queue_cpus")? as u32,
                memory: row.try_get::<i64, _>("queue_memory")? as u64,
                gpus: row.try_get::<i64, _>("queue_gpus")? as u32,
                nodes: 0,
            },
            created_ms: row.try_get("created_ms")?,
        })
    }

    /// Whether jobs may be placed on it.
    pub fn is_live(&self) -> bool {
        matches!(self.state, PartitionState::Creating | PartitionState::Ready)
    }

    /// The partition as the scheduler sees it.
    pub fn to_sched(&self) -> v1::SchedPartition {
        let state = match self.state {
            PartitionState::Creating => v1::SchedPartitionState::Creating,
            PartitionState::Ready => v1::SchedPartitionState::Ready,
            _ => v1::SchedPartitionState::Gone,
        };
        v1::SchedPartition {
            partition_id: self.id.clone(),
            site: self.site.clone(),
            flavor: self.flavor.clone(),
            state: state as i32,
            capacity: Some(self.capacity.into()),
            queue: Some(self.queue.into()),
        }
    }
}

/// The `spec` column: an encoded `gantry.v1.JobSpec` (jobs and arrays alike).
fn spec_from_row(row: &AnyRow) -> Result<v1::JobSpec, sqlx::Error> {
    let bytes: Vec<u8> = row.try_get("spec")?;
    v1::JobSpec::decode(bytes.as_slice()).map_err(|e| sqlx::Error::Decode(Box::new(e)))
}

/// The `cpus`, `memory`, `gpus` and `nodes` columns (jobs and partitions alike).
fn resources_from_row(row: &AnyRow) -> Result<Resources, sqlx::Error> {
    Ok(Resources {
        cpus: row.try_get::<i64, _>("cpus")? as u32,
        memory: row.try_get::<i64, _>("memory")? as u64,
        gpus: row.try_get::<i64, _>("gpus")? as u32,
        nodes: row.try_get::<i64, _>("nodes")? as u32,
    })
}

/// Decode a `SELECT *` row of `events`.
pub fn event_from_row(row: &AnyRow) -> Result<v1::JobEvent, sqlx::Error> {
    Ok(v1::JobEvent {
        seq: row.try_get::<i64, _>("seq")? as u64,
        job_id: row.try_get::<i64, _>("job_id")? as u64,
        time_ms: row.try_get("time_ms")?,
        from_state: row.try_get("from_state")?,
        to_state: row.try_get("to_state")?,
        actor: row.try_get("actor")?,
        message: row.try_get("message")?,
        exit_code: row.try_get("exit_code")?,
        owner: row.try_get("owner")?,
    })
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
