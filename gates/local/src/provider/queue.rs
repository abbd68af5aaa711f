//! The local gate's queue: starting waiting attempts as room frees, and
//! queuing the next ones in the supervisor, which starts each the moment a
//! running attempt of its shape ends.

use gantry_gate::{GateError, Result};
use gantry_proto::v1::GateJobState;

use super::Inner;
use crate::alloc::{Alloc, shape_of};
use crate::launch;
use crate::protocol::{ACCOUNTS_PROTOCOL, Command};
use crate::state::{Pending, State};

/// How many attempts wait in the supervisor per running one. The gate tops
/// its queue up only after it hears of a takeover (a round trip of a
/// millisecond or more on a busy host) while a short job may last half of
/// that: with one per running attempt, 44 % of the ends of 20,000 `true` jobs
/// found the supervisor's queue empty and waited for the gate; with four, 15 %.
const QUEUED_PER_RUNNING: usize = 4;

impl Inner {
    /// Start waiting attempts, oldest first, while the head fits; then
    /// queue the next ones in the supervisor.
    pub(super) fn drain_locked(&self, state: &mut State) {
        while self.link.is_up() {
            // Those queued in the supervisor came first: one that fits in
            // what is free now starts now instead (the supervisor is told so).
            if let Some(want) = state.chained.front().map(|p| p.spec.resources) {
                let Ok(alloc) = state.pool.allocate(want) else {
                    return self.chain(state);
                };
                let next = state.chained.pop_front().expect("has a head");
                let id = next.attempt.to_string();
                // Held as `moved` until the supervisor says where it started:
                // a running attempt of its shape may end first and hand it its
                // resources.
                match state.attempts.get_mut(&id) {
                    Some(a) if !a.job.state().is_final() => a.moved = Some(alloc.clone()),
                    _ => {
                        state.pool.release(&alloc);
                        continue;
                    }
                }
                let moved = self.launch(state, &next, &alloc, false);
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
                Some(a) if !a.job.state().is_final() => {
                    a.alloc = Some(alloc.clone());
                    a.job.reason.clear();
                }
                _ => {
                    state.pool.release(&alloc);
                    continue;
                }
            }
            if let Err(e) = self.launch(state, &head, &alloc, false) {
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

    /// Queue the waiting attempts at the head of the gate's queue in the
    /// supervisor, in order: it starts each the moment a running attempt of
    /// its shape (CPUs, GPUs, memory) ends, on what that one held, without a
    /// round trip through the gate. Its queue keeps their order (the head
    /// blocks those behind it), so waiting attempts start first come, first
    /// started. Up to [`QUEUED_PER_RUNNING`] per attempt that runs or is
    /// being moved to a free slot (each end refills one slot), and only
    /// while the head's shape runs: another waits here until room frees.
    fn chain(&self, state: &mut State) {
        if !self.link.queues() {
            return;
        }
        let running: Vec<String> = state
            .attempts
            .values()
            .filter(|a| a.sent && !a.job.state().is_final())
            .filter_map(|a| a.alloc.as_ref().or(a.moved.as_ref()).map(Alloc::shape))
            .collect();
        while state.chained.len() < running.len() * QUEUED_PER_RUNNING
            && let Some(head) = state.pending.front()
        {
            if !running.contains(&shape_of(head.spec.resources)) {
                return;
            }
            let head = state.pending.pop_front().expect("has a head");
            let id = head.attempt.to_string();
            match state.attempts.get_mut(&id) {
                Some(a) if !a.job.state().is_final() => a.job.reason.clear(),
                _ => continue,
            }
            let queued = self.launch(state, &head, &Alloc::default(), true);
            match queued {
                Ok(()) => state.chained.push_back(head),
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
    /// `alloc`, or, `queued`, to queue it (see [`Self::chain`]).
    pub(super) fn launch(
        &self,
        state: &mut State,
        job: &Pending,
        alloc: &Alloc,
        queued: bool,
    ) -> Result<()> {
        let Pending {
            attempt,
            partition,
            spec,
            account,
        } = job;
        if account.is_some() && self.link.protocol() < ACCOUNTS_PROTOCOL {
            return Err(GateError::Unavailable(
                "an older gantry-supervisor runs for this work directory (it outlived an \
                 upgrade) and cannot run jobs as their owners; it exits once its jobs end"
                    .into(),
            ));
        }
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
            account.as_ref(),
        );
        if queued {
            start.queued = true;
            start.shape = shape_of(spec.resources);
        }
        self.link.send(&Command::Start(Box::new(start)))?;
        a.sent = true;
        Ok(())
    }
}
