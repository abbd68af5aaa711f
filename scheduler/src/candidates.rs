//! Where jobs can go during one pass: the placeable partitions with what is
//! free on them (and the reservation they hold, if any), and the flavors of
//! which one more partition may be created. Built once per pass from the
//! view and kept up to date as the pass places jobs.

use std::sync::Arc;

use crate::domain::{FlavorSpec, PartitionPhase, Resources, allows_walltime};
use crate::slots::{SiteKey, Slot};
use crate::view::{Job, View};

/// Resources held for a reserved job on a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Hold {
    /// When the reserved job is expected to start (ms).
    pub until_ms: i64,
    /// What stays free at that time once the reserved job took its share.
    pub spare: Resources,
}

/// A partition jobs may be placed on now.
#[derive(Debug, Clone)]
pub(crate) struct Part {
    pub slot: Slot,
    pub site: SiteKey,
    pub capacity: Resources,
    /// What is free to start jobs now: capacity less what is placed.
    pub free: Resources,
    /// What its gate's queue still takes: capacity and queue less what is placed.
    pub queue_room: Resources,
    /// What its gate queues beyond its capacity.
    pub queue: Resources,
    /// The shapes of the jobs placed on it: a job may wait in the gate's
    /// queue only to take over the resources of one of them.
    pub shapes: Vec<Resources>,
    pub ready: bool,
    /// Its flavor.
    pub flavor: Arc<str>,
    /// Its flavor's walltime limit (0: none).
    pub max_walltime_seconds: u64,
    pub hold: Option<Hold>,
}

/// A flavor of which one more partition may be created.
#[derive(Debug, Clone)]
pub(crate) struct Creatable {
    pub site: SiteKey,
    pub flavor: FlavorSpec,
    /// Partitions of it that exist or are planned.
    pub count: u32,
}

/// How well a job fits a partition; lower is better: starting now before
/// waiting in its gate's queue, ready before creating, then the tightest fit.
type FitScore = (bool, bool, u32, u32, u64);

/// Where a job may go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Choice {
    /// On `parts[i]`.
    Existing(usize),
    /// On a new partition of `creatable[i]`.
    New(usize),
    /// Nowhere now; `fits_but_held` when only a reservation keeps it out.
    Blocked { fits_but_held: bool },
}

/// The places of one pass.
#[derive(Debug, Default)]
pub(crate) struct Candidates {
    pub parts: Vec<Part>,
    pub creatable: Vec<Creatable>,
    /// An upper bound of what is free on any one partition.
    max_free: Resources,
    /// The sites whose flavors are queues of one cluster (not elastic, more
    /// than one flavor), with their flavors: there a job may use only the
    /// one flavor a user of that cluster would land in ([`preferred`]).
    queue_sites: Vec<(SiteKey, Vec<FlavorSpec>)>,
}

/// The flavor of `flavors` (the queues of one cluster) a job needing
/// `need` for `walltime_seconds` lands in, as a Slurm user's would: the
/// default when it fits, else the one of the shortest walltime limit that
/// allows it, then the smallest; `None` when none fits.
pub(crate) fn preferred<'a>(
    flavors: &'a [FlavorSpec],
    need: &Resources,
    walltime_seconds: u64,
) -> Option<&'a str> {
    let fitting = flavors
        .iter()
        .filter(|f| need.fits_in(&f.capacity) && f.allows_walltime(walltime_seconds));
    fitting
        .min_by_key(|f| {
            let limit = match f.max_walltime_seconds {
                0 => u64::MAX,
                s => s,
            };
            let c = f.capacity;
            (
                !f.is_default,
                limit,
                c.cpus,
                c.memory_bytes,
                c.gpus,
                f.name.as_str(),
            )
        })
        .map(|f| f.name.as_str())
}

fn flavor_walltime(view: &View, site: SiteKey, flavor: &Arc<str>) -> u64 {
    view.sites
        .spec(site)
        .and_then(|s| s.flavor(flavor))
        .map_or(0, |f| f.max_walltime_seconds)
}

