//! The supervisor's queue (protocol 4, [`Start::queued`]): attempts the gate
//! has no room for yet wait here in the order they came, and the head takes
//! over the resources of the next running attempt of its shape that ends —
//! a freed slot is refilled at once, without a round trip through the gate,
//! and no queued attempt overtakes another.

use std::collections::BTreeMap;

use super::{Supervisor, ended_now};
use crate::protocol::{Event, Start};

/// What a running attempt holds, as its [`Start`] named it.
#[derive(Debug, Clone)]
pub struct Slot {
    shape: String,
    cpus: Vec<usize>,
    env: BTreeMap<String, String>,
    held: serde_json::Value,
}

impl Slot {
    /// The resources `start` runs on.
    pub fn of(start: &Start) -> Self {
        Self {
            shape: start.shape.clone(),
            cpus: start.cpus.clone(),
            env: start.slot_env.clone(),
            held: start.held.clone(),
        }
    }

    /// `next`, to run on this slot instead of what it was sent with.
    fn hand_to(self, mut next: Start) -> Start {
        next.cpus = self.cpus;
        next.env.extend(self.env.clone());
        next.slot_env = self.env;
        next.held = self.held;
        next.queued = false;
        next
    }
}

impl Supervisor {
    /// Take in a Start: queue it, start it now, or (a repeat) say again where
    /// it stands.
    pub(super) fn start(&mut self, start: Start) {
        if let Some(at) = self.queued_at(&start.attempt) {
            if start.queued {
                return; // a repeat of one that waits
            }
            // The gate found it a free slot: it starts there.
            self.queue.remove(at);
        } else if start.queued && !self.shutting_down && !self.jobs.contains_key(&start.attempt) {
            self.queue.push_back(start);
            return;
        }
        self.start_now(start, None);
    }

    fn queued_at(&self, attempt: &str) -> Option<usize> {
        self.queue.iter().position(|s| s.attempt == attempt)
    }

    /// The head of the queue, ready to start on `slot` (just freed), when it
    /// asks that shape; it then leaves the queue.
    pub(super) fn take_over(&mut self, slot: Slot) -> Option<Start> {
        let fits = |next: &Start| !slot.shape.is_empty() && next.shape == slot.shape;
        if self.shutting_down || !self.queue.front().is_some_and(fits) {
            return None;
        }
        let next = self.queue.pop_front()?;
        Some(slot.hand_to(next))
    }

    /// End an attempt that waited in the queue without starting.
    pub(super) fn drop_queued(&mut self, attempt: &str, reason: &str) {
        if let Some(at) = self.queued_at(attempt) {
            self.queue.remove(at);
            self.send(&Event::Exited {
                attempt: attempt.to_string(),
                exit: ended_now(reason),
                passed_to: None,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(attempt: &str, shape: &str, cpus: Vec<usize>) -> Start {
        Start {
            attempt: attempt.into(),
            argv: vec!["true".into()],
            env: [("CUDA_VISIBLE_DEVICES".to_string(), String::new())].into(),
            env_complete: true,
            stdin: None,
            chdir: None,
            script: None,
            cpus,
            walltime_seconds: 0,
            grace_seconds: 0,
            warning: None,
            meta: serde_json::Value::Null,
            queued: true,
            shape: shape.into(),
            slot_env: BTreeMap::new(),
            held: serde_json::Value::Null,
            account: None,
        }
    }

    #[test]
    fn a_queued_start_takes_the_cpus_gpus_and_record_of_the_slot_it_is_handed() {
        let mut leader = start("L", "1c", vec![3]);
        leader.slot_env = [("CUDA_VISIBLE_DEVICES".to_string(), "1".to_string())].into();
        leader.held = serde_json::json!({"cpu_slots": [1]});
        let next = Slot::of(&leader).hand_to(start("S", "1c", vec![]));
        assert_eq!(next.cpus, [3]);
        assert_eq!(next.env["CUDA_VISIBLE_DEVICES"], "1");
        assert_eq!(next.slot_env, leader.slot_env);
        assert_eq!(next.held, leader.held);
        assert!(!next.queued);
    }
}
