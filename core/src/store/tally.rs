//! What gantryd's metrics count of the store: jobs per state (kept exact by
//! the writer, batch by batch), how long each job waited in the queue and
//! ran, and each commit's size and time. A batch's tally is published only
//! once the batch is committed, so a refused or rolled-back batch counts
//! nothing.

use std::time::Duration;

use gantry_proto::v1::JobState;

use super::rows::JobRow;
use crate::job::state::{self, is_active, is_end};

/// One slot per `gantry.v1.JobState` number.
const STATES: usize = JobState::Cancelled as usize + 1;

/// How many jobs the database holds in each state, as committed.
#[derive(Debug, Default, Clone)]
pub struct JobCounts([u64; STATES]);

impl JobCounts {
    /// Counts from `(state number, jobs)` rows; unknown numbers are ignored.
    pub fn from_rows(rows: impl IntoIterator<Item = (i32, i64)>) -> Self {
        let mut counts = Self::default();
        for (number, jobs) in rows {
            if let Some(slot) = usize::try_from(number)
                .ok()
                .and_then(|i| counts.0.get_mut(i))
            {
                *slot = jobs.max(0) as u64;
            }
        }
        counts
    }

    /// Jobs in every state together: the rows of `jobs`.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// Set `gantry_jobs{state}` to these counts.
    pub fn publish(&self) {
        for (number, &jobs) in self.0.iter().enumerate().skip(1) {
            let name = state::name(state::from_i32(number as i32));
            metrics::gauge!("gantry_jobs", "state" => name).set(jobs as f64);
        }
    }
}

/// What one batch changed, to publish after its commit.
#[derive(Debug, Default)]
pub struct Tally {
    /// Jobs gained (or lost, negative) per state.
    delta: [i64; STATES],
    /// Jobs this batch created (submitted).
    created: u64,
    /// Seconds from submission to first start of each job that started.
    waits: Vec<f64>,
    /// Seconds from start to end of each job that ended after running.
    runs: Vec<f64>,
}

impl Tally {
    /// Count `job`, written by this batch, which was in `before` when the
    /// batch began (`None`: created by it).
    pub fn job(&mut self, before: Option<JobState>, job: &JobRow) {
        if before == Some(job.state) {
            return;
        }
        match before {
            Some(before) => self.delta[before as usize] -= 1,
            None => self.created += 1,
        }
        self.delta[job.state as usize] += 1;
    }

    /// Time `job`'s move from `from` to its state now: its wait on a start,
    /// its run on an end after running. Every move counts, also one a
    /// later move in the same batch passes by (a short job's start and end
    /// often arrive in one report).
    pub fn moved(&mut self, from: JobState, job: &JobRow) {
        // A requeued job's later starts would count its earlier runs as waiting.
        if job.state == JobState::Running
            && from != JobState::Running
            && job.start_ms > 0
            && job.requeues == 0
        {
            self.waits.push(seconds(job.start_ms - job.submit_ms));
        }
        if is_end(job.state) && is_active(from) && job.start_ms > 0 && job.end_ms >= job.start_ms {
            self.runs.push(seconds(job.end_ms - job.start_ms));
        }
    }

    /// Publish this committed batch: `counts` take its changes and every
    /// metric its observations. `ops` is the batch's size.
    pub fn publish(self, counts: &mut JobCounts, ops: usize, took: Duration) {
        for (slot, delta) in counts.0.iter_mut().zip(self.delta) {
            *slot = slot.saturating_add_signed(delta);
        }
        counts.publish();
        metrics::counter!("gantry_job_submit_total").increment(self.created);
        let wait = metrics::histogram!("gantry_job_queue_wait_seconds");
        for seconds in self.waits {
            wait.record(seconds);
        }
        let run = metrics::histogram!("gantry_job_run_seconds");
        for seconds in self.runs {
            run.record(seconds);
        }
        metrics::histogram!("gantry_store_commit_ops").record(ops as f64);
        metrics::histogram!("gantry_store_commit_seconds").record(took.as_secs_f64());
    }
}

fn seconds(ms: i64) -> f64 {
    ms.max(0) as f64 / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(state: JobState, submit: i64, start: i64, end: i64) -> JobRow {
        JobRow {
            state,
            submit_ms: submit,
            start_ms: start,
            end_ms: end,
            ..Default::default()
        }
    }

    #[test]
    fn counts_follow_each_jobs_net_move_and_times_every_move() {
        let mut counts = JobCounts::from_rows([(1, 5), (7, 2), (99, 1)]);
        let mut tally = Tally::default();
        // Created queued; queued to running (its start and end in one batch).
        tally.job(None, &job(JobState::Queued, 0, 0, 0));
        let mut short = job(JobState::Running, 1_000, 3_500, 0);
        tally.moved(JobState::StagingIn, &short);
        short.state = JobState::Completed;
        short.end_ms = 4_000;
        tally.moved(JobState::Running, &short);
        tally.job(Some(JobState::Queued), &short);
        // Cancelled while queued: no run time.
        let cancelled = job(JobState::Cancelled, 0, 0, 9);
        tally.moved(JobState::Queued, &cancelled);
        tally.job(Some(JobState::Queued), &cancelled);
        assert_eq!(tally.waits, vec![2.5]);
        assert_eq!(tally.created, 1);
        assert_eq!(tally.runs, vec![0.5]);
        tally.publish(&mut counts, 3, Duration::from_millis(1));
        let queued = JobState::Queued as usize;
        assert_eq!(counts.0[queued], 4);
        assert_eq!(counts.0[JobState::Completed as usize], 3);
        assert_eq!(counts.0[JobState::Cancelled as usize], 1);
    }
}
