//! Tests of the built-in policy on domain types.

use super::*;
use crate::domain::{
    Batch, FlavorSpec, JobChange, JobSpec, JobUpdate, PartitionSpec, PartitionUpdate, Resources,
    SiteSpec,
};

const GIB: u64 = 1 << 30;
const T0: i64 = 1_700_000_000_000;
const HOUR: u64 = 3600;

fn res(cpus: u32) -> Resources {
    Resources {
        cpus,
        memory_bytes: GIB,
        gpus: 0,
        nodes: 1,
    }
}

fn flavor(name: &str, cpus: u32, price: f64, max_partitions: u32) -> FlavorSpec {
    FlavorSpec {
        name: name.into(),
        capacity: Resources {
            cpus,
            memory_bytes: 64 * GIB,
            gpus: 0,
            nodes: 1,
        },
        price_per_hour: price,
        max_partitions,
        max_walltime_seconds: 0,
        available: true,
        is_default: false,
        unavailable_reason: String::new(),
    }
}

fn site(name: &str, flavors: Vec<FlavorSpec>) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        healthy: true,
        flavors,
        elastic: false,
        idle_timeout_seconds: 0,
        health_message: String::new(),
    }
}

fn partition(id: &str, site: &str, flavor: &str, cpus: u32) -> PartitionUpdate {
    queueing_partition(id, site, flavor, cpus, 0)
}

/// A partition whose gate queues `queue_cpus` CPUs' worth beyond its capacity.
fn queueing_partition(
    id: &str,
    site: &str,
    flavor: &str,
    cpus: u32,
    queue_cpus: u32,
) -> PartitionUpdate {
    PartitionUpdate {
        id: id.into(),
        spec: Some(PartitionSpec {
            site: site.into(),
            flavor: flavor.into(),
            phase: PartitionPhase::Ready,
            capacity: Resources {
                cpus,
                memory_bytes: 64 * GIB,
                gpus: 0,
                nodes: 1,
            },
            queue: Resources {
                cpus: queue_cpus,
                memory_bytes: 64 * GIB,
                gpus: 0,
                nodes: 0,
            },
        }),
    }
}

fn spec(priority: i32, cpus: u32, walltime_seconds: u64) -> JobSpec {
    JobSpec {
        priority,
        resources: res(cpus),
        walltime_seconds,
        site: None,
    }
}

fn queued(id: u64, priority: i32, cpus: u32, walltime_seconds: u64) -> JobUpdate {
    JobUpdate {
        id: JobId(id),
        change: JobChange::Queued(spec(priority, cpus, walltime_seconds)),
    }
}

fn active(id: u64, cpus: u32, walltime_seconds: u64, partition: &str, start_ms: i64) -> JobUpdate {
    JobUpdate {
        id: JobId(id),
        change: JobChange::Active {
            spec: spec(0, cpus, walltime_seconds),
            partition: partition.into(),
            start_ms,
        },
    }
}

fn gone(id: u64) -> JobUpdate {
    JobUpdate {
        id: JobId(id),
        change: JobChange::Gone,
    }
}

/// A view, a clock and the policy.
struct Fx {
    view: View,
    now: i64,
    config: PolicyConfig,
}

impl Fx {
    fn new(sites: Vec<SiteSpec>, partitions: Vec<PartitionUpdate>) -> Self {
        let mut view = View::default();
        view.apply(Batch {
            sites,
            partitions,
            ..Default::default()
        });
        Fx {
            view,
            now: T0,
            config: PolicyConfig::default(),
        }
    }

    fn jobs(&mut self, jobs: Vec<JobUpdate>) {
        self.view.apply(Batch {
            jobs,
            ..Default::default()
        });
    }

    fn partitions(&mut self, partitions: Vec<PartitionUpdate>) {
        self.view.apply(Batch {
            partitions,
            ..Default::default()
        });
    }

    fn pass(&mut self) -> Plan {
        pass(&mut self.view, self.now, &self.config).plan
    }
}

fn started(plan: &Plan) -> Vec<u64> {
    plan.start_jobs.iter().map(|s| s.job_id.0).collect()
}

fn reason(plan: &Plan, id: u64) -> Option<&str> {
    plan.pending
        .iter()
        .find(|p| p.job_id == JobId(id))
        .map(|p| p.reason.as_str())
}

