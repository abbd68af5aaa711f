//! The local gate's in-memory state: its attempts, what they hold, its
//! partitions. One mutex, never held across an await.

use std::collections::{HashMap, VecDeque};

use gantry_gate::{AttemptId, JobHub, JobSpec, PartitionId, is_final};
use gantry_proto::v1::{GateJob, GateJobState};

use crate::alloc::{Alloc, Pool};
use crate::layout::{AttemptDir, AttemptMeta};
use crate::partitions::Partitions;
use crate::protocol::{Exit, Known, LOST_REASON};

/// One attempt the gate knows.
#[derive(Debug)]
pub struct Attempt {
    /// Its state as reported.
    pub job: GateJob,
    /// Its files.
    pub dir: AttemptDir,
    /// What it holds, until it ends.
    pub alloc: Option<Alloc>,
    /// The supervisor was asked to start it (it is no longer the gate's
    /// alone to end).
    pub sent: bool,
    /// The waiting attempt handed this one's resources for when it ends.
    pub successor: Option<String>,
    /// The running attempt whose resources this one waits for.
    pub after: Option<String>,
    /// A free slot this waiting successor was moved to, until the
    /// supervisor says which one it started on (its leader may have ended
    /// first and started it on the leader's resources).
    pub moved: Option<Alloc>,
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
    /// Attempts handed to the supervisor to follow a running attempt
    /// (their leader), oldest first: older than anything in `pending`.
    pub chained: VecDeque<Pending>,
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

    /// The supervisor started the attempt's job (on the resources of
    /// `after`, when it followed it): it runs.
    pub fn started(
        &mut self,
        hub: &JobHub,
        attempt_id: &str,
        pid: u32,
        start_ms: i64,
        after: Option<&str>,
    ) {
        let Some(a) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        if let Some(moved) = a.moved.take() {
            if after.is_some() {
                // Its leader ended before the move arrived: it runs on the
                // leader's resources (passed to it then); the slot is free.
                self.pool.release(&moved);
            } else {
                // It runs on the slot it was moved to; the leader keeps
                // what it holds (or gave it back if it already ended).
                if let Some(leader_held) = a.alloc.replace(moved) {
                    self.pool.release(&leader_held);
                }
                let leader = a.after.take();
                if let Some(l) = leader.and_then(|l| self.attempts.get_mut(&l))
                    && l.successor.as_deref() == Some(attempt_id)
                {
                    l.successor = None;
                }
            }
        }
        let Some(a) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        if a.job.state() != GateJobState::Pending {
            return;
        }
        a.job.set_state(GateJobState::Running);
        a.job.native_id = pid.to_string();
        a.job.start_time_ms = start_ms;
        a.job.reason.clear();
        hub.publish(a.job.clone());
    }

    /// Record how the attempt's job ended, free what it held and publish
    /// the final state. A no-op for an attempt already ended or released.
    pub fn finish(&mut self, hub: &JobHub, attempt_id: &str, exit: &Exit) {
        let Some(attempt) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        if is_final(attempt.job.state()) {
            return;
        }
        let job = &mut attempt.job;
        let (state, reason) = exit.outcome();
        job.set_state(state);
        job.reason = reason;
        job.exit_code = exit.exit_code;
        job.end_time_ms = exit.end_ms;
        (job.stdout_bytes, job.stderr_bytes) = if job.start_time_ms == 0 {
            (Some(0), Some(0)) // it never ran
        } else {
            attempt.dir.log_sizes()
        };
        hub.publish(attempt.job.clone());
        if let Some(moved) = attempt.moved.take() {
            self.pool.release(&moved);
        }
        let Some(attempt) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        let (alloc, successor, after) = (
            attempt.alloc.take(),
            attempt.successor.take(),
            attempt.after.take(),
        );
        if let Some(leader) = after.and_then(|id| self.attempts.get_mut(&id))
            && leader.successor.as_deref() == Some(attempt_id)
        {
            leader.successor = None;
        }
        self.unchain(attempt_id);
        let Some(alloc) = alloc else { return };
        // What it held passes to its successor, which the supervisor starts now.
        match successor.and_then(|id| self.attempts.get_mut(&id)) {
            Some(next) if !is_final(next.job.state()) => {
                next.alloc = Some(alloc);
                next.after = None;
                let id = next.job.attempt_id.clone();
                self.unchain(&id);
            }
            _ => self.pool.release(&alloc),
        }
    }

    /// Forget that `attempt_id` waits in `chained`.
    pub fn unchain(&mut self, attempt_id: &str) {
        if let Some(at) = self
            .chained
            .iter()
            .position(|p| p.attempt.as_str() == attempt_id)
        {
            self.chained.remove(at);
        }
    }

