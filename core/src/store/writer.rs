//! The single writer: drains a channel of operations, applies a batch of them
//! in one transaction (each op validates before it writes, so one refused op
//! does not spoil the others), commits once, answers every caller, then
//! announces the commit. This is group commit: many submits share one fsync.
//!
//! A failed write is not a slow write (DESIGN §8). When any statement or the
//! commit fails — a full disk, a failed fsync, a lost PostgreSQL server — the
//! batch is answered with the fault (its commit may or may not have
//! happened, which is why clients retry with their request id), the
//! connection is dropped and never used again, and every later change is
//! refused at once with the same fault. Once a second, a fresh connection
//! recovers from what is on disk (SQLite replays its WAL and checkpoints it
//! into the database file with a sync), writes and commits a probe row and
//! reloads the writer's state; only then are changes accepted again.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{AnyConnection, Connection, Executor};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::fault::{Fault, FaultKind, HealthSender, StoreHealth, is_statement_error};
use super::ops::{Op, Outcome};
use super::rows::{JOB_COLUMNS, JobRow};
use super::statistics::Statistics;
use super::tally::JobCounts;
use super::tx::{Tx, WriterState};
use super::{Backend, Commit, Connector};
use crate::error::{CoreError, Result};
use crate::job::Resources;

/// The most operations committed in one transaction.
const MAX_BATCH: usize = 2048;

/// The longest a batch waits for the callers of the last commit to come
/// back (see [`gather`]).
const MAX_LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// One queued operation and where its answer goes.
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The answer, sent after the commit.
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// Load counters and partition usage from the database.
async fn load_state(conn: &mut AnyConnection) -> Result<WriterState> {
    // Arrays take ids from the same sequence as jobs.
    let max_id: Option<i64> = sqlx::query_scalar(
        "SELECT max(id) FROM (SELECT max(id) AS id FROM jobs UNION ALL SELECT max(id) FROM arrays) AS ids",
    )
        .fetch_one(&mut *conn)
        .await?;
    let max_seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT partition_id, CAST(sum(cpus) AS BIGINT), CAST(sum(memory) AS BIGINT), \
         CAST(sum(gpus) AS BIGINT), CAST(sum(nodes) AS BIGINT) FROM jobs \
         WHERE state BETWEEN 2 AND 6 GROUP BY partition_id",
    )
    .fetch_all(&mut *conn)
    .await?;
    let used: HashMap<String, Resources> = rows
        .into_iter()
        .map(|(p, cpus, memory, gpus, nodes)| {
            (
                p,
                Resources {
                    cpus: cpus as u32,
                    memory: memory as u64,
                    gpus: gpus as u32,
                    nodes: nodes as u32,
                },
            )
        })
        .collect();
    let active: Vec<JobRow> = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state BETWEEN 2 AND 6"
    )))
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(JobRow::from_row)
    .collect::<Result<_, _>>()?;
    let per_state: Vec<(i32, i64)> =
        sqlx::query_as("SELECT state, CAST(count(*) AS BIGINT) FROM jobs GROUP BY state")
            .fetch_all(&mut *conn)
            .await?;
    let counts = JobCounts::from_rows(per_state);
    counts.publish();
    let mut state = WriterState {
        next_id: max_id.unwrap_or(0) as u64 + 1,
        next_seq: max_seq.unwrap_or(0) as u64 + 1,
        used,
        counts,
        ..Default::default()
    };
    state.committed(&active);
    Ok(state)
}

/// How long one attempt to recover may take (changes wait meanwhile).
const RECOVER_WITHIN: std::time::Duration = std::time::Duration::from_secs(5);