/// One non-elastic site `s` with one READY partition `p` of `cpus` CPUs
/// whose flavor allows no more partitions.
fn one_partition(cpus: u32) -> Fx {
    Fx::new(
        vec![site("s", vec![flavor("f", cpus, 0.0, 1)])],
        vec![partition("p", "s", "f", cpus)],
    )
}

#[test]
fn higher_priority_first_then_fifo() {
    let mut fx = one_partition(4);
    fx.jobs(vec![
        queued(1, 0, 4, 0),
        queued(3, 5, 4, 0),
        queued(2, 5, 4, 0),
    ]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![2]);
    assert_eq!(plan.start_jobs[0].partition_id, "p");
    assert_eq!(reason(&plan, 3), Some(WAITING_FOR_RESOURCES));
    assert_eq!(reason(&plan, 1), Some(WAITING_FOR_RESOURCES));
    fx.jobs(vec![active(2, 4, 0, "p", T0)]);
    assert!(
        fx.pass().is_empty(),
        "confirmed: nothing new, reasons unchanged"
    );
    fx.jobs(vec![gone(2)]);
    assert_eq!(started(&fx.pass()), vec![3]);
}

#[test]
fn a_queueing_gate_is_given_capacity_plus_queue_in_priority_order() {
    let mut fx = Fx::new(
        vec![site("s", vec![flavor("f", 2, 0.0, 1)])],
        vec![queueing_partition("p", "s", "f", 2, 4)],
    );
    fx.jobs((1..=10).map(|id| queued(id, 0, 1, 0)).collect());
    // 2 run now and 4 wait on the gate; a job larger than the partition
    // itself is never placed however much the gate queues.
    fx.jobs(vec![queued(11, 9, 3, 0)]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![1, 2, 3, 4, 5, 6]);
    assert!(reason(&plan, 11).is_some());
    assert_eq!(
        reason(&plan, 7),
        Some("waiting for room in site `s`'s queue, which is full")
    );
}

#[test]
fn a_gates_queue_takes_only_the_next_jobs_of_a_running_shape() {
    // 4 CPUs, the gate queues 16 more; two 1-CPU jobs run for an hour and
    // two CPUs are free.
    let mut fx = Fx::new(
        vec![site("s", vec![flavor("f", 4, 0.0, 1)])],
        vec![queueing_partition("p", "s", "f", 4, 16)],
    );
    fx.jobs(vec![
        active(10, 1, HOUR, "p", T0),
        active(11, 1, HOUR, "p", T0),
        queued(1, 0, 1, HOUR),     // starts now
        queued(2, 0, 1, HOUR),     // starts now
        queued(3, 0, 1, HOUR),     // waits in the gate for a 1-CPU job's end
        queued(4, 0, 4, HOUR),     // the whole partition: waits here, reserved
        queued(5, 0, 1, HOUR / 2), // behind it: not into the gate's queue
    ]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![1, 2, 3]);
    assert_eq!(reason(&plan, 4), Some(WAITING_FOR_RESOURCES));
    assert!(reason(&plan, 5).is_some());
    // The running jobs end: the wide one starts before anything behind it.
    fx.jobs(vec![gone(10), gone(11), gone(1), gone(2), gone(3)]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![4]);
}

#[test]
fn backfill_starts_short_jobs_without_delaying_the_reserved_one() {
    let mut fx = one_partition(10);
    fx.jobs(vec![
        active(10, 6, HOUR, "p", T0),
        queued(1, 10, 10, HOUR),   // reserved at T0 + 1h
        queued(2, 0, 2, HOUR / 2), // ends before: backfilled
        queued(3, 0, 2, 2 * HOUR), // would delay job 1
        queued(4, 0, 2, 0),        // no walltime, nothing spare at the reservation
    ]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![2]);
    assert_eq!(reason(&plan, 1), Some(WAITING_FOR_RESOURCES));
    assert_eq!(reason(&plan, 3), Some(PRIORITY));
    assert_eq!(reason(&plan, 4), Some(PRIORITY));
    // When the running jobs end, the reserved job starts first.
    fx.jobs(vec![gone(10), gone(2)]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![1]);
}