impl Candidates {
    /// The places the view offers now.
    pub fn build(view: &View) -> Self {
        let mut out = Candidates::default();
        let mut counts: Vec<(SiteKey, Arc<str>, u32)> = Vec::new();
        for (slot, p) in view.slots.iter() {
            let Some(live) = &p.live else { continue };
            match counts
                .iter_mut()
                .find(|(s, f, _)| *s == live.site && *f == live.flavor)
            {
                Some((_, _, n)) => *n += 1,
                None => counts.push((live.site, live.flavor.clone(), 1)),
            }
            let healthy = view.sites.spec(live.site).is_some_and(|s| s.healthy);
            if !healthy || live.deleting_since.is_some() {
                continue;
            }
            let queue_room = p.free();
            out.max_free = out.max_free.max(&queue_room);
            // Read only where its gate queues: elsewhere nothing waits there.
            let mut shapes: Vec<Resources> = Vec::new();
            if live.queue != Resources::default() {
                for id in &p.jobs {
                    let need = view.jobs[id].resources();
                    if !shapes.contains(&need) {
                        shapes.push(need);
                    }
                }
            }
            out.parts.push(Part {
                slot,
                site: live.site,
                capacity: live.capacity,
                free: live.capacity.saturating_sub(&p.used),
                queue_room,
                queue: live.queue,
                shapes,
                ready: live.phase == PartitionPhase::Ready,
                flavor: live.flavor.clone(),
                max_walltime_seconds: flavor_walltime(view, live.site, &live.flavor),
                hold: None,
            });
        }
        for (site, spec) in view.sites.described() {
            if !spec.healthy {
                continue;
            }
            if !spec.elastic && spec.flavors.len() > 1 {
                out.queue_sites.push((site, spec.flavors.clone()));
            }
            for flavor in spec.flavors.iter().filter(|f| f.available) {
                let count = counts
                    .iter()
                    .find(|(s, f, _)| *s == site && **f == *flavor.name)
                    .map_or(0, |c| c.2);
                if count < flavor.max_partitions {
                    out.creatable.push(Creatable {
                        site,
                        flavor: flavor.clone(),
                        count,
                    });
                }
            }
        }
        out
    }

    fn eligible(job: &Job, site: SiteKey, max_walltime_seconds: u64) -> bool {
        job.site().is_none_or(|s| s == site)
            && allows_walltime(max_walltime_seconds, job.walltime_seconds())
    }