    /// Take in what a (new) supervisor knows: attempts the gate did not
    /// know are added (a restarted gate), those it sent but the supervisor
    /// no longer knows end lost (a supervisor that died before it wrote
    /// them down), the others take the supervisor's word.
    pub fn sync(&mut self, hub: &JobHub, attempts_dir: &std::path::Path, snapshot: Vec<Known>) {
        let mut listed = std::collections::HashSet::new();
        for known in snapshot {
            listed.insert(known.attempt.clone());
            if !self.attempts.contains_key(&known.attempt) {
                let Ok(meta) = serde_json::from_value::<AttemptMeta>(known.meta.clone()) else {
                    tracing::warn!(attempt = %known.attempt, "ignoring an attempt with unreadable meta");
                    continue;
                };
                let mut job = GateJob {
                    attempt_id: known.attempt.clone(),
                    partition_id: meta.partition_id,
                    job_id: meta.job_id,
                    ..Default::default()
                };
                job.set_state(GateJobState::Pending);
                // A waiting successor holds nothing yet: its leader does.
                let running = known.exit.is_none() && known.pid != 0;
                if running {
                    self.pool.restore(&meta.alloc);
                }
                let attempt = Attempt {
                    job,
                    dir: AttemptDir::new(attempts_dir, &known.attempt),
                    alloc: running.then_some(meta.alloc),
                    sent: true,
                    successor: None,
                    after: known.after.clone(),
                    moved: None,
                };
                self.attempts.insert(known.attempt.clone(), attempt);
                tracing::info!(attempt = %known.attempt, running, "recovered attempt");
                if let Some(leader) = known
                    .after
                    .as_ref()
                    .and_then(|id| self.attempts.get_mut(id))
                {
                    leader.successor = Some(known.attempt.clone());
                }
            }
            if known.pid != 0 {
                self.started(hub, &known.attempt, known.pid, known.start_ms, None);
            }
            if let Some(exit) = &known.exit {
                self.finish(hub, &known.attempt, exit);
            }
        }
        let lost: Vec<String> = self
            .attempts
            .iter()
            .filter(|(id, a)| a.sent && !is_final(a.job.state()) && !listed.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            let exit = Exit {
                exit_code: None,
                signal: None,
                reason: LOST_REASON.into(),
                end_ms: now_ms(),
            };
            self.finish(hub, &id, &exit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_gate::Resources;

    fn one_cpu() -> Resources {
        Resources {
            cpus: 1,
            memory_bytes: 0,
            gpus: 0,
        }
    }

    fn attempt(id: &str, alloc: Option<Alloc>) -> Attempt {
        let mut job = GateJob {
            attempt_id: id.into(),
            ..Default::default()
        };
        job.set_state(GateJobState::Pending);
        Attempt {
            job,
            dir: AttemptDir::new(std::path::Path::new("/nonexistent"), id),
            alloc,
            sent: true,
            successor: None,
            after: None,
            moved: None,
        }
    }

    fn exit() -> Exit {
        Exit {
            exit_code: Some(0),
            signal: None,
            reason: String::new(),
            end_ms: 1,
        }
    }

    /// Two slots: leader L holds one; S waits to follow L; the other slot
    /// frees and S is moved there. Whichever the supervisor did first, S ends
    /// up holding exactly the slot it runs on and the other is free.
    fn moved_successor() -> (State, Alloc, Alloc, tempfile::TempDir) {
        let tmp = tempfile::tempdir().unwrap();
        let mut pool = Pool::new(2, 0, 0);
        let held = pool.allocate(one_cpu()).unwrap();
        let moved = pool.allocate(one_cpu()).unwrap();
        let mut state = State {
            attempts: HashMap::new(),
            pool,
            partitions: Partitions::load(
                tmp.path().join("p"),
                Default::default(),
                Default::default(),
                "h".into(),
            )
            .unwrap(),
            pending: Default::default(),
            chained: Default::default(),
        };
        let mut leader = attempt("L", Some(held.clone()));
        leader.successor = Some("S".into());
        leader.job.set_state(GateJobState::Running);
        let mut successor = attempt("S", None);
        successor.after = Some("L".into());
        successor.moved = Some(moved.clone());
        state.attempts.insert("L".into(), leader);
        state.attempts.insert("S".into(), successor);
        (state, held, moved, tmp)
    }

    #[test]
    fn a_moved_successor_started_by_its_leaders_end_frees_the_slot_it_was_moved_to() {
        let hub = JobHub::default();
        let (mut state, held, _, _tmp) = moved_successor();
        state.finish(&hub, "L", &exit());
        state.started(&hub, "S", 7, 1, Some("L"));
        assert_eq!(state.attempts["S"].alloc.as_ref(), Some(&held));
        assert_eq!(state.pool.free_cpus(), 1);
        state.finish(&hub, "S", &exit());
        assert_eq!(state.pool.free_cpus(), 2);
    }

    #[test]
    fn a_moved_successor_started_on_its_new_slot_leaves_the_leader_its_own() {
        let hub = JobHub::default();
        let (mut state, _, moved, _tmp) = moved_successor();
        state.started(&hub, "S", 7, 1, None);
        assert_eq!(state.attempts["S"].alloc.as_ref(), Some(&moved));
        assert_eq!(state.attempts["L"].successor, None);
        state.finish(&hub, "L", &exit());
        assert_eq!(state.pool.free_cpus(), 1);
        state.finish(&hub, "S", &exit());
        assert_eq!(state.pool.free_cpus(), 2);
    }

    #[test]
    fn a_moved_successor_cancelled_before_it_started_gives_everything_back() {
        let hub = JobHub::default();
        let (mut state, _, _, _tmp) = moved_successor();
        let cancelled = Exit {
            exit_code: None,
            signal: None,
            reason: "cancelled".into(),
            end_ms: 1,
        };
        state.finish(&hub, "S", &cancelled);
        assert_eq!(state.attempts["L"].successor, None);
        assert_eq!(state.attempts["S"].job.stdout_bytes, Some(0));
        state.finish(&hub, "L", &exit());
        assert_eq!(state.pool.free_cpus(), 2);
    }
}