#[test]
fn jobs_without_walltime_backfill_only_into_what_the_reservation_leaves() {
    let mut fx = one_partition(16);
    fx.jobs(vec![
        active(10, 10, HOUR, "p", T0),
        queued(1, 10, 12, HOUR), // at T0+1h 16 are free, 4 spare after it
        queued(2, 0, 4, 0),      // fits in the spare 4
        queued(3, 0, 2, 0),      // 2 free now, but nothing spare left
    ]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![2]);
    assert_eq!(reason(&plan, 3), Some(PRIORITY));
}

#[test]
fn a_reservation_only_holds_its_own_site() {
    let mut fx = Fx::new(
        vec![
            site("a", vec![flavor("f", 4, 0.0, 1)]),
            site("b", vec![flavor("f", 4, 0.0, 1)]),
        ],
        vec![partition("pa", "a", "f", 4), partition("pb", "b", "f", 4)],
    );
    let mut pinned = queued(2, 0, 2, 0);
    if let JobChange::Queued(s) = &mut pinned.change {
        s.site = Some("b".into());
    }
    let mut big = queued(1, 10, 4, HOUR);
    if let JobChange::Queued(s) = &mut big.change {
        s.site = Some("a".into());
    }
    fx.jobs(vec![active(10, 2, HOUR, "pa", T0), big, pinned]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![2]);
    assert_eq!(plan.start_jobs[0].partition_id, "pb");
}

#[test]
fn creates_the_cheapest_flavor_that_fits_and_packs_onto_it() {
    let cloud = site(
        "cloud",
        vec![
            flavor("small", 2, 0.1, 10),
            flavor("big", 8, 0.9, 10),
            flavor("mid", 4, 0.3, 10),
        ],
    );
    let mut fx = Fx::new(
        vec![SiteSpec {
            elastic: true,
            ..cloud
        }],
        vec![],
    );
    fx.jobs(vec![queued(1, 0, 3, 0), queued(2, 0, 1, 0)]);
    let plan = fx.pass();
    assert_eq!(plan.create_partitions.len(), 1, "{plan:?}");
    let created = &plan.create_partitions[0];
    assert_eq!(
        (created.site.as_str(), created.flavor.as_str()),
        ("cloud", "mid")
    );
    assert!(uuid::Uuid::parse_str(&created.partition_id).is_ok());
    assert_eq!(started(&plan), vec![1, 2]);
    assert!(
        plan.start_jobs
            .iter()
            .all(|s| s.partition_id == created.partition_id)
    );
    assert!(fx.pass().is_empty(), "planned jobs are not placed twice");
}

#[test]
fn prefers_existing_partitions_best_fit() {
    let mut fx = Fx::new(
        vec![site("s", vec![flavor("f", 8, 0.0, 10)])],
        vec![
            partition("roomy", "s", "f", 8),
            partition("tight", "s", "f", 2),
        ],
    );
    fx.jobs(vec![queued(1, 0, 2, 0)]);
    let plan = fx.pass();
    assert!(plan.create_partitions.is_empty());
    assert_eq!(plan.start_jobs[0].partition_id, "tight");
}

#[test]
fn max_partitions_counts_existing_and_planned_ones() {
    let mut fx = Fx::new(
        vec![site("s", vec![flavor("f", 4, 0.0, 2)])],
        vec![partition("p", "s", "f", 4)],
    );
    fx.jobs(vec![
        active(10, 4, 0, "p", T0),
        queued(1, 0, 4, 0),
        queued(2, 0, 4, 0),
    ]);
    let plan = fx.pass();
    assert_eq!(plan.create_partitions.len(), 1);
    assert_eq!(started(&plan), vec![1]);
    assert_eq!(reason(&plan, 2), Some(WAITING_FOR_RESOURCES));
}

#[test]
fn refused_plans_are_undone_and_planned_again() {
    let mut fx = Fx::new(vec![site("s", vec![flavor("f", 4, 0.0, 1)])], vec![]);
    fx.jobs(vec![queued(1, 0, 1, 0)]);
    let first = fx.pass();
    let pid = first.create_partitions[0].partition_id.clone();
    // gantryd refused the start (the job is QUEUED again): placed again on
    // the planned partition, which still counts.
    fx.jobs(vec![queued(1, 0, 1, 0)]);
    let again = fx.pass();
    assert_eq!(started(&again), vec![1]);
    assert_eq!(again.start_jobs[0].partition_id, pid);
    assert!(again.create_partitions.is_empty());
    // gantryd refused the partition: it is forgotten and a new one is planned.
    fx.partitions(vec![PartitionUpdate {
        id: pid.clone(),
        spec: None,
    }]);
    let third = fx.pass();
    assert_eq!(third.create_partitions.len(), 1);
    assert_ne!(third.create_partitions[0].partition_id, pid);
    assert_eq!(started(&third), vec![1]);
}

