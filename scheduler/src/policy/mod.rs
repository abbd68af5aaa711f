//! One scheduling pass of the built-in policy: priority then FIFO, EASY
//! backfill per site, best fit on existing partitions, else the cheapest
//! flavor to create; pending reasons when they change; idle deletion.
//!
//! A pass examines the queue in order and stops `backfill_depth` jobs after
//! the first one that cannot start, so its cost does not grow with the queue.
//! Jobs go into a gate's own queue only before that first one (see
//! `Candidates::choose`): what a gate starts first come, first served is
//! then the scheduler's order, and backfill never lands behind a waiting job.

use std::collections::HashSet;
use std::ops::Bound;

use crate::candidates::{Candidates, Choice};
use crate::domain::{CreatePartition, JobId, PartitionPhase, Pending, Plan, StartJob};
use crate::reservation::reserve;
use crate::slots::SiteKey;
use crate::view::{Place, QueueKey, Reason, View};

/// The reason sent for a job that could run but waits for room.
pub const WAITING_FOR_RESOURCES: &str = "waiting for resources";
/// The reason sent for a job kept out by a higher job's reservation.
pub const PRIORITY: &str = "priority";

/// Tunables of the built-in policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyConfig {
    /// How many queued jobs a pass examines past the first one that cannot
    /// start (like Slurm's `bf_max_job_test`).
    pub backfill_depth: usize,
    /// At most this many decisions and reasons per plan; the rest follow in
    /// the next plan at once.
    pub max_plan_items: usize,
    /// A plan gantryd did not confirm within this many ms is given up.
    pub plan_timeout_ms: i64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            backfill_depth: 1000,
            max_plan_items: 10_000,
            plan_timeout_ms: 30_000,
        }
    }
}

/// What one pass produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassOutput {
    /// The plan (its `based_on_seq` is left 0 for the caller to fill).
    pub plan: Plan,
    /// True when the plan hit `max_plan_items` and another pass should run now.
    pub more: bool,
}

/// Run one pass at `now_ms` over `view`, applying the plan to it tentatively.
pub fn pass(view: &mut View, now_ms: i64, config: &PolicyConfig) -> PassOutput {
    view.expire(now_ms, config.plan_timeout_ms);
    // A create and its start must fit in one plan.
    let cap = config.max_plan_items.max(2);
    let mut out = PassOutput::default();
    let mut cands = Candidates::build(view);
    let mut held = HashSet::new();
    let mut examined_after_block: Option<usize> = None;
    let mut cursor: Option<QueueKey> = None;
    'queue: loop {
        let next: Vec<QueueKey> = match cursor {
            None => view.queue.iter().take(256).copied().collect(),
            Some(c) => view
                .queue
                .range((Bound::Excluded(c), Bound::Unbounded))
                .take(256)
                .copied()
                .collect(),
        };
        if next.is_empty() {
            break;
        }
        for key in next {
            cursor = Some(key);
            if out.plan.len() + 2 > cap {
                out.more = true;
                break 'queue;
            }
            if let Some(n) = &mut examined_after_block {
                if *n >= config.backfill_depth {
                    break 'queue;
                }
                *n += 1;
            }
            let id = key.1;
            let job = view.jobs[&id].clone();
            // The gate's queue takes jobs only in this order, up to the
            // first that is left waiting: what waits there starts first.
            let may_queue = examined_after_block.is_none();
            match cands.choose(&job, now_ms, may_queue) {
                Choice::Existing(i) => {
                    let slot = cands.parts[i].slot;
                    cands.take(i, &job, now_ms);
                    view.plan_start(id, slot, now_ms);
                    out.plan.start_jobs.push(StartJob {
                        job_id: id,
                        partition_id: view.slots.get(slot).id.to_string(),
                    });
                }
                Choice::New(i) => {
                    let partition_id = uuid::Uuid::now_v7().to_string();
                    let (site, flavor) =
                        (cands.creatable[i].site, cands.creatable[i].flavor.clone());
                    let slot = view.plan_create(&partition_id, site, &flavor, now_ms);
                    cands.create(i, slot, &job);
                    view.plan_start(id, slot, now_ms);
                    out.plan.create_partitions.push(CreatePartition {
                        partition_id: partition_id.clone(),
                        site: view.sites.get(site).name.to_string(),
                        flavor: flavor.name,
                    });
                    out.plan.start_jobs.push(StartJob {
                        job_id: id,
                        partition_id,
                    });
                }
                Choice::Blocked { fits_but_held } => {
                    examined_after_block.get_or_insert(0);
                    if !fits_but_held {
                        reserve(view, &mut cands, &job, now_ms, &mut held);
                    }
                    let site_down = job
                        .site()
                        .is_some_and(|s| view.sites.spec(s).is_none_or(|spec| !spec.healthy));
                    let (reason, full_site) = if fits_but_held {
                        (Reason::Priority, None)
                    } else if site_down {
                        (Reason::SiteUnhealthy, None)
                    } else {
                        match cands.queue_full_site(&job) {
                            Some(site) => (Reason::QueueFull, Some(site)),
                            None => (Reason::Waiting, None),
                        }
                    };
                    report(view, &mut out.plan, id, reason, full_site);
                }
            }
        }
    }
    send_dirty_reasons(view, &mut out, cap);
    delete_idle(view, now_ms, &mut out.plan);
    out
}

