//! One batch of the writer: the transaction, and a write-back cache of the
//! jobs it touches. Ops change rows in memory (read-your-writes within the
//! batch) and append events to a buffer; [`Tx::flush`] writes every changed
//! job and every event with a few multi-row statements at the end of the
//! batch. Active jobs (placed and not ended) are also kept across batches in
//! [`WriterState`], so gate reports cost no reads. With sqlx's SQLite driver
//! every statement is a round trip to a worker thread; this is what keeps a
//! job's whole life to a handful of statements.

use std::collections::{BTreeSet, HashMap};

use gantry_proto::v1::{JobEvent, JobState};
use sqlx::AnyConnection;

use super::Backend;
use super::rows::{ArrayRow, JOB_COLUMNS, JobRow, PartitionRow, now_ms};
use super::sql::{MAX_IN_LIST, in_list, rows};
use super::tally::{JobCounts, Tally};
use crate::error::{CoreError, Result};
use crate::job::Resources;
use crate::job::state::{self, is_active, is_end};

/// Rows per multi-row statement, largest first. A batch is written in chunks
/// of these sizes only, so each table needs at most nine distinct statements
/// and every one of them stays in sqlx's prepared-statement cache (a new row
/// count would mean a new statement to prepare); powers of two, so a batch
/// of fewer than 256 takes as many statements as its count has one bits
/// (each statement is a round trip to sqlx's SQLite worker thread). SQLite
/// allows 32,766 bound values per statement; 256 rows of jobs bind 8,192.
const CHUNKS: [usize; 9] = [256, 128, 64, 32, 16, 8, 4, 2, 1];

/// Split `items` into slices whose lengths are all in [`CHUNKS`].
fn chunked<T>(mut items: &[T]) -> Vec<&[T]> {
    let mut out = Vec::new();
    for size in CHUNKS {
        while items.len() >= size {
            let (head, rest) = items.split_at(size);
            out.push(head);
            items = rest;
        }
    }
    out
}

/// The writer's state across batches: counters, partition usage, and the
/// active jobs (bounded by what the sites can run at once).
#[derive(Debug, Default)]
pub struct WriterState {
    /// The next job id.
    pub next_id: u64,
    /// The next event sequence number.
    pub next_seq: u64,
    /// Resources used by active jobs, per partition.
    pub used: HashMap<String, Resources>,
    /// Jobs placed and not ended, as committed.
    pub active: HashMap<u64, JobRow>,
    /// Attempt id → job id, for the active jobs.
    pub attempts: HashMap<String, u64>,
    /// Jobs per state, as committed (`gantry_jobs`).
    pub counts: JobCounts,
}

impl WriterState {
    /// Keep the active-job cache in step with rows just committed.
    pub fn committed(&mut self, rows: &[JobRow]) {
        for row in rows {
            if let Some(old) = self.active.remove(&row.id) {
                self.attempts.remove(&old.attempt_id);
            }
            if is_active(row.state) {
                self.attempts.insert(row.attempt_id.clone(), row.id);
                self.active.insert(row.id, row.clone());
            }
        }
    }
}

