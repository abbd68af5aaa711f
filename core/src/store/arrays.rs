//! Arrays of tasks in the store: the `arrays` row written with the tasks,
//! finding an array's tasks inside a batch (for cancel and hold), and the
//! reads that show an array as a whole.
//!
//! Every query over an array's tasks says `array_id <> 0` as well: only then
//! may SQLite use the partial index `jobs_by_array` for a bound `array_id`
//! (without it, counting one array's tasks scanned the whole table).

use std::collections::BTreeSet;

use gantry_proto::v1::JobState;

use super::Store;
use super::rows::{ARRAY_COLUMNS, ArrayRow, ArrayView, JOB_COLUMNS, JobRow};
use super::tx::Tx;
use crate::error::Result;
use crate::job::array::parse_indices;
use crate::job::state;

impl Tx<'_> {
    /// Write the array's row (its tasks are written as jobs).
    pub(super) async fn insert_array(&mut self, array: &ArrayRow) -> Result<()> {
        sqlx::query(self.backend.sql(
            "INSERT INTO arrays (id, owner, submitted_by, spec, task_count, first_task_id, submit_ms, \
             client_request_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        ))
        .bind(array.id as i64)
        .bind(array.owner.clone())
        .bind(array.submitted_by.clone())
        .bind(prost::Message::encode_to_vec(&array.spec))
        .bind(array.task_count as i64)
        .bind(array.first_task_id as i64)
        .bind(array.submit_ms)
        .bind(array.request_id.clone())
        .execute(&mut *self.conn)
        .await?;
        self.writes += 1;
        self.arrays.push(array.clone());
        Ok(())
    }

    /// The owner's array made with `request_id`, in this batch or before.
    pub(super) async fn array_by_request(
        &mut self,
        owner: &str,
        request_id: Option<&str>,
    ) -> Result<Option<u64>> {
        let Some(request_id) = request_id else {
            return Ok(None);
        };
        if let Some(a) = self
            .arrays
            .iter()
            .find(|a| a.owner == owner && a.request_id.as_deref() == Some(request_id))
        {
            return Ok(Some(a.id));
        }
        let id: Option<i64> = sqlx::query_scalar(
            self.backend
                .sql("SELECT id FROM arrays WHERE owner = ? AND client_request_id = ?"),
        )
        .bind(owner.to_string())
        .bind(request_id.to_string())
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(id.map(|id| id as u64))
    }

    /// The array `id`, as this batch sees it.
    pub(super) async fn array(&mut self, id: u64) -> Result<Option<ArrayRow>> {
        if let Some(a) = self.arrays.iter().find(|a| a.id == id) {
            return Ok(Some(a.clone()));
        }
        let row = sqlx::query(
            self.backend
                .sql(&format!("SELECT {ARRAY_COLUMNS} FROM arrays WHERE id = ?")),
        )
        .bind(id as i64)
        .fetch_optional(&mut *self.conn)
        .await?;
        Ok(row.map(|r| ArrayRow::from_row(&r)).transpose()?)
    }

    /// Whether `id` is an array's.
    pub(super) async fn is_array(&mut self, id: u64) -> Result<bool> {
        Ok(self.array(id).await?.is_some())
    }

    /// The tasks of array `id` that have not ended, by id; `None` when `id`
    /// is a job's or nobody's.
    pub(super) async fn open_tasks(&mut self, id: u64) -> Result<Option<Vec<u64>>> {
        if self.job(id).await?.is_some() || !self.is_array(id).await? {
            return Ok(None);
        }
        // One read for all of them (not one per task).
        let stored: Vec<JobRow> = sqlx::query(self.backend.sql(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE array_id = ? AND array_id <> 0 AND state NOT IN (?, ?, ?)"
        )))
        .bind(id as i64)
        .bind(JobState::Completed as i32)
        .bind(JobState::Failed as i32)
        .bind(JobState::Cancelled as i32)
        .fetch_all(&mut *self.conn)
        .await?
        .iter()
        .map(JobRow::from_row)
        .collect::<Result<_, _>>()?;
        let mut ids: BTreeSet<u64> = stored.iter().map(|j| j.id).collect();
        self.adopt(stored);
        ids.extend(self.cached_tasks(id));
        let mut open = Vec::with_capacity(ids.len());
        for task in ids {
            if self
                .job(task)
                .await?
                .is_some_and(|j| !state::is_end(j.state))
            {
                open.push(task);
            }
        }
        Ok(Some(open))
    }
}

impl Store {
    /// One array as stored.
    pub async fn array(&self, id: u64) -> Result<Option<ArrayRow>> {
        let row = sqlx::query(
            self.backend
                .sql(&format!("SELECT {ARRAY_COLUMNS} FROM arrays WHERE id = ?")),
        )
        .bind(id as i64)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| ArrayRow::from_row(&r)).transpose()?)
    }

    /// An array with its tasks counted by state.
    pub async fn array_view(&self, row: ArrayRow) -> Result<ArrayView> {
        let counts: Vec<(i64, i64)> = sqlx::query_as(self.backend.sql(
            "SELECT state, count(*) FROM jobs WHERE array_id = ? AND array_id <> 0 GROUP BY state",
        ))
        .bind(row.id as i64)
        .fetch_all(self.reader())
        .await?;
        let counts: Vec<(JobState, u64)> = counts
            .into_iter()
            .map(|(s, n)| (state::from_i32(s as i32), n as u64))
            .collect();
        let max_failed_exit = if counts.iter().any(|(s, _)| *s == JobState::Failed) {
            sqlx::query_scalar::<_, Option<i64>>(self.backend.sql(
                "SELECT max(exit_code) FROM jobs WHERE array_id = ? AND array_id <> 0 AND state = ?",
            ))
            .bind(row.id as i64)
            .bind(JobState::Failed as i32)
            .fetch_one(self.reader())
            .await?
            .map(|c| c as i32)
        } else {
            None
        };
        Ok(ArrayView {
            row,
            counts,
            max_failed_exit,
        })
    }

    /// The job id of the task with `index` in array `array`, if it has one.
    pub fn task_id(array: &ArrayRow, index: u32) -> Option<u64> {
        let indices = parse_indices(&array.spec.array).ok()?;
        let position = indices.binary_search(&index).ok()?;
        Some(array.first_task_id + position as u64)
    }

    /// A page of arrays, newest first, below `before_id`.
    pub async fn list_arrays(
        &self,
        owner: Option<&str>,
        before_id: Option<u64>,
        limit: u32,
    ) -> Result<Vec<ArrayRow>> {
        let mut text = format!("SELECT {ARRAY_COLUMNS} FROM arrays WHERE id < ?");
        if owner.is_some() {
            text.push_str(" AND owner = ?");
        }
        text.push_str(" ORDER BY id DESC LIMIT ?");
        let mut query =
            sqlx::query(self.backend.sql(&text)).bind(before_id.unwrap_or(i64::MAX as u64) as i64);
        if let Some(owner) = owner {
            query = query.bind(owner.to_string());
        }
        let rows = query.bind(limit as i64).fetch_all(self.reader()).await?;
        Ok(rows
            .iter()
            .map(ArrayRow::from_row)
            .collect::<Result<_, _>>()?)
    }
}