/// How long a faulted writer waits between attempts to recover.
const PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Start the writer on a thread of its own, with a runtime and a database
/// connection of its own made by `connector` (which also makes a new one
/// after a fault). `health` is kept up to date.
///
/// Why a thread: each statement is a round trip (to sqlx's SQLite worker
/// thread, or to the PostgreSQL server), and a batch makes several in a
/// row. On the runtime that serves the RPCs, each answer waited in the run
/// queue behind the clients' connections — and a PostgreSQL socket's
/// readiness is noticed only when a busy worker next polls for I/O — so
/// under 64 clients a `BEGIN` took 88 µs instead of 42 on SQLite and 499
/// µs instead of 54 on PostgreSQL, and the writer, which every durable
/// change passes through, was busy waiting.
pub async fn start(
    connector: Connector,
    commits: broadcast::Sender<Arc<Commit>>,
    health: HealthSender,
) -> Result<mpsc::Sender<Request>> {
    let (tx, rx) = mpsc::channel(8192);
    let (ready, started) = oneshot::channel::<Result<()>>();
    std::thread::Builder::new()
        .name("gantry-writer".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    let _ = ready.send(Err(CoreError::Unavailable(format!(
                        "cannot start the database writer: {e}"
                    ))));
                    return;
                }
            };
            runtime.block_on(async move {
                let opened = async {
                    let mut conn = connector.connect().await?;
                    let state = load_state(&mut conn).await?;
                    Ok::<_, CoreError>((conn, state))
                };
                let (conn, state) = match opened.await {
                    Ok(opened) => opened,
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                let _ = ready.send(Ok(()));
                let writer = Writer {
                    sqlite: connector.backend() == Backend::Sqlite,
                    connector,
                    commits,
                    health,
                };
                writer.run(Writing::Live(conn, Box::new(state)), rx).await;
            });
        })
        .map_err(|e| {
            CoreError::Unavailable(format!("cannot start the database writer thread: {e}"))
        })?;
    started.await.map_err(|_| {
        CoreError::Unavailable("the database writer stopped while starting".into())
    })??;
    Ok(tx)
}

