//! The scenarios. Each starts its own cluster so none disturbs another.

use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_client::{Client, JobSpec, JobState, LogStream};
use gantry_proto::v1::ListJobsRequest;

use super::limits::Limits;
use super::report::Spread;
use super::{Args, Figure, Report, peers};
use crate::{Cluster, Options, Postgres, create_database};

pub(super) fn cores() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(2)
}

pub(super) fn trivial(hold: bool) -> JobSpec {
    JobSpec {
        argv: vec!["true".into()],
        hold,
        ..Default::default()
    }
}

pub(super) fn figure(scenario: &str, metric: &str, value: f64, unit: &str, target: &str) -> Figure {
    Figure {
        scenario: scenario.into(),
        metric: metric.into(),
        value,
        unit: unit.into(),
        target: target.into(),
        spread: None,
        peer: None,
        peer_value: None,
        limit: None,
        limit_value: None,
    }
}

/// A figure that is the median of `runs`, with their spread.
pub(super) fn median_figure(
    scenario: &str,
    metric: &str,
    runs: &[f64],
    unit: &str,
    target: &str,
) -> Figure {
    let (value, spread) = Spread::median_of(runs).unwrap_or((
        f64::NAN,
        Spread {
            min: f64::NAN,
            max: f64::NAN,
            runs: 0,
        },
    ));
    let mut f = figure(scenario, metric, value, unit, target);
    f.spread = Some(spread);
    f
}

/// `f`, read against this machine's `limit` (measured in the same run).
pub(super) fn with_limit(mut f: Figure, limit: &str, value: Option<f64>) -> Figure {
    f.limit = Some(limit.into());
    f.limit_value = value;
    f
}

pub(super) fn with_peer(mut f: Figure, peer: &str, value: Option<f64>) -> Figure {
    f.peer = Some(peer.into());
    f.peer_value = value;
    f
}

/// Resident memory of a process in bytes.
fn rss(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .unwrap_or(0)
        * 1024
}

pub(super) async fn clients(cluster: &Cluster, n: usize) -> anyhow::Result<Vec<Client>> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(cluster.user("bench").await?);
    }
    Ok(out)
}

