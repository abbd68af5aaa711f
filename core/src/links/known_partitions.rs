//! [`KnownPartitions`]: one gate link's partitions as last committed (so
//! starting an attempt needs no read), and the attempts waiting, in the
//! order they were dispatched, for a partition still being created.
//!
//! A waiting attempt gives up its place in the StartJob order (jobs on
//! other partitions go on meanwhile) and gets a new one when its partition
//! is committed READY, before any attempt dispatched after that commit: an
//! attempt scheduled later on the same partition never starts first.

use std::collections::HashMap;
use std::sync::Mutex;

use gantry_proto::v1::PartitionState;

use crate::store::{JobRow, PartitionRow};

/// One link's partitions and the attempts (`J`, a job as stored) waiting on them.
pub struct KnownPartitions<J = JobRow>(Mutex<Inner<J>>);

struct Inner<J> {
    rows: HashMap<String, PartitionRow>,
    waiting: HashMap<String, Vec<J>>,
}

impl<J> Default for KnownPartitions<J> {
    fn default() -> Self {
        Self(Mutex::new(Inner::default()))
    }
}

impl<J> Default for Inner<J> {
    fn default() -> Self {
        Self {
            rows: HashMap::new(),
            waiting: HashMap::new(),
        }
    }
}

impl<J: Clone> KnownPartitions<J> {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner<J>> {
        self.0.lock().expect("not poisoned")
    }

    /// The partition `id` as last committed, if known.
    pub fn get(&self, id: &str) -> Option<PartitionRow> {
        self.inner().rows.get(id).cloned()
    }

    /// Remember `p` (read from the store) unless a commit was seen meanwhile.
    pub fn remember(&self, p: &PartitionRow) {
        self.inner()
            .rows
            .entry(p.id.clone())
            .or_insert_with(|| p.clone());
    }

    /// Take in committed partitions; the attempts that waited on those now
    /// READY, in the order they were dispatched. Attempts waiting on a
    /// partition that failed or is going away are dropped: the store moves
    /// their jobs on.
    pub fn update<'a>(&self, committed: impl IntoIterator<Item = &'a PartitionRow>) -> Vec<J> {
        let mut inner = self.inner();
        let mut ready = Vec::new();
        for p in committed {
            inner.rows.insert(p.id.clone(), p.clone());
            if p.state != PartitionState::Creating
                && let Some(jobs) = inner.waiting.remove(&p.id)
                && p.state == PartitionState::Ready
            {
                ready.extend(jobs);
            }
        }
        ready
    }

    /// True when `partition` is known to be being created: `job` is then
    /// kept, after those already waiting on it, until it is READY.
    pub fn wait_if_creating(&self, partition: &str, job: &J) -> bool {
        let mut inner = self.inner();
        let creating = inner
            .rows
            .get(partition)
            .is_some_and(|p| p.state == PartitionState::Creating);
        if creating {
            inner
                .waiting
                .entry(partition.to_owned())
                .or_default()
                .push(job.clone());
        }
        creating
    }

    /// Forget everything (a reconcile reads it all again from the store).
    pub fn clear(&self) {
        *self.inner() = Inner::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::Resources;

    fn partition(id: &str, state: PartitionState) -> PartitionRow {
        PartitionRow {
            id: id.into(),
            site: "local".into(),
            flavor: "cpu".into(),
            state,
            message: String::new(),
            capacity: Resources::default(),
            queue: Resources::default(),
            created_ms: 0,
        }
    }

    #[test]
    fn waiting_jobs_are_given_back_in_order_once_their_partition_is_ready() {
        let known = KnownPartitions::<u64>::default();
        assert!(!known.wait_if_creating("p", &1), "an unknown partition");
        known.update([&partition("p", PartitionState::Creating)]);
        known.update([&partition("q", PartitionState::Creating)]);
        for job in [1, 2, 3] {
            assert!(known.wait_if_creating("p", &job));
        }
        assert!(known.wait_if_creating("q", &9));
        let still = known.update([&partition("p", PartitionState::Creating)]);
        assert!(still.is_empty());
        let ready = known.update([&partition("p", PartitionState::Ready)]);
        assert_eq!(ready, vec![1, 2, 3]);
        assert!(
            !known.wait_if_creating("p", &4),
            "p is ready: start at once"
        );
        assert_eq!(known.get("p").map(|p| p.state), Some(PartitionState::Ready));
        let failed = known.update([&partition("q", PartitionState::Failed)]);
        assert!(failed.is_empty(), "the store moves them on");
        assert!(
            known
                .update([&partition("q", PartitionState::Ready)])
                .is_empty()
        );
    }

    #[test]
    fn a_partition_read_from_the_store_never_overrides_a_commit() {
        let known = KnownPartitions::<u64>::default();
        known.update([&partition("p", PartitionState::Ready)]);
        known.remember(&partition("p", PartitionState::Creating));
        assert_eq!(known.get("p").map(|p| p.state), Some(PartitionState::Ready));
        known.clear();
        assert!(known.get("p").is_none());
    }
}