/// One batch: the connection inside the transaction, plus what changed.
pub struct Tx<'a> {
    /// The connection, inside the batch transaction.
    pub conn: &'a mut AnyConnection,
    /// Counters, usage and the active jobs.
    pub state: &'a mut WriterState,
    /// Which database, for the form of statements.
    pub backend: Backend,
    /// Every job read or changed in this batch, as it is now.
    cache: HashMap<u64, JobRow>,
    /// Jobs changed in this batch.
    dirty: BTreeSet<u64>,
    /// The state each changed job had when the batch first read it (jobs
    /// created by the batch have none), for [`Tally`].
    before: HashMap<u64, JobState>,
    /// What the written jobs change in gantryd's metrics, made by [`Self::flush`].
    pub tally: Tally,
    /// Jobs created in this batch (for their labels and dependencies).
    created: Vec<u64>,
    /// The jobs created in this batch that wait for each job: `job_deps`
    /// holds them only once the batch is flushed, and a job this batch ends
    /// must release them too.
    new_dependents: HashMap<u64, Vec<u64>>,
    /// What is known of (owner, request id) pairs in this batch: the job
    /// made with it, or `None` when there is none (see
    /// [`Self::prefetch_requests`]).
    pub(super) requests: HashMap<(String, String), Option<u64>>,
    /// Events appended, in order.
    pub events: Vec<JobEvent>,
    /// Partitions changed.
    pub partitions: Vec<PartitionRow>,
    /// Partitions read or written in this batch, as they are now.
    pub(super) partition_rows: HashMap<String, PartitionRow>,
    /// Arrays created in this batch.
    pub arrays: Vec<ArrayRow>,
    /// How many changes ops made: tells whether a failed op had written.
    pub writes: u64,
}

pub(super) fn add(a: &mut Resources, b: Resources, sign: i64) {
    let f = |x: u64, y: u64| (x as i64 + sign * y as i64).max(0) as u64;
    a.cpus = f(a.cpus as u64, b.cpus as u64) as u32;
    a.memory = f(a.memory, b.memory);
    a.gpus = f(a.gpus as u64, b.gpus as u64) as u32;
    a.nodes = f(a.nodes as u64, b.nodes as u64) as u32;
}

pub(super) fn fits(used: Resources, job: Resources, capacity: Resources) -> bool {
    used.cpus + job.cpus <= capacity.cpus
        && used.memory + job.memory <= capacity.memory
        && used.gpus + job.gpus <= capacity.gpus
        && job.nodes <= capacity.nodes.max(1)
}

impl<'a> Tx<'a> {
    /// A batch on `conn` (inside a transaction).
    pub fn new(conn: &'a mut AnyConnection, state: &'a mut WriterState) -> Self {
        Self {
            backend: Backend::of_connection(conn),
            conn,
            state,
            cache: HashMap::new(),
            dirty: BTreeSet::new(),
            before: HashMap::new(),
            tally: Tally::default(),
            created: Vec::new(),
            new_dependents: HashMap::new(),
            requests: HashMap::new(),
            events: Vec::new(),
            partitions: Vec::new(),
            partition_rows: HashMap::new(),
            arrays: Vec::new(),
            writes: 0,
        }
    }

