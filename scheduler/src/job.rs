//! A job as the view keeps it, packed into 48 bytes (a million queued jobs
//! must fit in well under 200 MB with the maps around them).

use crate::domain::{JobSpec, Resources};
use crate::slots::{SiteKey, Slot};

/// Where a job is in the scheduler's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    /// In the queue, waiting to be placed.
    Queued,
    /// Queued, but no flavor could ever hold it; not in the queue.
    Unsatisfiable,
    /// Placed by this scheduler in a plan gantryd has not confirmed yet.
    Planned { slot: Slot, at_ms: i64 },
    /// Placed, as gantryd says.
    Active { slot: Slot, start_ms: i64 },
}

/// The last pending reason sent for a job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// None sent (or the job was placed since).
    None,
    /// "waiting for resources".
    Waiting,
    /// "priority": it would fit, but a higher job holds a reservation.
    Priority,
    /// Its site is unhealthy.
    SiteUnhealthy,
    /// The queue of a site's gate, where it would wait, is full.
    QueueFull,
    /// The text in `View::unsat`.
    Unsatisfiable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Queued,
    Unsatisfiable,
    Planned,
    Active,
}

const NONE: u32 = u32::MAX;

/// A job, packed: use the accessors.
#[derive(Debug, Clone)]
pub(crate) struct Job {
    memory_bytes: u64,
    since_ms: i64,
    cpus: u32,
    gpus: u32,
    nodes: u32,
    walltime_seconds: u32,
    priority: i32,
    site: u32,
    slot: u32,
    tag: Tag,
    /// The last reason sent for it.
    pub reason: Reason,
}

impl Job {
    /// A job with `spec` on `site` (interned), at `place`.
    pub fn new(spec: &JobSpec, site: Option<SiteKey>, place: Place) -> Self {
        let mut job = Job {
            memory_bytes: 0,
            since_ms: 0,
            cpus: 0,
            gpus: 0,
            nodes: 0,
            walltime_seconds: 0,
            priority: 0,
            site: NONE,
            slot: NONE,
            tag: Tag::Queued,
            reason: Reason::None,
        };
        job.set_spec(spec, site);
        job.set_place(place);
        job
    }

    /// Take what `spec` says (walltimes beyond 136 years count as that).
    pub fn set_spec(&mut self, spec: &JobSpec, site: Option<SiteKey>) {
        let r = spec.resources;
        self.memory_bytes = r.memory_bytes;
        self.cpus = r.cpus;
        self.gpus = r.gpus;
        self.nodes = r.nodes;
        self.walltime_seconds = u32::try_from(spec.walltime_seconds).unwrap_or(u32::MAX);
        self.priority = spec.priority;
        self.site = site.unwrap_or(NONE);
    }

    /// Whether `spec` on `site` is what the job already says.
    pub fn same_spec(&self, spec: &JobSpec, site: Option<SiteKey>) -> bool {
        let mut other = self.clone();
        other.set_spec(spec, site);
        (
            self.resources(),
            self.walltime_seconds,
            self.priority,
            self.site,
        ) == (
            other.resources(),
            other.walltime_seconds,
            other.priority,
            other.site,
        )
    }

    /// What it needs.
    pub fn resources(&self) -> Resources {
        Resources {
            cpus: self.cpus,
            memory_bytes: self.memory_bytes,
            gpus: self.gpus,
            nodes: self.nodes,
        }
    }

    /// Its walltime in seconds; 0 when unlimited.
    pub fn walltime_seconds(&self) -> u64 {
        u64::from(self.walltime_seconds)
    }

    /// Higher first.
    pub fn priority(&self) -> i32 {
        self.priority
    }

    /// The site it must run on, if any.
    pub fn site(&self) -> Option<SiteKey> {
        (self.site != NONE).then_some(self.site)
    }

    /// Where it is.
    pub fn place(&self) -> Place {
        match self.tag {
            Tag::Queued => Place::Queued,
            Tag::Unsatisfiable => Place::Unsatisfiable,
            Tag::Planned => Place::Planned {
                slot: self.slot,
                at_ms: self.since_ms,
            },
            Tag::Active => Place::Active {
                slot: self.slot,
                start_ms: self.since_ms,
            },
        }
    }

    /// Move it.
    pub fn set_place(&mut self, place: Place) {
        (self.tag, self.slot, self.since_ms) = match place {
            Place::Queued => (Tag::Queued, NONE, 0),
            Place::Unsatisfiable => (Tag::Unsatisfiable, NONE, 0),
            Place::Planned { slot, at_ms } => (Tag::Planned, slot, at_ms),
            Place::Active { slot, start_ms } => (Tag::Active, slot, start_ms),
        };
    }

    /// Whether it waits (queued or unsatisfiable).
    pub fn is_waiting(&self) -> bool {
        matches!(self.tag, Tag::Queued | Tag::Unsatisfiable)
    }

    /// The partition it is planned or active on.
    pub fn slot(&self) -> Option<Slot> {
        matches!(self.tag, Tag::Planned | Tag::Active).then_some(self.slot)
    }

    /// When it ends by its walltime (ms), if it is placed and has one.
    pub fn end_ms(&self) -> Option<i64> {
        (self.slot().is_some() && self.walltime_seconds > 0).then(|| {
            self.since_ms
                .saturating_add(i64::from(self.walltime_seconds).saturating_mul(1000))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(walltime_seconds: u64) -> JobSpec {
        JobSpec {
            priority: -3,
            resources: Resources {
                cpus: 2,
                memory_bytes: 5 << 30,
                gpus: 1,
                nodes: 1,
            },
            walltime_seconds,
            site: None,
        }
    }

    #[test]
    fn packs_into_48_bytes() {
        assert_eq!(std::mem::size_of::<Job>(), 48);
    }

    #[test]
    fn round_trips_what_it_stores() {
        let mut job = Job::new(&spec(60), Some(3), Place::Queued);
        assert_eq!(job.resources(), spec(60).resources);
        assert_eq!(
            (job.priority(), job.site(), job.walltime_seconds()),
            (-3, Some(3), 60)
        );
        assert_eq!(job.end_ms(), None);
        job.set_place(Place::Active {
            slot: 7,
            start_ms: 1_000,
        });
        assert_eq!(job.slot(), Some(7));
        assert_eq!(job.end_ms(), Some(61_000));
        assert!(!job.is_waiting());
        assert!(job.same_spec(&spec(60), Some(3)));
        assert!(!job.same_spec(&spec(60), None));
        let forever = Job::new(&spec(u64::MAX), None, Place::Unsatisfiable);
        assert_eq!(forever.walltime_seconds(), u64::from(u32::MAX));
        assert_eq!(forever.site(), None);
    }
}
