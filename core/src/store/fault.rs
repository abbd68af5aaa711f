//! What gantryd does when its database cannot write: the kinds of fault, the
//! message an operator acts on, and the store's health as others see it.
//!
//! A failed write or sync is a broken promise, not a slow write (DESIGN §8):
//! the writer answers every change with the fault until a fresh connection
//! has written and synced a probe row (see `writer.rs`).

use sqlx::error::DatabaseError;

use super::Backend;
use tokio::sync::watch;

/// Why the store does not accept changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultKind {
    /// The disk (or the PostgreSQL server's disk) is full.
    Full,
    /// A write or sync failed (EIO, a failing device).
    Io,
    /// The database cannot be reached (PostgreSQL down, a lost connection).
    Unreachable,
}

/// A fault of the store: its kind and what to tell a person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// What went wrong.
    pub kind: FaultKind,
    /// The whole message, naming the place and what to do.
    pub message: String,
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// SQLite's primary result codes that mean the disk, not the statement.
const SQLITE_IOERR: i64 = 10;
const SQLITE_FULL: i64 = 13;
const SQLITE_CANTOPEN: i64 = 14;

impl Fault {
    /// Classify a database error met while writing to the `backend`
    /// database at `location` (a directory for SQLite, `host:port/db` for
    /// PostgreSQL).
    pub fn of(err: &sqlx::Error, backend: Backend, location: &str) -> Self {
        let kind = match err {
            sqlx::Error::Database(db) => kind_of(db.as_ref(), backend),
            _ => FaultKind::Unreachable,
        };
        let message = match kind {
            FaultKind::Full => format!(
                "the database disk is full: {location} ({err}); free space there and \
                 gantryd accepts changes again by itself"
            ),
            FaultKind::Io => format!(
                "the database could not write to disk: {location} ({err}); gantryd accepts \
                 no changes until a fresh connection has written and synced again; check the \
                 device (dmesg)"
            ),
            FaultKind::Unreachable => {
                format!("the database is unreachable: {location} ({err}); retry")
            }
        };
        Self { kind, message }
    }
}

/// Whether `err` is the database refusing one statement's data or form
/// (PostgreSQL classes 22, 23, 42; SQLite TOOBIG, CONSTRAINT, MISMATCH),
/// not a fault of its disk or server.
pub fn is_statement_error(err: &sqlx::Error, backend: Backend) -> bool {
    let sqlx::Error::Database(db) = err else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    match backend {
        Backend::Sqlite => matches!(code.parse::<i64>().unwrap_or(0) & 0xff, 18..=20),
        Backend::Postgres => ["22", "23", "42"].iter().any(|c| code.starts_with(c)),
    }
}

fn kind_of(db: &dyn DatabaseError, backend: Backend) -> FaultKind {
    let code = db.code().unwrap_or_default();
    match backend {
        // SQLite's extended codes are numbers whose low byte is the primary code.
        Backend::Sqlite => match code.parse::<i64>().unwrap_or(0) & 0xff {
            SQLITE_FULL => FaultKind::Full,
            SQLITE_IOERR | SQLITE_CANTOPEN => FaultKind::Io,
            _ => FaultKind::Unreachable,
        },
        // PostgreSQL's SQLSTATE: 53100 is disk full, class 58 a system
        // error (58030 an I/O error).
        Backend::Postgres => match code.as_ref() {
            "53100" => FaultKind::Full,
            c if c.starts_with("58") => FaultKind::Io,
            _ => FaultKind::Unreachable,
        },
    }
}

/// Whether the store accepts changes, as its writer last found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum StoreHealth {
    /// Every acknowledged change is committed and synced.
    #[default]
    Serving,
    /// Changes are refused with this fault until a probe write succeeds.
    Faulted(Fault),
}

/// The writer's side of the store's health.
pub type HealthSender = watch::Sender<StoreHealth>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_errors_that_are_not_database_answers_mean_unreachable() {
        let err = sqlx::Error::Io(std::io::Error::other("connection reset"));
        let fault = Fault::of(&err, Backend::Postgres, "db:5432/gantry");
        assert_eq!(fault.kind, FaultKind::Unreachable);
        assert!(
            fault.message.contains("db:5432/gantry"),
            "{}",
            fault.message
        );
    }
}
