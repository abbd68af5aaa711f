//! The local gate's in-memory state: its attempts, what they hold, its
//! partitions. One mutex, never held across an await.

use std::collections::{HashMap, VecDeque};

use gantry_gate::{AttemptId, JobHub, JobSpec, PartitionId, is_final};
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
    /// Attempts that wait for room, oldest first (not persisted: after a
    /// restart gantryd starts again what the gate no longer lists, as it
    /// never ran).
    pub pending: VecDeque<Pending>,
}

/// An attempt waiting in the gate's queue, with what it needs to start.
#[derive(Debug)]
pub struct Pending {
    /// The attempt.
    pub attempt: AttemptId,
    /// Its partition.
    pub partition: PartitionId,
    /// What it runs.
    pub spec: JobSpec,
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
    /// CPUs and memory the waiting attempts ask for together.
    pub fn pending_load(&self) -> (u64, u64) {
        self.pending.iter().fold((0, 0), |(c, m), p| {
            (
                c + u64::from(p.spec.resources.cpus.max(1)),
                m + p.spec.resources.memory_bytes,
            )
        })
    }

    /// End a waiting attempt that never ran (cancelled, or its partition
    /// went away); false when it is not waiting.
    pub fn end_pending(&mut self, hub: &JobHub, attempt_id: &str, reason: &str) -> bool {
        let Some(at) = self
            .pending
            .iter()
            .position(|p| p.attempt.as_str() == attempt_id)
        else {
            return false;
        };
        self.pending.remove(at);
        self.end_unstarted(hub, attempt_id, GateJobState::Cancelled, reason);
        true
    }

    /// End an attempt whose job never ran, in `state` (CANCELLED or
    /// FAILED): free what it held and publish it.
    pub fn end_unstarted(
        &mut self,
        hub: &JobHub,
        attempt_id: &str,
        state: GateJobState,
        reason: &str,
    ) {
        let Some(a) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        a.job.set_state(state);
        a.job.reason = reason.to_string();
        a.job.end_time_ms = now_ms();
        (a.job.stdout_bytes, a.job.stderr_bytes) = (Some(0), Some(0));
        if let Some(alloc) = a.alloc.take() {
            self.pool.release(&alloc);
        }
        hub.publish(a.job.clone());
    }

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
