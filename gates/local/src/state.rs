//! The local gate's in-memory state: its attempts, what they hold, its
//! partitions. One mutex, never held across an await.

use std::collections::HashMap;

use gantry_gate::{JobHub, is_final};
use gantry_proto::v1::{GateJob, GateJobState};

use crate::alloc::{Alloc, Pool};
use crate::layout::{AttemptDir, ExitRecord, LOST_REASON, Proc};
use crate::partitions::Partitions;

/// One attempt the gate knows.
#[derive(Debug)]
pub struct Attempt {
    /// Its state as reported.
    pub job: GateJob,
    /// Its files.
    pub dir: AttemptDir,
    /// What it holds, until it ends.
    pub alloc: Option<Alloc>,
    /// Its shim, once the job runs.
    pub shim: Option<Proc>,
    /// CancelJob was called.
    pub cancel: bool,
}

/// Everything behind the gate's lock.
#[derive(Debug)]
pub struct State {
    /// Unreleased attempts by id.
    pub attempts: HashMap<String, Attempt>,
    /// What the running attempts hold.
    pub pool: Pool,
    /// The partitions.
    pub partitions: Partitions,
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Attempt {
    /// Ask its shim to stop the job (SIGTERM); the end arrives as usual.
    pub fn signal_stop(&mut self) {
        self.cancel = true;
        if let Some(shim) = self.shim.filter(Proc::alive) {
            let pid = nix::unistd::Pid::from_raw(shim.pid as i32);
            if let Err(e) = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM) {
                tracing::warn!(attempt = %self.job.attempt_id, error = %e, "cannot signal the shim");
            }
        }
    }
}

impl State {
    /// Record that the attempt's shim is gone, with its `exit.json` if it
    /// left one, free what it held and publish the final state. A no-op for
    /// an attempt already ended or released.
    pub fn finish(&mut self, hub: &JobHub, attempt_id: &str, exit: Option<ExitRecord>) {
        let Some(attempt) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        if is_final(attempt.job.state()) {
            return;
        }
        let job = &mut attempt.job;
        match exit {
            Some(exit) => {
                let (state, reason) = exit.outcome();
                job.set_state(state);
                job.reason = reason;
                job.exit_code = Some(exit.exit_code);
                job.end_time_ms = exit.end_time_ms;
            }
            None => {
                job.set_state(GateJobState::Failed);
                job.reason = LOST_REASON.into();
                job.end_time_ms = now_ms();
            }
        }
        (job.stdout_bytes, job.stderr_bytes) = attempt.dir.log_sizes();
        attempt.shim = None;
        if let Some(alloc) = attempt.alloc.take() {
            self.pool.release(&alloc);
        }
        hub.publish(attempt.job.clone());
    }
}