/// Group commit on a slow disk: the callers a commit answers come back
/// together, but one by one, a little after the commit, while callers who
/// were already waiting start the next batch at once — and then the two
/// groups take turns, each paying a commit (on an fsync of 5 ms, 8 clients
/// made batches of 7 and 1). So a batch waits, for at most half the last
/// commit's time (and [`MAX_LINGER`]), until it holds `want`: those waiting
/// when the last commit ended and those it answered. With one caller, or a
/// fast disk, it waits for nothing or next to nothing.
async fn gather(
    rx: &mut mpsc::Receiver<Request>,
    batch: &mut Vec<Request>,
    want: usize,
    within: std::time::Duration,
) {
    let want = want.min(MAX_BATCH);
    let deadline = tokio::time::Instant::now() + within.min(MAX_LINGER);
    while batch.len() < want {
        let room = MAX_BATCH - batch.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(batch, room)).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Answer every request of `batch` with `fault`.
fn refuse(batch: &mut Vec<Request>, fault: &Fault) {
    for req in batch.drain(..) {
        let _ = req.reply.send(Err(CoreError::Store(fault.clone())));
    }
}

/// The fault an error of the write path stands for.
fn fault_of(err: &CoreError, connector: &Connector) -> Fault {
    let location = connector.location();
    match err {
        CoreError::Database(e) => Fault::of(e, connector.backend(), location),
        CoreError::Store(fault) => fault.clone(),
        other => Fault {
            kind: FaultKind::Unreachable,
            message: format!("the database failed: {location} ({other}); retry"),
        },
    }
}

/// Whether the writer may write, and on what.
enum Writing {
    /// A connection trusted so far, and the state committed through it.
    Live(AnyConnection, Box<WriterState>),
    /// A write failed: every change is refused with this until a fresh
    /// connection recovers.
    Faulted(Fault),
}

/// The writer task's fixed parts.
struct Writer {
    connector: Connector,
    commits: broadcast::Sender<Arc<Commit>>,
    health: HealthSender,
    /// Whether the database is SQLite, whose write-ahead log is emptied
    /// after a commit that deleted a job's secrets.
    sqlite: bool,
}

impl Writer {
    async fn run(self, mut writing: Writing, mut rx: mpsc::Receiver<Request>) {
        let mut batch = Vec::with_capacity(MAX_BATCH);
        // How many the last commit answered, and how long it took.
        let mut last = (0usize, std::time::Duration::ZERO);
        // When a faulted writer next tries to recover (kept across batches,
        // so that steady refusals do not put it off).
        let mut next_probe = tokio::time::Instant::now();
        // A job's secrets were deleted and the write-ahead log may still
        // hold them (also at start: a crash may have come in between).
        let mut wal_pending = self.sqlite;
        // PostgreSQL's planner statistics on `jobs` (SQLite plans without).
        let mut statistics = match &writing {
            Writing::Live(_, state) if !self.sqlite => Some(Statistics::new(state.counts.total())),
            _ => None,
        };
        loop {
            let (conn, state) = match &mut writing {
                Writing::Live(conn, state) => (conn, state),
                Writing::Faulted(current) => {
                    let current = current.clone();
                    tokio::select! {
                        biased;
                        () = tokio::time::sleep_until(next_probe) => match self.recover().await {
                            Ok((conn, state)) => {
                                tracing::info!(was = %current, "the database accepts writes again; serving");
                                writing = Writing::Live(conn, Box::new(state));
                                self.health.send_replace(StoreHealth::Serving);
                            }
                            Err(err) => {
                                next_probe = tokio::time::Instant::now() + PROBE_EVERY;
                                let now = fault_of(&err, &self.connector);
                                if now != current {
                                    tracing::error!(fault = %now, "the database still refuses writes");
                                    self.health.send_replace(StoreHealth::Faulted(now.clone()));
                                    writing = Writing::Faulted(now);
                                }
                            }
                        },
                        n = rx.recv_many(&mut batch, MAX_BATCH) => {
                            if n == 0 {
                                return;
                            }
                            refuse(&mut batch, &current);
                        }
                    }
                    continue;
                }
            };
            let waiting = rx.len();
            let received = if wal_pending {
                // Idle with the log still to empty: try again now and then.
                tokio::select! {
                    n = rx.recv_many(&mut batch, MAX_BATCH) => n,
                    () = tokio::time::sleep(std::time::Duration::from_millis(200)) => {
                        wal_pending = !empty_wal(conn).await;
                        continue;
                    }
                }
            } else {
                rx.recv_many(&mut batch, MAX_BATCH).await
            };
            if received == 0 {
                return;
            }
            gather(&mut rx, &mut batch, waiting + last.0, last.1 / 2).await;
            let started = tokio::time::Instant::now();
            let applied = apply_batch(conn, state, &mut batch).await;
            last = (batch.len(), started.elapsed());
            match applied {
                Ok((answers, commit)) => {
                    if self.sqlite && commit.jobs.iter().any(JobRow::ended_with_secrets) {
                        wal_pending = true;
                    }
                    for (req, answer) in batch.drain(..).zip(answers) {
                        let _ = req.reply.send(answer);
                    }
                    if wal_pending {
                        wal_pending = !empty_wal(conn).await;
                    }
                    if let Some(statistics) = &mut statistics {
                        statistics.committed(state.counts.total(), &self.connector);
                    }
                    if !commit.jobs.is_empty() || !commit.partitions.is_empty() {
                        let _ = self.commits.send(Arc::new(commit));
                    }
                }
                Err(CoreError::Database(err))
                    if is_statement_error(&err, self.connector.backend()) =>
                {
                    // The data, not the disk: a bug, or input that slipped
                    // past validation. Refuse this batch, start afresh at once.
                    tracing::error!(error = %err, ops = batch.len(), "the database refused a statement; the batch is refused");
                    let once = Fault {
                        kind: FaultKind::Unreachable,
                        message: format!("the database refused a statement ({err}); retry"),
                    };
                    refuse(&mut batch, &once);
                    writing = Writing::Faulted(once);
                    next_probe = tokio::time::Instant::now();
                }
                Err(err) => {
                    // Never trust this connection again: what it holds in
                    // memory may not be what is on disk.
                    let now = fault_of(&err, &self.connector);
                    tracing::error!(
                        fault = %now,
                        ops = batch.len(),
                        "a database write failed; refusing every change until it can write again"
                    );
                    refuse(&mut batch, &now);
                    self.health.send_replace(StoreHealth::Faulted(now.clone()));
                    writing = Writing::Faulted(now);
                    next_probe = tokio::time::Instant::now() + PROBE_EVERY;
                }
            }
        }
    }

    /// A fresh connection that has recovered from what is on disk, proved it
    /// can write and sync, and read the state committed so far.
    /// Bounded by [`RECOVER_WITHIN`], so changes are refused again soon.
    async fn recover(&self) -> Result<(AnyConnection, WriterState)> {
        let attempt = async {
            let mut conn = self.connector.connect().await?;
            self.connector.recover(&mut conn).await?;
            let state = load_state(&mut conn).await?;
            Ok((conn, state))
        };
        tokio::time::timeout(RECOVER_WITHIN, attempt)
            .await
            .unwrap_or_else(|_| {
                Err(CoreError::Unavailable(format!(
                    "recovering took over {} s",
                    RECOVER_WITHIN.as_secs()
                )))
            })
    }
}

fn dedup_last<T>(items: Vec<T>, key: impl Fn(&T) -> String) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    let mut out: Vec<T> = items
        .into_iter()
        .rev()
        .filter(|i| seen.insert(key(i)))
        .collect();
    out.reverse();
    out
}