#[test]
fn unconfirmed_plans_are_reconsidered_after_the_timeout() {
    let mut fx = Fx::new(vec![site("s", vec![flavor("f", 4, 0.0, 1)])], vec![]);
    fx.jobs(vec![queued(1, 0, 1, 0)]);
    let first = fx.pass();
    assert_eq!(started(&first), vec![1]);
    fx.now += fx.config.plan_timeout_ms - 1;
    assert!(fx.pass().is_empty());
    fx.now += 1;
    let again = fx.pass();
    assert_eq!(started(&again), vec![1]);
    assert_eq!(
        again.create_partitions.len(),
        1,
        "the unconfirmed partition was forgotten"
    );
}

#[test]
fn confirmed_partitions_and_jobs_stay() {
    let mut fx = Fx::new(vec![site("s", vec![flavor("f", 4, 0.0, 1)])], vec![]);
    fx.jobs(vec![queued(1, 0, 1, 0)]);
    let plan = fx.pass();
    let pid = plan.create_partitions[0].partition_id.clone();
    fx.partitions(vec![partition(&pid, "s", "f", 4)]);
    fx.jobs(vec![active(1, 1, 0, &pid, T0)]);
    fx.now += 10 * fx.config.plan_timeout_ms;
    assert!(fx.pass().is_empty());
    fx.jobs(vec![queued(2, 0, 3, 0)]);
    let plan = fx.pass();
    assert_eq!(plan.start_jobs[0].partition_id, pid);
}

#[test]
fn unsatisfiable_jobs_are_reported_once_and_revived_when_sites_change() {
    let mut fx = one_partition(4);
    let mut pinned = queued(2, 0, 1, 0);
    if let JobChange::Queued(s) = &mut pinned.change {
        s.site = Some("gpu".into());
    }
    fx.jobs(vec![queued(1, 0, 64, 0), pinned]);
    let plan = fx.pass();
    assert_eq!(reason(&plan, 1), Some("no site offers 64 CPUs"));
    assert_eq!(reason(&plan, 2), Some("site `gpu` does not exist"));
    assert!(plan.pending.iter().all(|p| p.unsatisfiable));
    assert!(fx.pass().is_empty(), "sent once");
    fx.view.apply(Batch {
        sites: vec![site("gpu", vec![flavor("g", 64, 1.0, 1)])],
        ..Default::default()
    });
    let plan = fx.pass();
    assert_eq!(plan.create_partitions.len(), 1);
    assert_eq!(plan.create_partitions[0].site, "gpu");
    assert_eq!(started(&plan), vec![1]);
    assert_eq!(reason(&plan, 2), Some(WAITING_FOR_RESOURCES));
    assert!(plan.pending.iter().all(|p| !p.unsatisfiable));
}

#[test]
fn walltime_above_the_flavor_limit_is_unsatisfiable() {
    let mut f = flavor("f", 4, 0.0, 1);
    f.max_walltime_seconds = 24 * HOUR;
    let mut fx = Fx::new(vec![site("s", vec![f])], vec![]);
    fx.jobs(vec![queued(1, 0, 1, 48 * HOUR), queued(2, 0, 1, HOUR)]);
    let plan = fx.pass();
    assert_eq!(
        reason(&plan, 1),
        Some("walltime 48h exceeds the longest allowed (24h)")
    );
    assert_eq!(started(&plan), vec![2]);
}

