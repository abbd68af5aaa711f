//! Whether a job could ever run as specified, and if not, a sentence saying
//! which resource no flavor offers ("no site offers 512 GiB of memory").

use crate::domain::{FlavorSpec, Resources, SiteSpec};

/// Format a byte count with binary units: `512 GiB`, `1.5 GiB`, `768 MiB`.
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut unit = 0;
    let mut scale = 1u64;
    while unit + 1 < UNITS.len() && bytes >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    if bytes.is_multiple_of(scale) {
        format!("{} {}", bytes / scale, UNITS[unit])
    } else {
        let value = bytes as f64 / scale as f64;
        let text = format!("{value:.1}");
        format!("{} {}", text.trim_end_matches(".0"), UNITS[unit])
    }
}

/// Format a walltime in seconds: `48h`, `1h30m`, `90s` → `1m30s`; 0 is `unlimited`.
pub fn format_walltime(seconds: u64) -> String {
    if seconds == 0 {
        return "unlimited".into();
    }
    let (h, m, s) = (seconds / 3600, seconds / 60 % 60, seconds % 60);
    let mut out = String::new();
    for (value, unit) in [(h, "h"), (m, "m"), (s, "s")] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    out
}

fn count(n: u32, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

fn describe(r: &Resources) -> Vec<String> {
    let mut parts = Vec::new();
    if r.cpus > 0 {
        parts.push(count(r.cpus, "CPU", "CPUs"));
    }
    if r.memory_bytes > 0 {
        parts.push(format!("{} of memory", format_bytes(r.memory_bytes)));
    }
    if r.gpus > 0 {
        parts.push(count(r.gpus, "GPU", "GPUs"));
    }
    if r.nodes > 1 {
        parts.push(count(r.nodes, "node", "nodes"));
    }
    parts
}

fn join(parts: &[String]) -> String {
    match parts {
        [] => "nothing".into(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

/// Why a job needing `need` for `walltime_seconds` (0 = unlimited) can never
/// run on any flavor of `sites` (the sites it may use), or `None` when some
/// flavor could hold it. `pinned` is the site the job names, if any;
/// `pinned_exists` says whether that site is known.
pub fn unsatisfiable(
    need: &Resources,
    walltime_seconds: u64,
    pinned: Option<&str>,
    pinned_exists: bool,
    sites: &[&SiteSpec],
) -> Option<String> {
    if let Some(site) = pinned
        && !pinned_exists
    {
        return Some(format!("site `{site}` does not exist"));
    }
    let flavors: Vec<&FlavorSpec> = sites.iter().flat_map(|s| s.flavors.iter()).collect();
    if flavors
        .iter()
        .any(|f| need.fits_in(&f.capacity) && f.allows_walltime(walltime_seconds))
    {
        return None;
    }
    // What cannot be used now offers nothing now (a Slurm partition whose
    // every node is drained) but may once it can: say why it cannot now.
    let down: Vec<&str> = flavors
        .iter()
        .filter(|f| !f.available)
        .map(|f| f.unavailable_reason.as_str())
        .collect();
    if !down.is_empty() {
        let scope = pinned.map_or("no site can".to_string(), |s| format!("site `{s}` cannot"));
        let why = if down.iter().all(|w| w.is_empty()) {
            "it is unavailable".to_string()
        } else {
            down.iter()
                .filter(|w| !w.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("; ")
        };
        return Some(format!("{scope} run it now: {why}"));
    }
    if flavors.is_empty() {
        let Some(site) = pinned else {
            return Some("no site offers any flavor yet".into());
        };
        // A gate that cannot describe its site says why (a setting its
        // provider refuses, say).
        let why = sites
            .iter()
            .find(|s| !s.healthy && !s.health_message.is_empty())
            .map(|s| format!(" (it is unhealthy: {})", s.health_message));
        return Some(format!(
            "site `{site}` offers no flavors{}",
            why.unwrap_or_default()
        ));
    }
    let scope = match pinned {
        Some(site) => format!("site `{site}` does not offer"),
        None => "no site offers".into(),
    };
    let largest = flavors
        .iter()
        .fold(Resources::default(), |acc, f| acc.max(&f.capacity));
    let missing = Resources {
        cpus: if need.cpus > largest.cpus {
            need.cpus
        } else {
            0
        },
        memory_bytes: if need.memory_bytes > largest.memory_bytes {
            need.memory_bytes
        } else {
            0
        },
        gpus: if need.gpus > largest.gpus {
            need.gpus
        } else {
            0
        },
        nodes: if need.nodes > largest.nodes {
            need.nodes
        } else {
            0
        },
    };
    let mut short = describe(&missing);
    if missing.nodes == 1 {
        short.push("1 node".into());
    }
    if !short.is_empty() {
        return Some(format!("{scope} {}", join(&short)));
    }
    let large_enough: Vec<&&FlavorSpec> = flavors
        .iter()
        .filter(|f| need.fits_in(&f.capacity))
        .collect();
    if large_enough.is_empty() {
        let which = match pinned {
            Some(site) => format!("no flavor of site `{site}`"),
            None => "no single flavor".into(),
        };
        return Some(format!("{which} offers {} together", join(&describe(need))));
    }
    let longest = large_enough
        .iter()
        .map(|f| f.max_walltime_seconds)
        .max()
        .unwrap_or(0);
    Some(format!(
        "walltime {} exceeds the longest allowed ({})",
        format_walltime(walltime_seconds),
        format_walltime(longest)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn site(name: &str, flavors: &[(u32, u64, u32, u64)]) -> SiteSpec {
        SiteSpec {
            name: name.into(),
            healthy: false,
            flavors: flavors
                .iter()
                .enumerate()
                .map(|(i, &(cpus, mem, gpus, wall))| FlavorSpec {
                    name: format!("f{i}"),
                    capacity: Resources {
                        cpus,
                        memory_bytes: mem,
                        gpus,
                        nodes: 1,
                    },
                    price_per_hour: 0.0,
                    max_partitions: 0,
                    max_walltime_seconds: wall,
                    available: true,
                    is_default: false,
                    unavailable_reason: String::new(),
                })
                .collect(),
            elastic: false,
            idle_timeout_seconds: 0,
            health_message: String::new(),
        }
    }

    fn need(cpus: u32, mem: u64, gpus: u32) -> Resources {
        Resources {
            cpus,
            memory_bytes: mem,
            gpus,
            nodes: 1,
        }
    }

    #[test]
    fn formats_sizes_and_walltimes() {
        assert_eq!(format_bytes(512 * GIB), "512 GiB");
        assert_eq!(format_bytes(3 * GIB / 2), "1.5 GiB");
        assert_eq!(format_bytes(768 << 20), "768 MiB");
        assert_eq!(format_bytes(100), "100 B");
        assert_eq!(format_walltime(48 * 3600), "48h");
        assert_eq!(format_walltime(5400), "1h30m");
        assert_eq!(format_walltime(90), "1m30s");
        assert_eq!(format_walltime(0), "unlimited");
    }

    #[test]
    fn satisfiable_when_one_flavor_holds_everything() {
        let s = site("a", &[(8, 16 * GIB, 0, 0)]);
        assert_eq!(
            unsatisfiable(&need(8, 16 * GIB, 0), 0, None, false, &[&s]),
            None
        );
    }

    #[test]
    fn names_the_resource_no_site_offers() {
        let s = site("a", &[(8, 16 * GIB, 0, 0), (64, 4 * GIB, 0, 0)]);
        assert_eq!(
            unsatisfiable(&need(1, 512 * GIB, 0), 0, None, false, &[&s]).unwrap(),
            "no site offers 512 GiB of memory"
        );
        assert_eq!(
            unsatisfiable(&need(65, GIB, 0), 0, None, false, &[&s]).unwrap(),
            "no site offers 65 CPUs"
        );
        assert_eq!(
            unsatisfiable(&need(64, 16 * GIB, 0), 0, None, false, &[&s]).unwrap(),
            "no single flavor offers 64 CPUs and 16 GiB of memory together"
        );
        assert_eq!(
            unsatisfiable(&need(1, GIB, 2), 0, Some("a"), true, &[&s]).unwrap(),
            "site `a` does not offer 2 GPUs"
        );
    }

    #[test]
    fn a_site_without_flavors_says_why_it_is_unhealthy() {
        let mut s = site("aws", &[]);
        assert_eq!(
            unsatisfiable(&need(1, 1, 0), 0, Some("aws"), true, &[&s]).unwrap(),
            "site `aws` offers no flavors"
        );
        s.health_message = "no such instance type t3.bogus".into();
        assert_eq!(
            unsatisfiable(&need(1, 1, 0), 0, Some("aws"), true, &[&s]).unwrap(),
            "site `aws` offers no flavors (it is unhealthy: no such instance type t3.bogus)"
        );
    }

    #[test]
    fn unknown_site_and_walltime() {
        assert_eq!(
            unsatisfiable(&need(1, 1, 0), 0, Some("gpu"), false, &[]).unwrap(),
            "site `gpu` does not exist"
        );
        let s = site("a", &[(8, GIB, 0, 24 * 3600)]);
        assert_eq!(
            unsatisfiable(&need(1, 1, 0), 48 * 3600, None, false, &[&s]).unwrap(),
            "walltime 48h exceeds the longest allowed (24h)"
        );
        // A job that asks for no time gets the flavor's default.
        assert!(unsatisfiable(&need(1, 1, 0), 0, None, false, &[&s]).is_none());
        assert!(unsatisfiable(&need(1, 1, 0), 3600, None, false, &[&s]).is_none());
    }

    #[test]
    fn a_flavor_that_offers_nothing_now_says_why() {
        let mut s = site("hpc", &[(0, 0, 0, 0)]);
        s.flavors[0].available = false;
        s.flavors[0].unavailable_reason =
            "every node of Slurm partition debug is unavailable (1 drained)".into();
        assert_eq!(
            unsatisfiable(&need(1, GIB, 0), 0, Some("hpc"), true, &[&s]).unwrap(),
            "site `hpc` cannot run it now: every node of Slurm partition debug is unavailable (1 drained)"
        );
    }
}
