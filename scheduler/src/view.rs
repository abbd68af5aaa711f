//! The scheduler's own picture of the world, fed by gantryd's changes and by
//! its own plans (tentatively, until gantryd confirms or refuses them).
//!
//! Memory per job: one `Job` (48 bytes) and its 8-byte id in a hash map, plus
//! a 16-byte key in the ordered queue while QUEUED: about 80–140 bytes with
//! the maps' slack (a hash map is between 44% and 88% full).

use std::cmp::Reverse;
use std::collections::{BTreeSet, HashMap, VecDeque};

use crate::domain::{
    Batch, FlavorSpec, JobChange, JobId, JobSpec, PartitionUpdate, Resources, SiteSpec,
};
pub(crate) use crate::job::{Job, Place, Reason};
use crate::satisfy::unsatisfiable;
use crate::sites::Sites;
use crate::slots::{Live, SiteKey, Slot, Slots};

/// A queued job's place in line: higher priority first, then lower id.
pub(crate) type QueueKey = (Reverse<i32>, JobId);

/// The scheduler's view of sites, partitions and jobs.
#[derive(Debug, Default)]
pub struct View {
    pub(crate) jobs: HashMap<JobId, Job>,
    pub(crate) queue: BTreeSet<QueueKey>,
    pub(crate) sites: Sites,
    pub(crate) slots: Slots,
    /// Plans to give up on if gantryd does not confirm them: (planned at, job).
    planned: VecDeque<(i64, JobId)>,
    /// The current reason of every unsatisfiable job.
    pub(crate) unsat: HashMap<JobId, Box<str>>,
    /// Jobs whose reason must be sent even if no pass examines them.
    pub(crate) dirty: BTreeSet<JobId>,
    placed: usize,
}

impl View {
    /// Apply one message's changes: sites, then partitions, then jobs.
    pub fn apply(&mut self, batch: Batch) {
        let mut recheck = false;
        for site in batch.sites {
            recheck |= self.sites.update(site);
        }
        for partition in batch.partitions {
            self.apply_partition(partition);
        }
        if recheck {
            self.recheck_all();
        }
        for update in batch.jobs {
            match update.change {
                JobChange::Gone => self.remove_job(update.id),
                JobChange::Queued(spec) => self.queue_job(update.id, spec),
                JobChange::Active {
                    spec,
                    partition,
                    start_ms,
                } => self.activate_job(update.id, spec, &partition, start_ms),
            }
        }
    }

    /// How many jobs the view holds.
    pub fn job_count(&self) -> usize {
        self.jobs.len()
    }

    /// How many jobs wait in the queue (satisfiable, not placed).
    pub fn queued_count(&self) -> usize {
        self.queue.len()
    }

    /// Whether time alone can change a plan (idle partitions, walltimes,
    /// unconfirmed plans), so passes should also run on a timer.
    pub fn needs_timer(&self) -> bool {
        self.slots.len() > 0 || self.placed > 0
    }

    fn apply_partition(&mut self, update: PartitionUpdate) {
        let Some(spec) = update.spec else {
            if let Some(slot) = self.slots.find(&update.id) {
                self.partition_gone(slot);
            }
            return;
        };
        let site = self.sites.intern(&spec.site);
        let slot = self.slots.intern(&update.id);
        let partition = self.slots.get_mut(slot);
        match &mut partition.live {
            Some(live) => {
                if live.phase != spec.phase {
                    live.idle_since = None;
                }
                if *live.flavor != *spec.flavor {
                    live.flavor = spec.flavor.into();
                }
                live.site = site;
                live.phase = spec.phase;
                live.capacity = spec.capacity;
                live.queue = spec.queue;
                live.tentative_since = None;
            }
            None => {
                partition.live = Some(Live {
                    site,
                    flavor: spec.flavor.into(),
                    phase: spec.phase,
                    capacity: spec.capacity,
                    queue: spec.queue,
                    tentative_since: None,
                    deleting_since: None,
                    idle_since: None,
                });
            }
        }
    }

