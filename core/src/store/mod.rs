//! gantryd's state: SQLite through sqlx. Every change goes through one writer
//! task ([`writer`]) that commits many operations in one transaction (group
//! commit) and then announces what changed ([`Commit`]); reads use a pool of
//! read connections and see only committed state.

mod gate_report;
mod ops;
mod reads;
mod rows;
mod tx;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, SqlitePool};
use tokio::sync::{broadcast, mpsc};

pub use ops::{GateVerdict, NewJob, Op, Outcome, PlanOps};
pub use reads::{JobFilter, SchedSnapshot};
pub use rows::{JOB_COLUMNS, JobRow, PartitionRow, event_from_row, now_ms};

use crate::error::{CoreError, Result};

/// What one committed transaction changed, announced after the commit.
#[derive(Debug, Default)]
pub struct Commit {
    /// The highest event sequence number after this commit.
    pub seq: u64,
    /// Every job changed, in its state after the commit (once per job).
    pub jobs: Vec<JobRow>,
    /// The events appended, in order.
    pub events: Vec<gantry_proto::v1::JobEvent>,
    /// Every partition changed, in its state after the commit.
    pub partitions: Vec<PartitionRow>,
}

/// Handle to the database: cheap to clone.
#[derive(Clone)]
pub struct Store {
    read: SqlitePool,
    writer: mpsc::Sender<writer::Request>,
    commits: broadcast::Sender<Arc<Commit>>,
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl Store {
    /// Open (creating and migrating if needed) the database at `url`
    /// (`sqlite://path/to/gantry.db`) and start its writer.
    pub async fn open(url: &str) -> Result<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| CoreError::Unavailable(format!("bad database_url {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(false);
        let mut conn = options.connect().await?;
        MIGRATOR
            .run(&mut conn)
            .await
            .map_err(|e| CoreError::Unavailable(format!("database migration failed: {e}")))?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options.read_only(true))
            .await?;
        let (commits, _) = broadcast::channel(4096);
        let writer = writer::start(conn, commits.clone()).await?;
        Ok(Self {
            read,
            writer,
            commits,
        })
    }

    /// Open a SQLite database file in `dir` (`gantry.db`).
    pub async fn open_in(dir: &Path) -> Result<Self> {
        Self::open(&format!("sqlite://{}", dir.join("gantry.db").display())).await
    }

    /// Apply one operation durably; returns once it is committed.
    pub async fn apply(&self, op: Op) -> Result<Outcome> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer
            .send(writer::Request { op, reply })
            .await
            .map_err(|_| CoreError::Unavailable("gantryd is shutting down".into()))?;
        answer
            .await
            .map_err(|_| CoreError::Unavailable("gantryd is shutting down".into()))?
    }

    /// Subscribe to commits. A subscriber that falls behind gets `Lagged` and
    /// must re-read what it needs from the database.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.commits.subscribe()
    }

    /// The read pool.
    pub fn reader(&self) -> &SqlitePool {
        &self.read
    }
}