#[test]
fn unhealthy_sites_get_nothing() {
    let mut s = site("s", vec![flavor("f", 4, 0.0, 1)]);
    s.healthy = false;
    s.health_message = "gate does not answer: connection refused".into();
    let mut fx = Fx::new(vec![s.clone()], vec![partition("p", "s", "f", 4)]);
    let mut pinned = queued(1, 0, 1, 0);
    if let JobChange::Queued(spec) = &mut pinned.change {
        spec.site = Some("s".into());
    }
    fx.jobs(vec![pinned]);
    let plan = fx.pass();
    assert!(plan.start_jobs.is_empty());
    assert_eq!(
        reason(&plan, 1),
        Some("waiting for site `s` to become healthy: gate does not answer: connection refused")
    );
    s.healthy = true;
    fx.view.apply(Batch {
        sites: vec![s],
        ..Default::default()
    });
    assert_eq!(started(&fx.pass()), vec![1]);
}

#[test]
fn idle_partitions_of_elastic_sites_are_deleted_once() {
    let mut elastic = site("cloud", vec![flavor("f", 4, 0.1, 5)]);
    elastic.elastic = true;
    elastic.idle_timeout_seconds = 60;
    let mut fx = Fx::new(
        vec![elastic, site("local", vec![flavor("host", 4, 0.0, 1)])],
        vec![
            partition("idle", "cloud", "f", 4),
            partition("busy", "cloud", "f", 4),
            partition("host", "local", "host", 4),
        ],
    );
    fx.jobs(vec![active(1, 1, 0, "busy", T0)]);
    assert!(fx.pass().is_empty(), "the idle clock starts");
    fx.now += 59_000;
    assert!(fx.pass().is_empty());
    fx.now += 1_000;
    let plan = fx.pass();
    assert_eq!(plan.delete_partitions, vec!["idle".to_string()]);
    fx.now += 1_000;
    assert!(fx.pass().is_empty(), "asked once");
    fx.jobs(vec![queued(2, 0, 1, 0)]);
    let plan = fx.pass();
    assert_eq!(
        plan.start_jobs[0].partition_id, "busy",
        "nothing goes on a deleting partition"
    );
    fx.partitions(vec![PartitionUpdate {
        id: "idle".into(),
        spec: None,
    }]);
    fx.now += 3_600_000;
    fx.jobs(vec![gone(1), gone(2)]);
    assert!(fx.pass().is_empty(), "busy's idle clock only starts now");
}

#[test]
fn an_idle_timeout_of_0_deletes_a_partition_as_soon_as_no_job_is_on_it() {
    let mut elastic = site("cloud", vec![flavor("f", 4, 0.1, 5)]);
    elastic.elastic = true;
    elastic.idle_timeout_seconds = 0;
    let mut fx = Fx::new(vec![elastic], vec![partition("p", "cloud", "f", 4)]);
    fx.jobs(vec![active(1, 1, 0, "p", T0)]);
    assert!(fx.pass().is_empty(), "a busy partition stays");
    fx.jobs(vec![gone(1), queued(2, 0, 1, 0)]);
    let plan = fx.pass();
    assert_eq!(started(&plan), vec![2], "the next job takes it");
    assert!(plan.delete_partitions.is_empty(), "{plan:?}");
    fx.jobs(vec![gone(2)]);
    assert_eq!(fx.pass().delete_partitions, vec!["p".to_string()]);
}

#[test]
fn reasons_are_sent_only_when_they_change() {
    let mut fx = one_partition(4);
    fx.jobs(vec![active(10, 4, 0, "p", T0), queued(1, 0, 1, 0)]);
    assert_eq!(reason(&fx.pass(), 1), Some(WAITING_FOR_RESOURCES));
    assert!(fx.pass().is_empty());
    fx.jobs(vec![gone(1)]);
    assert!(fx.pass().is_empty());
}

#[test]
fn the_pass_stops_past_the_backfill_depth() {
    let mut fx = one_partition(4);
    fx.config.backfill_depth = 3;
    fx.jobs(vec![active(10, 4, 0, "p", T0)]);
    fx.jobs((1..=10).map(|i| queued(i, 0, 1, 0)).collect());
    let plan = fx.pass();
    assert_eq!(plan.pending.len(), 4, "the first blocked one and 3 more");
}

#[test]
fn big_plans_are_split() {
    let mut fx = one_partition(64);
    fx.config.max_plan_items = 4;
    fx.jobs((1..=10).map(|i| queued(i, 0, 1, 0)).collect());
    let out = pass(&mut fx.view, fx.now, &fx.config);
    assert_eq!(out.plan.start_jobs.len(), 3);
    assert!(out.more);
    let out = pass(&mut fx.view, fx.now, &fx.config);
    assert_eq!(started(&out.plan), vec![4, 5, 6]);
}