    /// Forget a partition; jobs this scheduler planned on it wait again.
    fn partition_gone(&mut self, slot: Slot) {
        self.slots.get_mut(slot).live = None;
        let planned: Vec<JobId> = self
            .slots
            .get(slot)
            .jobs
            .iter()
            .copied()
            .filter(|id| matches!(self.jobs[id].place(), Place::Planned { .. }))
            .collect();
        if planned.is_empty() {
            self.slots.release_if_unused(slot);
        }
        // Each requeue detaches; the last one frees the slot if nothing else names it.
        for id in planned {
            self.requeue(id);
        }
    }

    /// Take a job out of wherever it is (queue or partition).
    fn unplace(&mut self, id: JobId) {
        let Some(job) = self.jobs.get(&id) else {
            return;
        };
        if job.place() == Place::Queued {
            self.queue.remove(&(Reverse(job.priority()), id));
        }
        if let Some(slot) = job.slot() {
            let need = job.resources();
            self.slots.detach(slot, id, &need);
            self.placed -= 1;
        }
    }

    fn set_spec(&mut self, id: JobId, spec: &JobSpec, place: Place) -> &mut Job {
        let site = spec.site.as_deref().map(|s| self.sites.intern(s));
        let job = self
            .jobs
            .entry(id)
            .or_insert_with(|| Job::new(spec, site, place));
        job.set_spec(spec, site);
        job.set_place(place);
        job
    }

    fn queue_job(&mut self, id: JobId, spec: JobSpec) {
        if self.jobs.contains_key(&id) {
            let site = spec.site.as_deref().map(|name| self.sites.intern(name));
            let job = &self.jobs[&id];
            if job.is_waiting() && job.same_spec(&spec, site) {
                return;
            }
            self.unplace(id);
        }
        self.set_spec(id, &spec, Place::Queued);
        self.check_and_enqueue(id);
    }

    fn activate_job(&mut self, id: JobId, spec: JobSpec, partition: &str, start_ms: i64) {
        self.unplace(id);
        let slot = self.slots.intern(partition);
        let job = self.set_spec(id, &spec, Place::Active { slot, start_ms });
        job.reason = Reason::None;
        let need = job.resources();
        self.slots.attach(slot, id, &need);
        self.placed += 1;
        self.unsat.remove(&id);
        self.dirty.remove(&id);
    }

    fn remove_job(&mut self, id: JobId) {
        self.unplace(id);
        self.jobs.remove(&id);
        self.unsat.remove(&id);
        self.dirty.remove(&id);
    }

    /// Why `job` can never run, if it cannot.
    fn unsatisfiable_reason(&self, job: &Job) -> Option<String> {
        let need = job.resources();
        let walltime = job.walltime_seconds();
        let holds = |spec: &SiteSpec| {
            spec.flavors
                .iter()
                .any(|f: &FlavorSpec| need.fits_in(&f.capacity) && f.allows_walltime(walltime))
        };
        // The common case allocates nothing.
        let fits = match job.site() {
            Some(key) => self.sites.spec(key).is_some_and(holds),
            None => self.sites.described().any(|(_, spec)| holds(spec)),
        };
        if fits {
            return None;
        }
        match job.site() {
            Some(key) => {
                let spec = self.sites.spec(key);
                let sites: Vec<&SiteSpec> = spec.into_iter().collect();
                let name = &*self.sites.get(key).name;
                unsatisfiable(&need, walltime, Some(name), spec.is_some(), &sites)
            }
            None => {
                let sites: Vec<&SiteSpec> = self.sites.described().map(|(_, s)| s).collect();
                unsatisfiable(&need, walltime, None, false, &sites)
            }
        }
    }

    /// Put a waiting job in the queue, or mark it unsatisfiable.
    fn check_and_enqueue(&mut self, id: JobId) {
        let job = &self.jobs[&id];
        match self.unsatisfiable_reason(job) {
            Some(text) => {
                let job = self.jobs.get_mut(&id).expect("job exists");
                job.set_place(Place::Unsatisfiable);
                let known = job.reason == Reason::Unsatisfiable
                    && self.unsat.get(&id).is_some_and(|t| **t == *text);
                if !known {
                    self.unsat.insert(id, text.into());
                    self.dirty.insert(id);
                }
            }
            None => {
                let job = self.jobs.get_mut(&id).expect("job exists");
                job.set_place(Place::Queued);
                self.queue.insert((Reverse(job.priority()), id));
                if self.unsat.remove(&id).is_some() || job.reason == Reason::Unsatisfiable {
                    self.dirty.insert(id);
                }
            }
        }
    }

