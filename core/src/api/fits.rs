//! Refusing at submit what no site could ever run: a job larger than every
//! flavor of the sites it may use (CPUs, memory, GPUs, nodes) or longer
//! than every limit, as `sbatch` refuses it at once. While a site it may
//! use is unhealthy or has not described itself, or one of its flavors
//! cannot be used now (a Slurm partition whose nodes are all drained offers
//! nothing until they come back), nothing is refused: the job waits, saying
//! why.

use std::collections::BTreeMap;
use std::time::Duration;

use gantry_proto::v1::{Capacity, Flavor};

use crate::error::FieldError;
use crate::job::Resources;
use crate::job::units::format_bytes;
use crate::links::SiteInfo;

/// Why a job needing `need` for `walltime` seconds (0: none asked) could
/// never run on the sites it may use (`site`, or all of `sites`), naming
/// what is too big and the most that is offered; `None` when some flavor
/// could hold it, or when a site it may use cannot say yet.
pub fn never_runs(
    need: &Resources,
    walltime: u64,
    site: Option<&str>,
    sites: &BTreeMap<String, SiteInfo>,
) -> Option<FieldError> {
    let mut flavors: Vec<&Flavor> = Vec::new();
    for (name, info) in sites {
        if site.is_some_and(|s| s != name) {
            continue;
        }
        match &info.description {
            Some(d) if info.healthy => flavors.extend(&d.flavors),
            _ => return None,
        }
    }
    if flavors.is_empty()
        || flavors
            .iter()
            .any(|f| !f.available || holds(f, need, walltime))
    {
        return None;
    }
    let scope = site.map_or("any site".to_string(), |s| format!("site {s}"));
    let most = |get: fn(Capacity) -> u64| {
        let capacities = flavors.iter().map(|f| f.capacity.unwrap_or_default());
        capacities.map(get).max().unwrap_or(0)
    };
    let mut too_big = Vec::new();
    let cpus = most(|c| u64::from(c.cpus));
    if u64::from(need.cpus) > cpus {
        too_big.push(format!(
            "{} CPUs (the most {scope} offers is {cpus})",
            need.cpus
        ));
    }
    let memory = most(|c| c.memory_bytes);
    if need.memory > memory {
        too_big.push(format!(
            "{} of memory (the most {scope} offers is {})",
            format_bytes(need.memory),
            format_bytes(memory)
        ));
    }
    let gpus = most(|c| u64::from(c.gpus));
    if u64::from(need.gpus) > gpus {
        too_big.push(format!(
            "{} GPUs (the most {scope} offers is {gpus})",
            need.gpus
        ));
    }
    let nodes = most(|c| u64::from(c.nodes.max(1)));
    if u64::from(need.nodes) > nodes {
        too_big.push(format!(
            "{} nodes (the most {scope} offers is {nodes})",
            need.nodes
        ));
    }
    if !too_big.is_empty() {
        return Some(FieldError::new(
            "resources",
            format!(
                "no site can ever run this job: it asks for {}",
                too_big.join(", and ")
            ),
        ));
    }
    if !flavors.iter().any(|f| fits(f, need)) {
        return Some(FieldError::new(
            "resources",
            format!(
                "no site can ever run this job: no single flavor of {scope} offers {} CPUs, {} of \
                 memory, {} GPUs and {} nodes together; `gantry sites` lists what each offers",
                need.cpus,
                format_bytes(need.memory),
                need.gpus,
                need.nodes
            ),
        ));
    }
    let longest = flavors
        .iter()
        .filter(|f| fits(f, need))
        .map(|f| f.max_walltime_seconds)
        .max()
        .unwrap_or(0);
    let human = |s: u64| humantime::format_duration(Duration::from_secs(s)).to_string();
    Some(FieldError::new(
        "resources.walltime",
        format!(
            "no site can ever run this job: {} is over the time limit of every flavor of {scope} \
             that holds it (the longest is {})",
            human(walltime),
            human(longest)
        ),
    ))
}

/// Whether one partition of `f` could hold the job, now or later.
fn holds(f: &Flavor, need: &Resources, walltime: u64) -> bool {
    fits(f, need) && (f.max_walltime_seconds == 0 || walltime <= f.max_walltime_seconds)
}

fn fits(f: &Flavor, need: &Resources) -> bool {
    let c = f.capacity.unwrap_or_default();
    need.cpus <= c.cpus
        && need.memory <= c.memory_bytes
        && need.gpus <= c.gpus
        && need.nodes <= c.nodes.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_proto::v1::DescribeResponse;

    const GIB: u64 = 1 << 30;

    fn site(healthy: bool, flavors: &[(u32, u64, u64)]) -> SiteInfo {
        SiteInfo {
            healthy,
            description: Some(DescribeResponse {
                flavors: flavors
                    .iter()
                    .map(|&(cpus, memory_bytes, max_walltime_seconds)| Flavor {
                        capacity: Some(Capacity {
                            cpus,
                            memory_bytes,
                            gpus: 0,
                            nodes: 1,
                        }),
                        max_walltime_seconds,
                        available: true,
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn need(cpus: u32, memory: u64) -> Resources {
        Resources {
            cpus,
            memory,
            gpus: 0,
            nodes: 1,
        }
    }

    #[test]
    fn refuses_what_no_flavor_holds_naming_the_most_offered() {
        let sites = BTreeMap::from([
            (
                "hpc".to_string(),
                site(true, &[(8, 16 * GIB, 120), (4, 8 * GIB, 0)]),
            ),
            ("local".to_string(), site(true, &[(2, 4 * GIB, 0)])),
        ]);
        assert!(never_runs(&need(8, GIB), 60, None, &sites).is_none());
        assert!(never_runs(&need(2, GIB), 0, None, &sites).is_none());
        let e = never_runs(&need(1, 64 * GIB), 0, None, &sites).unwrap();
        assert_eq!(e.field, "resources");
        assert!(
            e.message
                .contains("64 GiB of memory (the most any site offers is 16 GiB)"),
            "{}",
            e.message
        );
        let e = never_runs(&need(4, GIB), 0, Some("local"), &sites).unwrap();
        assert!(
            e.message
                .contains("4 CPUs (the most site local offers is 2)"),
            "{}",
            e.message
        );
        // 8 CPUs only on a 2-minute flavor.
        let e = never_runs(&need(8, GIB), 600, None, &sites).unwrap();
        assert_eq!(e.field, "resources.walltime");
        assert!(e.message.contains("(the longest is 2m)"), "{}", e.message);
    }

    #[test]
    fn a_site_that_cannot_say_refuses_nothing() {
        let sites = BTreeMap::from([
            ("hpc".to_string(), site(false, &[(8, 16 * GIB, 0)])),
            ("local".to_string(), site(true, &[(2, 4 * GIB, 0)])),
        ]);
        assert!(never_runs(&need(64, GIB), 0, None, &sites).is_none());
        assert!(never_runs(&need(64, GIB), 0, Some("local"), &sites).is_some());
        let unknown = BTreeMap::from([("new".to_string(), SiteInfo::default())]);
        assert!(never_runs(&need(64, GIB), 0, None, &unknown).is_none());
        // A drained partition offers nothing now, but will.
        let mut drained = site(true, &[(0, 0, 0)]);
        drained.description.as_mut().unwrap().flavors[0].available = false;
        let drained = BTreeMap::from([("hpc".to_string(), drained)]);
        assert!(never_runs(&need(1, GIB), 0, None, &drained).is_none());
    }
}
