//! Reads from the read pool: they see committed state only.

use super::sql::list;
use gantry_proto::v1::{JobEvent, JobState};

use super::Store;
use super::rows::{JOB_COLUMNS, JobRow, PartitionRow, event_from_row};
use crate::error::{CoreError, Result};

/// Filters of a job listing; all combine with AND.
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    /// Only these owners' jobs (`None` = everyone's).
    pub owner: Option<String>,
    /// Only these states (empty = all).
    pub states: Vec<JobState>,
    /// Only jobs placed on this site.
    pub site: Option<String>,
    /// Only jobs with all these labels.
    pub labels: Vec<(String, String)>,
    /// Only the tasks of this array.
    pub array_id: Option<u64>,
    /// Leave out the tasks of arrays.
    pub no_tasks: bool,
    /// Only ids below this (keyset paging, newest first).
    pub before_id: Option<u64>,
    /// Page size.
    pub limit: u32,
}

/// What the scheduler needs to start from, read in one consistent snapshot
/// (one read transaction) and handed out a page at a time, so that a million
/// schedulable jobs never sit in gantryd's memory at once.
pub struct SchedSnapshot {
    /// The sequence number the snapshot is consistent with.
    pub seq: u64,
    /// Live partitions.
    pub partitions: Vec<PartitionRow>,
    tx: sqlx::Transaction<'static, sqlx::Any>,
    backend: super::Backend,
    after_id: i64,
}

impl SchedSnapshot {
    /// The next page of schedulable-or-active jobs by id; empty at the end.
    pub async fn next_jobs(&mut self, limit: usize) -> Result<Vec<JobRow>> {
        let stmt = self.backend.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id > ? AND \
             ((state = 1 AND held = 0 AND deps_pending = 0) OR state BETWEEN 2 AND 6) \
             ORDER BY id LIMIT ?"
        ));
        let jobs: Vec<JobRow> = sqlx::query(stmt)
            .bind(self.after_id)
            .bind(limit as i64)
            .fetch_all(&mut *self.tx)
            .await?
            .iter()
            .map(JobRow::from_row)
            .collect::<Result<_, _>>()?;
        if let Some(last) = jobs.last() {
            self.after_id = last.id as i64;
        }
        Ok(jobs)
    }

    /// End the read transaction now. (Dropping it only queues the rollback;
    /// a read transaction left open keeps SQLite from checkpointing its WAL
    /// and shows later reads on that pooled connection an old snapshot.)
    pub async fn finish(self) -> Result<()> {
        self.tx.rollback().await?;
        Ok(())
    }
}

