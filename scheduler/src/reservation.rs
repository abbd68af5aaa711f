//! EASY backfill's reservation: for the highest job that cannot start, the
//! earliest time enough resources free up on one partition (from the
//! walltimes of the jobs placed there), and what stays spare then.

use std::collections::HashSet;

use crate::candidates::{Candidates, Hold};
use crate::slots::SiteKey;
use crate::view::{Job, View};

/// Reserve the earliest partition for `job` among sites that hold no
/// reservation yet; record the hold on it and its site in `held`. Returns
/// the index of the partition in `cands.parts` and the start time (ms), or
/// `None` when nothing frees up for it within the horizon (jobs without a
/// walltime never free their resources).
pub(crate) fn reserve(
    view: &View,
    cands: &mut Candidates,
    job: &Job,
    now_ms: i64,
    held: &mut HashSet<SiteKey>,
) -> Option<(usize, i64)> {
    let need = job.resources().consumed();
    let mut best: Option<(usize, i64, crate::domain::Resources)> = None;
    let mut ends = Vec::new();
    for (i, part) in cands.parts.iter().enumerate() {
        if held.contains(&part.site) || part.hold.is_some() || !cands.could_hold(job, part) {
            continue;
        }
        ends.clear();
        for id in &view.slots.get(part.slot).jobs {
            let other = &view.jobs[id];
            if let Some(end) = other.end_ms() {
                ends.push((end.max(now_ms), other.resources().consumed()));
            }
        }
        ends.sort_unstable_by_key(|(end, _)| *end);
        let mut free = part.free;
        let mut at = None;
        if need.fits_in(&free) {
            at = Some(now_ms);
        } else {
            for (end, freed) in &ends {
                free = free.saturating_add(freed);
                if need.fits_in(&free) {
                    at = Some(*end);
                    break;
                }
            }
        }
        if let Some(at) = at {
            // Every job ending by then (also those ending at the same moment) frees its share.
            let free_at = ends
                .iter()
                .filter(|(e, _)| *e <= at)
                .fold(part.free, |acc, (_, r)| acc.saturating_add(r));
            if best.as_ref().is_none_or(|(_, t, _)| at < *t) {
                best = Some((i, at, free_at));
            }
        }
    }
    let (i, at, free_at) = best?;
    let part = &mut cands.parts[i];
    part.hold = Some(Hold {
        until_ms: at,
        spare: free_at.saturating_sub(&need),
    });
    held.insert(part.site);
    Some((i, at))
}
