//! What a gate says about one of its attempts, turned into the job's state.

use gantry_proto::v1::{GateJob, GateJobState, JobState};

use super::ops::{GateVerdict, Outcome};
use super::rows::JobRow;
use super::tx::Tx;
use crate::error::Result;
use crate::job::spec::DEFAULT_RETRIES;
use crate::job::state::{self, is_end};

impl Tx<'_> {
    /// Apply a gate's report; the verdict says what the gate link does next.
    pub(super) async fn gate_report(&mut self, site: &str, g: GateJob) -> Result<Outcome> {
        let gate_state = GateJobState::try_from(g.state).unwrap_or(GateJobState::Unspecified);
        let gate_ended = matches!(
            gate_state,
            GateJobState::Succeeded | GateJobState::Failed | GateJobState::Cancelled
        );
        let unwanted = if gate_ended {
            GateVerdict::Release
        } else {
            GateVerdict::Cancel
        };
        let Some(mut job) = self.job_by_attempt(&g.attempt_id).await? else {
            return Ok(Outcome::Gate(unwanted));
        };
        if job.site == site && job.state == JobState::Cancelled && gate_ended {
            // Cancelled here first; the gate has now stopped it. A process
            // that ran leaves its exit code and end time on record (once:
            // a repeated report changes nothing); then its logs are kept.
            if let Some(code) = g.exit_code
                && job.start_ms > 0
                && g.end_time_ms > 0
                && job.exit_code.is_none()
            {
                job.exit_code = Some(code);
                job.end_ms = g.end_time_ms.max(job.start_ms);
                let message = format!("its process ended: {}", exit_text(code));
                self.record(
                    &mut job,
                    JobState::Cancelled,
                    &format!("gate/{site}"),
                    &message,
                );
            }
            return Ok(Outcome::Gate(GateVerdict::SaveLogsAndRelease(Box::new(
                job,
            ))));
        }
        if job.site != site || is_end(job.state) {
            return Ok(Outcome::Gate(unwanted));
        }
        let actor = format!("gate/{site}");
        if !g.native_id.is_empty() && g.native_id != job.native_id {
            job.native_id = g.native_id.clone();
            self.save(&job);
        }
        // An end reported before the start was (a short job between two
        // polls of a gate): it did run, and its history says so.
        let started_unseen = matches!(
            gate_state,
            GateJobState::Succeeded | GateJobState::Failed | GateJobState::Cancelled
        ) && g.start_time_ms > 0
            && matches!(
                job.state,
                JobState::Scheduled | JobState::Provisioning | JobState::StagingIn
            );
        if started_unseen {
            job.start_ms = g.start_time_ms;
            let message = running_message(site, &g.native_id);
            self.transition(&mut job, JobState::Running, &actor, &message)
                .await?;
        }
        match gate_state {
            GateJobState::Pending => {
                // Only for a job that has not started: a PENDING heard late
                // (a StartJob answer that came after the watch stream's end,
                // on a busy machine) must not become a finished job's reason,
                // which decides how it ends.
                let waiting = matches!(
                    job.state,
                    JobState::Scheduled | JobState::Provisioning | JobState::StagingIn
                );
                if waiting && !g.reason.is_empty() && g.reason != job.reason {
                    job.reason = g.reason.clone();
                    self.save(&job);
                }
                Ok(Outcome::Gate(GateVerdict::Nothing))
            }
            GateJobState::Running => {
                if matches!(
                    job.state,
                    JobState::Scheduled | JobState::Provisioning | JobState::StagingIn
                ) {
                    if g.start_time_ms > 0 {
                        job.start_ms = g.start_time_ms;
                    }
                    let message = running_message(site, &g.native_id);
                    self.transition(&mut job, JobState::Running, &actor, &message)
                        .await?;
                }
                Ok(Outcome::Gate(GateVerdict::Nothing))
            }
            GateJobState::Succeeded | GateJobState::Failed => {
                if job.state == JobState::StagingOut {
                    return Ok(Outcome::Gate(GateVerdict::StageOut(Box::new(job))));
                }
                let lost = gate_state == GateJobState::Failed && g.lost;
                if lost && self.requeue_lost(&mut job, &actor, &g.reason).await? {
                    return Ok(Outcome::Gate(GateVerdict::Release));
                }
                job.exit_code = g.exit_code;
                let mut failure = match (gate_state, g.reason.is_empty(), g.exit_code) {
                    (GateJobState::Succeeded, _, _) => String::new(),
                    (_, false, _) => g.reason.clone(),
                    (_, true, Some(code)) => format!("exit code {code}"),
                    (_, true, None) => "failed".to_string(),
                };
                if lost && job.requeues > 0 {
                    failure = format!("{failure}; not requeued: {} retries used", job.requeues);
                }
                if g.start_time_ms > 0 && job.start_ms == 0 {
                    job.start_ms = g.start_time_ms;
                }
                // The process's end as the gate saw it, not when gantryd
                // heard of it (or when its files were copied).
                if g.end_time_ms > 0 {
                    job.end_ms = g.end_time_ms.max(job.start_ms);
                }
                // Logs and outputs are brought back before the job ends,
                // unless the gate says there is nothing to bring.
                let nothing_to_bring = job.spec.outputs.is_empty()
                    && g.stdout_bytes == Some(0)
                    && g.stderr_bytes == Some(0);
                if nothing_to_bring {
                    let (to, message) = if gate_state == GateJobState::Succeeded {
                        (JobState::Completed, "exit code 0".to_string())
                    } else {
                        (JobState::Failed, failure)
                    };
                    self.transition(&mut job, to, &actor, &message).await?;
                    return Ok(Outcome::Gate(GateVerdict::Release));
                }
                job.reason = failure.clone();
                let message = if failure.is_empty() {
                    "process ended; copying logs and outputs".to_string()
                } else {
                    format!("{failure}; copying logs and outputs")
                };
                self.transition(&mut job, JobState::StagingOut, &actor, &message)
                    .await?;
                job.reason = failure;
                self.save(&job);
                Ok(Outcome::Gate(GateVerdict::StageOut(Box::new(job))))
            }
            GateJobState::Cancelled => {
                job.exit_code = g.exit_code;
                if g.end_time_ms > 0 && job.start_ms > 0 {
                    job.end_ms = g.end_time_ms.max(job.start_ms);
                }
                let message = if g.reason.is_empty() {
                    format!("cancelled on site {site}")
                } else {
                    g.reason.clone()
                };
                self.transition(&mut job, JobState::Cancelled, &actor, &message)
                    .await?;
                Ok(Outcome::Gate(GateVerdict::SaveLogsAndRelease(Box::new(
                    job,
                ))))
            }
            GateJobState::Unspecified => Ok(Outcome::Gate(GateVerdict::Nothing)),
        }
    }

    /// The attempt's compute was lost (`what`: how), not by the job's own
    /// doing: queue the job again for a new attempt, if it has retries left
    /// (`JobSpec.retries`) and has not ended its run (STAGING_OUT). Whether
    /// it did.
    pub(super) async fn requeue_lost(
        &mut self,
        job: &mut JobRow,
        actor: &str,
        what: &str,
    ) -> Result<bool> {
        let retries = job.spec.retries.unwrap_or(DEFAULT_RETRIES);
        if job.requeues >= retries || state::check(job.state, JobState::Queued).is_err() {
            return Ok(false);
        }
        job.requeues += 1;
        job.exit_code = None;
        let what = if what.is_empty() {
            "its compute was lost"
        } else {
            what
        };
        let message = format!("requeued ({} of {retries} retries): {what}", job.requeues);
        self.transition(job, JobState::Queued, actor, &message)
            .await?;
        Ok(true)
    }
}

/// "exit code 0", or "killed by SIGTERM (exit code 143)" for 128+N.
fn exit_text(code: i32) -> String {
    match gantry_proto::signal::killed_by(code) {
        Some(name) => format!("killed by SIG{name} (exit code {code})"),
        None => format!("exit code {code}"),
    }
}

/// The RUNNING event's message: the site, and the provider's id of the job.
fn running_message(site: &str, native_id: &str) -> String {
    if native_id.is_empty() {
        format!("running on {site}")
    } else {
        format!("running on {site} ({native_id})")
    }
}