    /// The flavor `job` must use on each site whose flavors are one
    /// cluster's queues (`None`: none there fits it).
    fn preferences<'a>(&'a self, job: &Job) -> Vec<(SiteKey, Option<&'a str>)> {
        let need = job.resources();
        self.queue_sites
            .iter()
            .map(|(site, flavors)| (*site, preferred(flavors, &need, job.walltime_seconds())))
            .collect()
    }

    /// Whether `flavor` of `site` is one `job` may use, by `preferences`.
    fn allowed(preferences: &[(SiteKey, Option<&str>)], site: SiteKey, flavor: &str) -> bool {
        preferences
            .iter()
            .find(|(s, _)| *s == site)
            .is_none_or(|(_, p)| *p == Some(flavor))
    }

    /// Whether `job` may run on `part` (site, flavor, walltime, shape), free or not.
    pub fn could_hold(&self, job: &Job, part: &Part) -> bool {
        Self::eligible(job, part.site, part.max_walltime_seconds)
            && job.resources().fits_in(&part.capacity)
            && Self::allowed(&self.preferences(job), part.site, &part.flavor)
    }

    /// A site whose gate's queue is full where `job` would otherwise wait:
    /// a partition that could hold it, whose gate queues jobs its size and
    /// already runs one of its shape.
    pub fn queue_full_site(&self, job: &Job) -> Option<SiteKey> {
        let need = job.resources();
        let preferences = self.preferences(job);
        self.parts
            .iter()
            .find(|part| {
                part.shapes.iter().any(|s| same_shape(&need, s))
                    && need.consumed().fits_in(&part.queue)
                    && !need.fits_in(&part.queue_room)
                    && need.fits_in(&part.capacity)
                    && Self::eligible(job, part.site, part.max_walltime_seconds)
                    && Self::allowed(&preferences, part.site, &part.flavor)
            })
            .map(|part| part.site)
    }

    /// Where `job` should go now (at `now_ms`), respecting reservations:
    /// the best-fitting partition where it starts now, else (when
    /// `may_queue`: no job before it in this pass is left waiting) one whose
    /// gate queues it to take over the resources of a job of its shape,
    /// else the cheapest flavor to create.
    pub fn choose(&self, job: &Job, now_ms: i64, may_queue: bool) -> Choice {
        let need = &job.resources();
        if self.creatable.is_empty() && !need.fits_in(&self.max_free) {
            return Choice::Blocked {
                fits_but_held: false,
            };
        }
        let mut best: Option<(usize, FitScore)> = None;
        let mut fits_but_held = false;
        let preferences = self.preferences(job);
        for (i, part) in self.parts.iter().enumerate() {
            if !Self::eligible(job, part.site, part.max_walltime_seconds)
                || !Self::allowed(&preferences, part.site, &part.flavor)
            {
                continue;
            }
            let now = need.fits_in(&part.free);
            let queued = !now
                && may_queue
                && need.fits_in(&part.queue_room)
                && part.shapes.iter().any(|s| same_shape(need, s));
            if !now && !queued {
                continue;
            }
            if let Some(hold) = &part.hold
                && !ends_before(job, now_ms, hold.until_ms)
                && !need.fits_in(&hold.spare)
            {
                fits_but_held = true;
                continue;
            }
            let left = part.free.saturating_sub(need);
            let score = (queued, !part.ready, left.gpus, left.cpus, left.memory_bytes);
            if best.as_ref().is_none_or(|(_, b)| score < *b) {
                best = Some((i, score));
            }
        }
        if let Some((i, _)) = best {
            return Choice::Existing(i);
        }
        let cheapest = self
            .creatable
            .iter()
            .enumerate()
            .filter(|(_, c)| {
                c.count < c.flavor.max_partitions
                    && need.fits_in(&c.flavor.capacity)
                    && Self::eligible(job, c.site, c.flavor.max_walltime_seconds)
                    && Self::allowed(&preferences, c.site, &c.flavor.name)
            })
            .min_by(|(_, a), (_, b)| {
                let key = |c: &Creatable| {
                    (
                        c.flavor.capacity.gpus,
                        c.flavor.capacity.cpus,
                        c.flavor.capacity.memory_bytes,
                    )
                };
                a.flavor
                    .price_per_hour
                    .total_cmp(&b.flavor.price_per_hour)
                    .then(key(a).cmp(&key(b)))
                    .then(a.flavor.name.cmp(&b.flavor.name))
            });
        match cheapest {
            Some((i, _)) => Choice::New(i),
            None => Choice::Blocked { fits_but_held },
        }
    }

    /// Count `job` as started now on `parts[i]`.
    pub fn take(&mut self, i: usize, job: &Job, now_ms: i64) {
        let part = &mut self.parts[i];
        part.free = part.free.saturating_sub(&job.resources().consumed());
        part.queue_room = part.queue_room.saturating_sub(&job.resources().consumed());
        if !part.shapes.contains(&job.resources()) {
            part.shapes.push(job.resources());
        }
        if let Some(hold) = &mut part.hold
            && !ends_before(job, now_ms, hold.until_ms)
        {
            hold.spare = hold.spare.saturating_sub(&job.resources().consumed());
        }
    }

    /// Count a new partition of `creatable[i]` in `slot`, with `job` on it.
    pub fn create(&mut self, i: usize, slot: Slot, job: &Job) {
        let c = &mut self.creatable[i];
        c.count += 1;
        let capacity = c.flavor.capacity;
        let free = capacity.saturating_sub(&job.resources().consumed());
        self.max_free = self.max_free.max(&free);
        self.parts.push(Part {
            slot,
            site: c.site,
            capacity,
            free,
            queue_room: free,
            // Not known until the gate says (elastic gates queue nothing).
            queue: Resources::default(),
            shapes: vec![job.resources()],
            ready: false,
            flavor: c.flavor.name.as_str().into(),
            max_walltime_seconds: c.flavor.max_walltime_seconds,
            hold: None,
        });
    }
}

/// Whether a job needing `need` can take over what `placed` holds, as a
/// gate hands a finished job's resources to a waiting one: the same CPUs,
/// GPUs and nodes, no more memory.
fn same_shape(need: &Resources, placed: &Resources) -> bool {
    need.cpus == placed.cpus
        && need.gpus == placed.gpus
        && need.nodes == placed.nodes
        && need.memory_bytes <= placed.memory_bytes
}

/// Whether `job`, started at `now_ms`, ends by its walltime by `until_ms`.
pub(crate) fn ends_before(job: &Job, now_ms: i64, until_ms: i64) -> bool {
    job.walltime_seconds() > 0
        && now_ms.saturating_add((job.walltime_seconds() as i64).saturating_mul(1000)) <= until_ms
}
