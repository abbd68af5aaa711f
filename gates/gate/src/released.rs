//! The attempts a gate released lately. gantryd releases an attempt only
//! once its end is committed, so a StartJob for it that arrives later (a
//! try whose answer was lost, two dispatches that raced) is stale: starting
//! it would run the job a second time on a gate that has forgotten it.
//! The harness refuses such a StartJob for every gate. Bounded: the last
//! [`RELEASED_KEPT`] ids, oldest forgotten first; kept in memory, so a
//! gate restarted in between does not know them.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use crate::ids::AttemptId;

/// How many released attempt ids a gate remembers.
pub const RELEASED_KEPT: usize = 65_536;

/// Attempt ids released lately, in the order they were released.
#[derive(Debug, Default)]
pub struct Released {
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl Released {
    /// Remember that `attempt` was released.
    pub fn insert(&self, attempt: &AttemptId) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *ids;
        if set.insert(attempt.to_string()) {
            order.push_back(attempt.to_string());
            if order.len() > RELEASED_KEPT
                && let Some(oldest) = order.pop_front()
            {
                set.remove(&oldest);
            }
        }
    }

    /// Whether `attempt` was released lately.
    pub fn contains(&self, attempt: &AttemptId) -> bool {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.0.contains(attempt.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> AttemptId {
        AttemptId::parse("attempt_id", &format!("a{n}")).unwrap()
    }

    #[test]
    fn remembers_the_last_released_ids_and_forgets_the_oldest() {
        let released = Released::default();
        for n in 0..=RELEASED_KEPT {
            released.insert(&id(n));
        }
        released.insert(&id(RELEASED_KEPT)); // a repeat counts once
        assert!(!released.contains(&id(0)));
        assert!(released.contains(&id(1)));
        assert!(released.contains(&id(RELEASED_KEPT)));
        assert!(!released.contains(&id(RELEASED_KEPT + 1)));
    }
}
