//! gantryd's state, in SQLite (embedded, the default) or PostgreSQL, through
//! sqlx's `Any` driver: one set of statements ([`sql`]) for both. Every
//! change goes through one writer task ([`writer`]) that commits many
//! operations in one transaction (group commit) and then announces what
//! changed ([`Commit`]); reads use a pool of read connections and see only
//! committed state.

mod arrays;
mod fault;
mod gate_report;
mod ops;
mod reads;
mod rows;
mod sql;
mod statistics;
mod submit;
mod tally;
mod tx;
mod writer;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyConnection, AnyPool, ConnectOptions, Connection, Executor};
use tokio::sync::{broadcast, mpsc, watch};

pub use fault::{Fault, FaultKind, StoreHealth};
pub use ops::{GateVerdict, NewJob, Op, Outcome, PlanOps};
pub use reads::{JobFilter, SchedSnapshot};
pub use rows::{ArrayRow, ArrayView, JOB_COLUMNS, JobRow, PartitionRow, event_from_row, now_ms};

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

/// Which database a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite file (`sqlite://path`).
    Sqlite,
    /// A PostgreSQL server (`postgres://…`).
    Postgres,
}

impl Backend {
    /// The backend a database URL names.
    pub fn of(url: &str) -> Result<Self> {
        match url.split_once(':').map(|(scheme, _)| scheme) {
            Some("sqlite") => Ok(Self::Sqlite),
            Some("postgres" | "postgresql") => Ok(Self::Postgres),
            _ => Err(CoreError::Unavailable(format!(
                "database_url {url:?} is neither sqlite://PATH nor postgres://USER@HOST:PORT/DB"
            ))),
        }
    }

    /// The statement that starts a read transaction seeing one snapshot.
    fn begin_snapshot(self) -> &'static str {
        match self {
            // SQLite's deferred transaction reads one snapshot already.
            Self::Sqlite => "BEGIN",
            Self::Postgres => "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
        }
    }
}

/// How to reach the database, kept by the writer to reconnect.
#[derive(Debug, Clone)]
pub struct Connector {
    backend: Backend,
    options: AnyConnectOptions,
    /// Where the data is, for people: SQLite's directory, or PostgreSQL's
    /// `host:port/database`.
    location: String,
}

impl Connector {
    /// Parse `url`; SQLite files are created when missing.
    pub fn new(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url)
            .map_err(|e| CoreError::Unavailable(format!("bad database_url {url:?}: {e}")))?
            .disable_statement_logging();
        let location = location_of(backend, &options);
        Ok(Self {
            backend,
            options,
            location,
        })
    }

    /// Which database this connects to.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Where the data is, for messages to people.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// On a fresh connection after a fault: make what is on disk whole and
    /// prove that a write commits. SQLite moves the whole WAL into the
    /// database file and syncs it (so pages whose earlier sync failed are
    /// written and synced again from what the WAL holds); both databases
    /// then commit one probe row.
    pub async fn recover(&self, conn: &mut AnyConnection) -> Result<()> {
        if self.backend == Backend::Sqlite {
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").await?;
        }
        let mut tx = conn.begin().await?;
        sqlx::query(
            self.backend
                .sql("UPDATE store_probe SET written_ms = ? WHERE id = 1"),
        )
        .bind(rows::now_ms())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// One new connection, set up for the writer.
    pub async fn connect(&self) -> Result<AnyConnection> {
        let mut conn = self.options.connect().await?;
        if self.backend == Backend::Sqlite {
            // WAL lets readers run beside the writer; FULL makes every commit durable.
            conn.execute("PRAGMA journal_mode = WAL").await?;
            conn.execute("PRAGMA synchronous = FULL").await?;
            conn.execute("PRAGMA busy_timeout = 10000").await?;
            // Deleted rows (a job's secrets once it ends) are overwritten, not left in free pages.
            conn.execute("PRAGMA secure_delete = ON").await?;
        }
        Ok(conn)
    }
}

/// Where the database at `url` keeps its data, for people: the directory of
/// a SQLite file, or a PostgreSQL server's `host:port/database` (never its
/// password).
fn location_of(backend: Backend, options: &AnyConnectOptions) -> String {
    let url = &options.database_url;
    match backend {
        Backend::Sqlite => {
            let path = format!("{}{}", url.host_str().unwrap_or(""), url.path());
            Path::new(&path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map_or(path.clone(), |p| p.display().to_string())
        }
        Backend::Postgres => format!(
            "{}:{}{}",
            url.host_str().unwrap_or("localhost"),
            url.port().unwrap_or(5432),
            url.path()
        ),
    }
}

/// Handle to the database: cheap to clone.
#[derive(Clone)]
pub struct Store {
    backend: Backend,
    read: AnyPool,
    writer: mpsc::Sender<writer::Request>,
    commits: broadcast::Sender<Arc<Commit>>,
    health: watch::Receiver<StoreHealth>,
}

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl Store {
    /// Open (creating and migrating if needed) the database at `url`
    /// (`sqlite://path/to/gantry.db` or `postgres://user@host:port/db`) and
    /// start its writer.
    pub async fn open(url: &str) -> Result<Self> {
        let connector = Connector::new(url)?;
        let mut conn = connector.connect().await?;
        let migrator = match connector.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        migrator
            .run(&mut conn)
            .await
            .map_err(|e| CoreError::Unavailable(format!("database migration failed: {e}")))?;
        let read = AnyPoolOptions::new()
            .max_connections(4)
            // While the database is down a read fails soon (UNAVAILABLE)
            // instead of waiting out sqlx's 30 s default.
            .acquire_timeout(Duration::from_secs(2))
            // A ping before every read is a round trip to SQLite's worker
            // thread for nothing; a PostgreSQL connection may have died
            // with its server, so there it is kept.
            .test_before_acquire(connector.backend == Backend::Postgres)
            .connect_with(connector.options.clone())
            .await?;
        let (commits, _) = broadcast::channel(4096);
        let backend = connector.backend;
        let (health_tx, health) = watch::channel(StoreHealth::Serving);
        // The writer makes its own connection, on its own thread.
        drop(conn);
        let writer = writer::start(connector, commits.clone(), health_tx).await?;
        Ok(Self {
            backend,
            read,
            writer,
            commits,
            health,
        })
    }

    /// Which database this store runs on.
    pub fn backend(&self) -> Backend {
        self.backend
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

    /// Apply an op on behalf of gantryd itself (a gate report, a plan, a
    /// staging result): while the database is unavailable or refuses
    /// writes (a full disk), wait and try again (100 ms doubling to 2 s)
    /// rather than drop what a gate or the scheduler said. Other errors are
    /// returned.
    pub async fn apply_durably(&self, op: Op) -> Result<Outcome> {
        let mut delay = Duration::from_millis(100);
        loop {
            match self.apply(op.clone()).await {
                Err(err @ (CoreError::Unavailable(_) | CoreError::Store(_))) => {
                    tracing::debug!(why = %err, "database unavailable; retrying an internal write");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }

    /// Subscribe to commits. A subscriber that falls behind gets `Lagged` and
    /// must re-read what it needs from the database.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Commit>> {
        self.commits.subscribe()
    }

    /// Whether the store accepts changes; changes whenever that does.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.health.clone()
    }

    /// The read pool.
    pub fn reader(&self) -> &AnyPool {
        &self.read
    }
}