/// Submit `total` jobs from `clients` concurrently; the rate in jobs/s.
pub(super) async fn submit_many(
    clients: Vec<Client>,
    total: usize,
    hold: bool,
) -> anyhow::Result<f64> {
    let per = total / clients.len();
    let count = per * clients.len();
    let start = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|client| {
            tokio::spawn(async move {
                for _ in 0..per {
                    client.submit(trivial(hold)).await?;
                }
                Ok::<_, gantry_client::Error>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

/// Scenario 1: one durable submit per call from 1, 8 and 64 clients, on
/// the embedded SQLite and then on a throwaway PostgreSQL server, each run
/// on a fresh cluster and database; the peer is `sbatch` on a throwaway
/// single-node Slurm (when it can be started here). One client waits for
/// each commit (its limit is the database's commit rate); many share commits
/// (their limit is the mTLS round trip rate with as many clients).
pub async fn submit(
    args: &Args,
    report: &mut Report,
    sbatch: Option<peers::Sbatch>,
    limits: &Limits,
) -> anyhow::Result<()> {
    let embedded = Setup {
        label: String::new(),
        database_url: &|| Ok(None),
        core_wrapper: Vec::new(),
        commit_limit: Some(("SQLite commits/s", Some(limits.sqlite_commits))),
    };
    submit_on(args, report, embedded, sbatch, limits).await?;
    if let Some(us) = args.slow_fsync_us {
        let slow = Setup {
            label: format!(", every fsync {us} µs slower"),
            database_url: &|| Ok(None),
            core_wrapper: crate::faults::strace_inject(
                "fsync,fdatasync",
                &format!("delay_exit={us}"),
            ),
            // The limits were measured on the disk as it is.
            commit_limit: None,
        };
        submit_on(args, report, slow, None, limits).await?;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let pg = Postgres::start(port)?;
    let postgres = Setup {
        label: ", PostgreSQL".into(),
        database_url: &|| create_database(&pg.admin_url, "gantry_bench").map(Some),
        core_wrapper: Vec::new(),
        commit_limit: Some(("PostgreSQL commits/s", limits.postgres_commits)),
    };
    submit_on(args, report, postgres, sbatch, limits).await
}

/// Where the submit runs go.
struct Setup<'a> {
    /// Added to each figure's metric.
    label: String,
    /// A fresh database for each run; `None`: gantryd's embedded SQLite.
    database_url: &'a dyn Fn() -> anyhow::Result<Option<String>>,
    /// A command gantryd runs under.
    core_wrapper: Vec<String>,
    /// The commit rate one client is read against; `None`: figures are not
    /// read against the limits at all.
    commit_limit: Option<(&'a str, Option<f64>)>,
}

async fn submit_on(
    args: &Args,
    report: &mut Report,
    setup: Setup<'_>,
    sbatch: Option<peers::Sbatch>,
    limits: &Limits,
) -> anyhow::Result<()> {
    let total = args.size(40_000, 4_000);
    let mut rates: Vec<(usize, Vec<f64>)> = [1, 8, 64].map(|n| (n, Vec::new())).into();
    for _ in 0..args.runs {
        let cluster = Cluster::start(Options {
            cpus: cores(),
            database_url: (setup.database_url)()?,
            core_wrapper: setup.core_wrapper.clone(),
            ..Default::default()
        })
        .await?;
        for (n, runs) in &mut rates {
            let jobs = if *n == 1 { total / 4 } else { total };
            runs.push(submit_many(clients(&cluster, *n).await?, jobs, true).await?);
        }
    }
    for (n, runs) in rates {
        let target = if n == 64 { ">= 10000" } else { "" };
        let metric = format!("jobs accepted/s, {n} clients{}", setup.label);
        let f = median_figure("submit", &metric, &runs, "jobs/s", target);
        let f = match (n, setup.commit_limit) {
            (_, None) => f,
            (1, Some((commits, rate))) => with_limit(f, commits, rate),
            (n, Some(_)) => with_limit(
                f,
                &format!("mTLS empty RPCs/s, {n} clients"),
                limits.rpc_with(n),
            ),
        };
        let f = match setup.commit_limit {
            Some(_) if !args.no_peers => {
                with_peer(f, "sbatch (one per call)", sbatch.map(|s| s.submit_per_s))
            }
            _ => f,
        };
        report.add(f);
    }
    Ok(())
}

/// Scenario 3: trivial jobs through core, scheduler and local gate to
/// COMPLETED, each run on a fresh cluster; its limit is how fast this
/// machine starts and reaps trivial processes at all (`xargs`).
pub async fn end_to_end(
    args: &Args,
    report: &mut Report,
    sbatch: Option<peers::Sbatch>,
    limits: &Limits,
) -> anyhow::Result<()> {
    let n = args.size(20_000, 2_000);
    let cores = cores();
    let (mut rates, mut failed) = (Vec::new(), 0);
    for _ in 0..args.runs {
        let (rate, not_completed) = end_to_end_once(n, cores).await?;
        rates.push(rate);
        failed += not_completed;
    }
    let metric = format!("{n} `true` jobs to an end state, {cores} cores");
    let f = median_figure("e2e", &metric, &rates, "jobs/s", ">= 1000");
    let f = with_limit(f, &format!("xargs -P{cores} /bin/true"), limits.fork_exec);
    let peer_hq = peers::hyperqueue(args, n, cores);
    report.add(with_peer(f, "HyperQueue LocalCluster", peer_hq));
    if let Some(slurm) = sbatch {
        let f = median_figure(
            "e2e",
            &format!("{metric} (vs single-node Slurm)"),
            &rates,
            "jobs/s",
            "",
        );
        report.add(with_peer(
            f,
            &format!("sbatch, {} jobs", slurm.jobs),
            Some(slurm.complete_per_s),
        ));
    }
    if failed > 0 {
        report.add(figure(
            "e2e",
            "jobs that did not complete",
            failed as f64,
            "jobs",
            "0",
        ));
    }
    Ok(())
}

/// One e2e run: its rate in jobs/s and how many jobs did not complete.
async fn end_to_end_once(n: usize, cores: u32) -> anyhow::Result<(f64, usize)> {
    let cluster = Cluster::start(Options {
        cpus: cores,
        ..Default::default()
    })
    .await?;
    run_through(&cluster, n, 0).await
}

/// Submit `n` trivial jobs to `cluster` from 8 clients and wait until each
/// has ended: the rate in jobs/s from the first submit to the last end, and
/// how many did not complete. Jobs numbered up to `earlier` are not counted.
pub(super) async fn run_through(
    cluster: &Cluster,
    n: usize,
    earlier: u64,
) -> anyhow::Result<(f64, usize)> {
    let watcher = cluster.user("bench").await?;
    let mut events = Box::pin(watcher.watch(0, vec![], true));
    let start = Instant::now();
    let submitter = tokio::spawn(submit_many(clients(cluster, 8).await?, n, false));
    let (mut ended, mut failed) = (0usize, 0usize);
    while ended < n {
        let event = tokio::time::timeout(Duration::from_secs(120), events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no progress for 120 s after {ended} jobs"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
        if event.job_id <= earlier {
            continue;
        }
        match JobState::try_from(event.to_state) {
            Ok(JobState::Completed) => ended += 1,
            Ok(JobState::Failed | JobState::Cancelled) => {
                ended += 1;
                failed += 1;
            }
            _ => {}
        }
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    submitter.await??;
    Ok((rate, failed))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Scenario 4: submit → RUNNING and submit → COMPLETED on an idle system.
pub async fn latency(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let runs = args.size(1_000, 200);
    let cluster = Cluster::start(Options {
        cpus: cores(),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let mut events = Box::pin(client.watch(0, vec![], true));
    let (mut running, mut done) = (Vec::with_capacity(runs), Vec::with_capacity(runs));
    for _ in 0..runs {
        let start = Instant::now();
        let job = client.submit(trivial(false)).await?;
        loop {
            let event = tokio::time::timeout(Duration::from_secs(30), events.next())
                .await
                .map_err(|_| anyhow::anyhow!("job {} made no progress for 30 s", job.id))?
                .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
            if event.job_id != job.id {
                continue;
            }
            let ms = start.elapsed().as_secs_f64() * 1000.0;
            match JobState::try_from(event.to_state) {
                Ok(JobState::Running) => running.push(ms),
                Ok(JobState::Completed | JobState::Failed | JobState::Cancelled) => {
                    done.push(ms);
                    break;
                }
                _ => {}
            }
        }
    }
    running.sort_by(f64::total_cmp);
    done.sort_by(f64::total_cmp);
    report.add(figure(
        "latency",
        "submit -> RUNNING p50",
        percentile(&running, 0.5),
        "ms",
        "< 10",
    ));
    report.add(figure(
        "latency",
        "submit -> RUNNING p99",
        percentile(&running, 0.99),
        "ms",
        "",
    ));
    report.add(figure(
        "latency",
        "submit -> COMPLETED p50",
        percentile(&done, 0.5),
        "ms",
        "",
    ));
    report.add(figure(
        "latency",
        "submit -> COMPLETED p99",
        percentile(&done, 0.99),
        "ms",
        "",
    ));
    Ok(())
}

/// Scenario 5: many held jobs: memory, first page of `ls`, restart time.
pub async fn queue(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.size(1_000_000, 50_000);
    let mut cluster = Cluster::start(Options {
        cpus: cores(),
        ..Default::default()
    })
    .await?;
    let pid = cluster.core.pid().unwrap_or(0);
    let empty = rss(pid);
    let rate = submit_many(clients(&cluster, 64).await?, n, true).await?;
    report.add(figure(
        "queue",
        &format!("{n} held jobs accepted/s, 64 clients"),
        rate,
        "jobs/s",
        "",
    ));
    let full = rss(pid);
    report.add(figure(
        "queue",
        &format!("gantryd RSS with {n} queued"),
        full as f64 / (1 << 20) as f64,
        "MiB",
        "< 2048",
    ));
    report.add(figure(
        "queue",
        "gantryd memory per queued job",
        (full.saturating_sub(empty)) as f64 / n as f64,
        "bytes",
        "",
    ));
    let client = cluster.user("bench").await?;
    let mut times = Vec::new();
    for _ in 0..20 {
        let start = Instant::now();
        let page = client
            .list(ListJobsRequest {
                page_size: 100,
                ..Default::default()
            })
            .await?;
        times.push(start.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(
            page.jobs.len() == 100,
            "first page has {} jobs",
            page.jobs.len()
        );
    }
    times.sort_by(f64::total_cmp);
    report.add(figure(
        "queue",
        "ListJobs first page (100), median",
        percentile(&times, 0.5),
        "ms",
        "< 50",
    ));
    let start = Instant::now();
    let out = cluster
        .cli("bench")
        .args(["ls", "--limit", "100"])
        .output()?;
    anyhow::ensure!(out.status.success(), "gantry ls failed");
    report.add(figure(
        "queue",
        "`gantry ls` first page, whole process",
        start.elapsed().as_secs_f64() * 1000.0,
        "ms",
        "< 50",
    ));
    let start = Instant::now();
    cluster.core.restart().await?;
    let client = cluster.user("bench").await?;
    client
        .list(ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?;
    report.add(figure(
        "queue",
        "SIGKILL gantryd -> serving again",
        start.elapsed().as_secs_f64() * 1000.0,
        "ms",
        "< 10000",
    ));
    let last = client
        .list(ListJobsRequest {
            page_size: 1,
            ..Default::default()
        })
        .await?;
    let newest = last.jobs.first().map(|j| j.id).unwrap_or(0);
    // submit_many sends n / 64 jobs from each of the 64 clients.
    let submitted = n / 64 * 64;
    anyhow::ensure!(
        newest as usize >= submitted,
        "jobs were lost: newest id {newest} < {submitted}"
    );
    Ok(())
}

/// Scenario 6: follow a job writing a lot to stdout.
pub async fn logs(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let size: u64 = args.size(1 << 30, 256 << 20) as u64;
    let cluster = Cluster::start(Options {
        cpus: cores(),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let pid = cluster.core.pid().unwrap_or(0);
    let spec = JobSpec {
        argv: vec![
            "head".into(),
            "-c".into(),
            size.to_string(),
            "/dev/zero".into(),
        ],
        ..Default::default()
    };
    let job = client.submit(spec).await?;
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss(pid), std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let chunks = client.read_logs(job.id, LogStream::Stdout, 0, true).await?;
    let mut chunks = std::pin::pin!(chunks);
    let mut bytes = 0u64;
    let mut first: Option<Instant> = None;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        if !chunk.data.is_empty() {
            first.get_or_insert_with(Instant::now);
        }
        bytes += chunk.data.len() as u64;
    }
    let secs = first.map(|t| t.elapsed().as_secs_f64()).unwrap_or(f64::NAN);
    sampler.abort();
    anyhow::ensure!(bytes == size, "followed {bytes} of {size} bytes");
    let mib = size as f64 / (1 << 20) as f64;
    report.add(figure(
        "logs",
        &format!("`logs -f` of {mib:.0} MiB"),
        mib / secs,
        "MiB/s",
        ">= 200",
    ));
    let peak = peak.load(std::sync::atomic::Ordering::Relaxed);
    report.add(figure(
        "logs",
        "gantryd peak RSS while following",
        peak as f64 / (1 << 20) as f64,
        "MiB",
        "bounded",
    ));
    Ok(())
}