/// How a batch went.
enum Applied {
    /// Committed: an answer per op, and what changed.
    Done(Vec<Result<Outcome>>, Commit),
    /// An op failed after it had written: everything was rolled back.
    Poisoned,
}

/// Apply a batch in one transaction. Ops validate before they write, so a
/// refused op normally leaves nothing behind and the others commit; should an
/// op fail after writing (a bug, not a user error), the batch is rolled back
/// and each op is applied again in a transaction of its own.
async fn apply_batch(
    conn: &mut AnyConnection,
    state: &mut WriterState,
    batch: &mut [Request],
) -> Result<(Vec<Result<Outcome>>, Commit)> {
    let ops: Vec<Op> = batch.iter().map(|r| r.op.clone()).collect();
    match try_batch(conn, state, ops, false).await? {
        Applied::Done(answers, commit) => Ok((answers, commit)),
        Applied::Poisoned => {
            *state = load_state(conn).await?;
            let mut answers = Vec::with_capacity(batch.len());
            let mut all = Commit::default();
            for req in batch.iter() {
                match try_batch(conn, state, vec![req.op.clone()], true).await? {
                    Applied::Done(mut one, commit) => {
                        answers.append(&mut one);
                        all.seq = all.seq.max(commit.seq);
                        all.jobs.extend(commit.jobs);
                        all.events.extend(commit.events);
                        all.partitions.extend(commit.partitions);
                    }
                    Applied::Poisoned => unreachable!("a single op is answered, not poisoned"),
                }
            }
            all.jobs = dedup_last(all.jobs, |j| j.id.to_string());
            all.partitions = dedup_last(all.partitions, |p| p.id.clone());
            Ok((answers, all))
        }
    }
}

async fn try_batch(
    conn: &mut AnyConnection,
    state: &mut WriterState,
    ops: Vec<Op>,
    single: bool,
) -> Result<Applied> {
    let started = std::time::Instant::now();
    let mut db_tx = conn.begin().await?;
    let mut answers = Vec::with_capacity(ops.len());
    let size = ops.len();
    let mut tx = Tx::new(&mut db_tx, state);
    tx.prefetch_requests(&ops).await?;
    let mut failed_after_write = false;
    for op in ops {
        let (next_id, next_seq) = (tx.state.next_id, tx.state.next_seq);
        let writes = tx.writes;
        match tx.apply(op).await {
            Ok(outcome) => answers.push(Ok(outcome)),
            Err(CoreError::Database(e)) => return Err(CoreError::Database(e)),
            Err(err) => {
                tx.state.next_id = next_id;
                tx.state.next_seq = next_seq;
                if tx.writes != writes {
                    tracing::error!(error = %err, "an operation failed after writing; retrying its batch one by one");
                    failed_after_write = true;
                    answers.push(Err(err));
                    break;
                }
                answers.push(Err(err));
            }
        }
    }
    if failed_after_write {
        drop(tx);
        db_tx.rollback().await?;
        *state = load_state(conn).await?;
        if !single {
            return Ok(Applied::Poisoned);
        }
        return Ok(Applied::Done(answers, Commit::default()));
    }
    let wrote = tx.writes > 0;
    let applied = started.elapsed();
    let jobs = tx.flush().await?;
    let flushed = started.elapsed();
    let events = std::mem::take(&mut tx.events);
    let partitions = std::mem::take(&mut tx.partitions);
    let tally = std::mem::take(&mut tx.tally);
    drop(tx);
    if wrote {
        db_tx.commit().await?;
        tally.publish(&mut state.counts, size, started.elapsed());
    } else {
        // Nothing changed (repeated gate reports, refused ops): no commit, no fsync.
        db_tx.rollback().await?;
    }
    tracing::debug!(
        jobs = jobs.len(),
        apply_ms = applied.as_secs_f64() * 1e3,
        flush_ms = (flushed - applied).as_secs_f64() * 1e3,
        commit_ms = (started.elapsed() - flushed).as_secs_f64() * 1e3,
        "batch"
    );
    state.committed(&jobs);
    let commit = Commit {
        seq: state.next_seq - 1,
        jobs,
        events,
        partitions: dedup_last(partitions, |p| p.id.clone()),
    };
    Ok(Applied::Done(answers, commit))
}

