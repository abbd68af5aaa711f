//! Ids a gate let go of lately: attempts it released, partitions it
//! deleted. gantryd lets an id go only once its end is committed and never
//! uses it again, so a StartJob or CreatePartition for it that arrives later
//! (a try whose answer was lost, two calls that raced) is stale: obeying it
//! would run a job a second time, or provision a machine nobody will ever
//! delete. The harness refuses such calls for every gate. Bounded: the last
//! [`RECENT_IDS_KEPT`] ids of each kind, oldest forgotten first; kept in
//! memory, so a gate restarted in between does not know them.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How many released attempt ids (and, apart, deleted partition ids) a gate remembers.
pub const RECENT_IDS_KEPT: usize = 65_536;

/// Ids let go of lately, in the order they were.
#[derive(Debug, Default)]
pub struct RecentIds {
    ids: Mutex<(HashSet<String>, VecDeque<String>)>,
}

impl RecentIds {
    /// Remember `id`.
    pub fn insert(&self, id: &str) {
        let mut ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        let (set, order) = &mut *ids;
        if set.insert(id.to_string()) {
            order.push_back(id.to_string());
            if order.len() > RECENT_IDS_KEPT
                && let Some(oldest) = order.pop_front()
            {
                set.remove(&oldest);
            }
        }
    }

    /// Whether `id` was let go of lately.
    pub fn contains(&self, id: &str) -> bool {
        let ids = self.ids.lock().unwrap_or_else(|p| p.into_inner());
        ids.0.contains(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: usize) -> String {
        format!("a{n}")
    }

    #[test]
    fn remembers_the_last_ids_and_forgets_the_oldest() {
        let recent = RecentIds::default();
        for n in 0..=RECENT_IDS_KEPT {
            recent.insert(&id(n));
        }
        recent.insert(&id(RECENT_IDS_KEPT)); // a repeat counts once
        assert!(!recent.contains(&id(0)));
        assert!(recent.contains(&id(1)));
        assert!(recent.contains(&id(RECENT_IDS_KEPT)));
        assert!(!recent.contains(&id(RECENT_IDS_KEPT + 1)));
    }
}
