//! The single writer: drains a channel of operations, applies a batch of them
//! in one transaction (each in its own savepoint, so one refused op does not
//! spoil the others), commits once, answers every caller, then announces the
//! commit. This is group commit: many submits share one fsync.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{Connection, SqliteConnection};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::Commit;
use super::ops::{Op, Outcome};
use super::rows::{JOB_COLUMNS, JobRow};
use super::tx::{Tx, WriterState};
use crate::error::{CoreError, Result};
use crate::job::Resources;

/// The most operations committed in one transaction.
const MAX_BATCH: usize = 2048;

/// One queued operation and where its answer goes.
pub struct Request {
    /// The operation.
    pub op: Op,
    /// The answer, sent after the commit.
    pub reply: oneshot::Sender<Result<Outcome>>,
}

/// Load counters and partition usage from the database.
async fn load_state(conn: &mut SqliteConnection) -> Result<WriterState> {
    let max_id: Option<i64> = sqlx::query_scalar("SELECT max(id) FROM jobs")
        .fetch_one(&mut *conn)
        .await?;
    let max_seq: Option<i64> = sqlx::query_scalar("SELECT max(seq) FROM events")
        .fetch_one(&mut *conn)
        .await?;
    let rows: Vec<(String, i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT partition_id, sum(cpus), sum(memory), sum(gpus), sum(nodes) FROM jobs \
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
    let sql = sqlx::AssertSqlSafe(format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE state BETWEEN 2 AND 6"
    ));
    let active: Vec<JobRow> = sqlx::query(sql)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(JobRow::from_row)
        .collect::<Result<_, _>>()?;
    let mut state = WriterState {
        next_id: max_id.unwrap_or(0) as u64 + 1,
        next_seq: max_seq.unwrap_or(0) as u64 + 1,
        used,
        ..Default::default()
    };
    state.committed(&active);
    Ok(state)
}

/// Start the writer task on `conn`.
pub async fn start(
    mut conn: SqliteConnection,
    commits: broadcast::Sender<Arc<Commit>>,
) -> Result<mpsc::Sender<Request>> {
    let state = load_state(&mut conn).await?;
    let (tx, rx) = mpsc::channel(8192);
    tokio::spawn(run(conn, state, rx, commits));
    Ok(tx)
}

async fn run(
    mut conn: SqliteConnection,
    mut state: WriterState,
    mut rx: mpsc::Receiver<Request>,
    commits: broadcast::Sender<Arc<Commit>>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        match apply_batch(&mut conn, &mut state, &mut batch).await {
            Ok((answers, commit)) => {
                for (req, answer) in batch.drain(..).zip(answers) {
                    let _ = req.reply.send(answer);
                }
                if !commit.jobs.is_empty() || !commit.partitions.is_empty() {
                    let _ = commits.send(Arc::new(commit));
                }
            }
            Err(err) => {
                tracing::error!(error = %err, ops = batch.len(), "commit failed; the batch is refused");
                for req in batch.drain(..) {
                    let _ = req.reply.send(Err(CoreError::Unavailable(format!(
                        "the database refused the write ({err}); retry"
                    ))));
                }
                match load_state(&mut conn).await {
                    Ok(fresh) => state = fresh,
                    Err(e) => tracing::error!(error = %e, "cannot reload writer state"),
                }
            }
        }
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
    conn: &mut SqliteConnection,
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
    conn: &mut SqliteConnection,
    state: &mut WriterState,
    ops: Vec<Op>,
    single: bool,
) -> Result<Applied> {
    let mut db_tx = conn.begin().await?;
    let mut answers = Vec::with_capacity(ops.len());
    let mut tx = Tx::new(&mut db_tx, state);
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
    let jobs = tx.flush().await?;
    let events = std::mem::take(&mut tx.events);
    let partitions = std::mem::take(&mut tx.partitions);
    drop(tx);
    if wrote {
        db_tx.commit().await?;
    } else {
        // Nothing changed (repeated gate reports, refused ops): no commit, no fsync.
        db_tx.rollback().await?;
    }
    state.committed(&jobs);
    let commit = Commit {
        seq: state.next_seq - 1,
        jobs,
        events,
        partitions: dedup_last(partitions, |p| p.id.clone()),
    };
    Ok(Applied::Done(answers, commit))
}
