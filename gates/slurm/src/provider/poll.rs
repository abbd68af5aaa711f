//! Following the attempts' Slurm jobs: asking squeue (and scontrol for
//! jobs it no longer lists) and publishing what changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use gantry_gate::Result;
use gantry_proto::v1::GateJobState;
use tokio::sync::Notify;

use super::{Attempt, Inner};
use crate::commands;
use crate::states::{self, Observed};

impl Inner {
    /// Ask Slurm for the state of every unfinished attempt and publish what
    /// changed. The sizes of an ended job's logs are read first, so it is
    /// seen ended only with them.
    pub(super) async fn poll(&self) -> Result<()> {
        let dirs: HashMap<u64, PathBuf> = {
            let state = self.state();
            state
                .attempts
                .values()
                .filter(|a| a.record.slurm_job_id != 0 && !a.job.state().is_final())
                .map(|a| (a.record.slurm_job_id, a.dir.clone()))
                .collect()
        };
        if dirs.is_empty() {
            return Ok(());
        }
        let ids: Vec<u64> = dirs.keys().copied().collect();
        let mut seen = commands::squeue(self.host(), &ids).await?;
        for id in &ids {
            if seen.contains_key(id) {
                continue;
            }
            // Gone from squeue: slurmctld may still hold it (scontrol), or
            // only Slurm's records of finished jobs (sacct).
            let found = match commands::scontrol_job(self.host(), *id).await? {
                Some(o) => Some(o),
                None => {
                    let records = self.job_records().await?;
                    commands::sacct_job(self.host(), records, *id).await?
                }
            };
            if let Some(o) = found {
                seen.insert(*id, o);
            }
        }
        let mut sizes = HashMap::new();
        for (id, dir) in &dirs {
            if seen.get(id).is_none_or(|o| states::map(o).0.is_final()) {
                let stdout = self.host().size(&dir.join("stdout")).await;
                let stderr = self.host().size(&dir.join("stderr")).await;
                sizes.insert(*id, (stdout, stderr));
            }
        }
        let mut state = self.state();
        for a in state.attempts.values_mut() {
            let id = a.record.slurm_job_id;
            if id == 0 || a.job.state().is_final() || !dirs.contains_key(&id) {
                continue;
            }
            let changed = match seen.get(&id) {
                Some(o) => apply(a, o),
                None => {
                    // Slurm has let it go (past MinJobAge) and keeps no
                    // record of finished jobs (no accounting, no completion log).
                    a.job.set_state(GateJobState::Failed);
                    a.job.reason = format!(
                        "lost: Slurm no longer knows job {id} and keeps no record of finished jobs"
                    );
                    true
                }
            };
            if a.job.state().is_final()
                && let Some(&(stdout, stderr)) = sizes.get(&id)
            {
                (a.job.stdout_bytes, a.job.stderr_bytes) = (stdout, stderr);
            }
            if changed {
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
    if state.is_final() {
        a.job.lost = states::lost(o);
        a.job.exit_code = o.exit_code;
        a.job.end_time_ms = if o.end_time > 0 {
            o.end_time * 1000
        } else {
            now_ms()
        };
    }
    true
}

/// Milliseconds since the Unix epoch, now.
pub(super) fn now_ms() -> i64 {
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