    /// Load a job by id: this batch's version, else the active cache, else the database.
    pub async fn job(&mut self, id: u64) -> Result<Option<JobRow>> {
        if let Some(job) = self.cache.get(&id) {
            return Ok(Some(job.clone()));
        }
        if let Some(job) = self.state.active.get(&id) {
            self.cache.insert(id, job.clone());
            return Ok(Some(job.clone()));
        }
        let stmt = self
            .backend
            .sql(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"));
        let row = sqlx::query(stmt)
            .bind(id as i64)
            .fetch_optional(&mut *self.conn)
            .await?;
        let job = row.map(|r| JobRow::from_row(&r)).transpose()?;
        if let Some(job) = &job {
            self.cache.insert(id, job.clone());
        }
        Ok(job)
    }

    /// Load a job that must exist.
    pub async fn load(&mut self, id: u64) -> Result<JobRow> {
        self.job(id).await?.ok_or(CoreError::JobNotFound(id))
    }

    /// The job whose current attempt is `attempt_id`.
    pub async fn job_by_attempt(&mut self, attempt_id: &str) -> Result<Option<JobRow>> {
        if let Some(job) = self.cache.values().find(|j| j.attempt_id == attempt_id) {
            return Ok(Some(job.clone()));
        }
        if let Some(id) = self.state.attempts.get(attempt_id).copied() {
            return self.job(id).await;
        }
        let stmt = self.backend.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE attempt_id = ?"
        ));
        let row = sqlx::query(stmt)
            .bind(attempt_id.to_string())
            .fetch_optional(&mut *self.conn)
            .await?;
        let job = row.map(|r| JobRow::from_row(&r)).transpose()?;
        match job {
            // The batch may have a newer version of it.
            Some(job) => self.job(job.id).await,
            None => Ok(None),
        }
    }

    /// Active jobs on a partition, as this batch sees them.
    pub async fn jobs_on_partition(&mut self, partition_id: &str) -> Result<Vec<JobRow>> {
        let mut ids: BTreeSet<u64> = self
            .state
            .active
            .values()
            .filter(|j| j.partition_id == partition_id)
            .map(|j| j.id)
            .collect();
        ids.extend(
            self.cache
                .values()
                .filter(|j| j.partition_id == partition_id)
                .map(|j| j.id),
        );
        let mut out = Vec::new();
        for id in ids {
            if let Some(job) = self
                .job(id)
                .await?
                .filter(|j| is_active(j.state) && j.partition_id == partition_id)
            {
                out.push(job);
            }
        }
        Ok(out)
    }

    /// One partition, as this batch sees it (read once per batch).
    pub async fn partition(&mut self, id: &str) -> Result<Option<PartitionRow>> {
        if let Some(p) = self.partition_rows.get(id) {
            return Ok(Some(p.clone()));
        }
        let row = sqlx::query(self.backend.sql("SELECT * FROM partitions WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&mut *self.conn)
            .await?;
        let p = row.map(|r| PartitionRow::from_row(&r)).transpose()?;
        if let Some(p) = &p {
            self.partition_rows.insert(p.id.clone(), p.clone());
        }
        Ok(p)
    }

    /// Read, with one statement per [`MAX_IN_LIST`], the jobs of `ids` this batch does
    /// not hold yet, so that the ops that follow read none one by one (with
    /// sqlx's SQLite driver every statement is a round trip to its worker
    /// thread).
    pub async fn prefetch_jobs(&mut self, ids: &[u64]) -> Result<()> {
        let missing: Vec<u64> = ids
            .iter()
            .copied()
            .filter(|id| !self.cache.contains_key(id) && !self.state.active.contains_key(id))
            .collect();
        for chunk in missing.chunks(MAX_IN_LIST) {
            let (marks, values) = in_list(chunk);
            let text = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id IN ({marks})");
            let mut query = sqlx::query(self.backend.sql(&text));
            for &id in values {
                query = query.bind(id as i64);
            }
            let rows = query
                .fetch_all(&mut *self.conn)
                .await?
                .iter()
                .map(JobRow::from_row)
                .collect::<Result<Vec<_>, _>>()?;
            self.adopt(rows);
        }
        Ok(())
    }

    /// Keep rows just read from the database, unless this batch (or the
    /// active cache) has its own version of them.
    pub fn adopt(&mut self, rows: Vec<JobRow>) {
        for row in rows {
            if !self.state.active.contains_key(&row.id) {
                self.cache.entry(row.id).or_insert(row);
            }
        }
    }

    /// Tasks of `array_id` this batch holds its own version of.
    pub fn cached_tasks(&self, array_id: u64) -> Vec<u64> {
        self.cache
            .values()
            .filter(|j| j.array_id == array_id)
            .map(|j| j.id)
            .collect()
    }

    /// Whether this batch holds its own version of job `id`.
    pub fn is_cached(&self, id: u64) -> bool {
        self.cache.contains_key(&id)
    }

    /// Keep `job` as changed; written by [`Self::flush`].
    pub fn save(&mut self, job: &JobRow) {
        self.keep(job.clone());
    }

    /// Keep `job` as changed, taking the row itself.
    fn keep(&mut self, job: JobRow) {
        self.writes += 1;
        if self.dirty.insert(job.id)
            && let Some(read) = self.cache.get(&job.id)
        {
            self.before.insert(job.id, read.state);
        }
        self.cache.insert(job.id, job);
    }

    /// Make room for `n` more jobs in this batch (an array's tasks), so the
    /// cache is not rehashed, moving every row, as it grows.
    pub fn reserve(&mut self, n: usize) {
        self.cache.reserve(n);
        self.created.reserve(n);
        self.events.reserve(n);
    }

    /// Count `job` (already saved, e.g. by [`Self::record`]) as created in this batch.
    pub fn mark_created(&mut self, job: &JobRow) {
        self.note_created(job);
        if let Some(request_id) = &job.request_id {
            let key = (job.owner.clone(), request_id.clone());
            self.requests.insert(key, Some(job.id));
        }
    }

    /// Append an event for `job` (its state already set) and save the row.
    pub fn record(&mut self, job: &mut JobRow, from: JobState, actor: &str, message: &str) {
        self.tally.moved(from, job);
        job.last_seq = self.event(JobEvent {
            job_id: job.id,
            from_state: from as i32,
            to_state: job.state as i32,
            actor: actor.to_string(),
            message: message.to_string(),
            exit_code: if is_end(job.state) {
                job.exit_code
            } else {
                None
            },
            owner: job.owner.clone(),
            ..Default::default()
        });
        self.save(job);
    }

    /// Append `event` with the next sequence number and the time now; its seq.
    pub fn event(&mut self, mut event: JobEvent) -> u64 {
        event.seq = self.state.next_seq;
        event.time_ms = now_ms();
        self.state.next_seq += 1;
        let seq = event.seq;
        self.events.push(event);
        seq
    }

    /// Keep `job`, created in this batch, without copying it.
    pub fn create_owned(&mut self, job: JobRow) {
        self.note_created(&job);
        self.keep(job);
    }

    /// Count `job` among this batch's new jobs, and as a dependent of each
    /// job it waits for.
    fn note_created(&mut self, job: &JobRow) {
        self.created.push(job.id);
        for &after in &job.spec.after {
            self.new_dependents.entry(after).or_default().push(job.id);
        }
    }

    /// Move `job` to `to`: checks the table, keeps partition usage, sets
    /// times, releases dependents on end states, saves and records.
    pub async fn transition(
        &mut self,
        job: &mut JobRow,
        to: JobState,
        actor: &str,
        message: &str,
    ) -> Result<()> {
        let from = job.state;
        state::check(from, to)?;
        let now = now_ms();
        if let Some(used) = self
            .state
            .used
            .get_mut(&job.partition_id)
            .filter(|_| is_active(from) && !is_active(to))
        {
            add(used, job.resources, -1);
        }
        if !is_active(from) && is_active(to) {
            add(
                self.state.used.entry(job.partition_id.clone()).or_default(),
                job.resources,
                1,
            );
        }
        job.state = to;
        if to == JobState::Running && job.start_ms == 0 {
            job.start_ms = now;
        }
        // A gate's report may have set the process's end already.
        if is_end(to) && job.end_ms == 0 {
            job.end_ms = now;
        }
        if to == JobState::Queued {
            job.start_ms = 0;
            job.end_ms = 0;
            job.site.clear();
            job.partition_id.clear();
            job.attempt_id.clear();
            job.flavor.clear();
            job.native_id.clear();
            job.placed_ms = 0;
            // A walltime its last partition gave it goes with it.
            job.walltime = asked_walltime(&job.spec);
        }
        if !message.is_empty() || is_end(to) || to == JobState::Queued {
            job.reason = message.to_string();
        }
        self.record(job, from, actor, message);
        if is_end(to) {
            self.release_dependents(job).await?;
        }
        Ok(())
    }

    /// A job ended: its dependents either lose one pending dependency or fail.
    async fn release_dependents(&mut self, ended: &JobRow) -> Result<()> {
        let mut work = vec![(ended.id, ended.state)];
        while let Some((id, end)) = work.pop() {
            let mut dependents: Vec<u64> = sqlx::query_scalar(
                self.backend
                    .sql("SELECT job_id FROM job_deps WHERE after_id = ?"),
            )
            .bind(id as i64)
            .fetch_all(&mut *self.conn)
            .await?
            .into_iter()
            .map(|dep: i64| dep as u64)
            .collect();
            // Those submitted earlier in this batch are not in job_deps yet.
            dependents.extend(self.new_dependents.get(&id).into_iter().flatten());
            for dep in dependents {
                let Some(mut job) = self.job(dep).await? else {
                    continue;
                };
                if job.state != JobState::Queued {
                    continue;
                }
                if end == JobState::Completed {
                    job.deps_pending = job.deps_pending.saturating_sub(1);
                    if job.deps_pending == 0 && job.reason.starts_with("waiting for job") {
                        job.reason.clear();
                    }
                    self.save(&job);
                } else {
                    let message = format!("dependency job {id} ended {}", state::name(end));
                    job.exit_code = None;
                    state::check(job.state, JobState::Failed)?;
                    let from = job.state;
                    job.state = JobState::Failed;
                    job.end_ms = now_ms();
                    job.reason = message.clone();
                    self.record(&mut job, from, "gantryd", &message);
                    work.push((job.id, JobState::Failed));
                }
            }
        }
        Ok(())
    }

    /// Keep the values of job `id`'s secret environment variables until it ends.
    pub async fn insert_secrets(
        &mut self,
        id: u64,
        secrets: &gantry_proto::secrets::Secrets,
    ) -> Result<()> {
        let env = gantry_proto::v1::JobSpec {
            secret_env: secrets.0.clone().into_iter().collect(),
            ..Default::default()
        };
        sqlx::query(
            self.backend
                .sql("INSERT INTO job_secrets (job_id, env) VALUES (?, ?)"),
        )
        .bind(id as i64)
        .bind(prost::Message::encode_to_vec(&env))
        .execute(&mut *self.conn)
        .await?;
        self.writes += 1;
        Ok(())
    }

    /// Write every changed job and every event; returns the changed jobs.
    /// The batch's cache is handed over, not copied: call it once, last.
    pub async fn flush(&mut self) -> Result<Vec<JobRow>> {
        // Labels and dependencies of the jobs created in this batch.
        type Links = (u64, Vec<(String, String)>, Vec<u64>);
        let links: Vec<Links> = self
            .created
            .iter()
            .filter_map(|id| self.cache.get(id))
            .filter(|j| !j.spec.labels.is_empty() || !j.spec.after.is_empty())
            .map(|j| {
                let labels = j.spec.labels.clone().into_iter().collect();
                (j.id, labels, j.spec.after.clone())
            })
            .collect();
        let mut cache = std::mem::take(&mut self.cache);
        let jobs: Vec<JobRow> = self
            .dirty
            .iter()
            .filter_map(|id| cache.remove(id))
            .collect();
        for job in &jobs {
            self.tally.job(self.before.get(&job.id).copied(), job);
        }
        for chunk in chunked(&jobs) {
            let mut text = String::from(
                "INSERT INTO jobs (id, owner, submitted_by, name, spec, state, reason, exit_code, priority, \
                 cpus, memory, gpus, nodes, walltime, req_site, site, partition_id, attempt_id, held, \
                 deps_pending, client_request_id, submit_ms, placed_ms, start_ms, end_ms, last_seq, outputs, \
                 array_id, array_index, requeues, flavor, native_id) VALUES ",
            );
            text.push_str(&rows(chunk.len(), 32));
            text.push_str(
                " ON CONFLICT (id) DO UPDATE SET state = excluded.state, reason = excluded.reason, \
                 exit_code = excluded.exit_code, site = excluded.site, partition_id = excluded.partition_id, \
                 attempt_id = excluded.attempt_id, held = excluded.held, deps_pending = excluded.deps_pending, \
                 placed_ms = excluded.placed_ms, start_ms = excluded.start_ms, end_ms = excluded.end_ms, \
                 last_seq = excluded.last_seq, outputs = excluded.outputs, requeues = excluded.requeues, \
                 walltime = excluded.walltime, flavor = excluded.flavor, native_id = excluded.native_id",
            );
            let mut query = sqlx::query(self.backend.sql(&text));
            for j in chunk {
                query = query
                    .bind(j.id as i64)
                    .bind(j.owner.clone())
                    .bind(j.submitted_by.clone())
                    .bind(j.spec.name.clone())
                    .bind(prost::Message::encode_to_vec(&j.spec))
                    .bind(j.state as i32)
                    .bind(j.reason.clone())
                    .bind(j.exit_code)
                    .bind(j.priority)
                    .bind(j.resources.cpus as i64)
                    .bind(j.resources.memory as i64)
                    .bind(j.resources.gpus as i64)
                    .bind(j.resources.nodes as i64)
                    .bind(j.walltime as i64)
                    .bind(j.req_site.clone())
                    .bind(j.site.clone())
                    .bind(j.partition_id.clone())
                    .bind(j.attempt_id.clone())
                    .bind(j.held as i64)
                    .bind(j.deps_pending as i64)
                    .bind(j.request_id.clone())
                    .bind(j.submit_ms)
                    .bind(j.placed_ms)
                    .bind(j.start_ms)
                    .bind(j.end_ms)
                    .bind(j.last_seq as i64)
                    .bind(j.outputs.join("\n"))
                    .bind(j.array_id as i64)
                    .bind(j.array_index as i64)
                    .bind(j.requeues as i64)
                    .bind(j.flavor.clone())
                    .bind(j.native_id.clone());
            }
            query.execute(&mut *self.conn).await?;
        }
        self.created.clear();
        self.new_dependents.clear();
        // A job's secrets go in the commit that ends it.
        for job in jobs.iter().filter(|j| j.ended_with_secrets()) {
            sqlx::query(self.backend.sql("DELETE FROM job_secrets WHERE job_id = ?"))
                .bind(job.id as i64)
                .execute(&mut *self.conn)
                .await?;
        }
        for (id, labels, after) in links {
            for (key, value) in labels {
                sqlx::query(
                    self.backend
                        .sql("INSERT INTO job_labels (job_id, key, value) VALUES (?, ?, ?)"),
                )
                .bind(id as i64)
                .bind(key)
                .bind(value)
                .execute(&mut *self.conn)
                .await?;
            }
            for after in after {
                sqlx::query(
                    self.backend
                        .sql("INSERT INTO job_deps (after_id, job_id) VALUES (?, ?)"),
                )
                .bind(after as i64)
                .bind(id as i64)
                .execute(&mut *self.conn)
                .await?;
            }
        }
        for chunk in chunked(&self.events) {
            let mut text = String::from(
                "INSERT INTO events (seq, job_id, owner, time_ms, from_state, to_state, actor, message, exit_code) VALUES ",
            );
            text.push_str(&rows(chunk.len(), 9));
            let mut query = sqlx::query(self.backend.sql(&text));
            for e in chunk {
                query = query
                    .bind(e.seq as i64)
                    .bind(e.job_id as i64)
                    .bind(e.owner.clone())
                    .bind(e.time_ms)
                    .bind(e.from_state)
                    .bind(e.to_state)
                    .bind(e.actor.clone())
                    .bind(e.message.clone())
                    .bind(e.exit_code);
            }
            query.execute(&mut *self.conn).await?;
        }
        Ok(jobs)
    }
}

/// The walltime `spec` asked for (0: none).
fn asked_walltime(spec: &gantry_proto::v1::JobSpec) -> u64 {
    spec.resources
        .as_ref()
        .map(|r| r.walltime.as_str())
        .filter(|w| !w.is_empty())
        .and_then(|w| crate::job::units::parse_walltime(w).ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn chunks_use_only_the_fixed_sizes() {
        let items: Vec<u32> = (0..301).collect();
        let sizes: Vec<usize> = super::chunked(&items).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, vec![256, 32, 8, 4, 1]);
        assert_eq!(sizes.iter().sum::<usize>(), 301);
    }
}
