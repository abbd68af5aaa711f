//! Following the attempts' Slurm jobs: asking squeue (and scontrol for
//! jobs it no longer lists) and publishing what changed.

use std::sync::{Arc, Weak};
use std::time::Duration;

use gantry_gate::{Result, is_final};
use gantry_proto::v1::GateJobState;
use tokio::sync::Notify;

use super::{Attempt, Inner};
use crate::commands;
use crate::states::{self, Observed};

impl Inner {
    /// Ask Slurm for the state of every unfinished attempt and publish what changed.
    pub(super) async fn poll(&self) -> Result<()> {
        let ids: Vec<u64> = {
            let state = self.state();
            state
                .attempts
                .values()
                .filter(|a| a.record.slurm_job_id != 0 && !is_final(a.job.state()))
                .map(|a| a.record.slurm_job_id)
                .collect()
        };
        if ids.is_empty() {
            return Ok(());
        }
        let mut seen = commands::squeue(self.host(), &ids).await?;
        for id in &ids {
            if !seen.contains_key(id)
                && let Some(o) = commands::scontrol_job(self.host(), *id).await?
            {
                seen.insert(*id, o);
            }
        }
        let mut ended = Vec::new();
        {
            let mut state = self.state();
            for a in state.attempts.values_mut() {
                let id = a.record.slurm_job_id;
                if id == 0 || is_final(a.job.state()) || !ids.contains(&id) {
                    continue;
                }
                let changed = match seen.get(&id) {
                    Some(o) => apply(a, o),
                    None => {
                        // Slurm has forgotten it (past MinJobAge, no accounting).
                        a.job.set_state(GateJobState::Failed);
                        a.job.reason = format!("lost: Slurm no longer knows job {id}");
                        true
                    }
                };
                if changed && is_final(a.job.state()) {
                    ended.push((a.record.attempt_id.clone(), a.dir.clone()));
                } else if changed {
                    self.hub.publish(a.job.clone());
                }
            }
        }
        // An ended job is published with the sizes of its logs.
        for (attempt, dir) in ended {
            let stdout = self.host().size(&dir.join("stdout")).await;
            let stderr = self.host().size(&dir.join("stderr")).await;
            let mut state = self.state();
            if let Some(a) = state.attempts.get_mut(&attempt) {
                (a.job.stdout_bytes, a.job.stderr_bytes) = (stdout, stderr);
                self.hub.publish(a.job.clone());
            }
        }
        Ok(())
    }
}

/// Take in what Slurm shows; true when the attempt changed.
fn apply(a: &mut Attempt, o: &Observed) -> bool {
    let (state, reason) = states::map(o);
    if state == a.job.state() && reason == a.job.reason {
        return false;
    }
    a.job.set_state(state);
    a.job.reason = reason;
    if o.start_time > 0 {
        a.job.start_time_ms = o.start_time * 1000;
    }
    if is_final(state) {
        a.job.exit_code = o.exit_code;
        a.job.end_time_ms = if o.end_time > 0 {
            o.end_time * 1000
        } else {
            now_ms()
        };
    }
    true
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Poll Slurm `every` so often (sooner when woken) until the provider is dropped.
pub(super) async fn poller(inner: Weak<Inner>, wake: Arc<Notify>, every: Duration) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Err(e) = strong.poll().await {
            tracing::warn!(error = %e, "cannot ask Slurm for its jobs; retrying");
        }
    }
}