#[test]
fn a_million_queued_jobs_without_capacity() {
    // Satisfiable (a flavor is large enough) but no partition may be created.
    let mut fx = Fx::new(vec![site("s", vec![flavor("f", 4, 0.0, 0)])], vec![]);
    let jobs: Vec<JobUpdate> = (1..=1_000_000)
        .map(|i| queued(i, (i % 7) as i32, 1, 0))
        .collect();
    let rss_before = rss_bytes();
    let started_at = std::time::Instant::now();
    fx.jobs(jobs);
    eprintln!(
        "loaded 1,000,000 queued jobs in {:?}; resident memory grew by about {} bytes per job",
        started_at.elapsed(),
        rss_bytes().saturating_sub(rss_before) / 1_000_000
    );
    assert_eq!(fx.view.queued_count(), 1_000_000);
    let started_at = std::time::Instant::now();
    let plan = fx.pass();
    eprintln!(
        "first pass over 1,000,000 queued jobs: {:?}",
        started_at.elapsed()
    );
    assert!(plan.start_jobs.is_empty() && plan.create_partitions.is_empty());
    assert_eq!(plan.pending.len(), fx.config.backfill_depth + 1);
    // The examined ones are the highest priority (6), lowest ids first.
    assert_eq!(plan.pending[0].job_id, JobId(6));
    assert_eq!(plan.pending[1].job_id, JobId(13));
    let started_at = std::time::Instant::now();
    assert!(fx.pass().is_empty(), "reasons unchanged: nothing sent");
    eprintln!("second pass: {:?}", started_at.elapsed());
}

/// This process's resident memory (Linux; 0 elsewhere), for a rough print.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

/// A cluster's queues as Slurm's users meet them: `short` (the default,
/// 2-minute limit) and `long` (no limit), existing already. A job lands in
/// the default when it fits — also one that names no walltime (it gets the
/// default's time) — else in the queue of the shortest limit that allows it,
/// even when another is emptier.
#[test]
fn jobs_land_in_the_default_queue_when_they_fit_else_the_tightest() {
    let short = FlavorSpec {
        max_walltime_seconds: 120,
        is_default: true,
        ..flavor("short", 4, 0.0, 1)
    };
    let medium = FlavorSpec {
        max_walltime_seconds: HOUR,
        ..flavor("medium", 4, 0.0, 1)
    };
    let long = flavor("long", 8, 0.0, 1);
    let mut fx = Fx::new(
        vec![site("hpc", vec![long, medium, short])],
        vec![
            queueing_partition("pl", "hpc", "long", 8, 800),
            queueing_partition("pm", "hpc", "medium", 4, 400),
            queueing_partition("ps", "hpc", "short", 4, 400),
        ],
    );
    fx.jobs(vec![
        queued(1, 0, 1, 60),       // fits short
        queued(2, 0, 1, 0),        // no walltime: short, with its default
        queued(3, 0, 1, 600),      // over short's limit: medium, not long
        queued(4, 0, 6, 60),       // too big for short and medium: long
        queued(5, 0, 1, 2 * HOUR), // over medium's: long
    ]);
    let plan = fx.pass();
    let on: Vec<(u64, &str)> = plan
        .start_jobs
        .iter()
        .map(|s| (s.job_id.0, s.partition_id.as_str()))
        .collect();
    assert_eq!(on, [(1, "ps"), (2, "ps"), (3, "pm"), (4, "pl"), (5, "pl")]);
}

/// Where the default has no partition yet, one is made for it rather than
/// the job going to a queue that exists.
#[test]
fn the_default_queue_is_made_rather_than_another_used() {
    let short = FlavorSpec {
        max_walltime_seconds: 120,
        is_default: true,
        ..flavor("short", 4, 0.0, 1)
    };
    let mut fx = Fx::new(
        vec![site("hpc", vec![flavor("long", 8, 0.0, 1), short])],
        vec![partition("pl", "hpc", "long", 8)],
    );
    fx.jobs(vec![queued(1, 0, 1, 60)]);
    let plan = fx.pass();
    assert_eq!(plan.create_partitions.len(), 1, "{plan:?}");
    assert_eq!(plan.create_partitions[0].flavor, "short");
}