/// One try at moving SQLite's write-ahead log into the database and
/// emptying it, on the writer's connection between batches (a checkpoint
/// that resets the log beside the writer's transaction would void its
/// snapshot). It never waits: while a reader holds an older snapshot the log
/// cannot be emptied, and `false` says to try again later. Used after a
/// commit that deleted a job's secrets, so that the deleted value
/// (overwritten in the database by `secure_delete`) is left in no file.
async fn empty_wal(conn: &mut AnyConnection) -> bool {
    let tried = async {
        conn.execute("PRAGMA busy_timeout = 0").await?;
        let row = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut *conn)
            .await;
        conn.execute("PRAGMA busy_timeout = 10000").await?;
        let busy: i64 = sqlx::Row::try_get(&row?, 0)?;
        Ok::<bool, sqlx::Error>(busy == 0)
    };
    match tried.await {
        Ok(done) => done,
        Err(error) => {
            tracing::warn!(%error, "cannot empty the write-ahead log yet (after deleting a job's secrets)");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::ValidSpec;
    use crate::store::{NewJob, Store};
    use gantry_proto::v1::{JobSpec, JobState};

    fn submit(after: Vec<u64>) -> Op {
        let spec = JobSpec {
            argv: vec!["true".into()],
            after,
            ..Default::default()
        };
        Op::Submit(Box::new(NewJob {
            spec: ValidSpec::parse(spec, |_| true).unwrap(),
            owner: "alice".into(),
            submitted_by: String::new(),
            request_id: None,
            is_admin: false,
        }))
    }

    fn job_id(answer: &Result<Outcome>) -> u64 {
        match answer {
            Ok(Outcome::Job(job, _)) => job.id,
            other => panic!("not a job: {other:?}"),
        }
    }

    /// A dependent accepted in the batch that then ends its dependency is
    /// released with it, though its `job_deps` row is written only when the
    /// batch is: the two ops in one batch, in that order, every time.
    #[tokio::test]
    async fn a_dependency_ended_in_the_batch_that_accepts_its_dependent_releases_it() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("gantry.db").display());
        let store = Store::open(&url).await.unwrap();
        let a = job_id(&store.apply(submit(vec![])).await);
        let mut conn = Connector::new(&url).unwrap().connect().await.unwrap();
        let mut state = load_state(&mut conn).await.unwrap();
        let cancel = Op::Cancel {
            job_id: a,
            actor: "user/alice".into(),
            reason: String::new(),
        };
        let ops = vec![submit(vec![a]), cancel];
        let Applied::Done(answers, _) = try_batch(&mut conn, &mut state, ops, false).await.unwrap()
        else {
            panic!("the batch was poisoned");
        };
        let b = job_id(&answers[0]);
        let b = store.job(b).await.unwrap().unwrap();
        assert_eq!(
            (b.state, b.reason.as_str()),
            (
                JobState::Failed,
                format!("dependency job {a} ended CANCELLED").as_str()
            )
        );
    }
}
