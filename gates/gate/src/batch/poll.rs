//! Following the attempts' jobs: asking the system what became of them and
//! publishing what changed.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use gantry_proto::v1::GateJobState;
use tokio::sync::Notify;

use super::{Attempt, BatchSystem, Inner, JobStatus, MISSING_GRACE, Watched};
use crate::error::Result;

impl<B: BatchSystem> Inner<B> {
    /// Ask the system for the state of every unfinished attempt and publish
    /// what changed. The sizes of an ended job's logs are read first, so it
    /// is seen ended only with them.
    pub(super) async fn poll(&self) -> Result<()> {
        let (watched, dirs): (Vec<Watched>, HashMap<u64, PathBuf>) = {
            let state = self.state();
            state
                .attempts
                .values()
                .filter(|a| a.record.native_job_id != 0 && !a.job.state().is_final())
                .map(|a| {
                    let id = a.record.native_job_id;
                    let watched = Watched {
                        id,
                        cancelled: a.record.cancelled,
                    };
                    (watched, (id, a.dir.clone()))
                })
                .unzip()
        };
        if watched.is_empty() {
            return Ok(());
        }
        let seen = self.system.observe(self.host(), &watched).await?;
        let mut sizes = HashMap::new();
        for (id, dir) in &dirs {
            if seen.get(id).is_none_or(|s| s.state.is_final()) {
                let stdout = self.host().size(&dir.join("stdout")).await;
                let stderr = self.host().size(&dir.join("stderr")).await;
                sizes.insert(*id, (stdout, stderr));
            }
        }
        let name = self.system.name();
        let mut state = self.state();
        for a in state.attempts.values_mut() {
            let id = a.record.native_job_id;
            if id == 0 || a.job.state().is_final() || !dirs.contains_key(&id) {
                continue;
            }
            let status = match seen.get(&id) {
                Some(s) => {
                    a.missing_since = None;
                    s.clone()
                }
                // Gone without a word: a pending job the gate cancelled, or
                // one the system let go and keeps no record of. A job
                // between the system's queue and its records is given
                // MISSING_GRACE to reach them.
                None if a.record.cancelled => {
                    let when = match a.job.state() {
                        GateJobState::Running => "",
                        _ => " before it started",
                    };
                    JobStatus::new(GateJobState::Cancelled, format!("{name}: deleted{when}"))
                }
                None if missing_for(a) < MISSING_GRACE => continue,
                None => JobStatus {
                    lost: true,
                    ..JobStatus::new(
                        GateJobState::Failed,
                        format!("lost: {name} no longer knows job {id} and keeps no record of it"),
                    )
                },
            };
            let changed = apply(a, &status);
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

/// How long the system has had no word of `a` (starting now if it had).
fn missing_for(a: &mut Attempt) -> Duration {
    a.missing_since.get_or_insert_with(Instant::now).elapsed()
}

/// Take in what the system shows; true when the attempt changed.
fn apply(a: &mut Attempt, s: &JobStatus) -> bool {
    if s.state == a.job.state() && s.reason == a.job.reason {
        return false;
    }
    a.job.set_state(s.state);
    a.job.reason = s.reason.clone();
    if s.start_time > 0 {
        a.job.start_time_ms = s.start_time * 1000;
    }
    if s.state.is_final() {
        a.job.lost = s.lost;
        a.job.exit_code = s.exit_code;
        a.job.end_time_ms = if s.end_time > 0 {
            s.end_time * 1000
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

/// Poll the system `every` so often (sooner when woken) until the provider
/// is dropped.
pub(super) async fn poller<B: BatchSystem>(
    inner: Weak<Inner<B>>,
    wake: Arc<Notify>,
    every: Duration,
) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = wake.notified() => {}
        }
        let Some(strong) = inner.upgrade() else {
            return;
        };
        if let Err(e) = strong.poll().await {
            let name = strong.system.name();
            tracing::warn!(error = %e, "cannot ask {name} for its jobs; retrying");
        }
    }
}
