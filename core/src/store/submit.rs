//! Accepting a job or an array of tasks: de-duplication by the client's
//! request id, the dependency check, then the rows and their events. An
//! array is one op: all of its tasks are accepted in the same commit, or
//! none.

use std::collections::HashMap;

use gantry_proto::v1::{JobEvent, JobState};

use super::ops::{NewJob, Op, Outcome};
use super::rows::{ArrayRow, ArrayView, JobRow, now_ms};
use super::sql::{MAX_IN_LIST, in_list};
use super::tx::Tx;
use crate::error::{FieldError, Result};
use crate::job::state;

/// What the dependency check found.
struct Deps {
    /// Dependencies not yet completed.
    pending: u32,
    /// One that ended FAILED or CANCELLED, with how it ended.
    broken: Option<(u64, JobState)>,
}

impl Tx<'_> {
    /// Accept `new`: one job, or an array of tasks when its spec has indices.
    pub(super) async fn submit(&mut self, mut new: NewJob) -> Result<Outcome> {
        let request_id = new.request_id.clone();
        let indices = new.spec.array.take();
        if indices.is_some() {
            if let Some(id) = self
                .array_by_request(&new.owner, request_id.as_deref())
                .await?
            {
                return Ok(Outcome::Array(id, false));
            }
        } else if let Some(job) = self
            .by_request_id(&new.owner, request_id.as_deref())
            .await?
        {
            return Ok(Outcome::Job(Box::new(job), false));
        }
        // Validate everything before the first write (see `writer`: an op
        // that fails after writing costs its whole batch a retry).
        let deps = self.check_after(&new).await?;
        let Some(indices) = indices else {
            let id = self.state.next_id;
            self.state.next_id += 1;
            let job = self.accept(&new, id, &deps).await?;
            return Ok(Outcome::Job(Box::new(job), true));
        };
        let array = ArrayRow {
            id: self.state.next_id,
            owner: new.owner.clone(),
            submitted_by: new.submitted_by.clone(),
            spec: new.spec.spec.clone(),
            task_count: indices.len() as u64,
            first_task_id: self.state.next_id + 1,
            submit_ms: now_ms(),
            request_id,
        };
        self.state.next_id += 1 + array.task_count;
        self.insert_array(&array).await?;
        new.request_id = None;
        new.spec.spec.array.clear();
        let count = array.task_count;
        self.reserve(count as usize);
        let view = ArrayView {
            counts: vec![(
                if deps.broken.is_some() {
                    JobState::Failed
                } else {
                    JobState::Queued
                },
                count,
            )],
            row: array,
            max_failed_exit: None,
        };
        let array = &view.row;
        // One SUBMITTED event for the whole array, not one per task.
        let (actor, message) = submitter(&new);
        let seq = self.event(JobEvent {
            job_id: array.id,
            owner: array.owner.clone(),
            from_state: JobState::Unspecified as i32,
            to_state: JobState::Queued as i32,
            actor,
            message: format!(
                "{message}: an array of {count} tasks, jobs {}-{}",
                array.first_task_id,
                array.first_task_id + count - 1
            ),
            ..Default::default()
        });
        for (position, index) in indices.into_iter().enumerate() {
            let task = Task {
                array_id: array.id,
                index,
                count,
            };
            let mut job = new_row(
                &new,
                array.first_task_id + position as u64,
                &deps,
                Some(&task),
            );
            job.last_seq = seq;
            match deps.broken {
                None => self.create_owned(job),
                Some((after, end)) => {
                    self.save(&job);
                    self.mark_created(&job);
                    let why = format!("dependency job {after} ended {}", state::name(end));
                    self.transition(&mut job, JobState::Failed, "gantryd", &why)
                        .await?;
                }
            }
        }
        Ok(Outcome::NewArray(Box::new(view)))
    }

    /// Check `after`: every job exists and is visible to the submitter.
    async fn check_after(&mut self, new: &NewJob) -> Result<Deps> {
        let mut deps = Deps {
            pending: 0,
            broken: None,
        };
        for &after in &new.spec.spec.after {
            let dep = match self.job(after).await? {
                Some(d) if new.is_admin || d.owner == new.owner => d,
                _ => {
                    let message = if self.is_array(after).await? {
                        format!(
                            "job {after} is an array; depend on its tasks (gantry ls --array {after})"
                        )
                    } else {
                        format!("job {after} does not exist")
                    };
                    return Err(FieldError::new("after", message).into());
                }
            };
            match dep.state {
                JobState::Completed => {}
                JobState::Failed | JobState::Cancelled => deps.broken = Some((after, dep.state)),
                _ => deps.pending += 1,
            }
        }
        Ok(deps)
    }

    /// Create job `id` from `new` with its SUBMITTED event; it fails at
    /// once if a dependency is broken.
    async fn accept(&mut self, new: &NewJob, id: u64, deps: &Deps) -> Result<JobRow> {
        let mut job = new_row(new, id, deps, None);
        let (actor, message) = submitter(new);
        self.record(&mut job, JobState::Unspecified, &actor, &message);
        self.mark_created(&job);
        if !new.spec.secrets.is_empty() {
            self.insert_secrets(id, &new.spec.secrets).await?;
        }
        if let Some((after, end)) = deps.broken {
            let message = format!("dependency job {after} ended {}", state::name(end));
            self.transition(&mut job, JobState::Failed, "gantryd", &message)
                .await?;
        }
        Ok(job)
    }

    /// The owner's job made with `request_id`, in this batch or before.
    async fn by_request_id(
        &mut self,
        owner: &str,
        request_id: Option<&str>,
    ) -> Result<Option<JobRow>> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        let key = (owner.to_string(), request_id.to_string());
        let id = match self.requests.get(&key) {
            Some(known) => known.map(|id| id as i64),
            None => {
                sqlx::query_scalar(
                    self.backend
                        .sql("SELECT id FROM jobs WHERE owner = ? AND client_request_id = ?"),
                )
                .bind(owner.to_string())
                .bind(request_id.to_string())
                .fetch_optional(&mut *self.conn)
                .await?
            }
        };
        match id {
            Some(id) => self.job(id as u64).await,
            None => Ok(None),
        }
    }

    /// Look up, with one statement per owner (and per [`MAX_IN_LIST`] ids), whether the
    /// request ids of this batch's job submits were used before, so that
    /// each submit costs no read of its own: with sqlx's SQLite driver every
    /// statement is a round trip to its worker thread, and the writer applies
    /// ops one after another.
    pub(super) async fn prefetch_requests(&mut self, ops: &[Op]) -> Result<()> {
        let mut by_owner: HashMap<&str, Vec<&str>> = HashMap::new();
        for op in ops {
            if let Op::Submit(new) = op
                && new.spec.array.is_none()
                && let Some(request_id) = new.request_id.as_deref()
            {
                by_owner.entry(&new.owner).or_default().push(request_id);
            }
        }
        for (owner, ids) in by_owner {
            for chunk in ids.chunks(MAX_IN_LIST) {
                let (marks, values) = in_list(chunk);
                let text = format!(
                    "SELECT client_request_id, id FROM jobs WHERE owner = ? AND client_request_id IN ({marks})"
                );
                let mut query = sqlx::query_as(self.backend.sql(&text)).bind(owner.to_string());
                for id in values {
                    query = query.bind(id.to_string());
                }
                let found: Vec<(String, i64)> = query.fetch_all(&mut *self.conn).await?;
                let found: HashMap<String, i64> = found.into_iter().collect();
                for &id in chunk {
                    let key = (owner.to_string(), id.to_string());
                    let job = found.get(id).map(|&job| job as u64);
                    self.requests.entry(key).or_insert(job);
                }
            }
        }
        Ok(())
    }
}