impl Store {
    /// One job.
    pub async fn job(&self, id: u64) -> Result<Option<JobRow>> {
        let stmt = self
            .backend
            .sql(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = ?"));
        let row = sqlx::query(stmt)
            .bind(id as i64)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| JobRow::from_row(&r)).transpose()?)
    }

    /// The values of job `id`'s secret environment variables (empty once it
    /// has ended, or when it has none).
    pub async fn secrets(&self, id: u64) -> Result<std::collections::HashMap<String, String>> {
        let env: Option<Vec<u8>> = sqlx::query_scalar(
            self.backend
                .sql("SELECT env FROM job_secrets WHERE job_id = ?"),
        )
        .bind(id as i64)
        .fetch_optional(&self.read)
        .await?;
        let Some(env) = env else {
            return Ok(Default::default());
        };
        let spec: gantry_proto::v1::JobSpec = prost::Message::decode(env.as_slice())
            .map_err(|e| CoreError::Io(format!("job_secrets of job {id}: {e}")))?;
        Ok(spec.secret_env)
    }

    /// A page of jobs, newest first.
    pub async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<JobRow>> {
        let mut text = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE 1 = 1");
        if filter.owner.is_some() {
            text.push_str(" AND owner = ?");
        }
        if !filter.states.is_empty() {
            let marks = list(filter.states.len());
            text.push_str(&format!(" AND state IN ({marks})"));
        }
        if filter.site.is_some() {
            text.push_str(" AND site = ?");
        }
        for _ in &filter.labels {
            text.push_str(" AND id IN (SELECT job_id FROM job_labels WHERE key = ? AND value = ?)");
        }
        if filter.array_id.is_some() {
            text.push_str(" AND array_id = ? AND array_id <> 0");
        } else if filter.no_tasks {
            text.push_str(" AND array_id = 0");
        }
        if filter.before_id.is_some() {
            text.push_str(" AND id < ?");
        }
        text.push_str(" ORDER BY id DESC LIMIT ?");
        let mut query = sqlx::query(self.backend.sql(&text));
        if let Some(owner) = &filter.owner {
            query = query.bind(owner.clone());
        }
        for state in &filter.states {
            query = query.bind(*state as i32);
        }
        if let Some(site) = &filter.site {
            query = query.bind(site.clone());
        }
        for (k, v) in &filter.labels {
            query = query.bind(k.clone()).bind(v.clone());
        }
        if let Some(array) = filter.array_id {
            query = query.bind(array as i64);
        }
        if let Some(before) = filter.before_id {
            query = query.bind(before as i64);
        }
        query = query.bind(filter.limit as i64);
        let rows = query.fetch_all(&self.read).await?;
        Ok(rows
            .iter()
            .map(JobRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Events after `after_seq`, oldest first, at most `limit`; only of
    /// `job_ids` when given, only of `owner`'s jobs when given.
    pub async fn events(
        &self,
        after_seq: u64,
        job_ids: &[u64],
        owner: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobEvent>> {
        let mut text = "SELECT * FROM events WHERE seq > ?".to_string();
        if !job_ids.is_empty() {
            let marks = list(job_ids.len());
            text.push_str(&format!(" AND job_id IN ({marks})"));
        }
        if owner.is_some() {
            text.push_str(" AND owner = ?");
        }
        text.push_str(" ORDER BY seq LIMIT ?");
        let mut query = sqlx::query(self.backend.sql(&text)).bind(after_seq as i64);
        for id in job_ids {
            query = query.bind(*id as i64);
        }
        if let Some(owner) = owner {
            query = query.bind(owner.to_string());
        }
        let rows = query.bind(limit as i64).fetch_all(&self.read).await?;
        Ok(rows.iter().map(event_from_row).collect::<Result<_, _>>()?)
    }

    /// The highest committed event sequence number.
    pub async fn max_seq(&self) -> Result<u64> {
        let seq: Option<i64> = sqlx::query_scalar(self.backend.sql("SELECT max(seq) FROM events"))
            .fetch_one(&self.read)
            .await?;
        Ok(seq.unwrap_or(0) as u64)
    }

    /// Start a snapshot for the scheduler: live partitions now, jobs page by page.
    pub async fn sched_snapshot(&self) -> Result<SchedSnapshot> {
        let mut tx = self.read.begin_with(self.backend.begin_snapshot()).await?;
        let seq: Option<i64> = sqlx::query_scalar(self.backend.sql("SELECT max(seq) FROM events"))
            .fetch_one(&mut *tx)
            .await?;
        let partitions = sqlx::query(
            self.backend
                .sql("SELECT * FROM partitions WHERE state IN (1, 2)"),
        )
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(PartitionRow::from_row)
        .collect::<Result<_, _>>()?;
        Ok(SchedSnapshot {
            seq: seq.unwrap_or(0) as u64,
            partitions,
            tx,
            backend: self.backend,
            after_id: 0,
        })
    }

    /// Jobs matching `condition` (SQL over the jobs table with one `?`), by id.
    async fn jobs_where(&self, condition: &str, arg: &str) -> Result<Vec<JobRow>> {
        let stmt = self.backend.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE {condition} ORDER BY id"
        ));
        let rows = sqlx::query(stmt)
            .bind(arg.to_string())
            .fetch_all(&self.read)
            .await?;
        Ok(rows
            .iter()
            .map(JobRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// Jobs placed on `site` and not ended.
    pub async fn active_jobs(&self, site: &str) -> Result<Vec<JobRow>> {
        self.jobs_where("state BETWEEN 2 AND 6 AND site = ?", site)
            .await
    }

    /// The job whose current attempt is `attempt_id`.
    pub async fn job_by_attempt(&self, attempt_id: &str) -> Result<Option<JobRow>> {
        Ok(self
            .jobs_where("attempt_id = ?", attempt_id)
            .await?
            .into_iter()
            .next())
    }

    /// Partitions of `site` that are not yet deleted.
    pub async fn partitions(&self, site: &str) -> Result<Vec<PartitionRow>> {
        let rows = sqlx::query(
            self.backend
                .sql("SELECT * FROM partitions WHERE site = ? AND state IN (1, 2, 3)"),
        )
        .bind(site.to_string())
        .fetch_all(&self.read)
        .await?;
        Ok(rows
            .iter()
            .map(PartitionRow::from_row)
            .collect::<Result<_, _>>()?)
    }

    /// How many partitions not yet deleted each site has in each state:
    /// `(site, state number, partitions)`.
    pub async fn partition_counts(&self) -> Result<Vec<(String, i32, i64)>> {
        let rows = sqlx::query_as(self.backend.sql(
            "SELECT site, state, CAST(count(*) AS BIGINT) FROM partitions \
             WHERE state <> 4 GROUP BY site, state",
        ))
        .fetch_all(&self.read)
        .await?;
        Ok(rows)
    }

    /// One partition.
    pub async fn partition(&self, id: &str) -> Result<Option<PartitionRow>> {
        let row = sqlx::query(self.backend.sql("SELECT * FROM partitions WHERE id = ?"))
            .bind(id.to_string())
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map(|r| PartitionRow::from_row(&r)).transpose()?)
    }
}
