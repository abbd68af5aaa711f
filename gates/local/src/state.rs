//! The local gate's in-memory state: its attempts, what they hold, its
//! partitions. One mutex, never held across an await.

use std::collections::{HashMap, VecDeque};

use gantry_gate::{AttemptId, JobHub, JobSpec, PartitionId};
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
    /// A free slot this attempt, queued in the supervisor, was moved to,
    /// until the supervisor says where it started (a running attempt of its
    /// shape may have ended first and handed it its resources).
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
    /// Attempts queued in the supervisor to take over from a running
    /// attempt of their shape ([`crate::protocol::Start::queued`]), oldest
    /// first: older than anything in `pending`.
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
    /// The account it runs as (`None`: the gate's own).
    pub account: Option<gantry_gate::Account>,
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
    /// `after`, when it took over from that one): it runs.
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
                // It took over from an attempt that ended before the move
                // arrived (and holds what that one held): the slot is free.
                self.pool.release(&moved);
            } else if let Some(other) = a.alloc.replace(moved) {
                self.pool.release(&other);
            }
        }
        if a.job.state() != GateJobState::Pending {
            return;
        }
        a.job.set_state(GateJobState::Running);
        a.job.native_id = pid.to_string();
        a.job.start_time_ms = start_ms;
        a.job.reason.clear();
        hub.publish(a.job.clone());
    }

    /// Record how the attempt's job ended, free what it held (or hand it to
    /// `passed_to`, the queued attempt the supervisor started on it) and
    /// publish the final state. A no-op for an attempt already ended or
    /// released.
    pub fn finish(&mut self, hub: &JobHub, attempt_id: &str, exit: &Exit, passed_to: Option<&str>) {
        let Some(attempt) = self.attempts.get_mut(attempt_id) else {
            return;
        };
        if attempt.job.state().is_final() {
            return;
        }
        let job = &mut attempt.job;
        let (state, reason) = exit.outcome();
        job.set_state(state);
        job.reason = reason;
        job.lost = exit.lost();
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
        let alloc = attempt.alloc.take();
        self.unchain(attempt_id);
        let Some(alloc) = alloc else { return };
        match passed_to.and_then(|id| self.attempts.get_mut(id)) {
            Some(next) if !next.job.state().is_final() => {
                next.alloc = Some(alloc);
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
    /// them down), the others take the supervisor's word, and so does what
    /// each running attempt holds. Attempts queued in the supervisor are not
    /// in its snapshot (a new connection empties its queue): they wait in
    /// the gate's queue again, first.
    pub fn sync(&mut self, hub: &JobHub, attempts_dir: &std::path::Path, snapshot: Vec<Known>) {
        let mut listed = std::collections::HashSet::new();
        for known in snapshot {
            listed.insert(known.attempt.clone());
            let Ok(meta) = serde_json::from_value::<AttemptMeta>(known.meta.clone()) else {
                tracing::warn!(attempt = %known.attempt, "ignoring an attempt with unreadable meta");
                continue;
            };
            // What it holds: its own, or what it took over.
            let held = serde_json::from_value::<Alloc>(known.held.clone()).unwrap_or(meta.alloc);
            let running = known.exit.is_none() && known.pid != 0;
            let attempt = self
                .attempts
                .entry(known.attempt.clone())
                .or_insert_with(|| {
                    let mut job = GateJob {
                        attempt_id: known.attempt.clone(),
                        partition_id: meta.partition_id,
                        job_id: meta.job_id,
                        ..Default::default()
                    };
                    job.set_state(GateJobState::Pending);
                    tracing::info!(attempt = %known.attempt, running, "recovered attempt");
                    Attempt {
                        job,
                        dir: AttemptDir::new(attempts_dir, &known.attempt),
                        alloc: None,
                        sent: true,
                        moved: None,
                    }
                });
            attempt.sent = true;
            attempt.moved = None;
            attempt.alloc = running.then_some(held);
            if known.pid != 0 {
                self.started(hub, &known.attempt, known.pid, known.start_ms, None);
            }
            if let Some(exit) = &known.exit {
                self.finish(hub, &known.attempt, exit, None);
            }
        }
        while let Some(queued) = self.chained.pop_back() {
            let id = queued.attempt.to_string();
            if listed.contains(&id) {
                continue; // it started meanwhile
            }
            if let Some(a) = self.attempts.get_mut(&id) {
                (a.sent, a.moved) = (false, None);
            }
            self.pending.push_front(queued);
        }
        let lost: Vec<String> = self
            .attempts
            .iter()
            .filter(|(id, a)| a.sent && !a.job.state().is_final() && !listed.contains(*id))
            .map(|(id, _)| id.clone())
            .collect();
        for id in lost {
            let exit = Exit {
                exit_code: None,
                signal: None,
                reason: LOST_REASON.into(),
                end_ms: now_ms(),
            };
            self.finish(hub, &id, &exit, None);
        }
        self.pool.clear();
        for a in self.attempts.values().filter(|a| !a.job.state().is_final()) {
            if let Some(alloc) = &a.alloc {
                self.pool.restore(alloc);
            }
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

    fn pending(id: &str) -> Pending {
        Pending {
            attempt: AttemptId::parse("attempt", id).unwrap(),
            partition: gantry_gate::PartitionId::parse("partition", "p").unwrap(),
            account: None,
            spec: JobSpec::from_task(Some(gantry_proto::v1::Task {
                job_id: 1,
                argv: vec!["true".into()],
                resources: Some(gantry_proto::v1::Capacity {
                    cpus: 1,
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .unwrap(),
        }
    }

    /// Two slots: L runs on one; S is queued in the supervisor; the other
    /// slot frees and S is moved there. Whichever the supervisor did first,
    /// S ends up holding exactly the slot it runs on and the other is free.
    fn moved_queued_attempt() -> (State, Alloc, Alloc, tempfile::TempDir) {
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
        leader.job.set_state(GateJobState::Running);
        let mut queued = attempt("S", None);
        queued.moved = Some(moved.clone());
        state.attempts.insert("L".into(), leader);
        state.attempts.insert("S".into(), queued);
        (state, held, moved, tmp)
    }

    #[test]
    fn a_moved_attempt_that_took_over_first_frees_the_slot_it_was_moved_to() {
        let hub = JobHub::default();
        let (mut state, held, _, _tmp) = moved_queued_attempt();
        state.finish(&hub, "L", &exit(), Some("S"));
        state.started(&hub, "S", 7, 1, Some("L"));
        assert_eq!(state.attempts["S"].alloc.as_ref(), Some(&held));
        assert_eq!(state.pool.free_cpus(), 1);
        state.finish(&hub, "S", &exit(), None);
        assert_eq!(state.pool.free_cpus(), 2);
    }

    #[test]
    fn a_moved_attempt_started_on_its_new_slot_leaves_the_other_its_own() {
        let hub = JobHub::default();
        let (mut state, _, moved, _tmp) = moved_queued_attempt();
        state.started(&hub, "S", 7, 1, None);
        assert_eq!(state.attempts["S"].alloc.as_ref(), Some(&moved));
        state.finish(&hub, "L", &exit(), None);
        assert_eq!(state.pool.free_cpus(), 1);
        state.finish(&hub, "S", &exit(), None);
        assert_eq!(state.pool.free_cpus(), 2);
    }

    #[test]
    fn a_moved_attempt_cancelled_before_it_started_gives_everything_back() {
        let hub = JobHub::default();
        let (mut state, _, _, _tmp) = moved_queued_attempt();
        let cancelled = Exit {
            exit_code: None,
            signal: None,
            reason: "cancelled".into(),
            end_ms: 1,
        };
        state.finish(&hub, "S", &cancelled, None);
        assert_eq!(state.attempts["S"].job.stdout_bytes, Some(0));
        state.finish(&hub, "L", &exit(), None);
        assert_eq!(state.pool.free_cpus(), 2);
    }

    /// A new connection: the supervisor says what runs on what; what was
    /// queued there waits in the gate's queue again, first and in order.
    #[test]
    fn a_reconnect_takes_the_supervisors_word_and_queues_again_what_was_queued() {
        let hub = JobHub::default();
        let (mut state, held, _, tmp) = moved_queued_attempt();
        state.chained.push_back(pending("S"));
        state.pending.push_back(pending("T"));
        let known = Known {
            attempt: "L".into(),
            meta: serde_json::to_value(AttemptMeta {
                partition_id: "p".into(),
                job_id: 1,
                alloc: Alloc::default(),
            })
            .unwrap(),
            pid: 7,
            start_ticks: 1,
            start_ms: 1,
            exit: None,
            held: serde_json::to_value(&held).unwrap(),
        };
        state.sync(&hub, tmp.path(), vec![known]);
        let order: Vec<&str> = state.pending.iter().map(|p| p.attempt.as_str()).collect();
        assert_eq!(order, ["S", "T"]);
        assert!(state.chained.is_empty());
        assert!(!state.attempts["S"].sent);
        assert_eq!(state.attempts["L"].alloc.as_ref(), Some(&held));
        assert_eq!(state.pool.free_cpus(), 1);
    }
}