/// The submitting identity of `new` and its SUBMITTED message.
fn submitter(new: &NewJob) -> (String, String) {
    if new.submitted_by.is_empty() {
        let actor = format!("user/{}", new.owner);
        let message = format!("submitted by {actor}");
        (actor, message)
    } else {
        let message = format!(
            "submitted by {} on behalf of user/{}",
            new.submitted_by, new.owner
        );
        (new.submitted_by.clone(), message)
    }
}

/// Job `id`, QUEUED, from `new` (a task of an array when `task` is set).
fn new_row(new: &NewJob, id: u64, deps: &Deps, task: Option<&Task>) -> JobRow {
    let v = &new.spec;
    let reason = if v.spec.hold {
        "held".to_string()
    } else if deps.pending > 0 {
        let waiting: Vec<String> = v.spec.after.iter().map(|a| a.to_string()).collect();
        format!("waiting for job {}", waiting.join(", "))
    } else {
        String::new()
    };
    let mut spec = v.spec.clone();
    if let Some(t) = task {
        spec.env
            .insert("GANTRY_ARRAY_ID".into(), t.array_id.to_string());
        spec.env
            .insert("GANTRY_ARRAY_INDEX".into(), t.index.to_string());
        spec.env
            .insert("GANTRY_ARRAY_COUNT".into(), t.count.to_string());
    }
    JobRow {
        id,
        owner: new.owner.clone(),
        submitted_by: new.submitted_by.clone(),
        state: JobState::Queued,
        reason,
        exit_code: None,
        priority: v.spec.priority,
        resources: v.resources,
        walltime: v.walltime,
        req_site: v.site.clone().unwrap_or_default(),
        site: String::new(),
        partition_id: String::new(),
        attempt_id: String::new(),
        held: v.spec.hold,
        deps_pending: deps.pending,
        submit_ms: now_ms(),
        placed_ms: 0,
        start_ms: 0,
        end_ms: 0,
        last_seq: 0,
        outputs: Vec::new(),
        request_id: new.request_id.clone(),
        array_id: task.map_or(0, |t| t.array_id),
        array_index: task.map_or(0, |t| t.index),
        requeues: 0,
        flavor: String::new(),
        native_id: String::new(),
        spec,
    }
}

/// A task's place in its array.
struct Task {
    array_id: u64,
    index: u32,
    count: u64,
}
