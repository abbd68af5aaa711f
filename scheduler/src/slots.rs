//! The partition table: partitions by a small index (a slot) so that jobs
//! refer to their partition with four bytes, and the load each partition
//! carries (its ACTIVE and planned jobs).
//!
//! A slot exists while its partition is live or while a job still names it
//! (a job may arrive ACTIVE before its partition, or outlive it until
//! gantryd says where it went).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::domain::{JobId, PartitionPhase, Resources};

/// Index of a partition in the table.
pub(crate) type Slot = u32;

/// Index of a site in the site table.
pub(crate) type SiteKey = u32;

/// A partition that exists or is being created, as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Live {
    /// Its site.
    pub site: SiteKey,
    /// Its flavor's name.
    pub flavor: Arc<str>,
    /// Creating or ready.
    pub phase: PartitionPhase,
    /// What it offers in all.
    pub capacity: Resources,
    /// What its gate queues beyond `capacity`: jobs may be placed while
    /// their total stays within capacity + queue.
    pub queue: Resources,
    /// Set while it exists only because this scheduler planned it (ms).
    pub tentative_since: Option<i64>,
    /// Set once its deletion was asked (ms); nothing is placed on it then.
    pub deleting_since: Option<i64>,
    /// Since when it has carried no job (ms), as seen by passes.
    pub idle_since: Option<i64>,
}

/// One slot of the table.
#[derive(Debug, Clone)]
pub(crate) struct Partition {
    /// gantryd's id (or the one this scheduler chose).
    pub id: Arc<str>,
    /// `None` when the partition is gone or not yet known.
    pub live: Option<Live>,
    /// Jobs ACTIVE or planned on it.
    pub jobs: HashSet<JobId>,
    /// What those jobs consume.
    pub used: Resources,
}

impl Partition {
    /// What is left for more jobs: capacity and queue, less what is placed.
    pub fn free(&self) -> Resources {
        self.live
            .as_ref()
            .map(|l| {
                l.capacity
                    .saturating_add(&l.queue)
                    .saturating_sub(&self.used)
            })
            .unwrap_or_default()
    }
}

/// The table of partitions.
#[derive(Debug, Default)]
pub(crate) struct Slots {
    entries: Vec<Option<Partition>>,
    unused: Vec<Slot>,
    by_id: HashMap<Arc<str>, Slot>,
}

impl Slots {
    /// The slot of partition `id`, creating an empty one if needed.
    pub fn intern(&mut self, id: &str) -> Slot {
        if let Some(&slot) = self.by_id.get(id) {
            return slot;
        }
        let id: Arc<str> = id.into();
        let entry = Partition {
            id: id.clone(),
            live: None,
            jobs: HashSet::new(),
            used: Resources::default(),
        };
        let slot = match self.unused.pop() {
            Some(slot) => {
                self.entries[slot as usize] = Some(entry);
                slot
            }
            None => {
                self.entries.push(Some(entry));
                Slot::try_from(self.entries.len() - 1).expect("fewer than 4 billion partitions")
            }
        };
        self.by_id.insert(id, slot);
        slot
    }

    /// The slot of partition `id`, if any.
    pub fn find(&self, id: &str) -> Option<Slot> {
        self.by_id.get(id).copied()
    }

    /// The partition in `slot`.
    pub fn get(&self, slot: Slot) -> &Partition {
        self.entries[slot as usize].as_ref().expect("slot in use")
    }

    /// The partition in `slot`, to change.
    pub fn get_mut(&mut self, slot: Slot) -> &mut Partition {
        self.entries[slot as usize].as_mut().expect("slot in use")
    }

    /// Every slot in use.
    pub fn iter(&self) -> impl Iterator<Item = (Slot, &Partition)> {
        self.entries
            .iter()
            .enumerate()
            .filter_map(|(i, e)| e.as_ref().map(|p| (i as Slot, p)))
    }

    /// Count `job` (consuming `need`) as placed on `slot`.
    pub fn attach(&mut self, slot: Slot, job: JobId, need: &Resources) {
        let p = self.get_mut(slot);
        if p.jobs.insert(job) {
            p.used = p.used.saturating_add(&need.consumed());
        }
    }

    /// Stop counting `job` on `slot`; frees the slot when nothing names it.
    pub fn detach(&mut self, slot: Slot, job: JobId, need: &Resources) {
        let p = self.get_mut(slot);
        if p.jobs.remove(&job) {
            p.used = p.used.saturating_sub(&need.consumed());
        }
        self.release_if_unused(slot);
    }

    /// Free `slot` if its partition is gone and no job names it.
    pub fn release_if_unused(&mut self, slot: Slot) {
        let p = self.get(slot);
        if p.live.is_none() && p.jobs.is_empty() {
            let id = p.id.clone();
            self.by_id.remove(&id);
            self.entries[slot as usize] = None;
            self.unused.push(slot);
        }
    }

    /// How many slots are in use.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_are_reused_once_unused() {
        let mut slots = Slots::default();
        let a = slots.intern("a");
        assert_eq!(slots.intern("a"), a);
        let need = Resources {
            cpus: 2,
            memory_bytes: 10,
            gpus: 0,
            nodes: 1,
        };
        slots.attach(a, JobId(1), &need);
        slots.attach(a, JobId(1), &need);
        assert_eq!(slots.get(a).used.cpus, 2, "attaching twice counts once");
        assert_eq!(slots.get(a).used.nodes, 0, "nodes are not consumed");
        slots.detach(a, JobId(1), &need);
        assert_eq!(slots.find("a"), None, "a slot nothing names is freed");
        let b = slots.intern("b");
        assert_eq!(b, a);
        assert_eq!(slots.len(), 1);
    }
}
