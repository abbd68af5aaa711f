//! PostgreSQL's planner statistics on `jobs`, kept as fresh as the table's
//! growth needs.
//!
//! PostgreSQL plans a statement from what ANALYZE last saw of the table, and
//! autovacuum refreshes that only after the table has grown by a tenth and a
//! minute has passed. A young table's statistics mislead the planner badly:
//! seen when a fresh database took its first 9,000 submits, the batch's
//! request-id lookup (`owner = $1 AND client_request_id IN (...)`) was
//! planned for a table of three rows and read every job of the owner through
//! the index, then filtered them — a millisecond per batch, growing with the
//! table — and 64 clients made 3.5k jobs/s instead of 11k. So the writer has
//! `jobs` analyzed itself whenever the table has doubled since the last time
//! (from 1,000 jobs on): a dozen times over a table's life, each on a
//! connection of its own while the writer goes on.

use tokio::task::JoinHandle;

use super::Connector;

/// The size from which `jobs` is analyzed by the writer.
const FIRST_AT: u64 = 1_000;

/// When `jobs` was last analyzed, and the ANALYZE running now.
pub struct Statistics {
    /// The table's size when it was last analyzed (or when gantryd started).
    analyzed_at: u64,
    /// The ANALYZE started last, until it ends.
    running: Option<JoinHandle<()>>,
}

impl Statistics {
    /// Statistics of a table of `jobs` rows, taken to be as fresh as
    /// autovacuum left them.
    pub fn new(jobs: u64) -> Self {
        Self {
            analyzed_at: jobs,
            running: None,
        }
    }

    /// Whether a table of `jobs` rows is due for ANALYZE.
    fn due(&self, jobs: u64) -> bool {
        jobs >= FIRST_AT.max(self.analyzed_at.saturating_mul(2))
    }

    /// After a commit that left `jobs` rows: analyze the table, on a new
    /// connection made by `connector`, when it is due and no ANALYZE runs.
    pub fn committed(&mut self, jobs: u64, connector: &Connector) {
        if !self.due(jobs) || self.running.as_ref().is_some_and(|r| !r.is_finished()) {
            return;
        }
        self.analyzed_at = jobs;
        let connector = connector.clone();
        self.running = Some(tokio::spawn(async move {
            let analyzed = async {
                let mut conn = connector.connect().await?;
                sqlx::query("ANALYZE jobs").execute(&mut conn).await?;
                Ok::<_, crate::error::CoreError>(())
            };
            match analyzed.await {
                Ok(()) => tracing::debug!(jobs, "analyzed the jobs table"),
                Err(e) => tracing::warn!(error = %e, "cannot analyze the jobs table"),
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_is_due_once_it_has_doubled_and_holds_a_thousand_jobs() {
        let fresh = Statistics::new(0);
        assert!(!fresh.due(999));
        assert!(fresh.due(1_000));
        let grown = Statistics::new(40_000);
        assert!(!grown.due(79_999));
        assert!(grown.due(80_000));
    }
}
