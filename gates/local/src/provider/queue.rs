//! The local gate's queue: starting waiting attempts as room frees, and
//! handing the next ones to running attempts as their successors.

use gantry_gate::{AttemptId, JobSpec, PartitionId, Result, is_final};
use gantry_proto::v1::GateJobState;

use super::Inner;
use crate::alloc::Alloc;
use crate::launch;
use crate::protocol::Command;
use crate::state::State;

impl Inner {
    /// Start waiting attempts, oldest first, while the head fits; then
    /// hand the next ones to running attempts of their shape as successors.
    pub(super) fn drain(&self) {
        let mut state = self.state();
        self.drain_locked(&mut state);
    }

    pub(super) fn drain_locked(&self, state: &mut State) {
        while self.link.is_up() {
            // Those waiting for a leader came first: one that fits in what is
            // free now starts now instead (the supervisor is told so).
            if let Some(want) = state.chained.front().map(|p| p.spec.resources) {
                let Ok(alloc) = state.pool.allocate(want) else {
                    return self.chain(state);
                };
                let next = state.chained.pop_front().expect("has a head");
                let id = next.attempt.to_string();
                // Held as `moved` until the supervisor says where it started:
                // its leader may end first and start it on its own resources.
                match state.attempts.get_mut(&id) {
                    Some(a) if !is_final(a.job.state()) => a.moved = Some(alloc.clone()),
                    _ => {
                        state.pool.release(&alloc);
                        continue;
                    }
                }
                let moved = self.launch(
                    state,
                    &next.attempt,
                    &next.partition,
                    &next.spec,
                    &alloc,
                    None,
                );
                if let Err(e) = moved {
                    tracing::warn!(attempt = %id, error = %e, "cannot move a waiting attempt to a free slot");
                    if let Some(a) = state.attempts.get_mut(&id)
                        && let Some(moved) = a.moved.take()
                    {
                        state.pool.release(&moved);
                    }
                }
                continue;
            }
            let Some(want) = state.pending.front().map(|p| p.spec.resources) else {
                return;
            };
            let Ok(alloc) = state.pool.allocate(want) else {
                return self.chain(state);
            };
            let head = state.pending.pop_front().expect("has a head");
            match state.attempts.get_mut(head.attempt.as_str()) {
                Some(a) if !is_final(a.job.state()) => {
                    a.alloc = Some(alloc.clone());
                    a.job.reason.clear();
                }
                _ => {
                    state.pool.release(&alloc);
                    continue;
                }
            }
            if let Err(e) = self.launch(
                state,
                &head.attempt,
                &head.partition,
                &head.spec,
                &alloc,
                None,
            ) {
                // Nobody is waiting on a call to retry it: the attempt fails.
                state.end_unstarted(
                    &self.hub,
                    head.attempt.as_str(),
                    GateJobState::Failed,
                    &format!("could not start: {e}"),
                );
            }
        }
    }

    /// Give the waiting attempt at the head of the queue a running attempt
    /// of the same shape (CPUs, GPUs, enough memory) to follow: the
    /// supervisor starts it the moment its leader ends, on the leader's
    /// resources, without a round trip through the gate. One at a time, so
    /// waiting attempts start in the order they came (first come, first
    /// started); the next is bound once this one has started or moved.
    fn chain(&self, state: &mut State) {
        if !self.link.successors() {
            return;
        }
        // One at a time: a second bound to another leader could start first
        // (its leader ending first) and overtake the one before it.
        while state.chained.is_empty()
            && let Some(head) = state.pending.front()
        {
            let want = head.spec.resources;
            let leader = state
                .attempts
                .iter()
                .filter(|(_, a)| a.sent && a.successor.is_none() && !is_final(a.job.state()))
                .filter(|(_, a)| {
                    a.alloc.as_ref().is_some_and(|held| {
                        held.cpu_slots.len() == want.cpus.max(1) as usize
                            && held.gpus.len() == want.gpus as usize
                            && want.memory_bytes <= held.memory_bytes
                    })
                })
                // The one running longest (most likely to end first); by id
                // among equals, so the choice does not depend on hashing.
                .min_by_key(|(id, a)| (a.job.start_time_ms, id.as_str()))
                .map(|(id, a)| (id.clone(), a.alloc.clone().unwrap_or_default()));
            let Some((leader, held)) = leader else { return };
            let head = state.pending.pop_front().expect("has a head");
            let id = head.attempt.to_string();
            match state.attempts.get_mut(&id) {
                Some(a) if !is_final(a.job.state()) => {
                    a.after = Some(leader.clone());
                    a.job.reason.clear();
                }
                _ => continue,
            }
            let started = self.launch(
                state,
                &head.attempt,
                &head.partition,
                &head.spec,
                &held,
                Some(&leader),
            );
            match started {
                Ok(()) => {
                    if let Some(l) = state.attempts.get_mut(&leader) {
                        l.successor = Some(id);
                    }
                    state.chained.push_back(head);
                }
                Err(e) => state.end_unstarted(
                    &self.hub,
                    &id,
                    GateJobState::Failed,
                    &format!("could not start: {e}"),
                ),
            }
        }
    }

    /// Ask the supervisor to start an attempt registered as PENDING on
    /// `alloc` (its own, or what `after` holds, once `after` ends).
    pub(super) fn launch(
        &self,
        state: &mut State,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: &JobSpec,
        alloc: &Alloc,
        after: Option<&String>,
    ) -> Result<()> {
        let a = state
            .attempts
            .get_mut(attempt.as_str())
            .expect("registered before launch");
        let mut start = launch::start_command(
            &self.config,
            &self.host,
            &a.dir,
            attempt,
            partition,
            spec,
            alloc,
        );
        start.after = after.cloned();
        self.link.send(&Command::Start(Box::new(start)))?;
        a.sent = true;
        Ok(())
    }
}