/// The text of `reason` for `id`; `full_site` is the site whose full queue
/// it waits for (with [`Reason::QueueFull`]).
fn reason_text(
    view: &View,
    id: JobId,
    reason: Reason,
    full_site: Option<SiteKey>,
) -> Option<(String, bool)> {
    let job = &view.jobs[&id];
    Some(match reason {
        Reason::None => return None,
        Reason::Waiting => (WAITING_FOR_RESOURCES.into(), false),
        Reason::Priority => (PRIORITY.into(), false),
        Reason::SiteUnhealthy => {
            let site = job.site().map(|s| view.sites.get(s));
            let name = site.map(|s| s.name.to_string()).unwrap_or_default();
            let why = site
                .and_then(|s| s.spec.as_ref())
                .map(|spec| spec.health_message.as_str())
                .filter(|m| !m.is_empty());
            let text = match why {
                Some(why) => format!("waiting for site `{name}` to become healthy: {why}"),
                None => format!("waiting for site `{name}` to become healthy"),
            };
            (text, false)
        }
        Reason::QueueFull => {
            let name = &view.sites.get(full_site?).name;
            (
                format!("waiting for room in site `{name}`'s queue, which is full"),
                false,
            )
        }
        Reason::Unsatisfiable => (view.unsat.get(&id)?.to_string(), true),
    })
}

/// Send `reason` for `id` unless it is the last one sent.
fn report(view: &mut View, plan: &mut Plan, id: JobId, reason: Reason, full_site: Option<SiteKey>) {
    view.dirty.remove(&id);
    let job = view.jobs.get_mut(&id).expect("examined job exists");
    if job.reason == reason {
        return;
    }
    job.reason = reason;
    if let Some((text, unsatisfiable)) = reason_text(view, id, reason, full_site) {
        plan.pending.push(Pending {
            job_id: id,
            reason: text,
            unsatisfiable,
        });
    }
}

/// Reasons decided outside a pass (unsatisfiable, or satisfiable again).
fn send_dirty_reasons(view: &mut View, out: &mut PassOutput, cap: usize) {
    while out.plan.len() < cap {
        let Some(id) = view.dirty.pop_first() else {
            return;
        };
        let Some(job) = view.jobs.get_mut(&id) else {
            continue;
        };
        let reason = match job.place() {
            Place::Unsatisfiable => Reason::Unsatisfiable,
            Place::Queued if job.reason == Reason::Unsatisfiable => Reason::Waiting,
            _ => continue,
        };
        job.reason = reason;
        if let Some((text, unsatisfiable)) = reason_text(view, id, reason, None) {
            out.plan.pending.push(Pending {
                job_id: id,
                reason: text,
                unsatisfiable,
            });
        }
    }
    out.more |= !view.dirty.is_empty();
}

/// Ask to delete elastic sites' READY partitions idle for their site's
/// timeout (0: as soon as they are idle, after this pass's placements).
fn delete_idle(view: &mut View, now_ms: i64, plan: &mut Plan) {
    let mut changes = Vec::new();
    for (slot, p) in view.slots.iter() {
        let Some(live) = &p.live else { continue };
        let Some(site) = view.sites.spec(live.site) else {
            continue;
        };
        if !site.elastic || live.phase != PartitionPhase::Ready || live.deleting_since.is_some() {
            continue;
        }
        if !p.jobs.is_empty() {
            if live.idle_since.is_some() {
                changes.push((slot, None, false));
            }
            continue;
        }
        let since = live.idle_since.unwrap_or(now_ms);
        let timeout_ms = (site.idle_timeout_seconds as i64).saturating_mul(1000);
        let delete = now_ms.saturating_sub(since) >= timeout_ms;
        changes.push((slot, Some(since), delete));
    }
    for (slot, idle_since, delete) in changes {
        let partition = view.slots.get_mut(slot);
        let live = partition.live.as_mut().expect("live partition");
        live.idle_since = idle_since;
        if delete {
            live.deleting_since = Some(now_ms);
            plan.delete_partitions.push(partition.id.to_string());
        }
    }
}

#[cfg(test)]
mod tests;