    /// Check every waiting job again (sites changed what could ever run).
    fn recheck_all(&mut self) {
        let waiting: Vec<JobId> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.is_waiting())
            .map(|(id, _)| *id)
            .collect();
        for id in waiting {
            let job = &self.jobs[&id];
            let reason = self.unsatisfiable_reason(job);
            let unchanged = match (&reason, job.place()) {
                (None, Place::Queued) => true,
                (Some(text), Place::Unsatisfiable) => {
                    self.unsat.get(&id).is_some_and(|t| **t == **text)
                }
                _ => false,
            };
            if !unchanged {
                self.unplace(id);
                self.check_and_enqueue(id);
            }
        }
    }

    /// A planned job goes back to waiting.
    fn requeue(&mut self, id: JobId) {
        self.unplace(id);
        self.jobs
            .get_mut(&id)
            .expect("job exists")
            .set_place(Place::Queued);
        self.check_and_enqueue(id);
    }

    /// Record that a plan starts `id` on `slot` at `now_ms`.
    pub(crate) fn plan_start(&mut self, id: JobId, slot: Slot, now_ms: i64) {
        self.unplace(id);
        let job = self.jobs.get_mut(&id).expect("job exists");
        job.set_place(Place::Planned {
            slot,
            at_ms: now_ms,
        });
        job.reason = Reason::None;
        let need = job.resources();
        self.slots.attach(slot, id, &need);
        self.placed += 1;
        self.planned.push_back((now_ms, id));
        self.dirty.remove(&id);
    }

    /// Record that a plan creates partition `id` of `flavor` on `site`.
    pub(crate) fn plan_create(
        &mut self,
        id: &str,
        site: SiteKey,
        flavor: &FlavorSpec,
        now_ms: i64,
    ) -> Slot {
        let slot = self.slots.intern(id);
        self.slots.get_mut(slot).live = Some(Live {
            site,
            flavor: flavor.name.as_str().into(),
            phase: crate::domain::PartitionPhase::Creating,
            capacity: flavor.capacity,
            queue: Resources::default(),
            tentative_since: Some(now_ms),
            deleting_since: None,
            idle_since: None,
        });
        slot
    }

    /// Give up on plans gantryd did not confirm within `timeout_ms`: planned
    /// jobs wait again, planned partitions are forgotten, deletions may be
    /// asked again.
    pub(crate) fn expire(&mut self, now_ms: i64, timeout_ms: i64) {
        while let Some(&(at_ms, id)) = self.planned.front() {
            if at_ms.saturating_add(timeout_ms) > now_ms {
                break;
            }
            self.planned.pop_front();
            let still = self.jobs.get(&id).is_some_and(
                |j| matches!(j.place(), Place::Planned { at_ms: a, .. } if a == at_ms),
            );
            if still {
                tracing::debug!(job = %id, "plan not confirmed in time; the job waits again");
                self.requeue(id);
            }
        }
        let overdue =
            |since: Option<i64>| since.is_some_and(|s| s.saturating_add(timeout_ms) <= now_ms);
        let mut gone = Vec::new();
        let mut retry = Vec::new();
        for (slot, p) in self.slots.iter() {
            if let Some(live) = &p.live {
                if overdue(live.tentative_since) {
                    gone.push(slot);
                } else if overdue(live.deleting_since) {
                    retry.push(slot);
                }
            }
        }
        for slot in gone {
            tracing::debug!(partition = %self.slots.get(slot).id, "planned partition not confirmed in time");
            self.partition_gone(slot);
        }
        for slot in retry {
            if let Some(live) = &mut self.slots.get_mut(slot).live {
                live.deleting_since = None;
                live.idle_since = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_key_is_small() {
        assert_eq!(std::mem::size_of::<QueueKey>(), 16);
    }
}
