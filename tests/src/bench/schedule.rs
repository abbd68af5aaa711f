//! The `schedule` scenario: a seeded synthetic trace of jobs of mixed sizes
//! and walltimes, offered at 1.5× what the site can run, replayed through
//! the real binaries (`sleep` jobs on a 16-CPU local gate) and compared with
//! EASY backfill and plain FIFO simulated on the same trace: mean wait,
//! makespan, utilisation, the wait of whole-machine jobs, and the starts
//! that break EASY's rule (a job started ahead of the first waiting one
//! although it could delay that one's reservation).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_client::{JobSpec, JobState, ResourceRequest};

use super::Args;
use super::report::Report;
use super::scenarios::{figure, with_peer};
use crate::{Cluster, Options};

/// CPUs of the replayed site.
const SITE_CPUS: u32 = 16;
/// The trace's seed: the same trace on every machine and every run.
const SEED: u64 = 0x6a6e_7472_7963;
/// Offered load: work submitted per unit of time, as a multiple of what
/// the site can run.
const OVERLOAD: f64 = 1.5;
/// Two times closer than this are the same moment (one batch of starts).
const SAME_MOMENT_MS: i64 = 100;

/// One job of the trace.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceJob {
    /// When it is submitted, ms after the first.
    pub at_ms: i64,
    /// CPUs it asks for.
    pub cpus: u32,
    /// How long it really runs, ms.
    pub run_ms: i64,
    /// The walltime it asks for, whole seconds (≥ its run).
    pub walltime_s: i64,
}

/// When a job of the trace started and ended, ms on the trace's clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    /// Submitted.
    pub submit_ms: i64,
    /// Started.
    pub start_ms: i64,
    /// Ended.
    pub end_ms: i64,
    /// When the scheduler's side (gantryd) recorded the end.
    pub heard_ms: i64,
}

/// SplitMix64: a generator defined by its few lines, so a seed names the
/// same trace for as long as this file exists (no library version changes it).
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// `n` jobs: CPUs 1 (40 %), 2 (25 %), 4 (20 %), 8 (10 %) or the whole
/// site (5 %); runs log-uniform in 0.2–3 s; walltimes 1.1–3× the run, in
/// whole seconds; arrivals uniform over the time that offers
/// [`OVERLOAD`] times the site's capacity.
pub fn trace(n: usize, seed: u64) -> Vec<TraceJob> {
    let mut rng = SplitMix(seed);
    let mut jobs: Vec<TraceJob> = (0..n)
        .map(|_| {
            let p = rng.unit();
            let cpus = match p {
                p if p < 0.40 => 1,
                p if p < 0.65 => 2,
                p if p < 0.85 => 4,
                p if p < 0.95 => 8,
                _ => SITE_CPUS,
            };
            let run_ms = (200.0 * 15f64.powf(rng.unit())) as i64;
            let over = 1.1 + 1.9 * rng.unit();
            let walltime_s = ((run_ms as f64 * over) / 1000.0).ceil().max(1.0) as i64;
            TraceJob {
                at_ms: 0,
                cpus,
                run_ms,
                walltime_s,
            }
        })
        .collect();
    let work: f64 = jobs.iter().map(|j| j.cpus as f64 * j.run_ms as f64).sum();
    let window_ms = work / (SITE_CPUS as f64 * OVERLOAD);
    let mut arrivals: Vec<i64> = (0..n).map(|_| (rng.unit() * window_ms) as i64).collect();
    arrivals.sort_unstable();
    for (job, at) in jobs.iter_mut().zip(arrivals) {
        job.at_ms = at;
    }
    jobs
}

/// How a simulated scheduler picks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Strictly in order: nothing starts ahead of the first waiting job.
    Fifo,
    /// In order, and a later job starts early when it fits now and does not
    /// delay the first waiting job's reservation (EASY backfill).
    Easy,
}

/// The first waiting job's reservation given what runs: when it can
/// start (from the walltimes of running jobs) and the CPUs spare then.
/// Jobs ending within `slack` ms after that moment free their CPUs with it:
/// jobs one decision started begin (and so end) a few ms apart.
fn reservation(now: i64, running: &[(i64, u32)], free: u32, need: u32, slack: i64) -> (i64, u32) {
    let mut ends: Vec<(i64, u32)> = running.to_vec();
    ends.sort_unstable();
    let mut free_then = free;
    let mut at = now;
    let mut counted = 0;
    for &(end, cpus) in &ends {
        if free_then >= need {
            break;
        }
        free_then += cpus;
        at = end;
        counted += 1;
    }
    let with_it: u32 = ends[counted..]
        .iter()
        .filter(|&&(end, _)| slack > 0 && end <= at + slack)
        .map(|&(_, cpus)| cpus)
        .sum();
    (at, (free_then + with_it).saturating_sub(need))
}

/// Simulate `policy` on `trace` at [`SITE_CPUS`]: each job's run.
pub fn simulate(trace: &[TraceJob], policy: Policy) -> Vec<Run> {
    let mut runs: Vec<Option<Run>> = vec![None; trace.len()];
    // (predicted end by walltime, real end, cpus, index) of running jobs.
    let mut running: Vec<(i64, i64, u32, usize)> = Vec::new();
    let mut waiting: Vec<usize> = Vec::new();
    let mut next = 0;
    let mut now = 0;
    while next < trace.len() || !waiting.is_empty() || !running.is_empty() {
        // The next event: an arrival or an end.
        let arrival = trace.get(next).map(|j| j.at_ms);
        let end = running.iter().map(|r| r.1).min();
        now = match (arrival, end) {
            (Some(a), Some(e)) => a.min(e),
            (Some(a), None) => a,
            (None, Some(e)) => e,
            (None, None) => now,
        };
        running.retain(|r| r.1 > now);
        while next < trace.len() && trace[next].at_ms <= now {
            waiting.push(next);
            next += 1;
        }
        let mut free = SITE_CPUS - running.iter().map(|r| r.2).sum::<u32>();
        let mut reserved: Option<(i64, u32)> = None;
        let mut started = Vec::new();
        for &i in &waiting {
            let job = trace[i];
            let fits = job.cpus <= free;
            let allowed = match reserved {
                None => fits,
                Some(_) if policy == Policy::Fifo => false,
                Some((at, spare)) => {
                    fits && (now + job.walltime_s * 1000 <= at || job.cpus <= spare)
                }
            };
            if allowed {
                if let Some((at, spare)) = &mut reserved
                    && now + job.walltime_s * 1000 > *at
                {
                    *spare -= job.cpus;
                }
                free -= job.cpus;
                running.push((now + job.walltime_s * 1000, now + job.run_ms, job.cpus, i));
                runs[i] = Some(Run {
                    submit_ms: job.at_ms,
                    start_ms: now,
                    end_ms: now + job.run_ms,
                    heard_ms: now + job.run_ms,
                });
                started.push(i);
            } else if reserved.is_none() {
                let predicted: Vec<(i64, u32)> = running.iter().map(|r| (r.0, r.2)).collect();
                reserved = Some(reservation(now, &predicted, free, job.cpus, 0));
            }
        }
        waiting.retain(|i| !started.contains(i));
    }
    runs.into_iter()
        .map(|r| r.expect("every job ran"))
        .collect()
}

/// What a schedule gives its users.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Outcome {
    /// Mean wait from submit to start, s.
    pub mean_wait_s: f64,
    /// Mean wait of the jobs asking for the whole site, s.
    pub whole_site_wait_s: f64,
    /// First submit to last end, s.
    pub makespan_s: f64,
    /// CPU time used over CPU time offered during the makespan.
    pub utilisation: f64,
    /// Starts that break EASY's rule.
    pub violations: usize,
    /// How late gantryd heard of ends: median and worst, ms.
    pub end_lag_ms: (i64, i64),
}

/// Measure `runs` of `trace`.
pub fn outcome(trace: &[TraceJob], runs: &[Run]) -> Outcome {
    let n = runs.len().max(1) as f64;
    let first = runs.iter().map(|r| r.submit_ms).min().unwrap_or(0);
    let last = runs.iter().map(|r| r.end_ms).max().unwrap_or(0);
    let makespan_ms = (last - first).max(1) as f64;
    let busy: f64 = trace
        .iter()
        .zip(runs)
        .map(|(j, r)| j.cpus as f64 * (r.end_ms - r.start_ms) as f64)
        .sum();
    let wide: Vec<f64> = trace
        .iter()
        .zip(runs)
        .filter(|(j, _)| j.cpus == SITE_CPUS)
        .map(|(_, r)| (r.start_ms - r.submit_ms) as f64 / 1000.0)
        .collect();
    Outcome {
        mean_wait_s: runs
            .iter()
            .map(|r| (r.start_ms - r.submit_ms) as f64 / 1000.0)
            .sum::<f64>()
            / n,
        whole_site_wait_s: wide.iter().sum::<f64>() / wide.len().max(1) as f64,
        makespan_s: makespan_ms / 1000.0,
        utilisation: busy / (SITE_CPUS as f64 * makespan_ms),
        violations: violations(trace, runs),
        end_lag_ms: {
            let mut lags: Vec<i64> = runs.iter().map(|r| r.heard_ms - r.end_ms).collect();
            lags.sort_unstable();
            (
                lags.get(lags.len() / 2).copied().unwrap_or(0),
                lags.last().copied().unwrap_or(0),
            )
        },
    }
}

/// Starts that break EASY's rule: job `j` started while an earlier job `h`
/// was the first waiting (and `h` did not start within the same moment), although
/// `j` would end after `h`'s reservation and needs more than the CPUs
/// spare then — judged from what ran at that moment, by walltimes.
pub fn violations(trace: &[TraceJob], runs: &[Run]) -> usize {
    breaking_starts(trace, runs).len()
}

/// The starts [`violations`] counts: each job and the one it jumped.
fn breaking_starts(trace: &[TraceJob], runs: &[Run]) -> Vec<(usize, usize)> {
    let mut found = Vec::new();
    for (j, run) in runs.iter().enumerate() {
        let now = run.start_ms;
        // The first job (in submission order) still waiting then; one that
        // started within the same moment was not held back.
        let Some(h) = (0..j).find(|&h| runs[h].submit_ms <= now && runs[h].start_ms > now) else {
            continue;
        };
        if runs[h].start_ms <= now + SAME_MOMENT_MS {
            continue;
        }
        let running: Vec<(i64, u32)> = runs
            .iter()
            .enumerate()
            // Started before it (at the same ms: earlier in the trace, as
            // a scheduler walks its queue), still running.
            .filter(|&(k, r)| (r.start_ms < now || (r.start_ms == now && k < j)) && r.end_ms > now)
            .map(|(k, r)| (r.start_ms + trace[k].walltime_s * 1000, trace[k].cpus))
            .collect();
        let used: u32 = running.iter().map(|r| r.1).sum();
        let free = SITE_CPUS.saturating_sub(used);
        let (at, spare) = reservation(now, &running, free, trace[h].cpus, SAME_MOMENT_MS);
        let ends_in_time = now + trace[j].walltime_s * 1000 <= at + SAME_MOMENT_MS;
        if !ends_in_time && trace[j].cpus > spare {
            found.push((j, h));
        }
    }
    found
}

/// Write the trace and a replay's runs as CSV to `path`, one job a line,
/// with the job each start jumped against EASY's rule (for study:
/// `GANTRY_BENCH_SCHEDULE_CSV=DIR scripts/bench --only schedule`).
fn write_csv(path: &std::path::Path, trace: &[TraceJob], runs: &[Run]) -> std::io::Result<()> {
    use std::fmt::Write as _;
    let jumped: HashMap<usize, usize> = breaking_starts(trace, runs).into_iter().collect();
    let mut text =
        String::from("job,cpus,run_ms,walltime_s,submit_ms,start_ms,end_ms,heard_ms,jumped\n");
    for (i, (t, r)) in trace.iter().zip(runs).enumerate() {
        let jumped = jumped.get(&i).map_or(String::new(), |h| h.to_string());
        let _ = writeln!(
            text,
            "{i},{},{},{},{},{},{},{},{jumped}",
            t.cpus, t.run_ms, t.walltime_s, r.submit_ms, r.start_ms, r.end_ms, r.heard_ms
        );
    }
    std::fs::write(path, text)
}

/// Replay `trace` through a local gate of [`SITE_CPUS`] CPUs with
/// `queue_factor`; the runs as gantryd recorded them, on the trace's clock.
async fn replay(trace: &[TraceJob], queue_factor: Option<u32>) -> anyhow::Result<Vec<Run>> {
    let cluster = Cluster::start(Options {
        cpus: SITE_CPUS,
        queue_factor,
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let mut events = Box::pin(client.watch_new(Vec::new()));
    let started = Instant::now();
    let submitter = {
        let client = client.clone();
        let trace = trace.to_vec();
        tokio::spawn(async move {
            let mut ids = Vec::with_capacity(trace.len());
            for job in trace {
                let due = started + Duration::from_millis(job.at_ms as u64);
                tokio::time::sleep_until(due.into()).await;
                let spec = JobSpec {
                    argv: vec!["sleep".into(), format!("{:.3}", job.run_ms as f64 / 1000.0)],
                    resources: Some(ResourceRequest {
                        cpus: Some(job.cpus),
                        memory: "1MiB".into(),
                        walltime: format!("{}s", job.walltime_s),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                ids.push(client.submit(spec).await?.id);
            }
            anyhow::Ok(ids)
        })
    };
    let mut ended = 0;
    while ended < trace.len() {
        let event = tokio::time::timeout(Duration::from_secs(120), events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no job ended for 120 s after {ended}"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
        match JobState::try_from(event.to_state) {
            Ok(JobState::Completed) => ended += 1,
            Ok(state @ (JobState::Failed | JobState::Cancelled)) => {
                anyhow::bail!("job {} ended {state:?}: {}", event.job_id, event.message)
            }
            _ => {}
        }
    }
    let ids = submitter.await??;
    let mut jobs = HashMap::new();
    for id in &ids {
        jobs.insert(*id, client.get(*id).await?);
    }
    // When gantryd recorded each end.
    let mut heard = HashMap::new();
    let mut history = Box::pin(client.watch(0, ids.clone(), false));
    while let Some(event) = history.next().await {
        let event = event?;
        if event.to_state == JobState::Completed as i32 {
            heard.insert(event.job_id, event.time_ms);
        }
    }
    let origin = jobs.values().map(|j| j.submit_time_ms).min().unwrap_or(0);
    Ok(ids
        .iter()
        .map(|id| {
            let j = &jobs[id];
            Run {
                submit_ms: j.submit_time_ms - origin,
                start_ms: j.start_time_ms - origin,
                end_ms: j.end_time_ms - origin,
                heard_ms: heard.get(id).copied().unwrap_or(j.end_time_ms) - origin,
            }
        })
        .collect())
}

/// Replay the trace with the gate's default queue and with none, beside
/// EASY and FIFO simulated on it.
pub async fn schedule(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.size(400, 100);
    let trace = trace(n, SEED);
    let easy = outcome(&trace, &simulate(&trace, Policy::Easy));
    let fifo = outcome(&trace, &simulate(&trace, Policy::Fifo));
    // What no backfill at all gives, for scale.
    report.add(with_peer(
        figure(
            "schedule",
            &format!("mean wait, {n} jobs on {SITE_CPUS} CPUs, FIFO simulated"),
            fifo.mean_wait_s,
            "s",
            "",
        ),
        "whole-site jobs under FIFO",
        Some(fifo.whole_site_wait_s),
    ));
    for (label, factor) in [("gate queue 16x", None), ("gate queue 0", Some(0))] {
        let runs = replay(&trace, factor).await?;
        if let Some(dir) = std::env::var_os("GANTRY_BENCH_SCHEDULE_CSV") {
            let file = format!("schedule-{n}-{}.csv", label.replace(' ', "-"));
            write_csv(&std::path::Path::new(&dir).join(file), &trace, &runs)?;
        }
        let got = outcome(&trace, &runs);
        let name = |what: &str| format!("{what}, {n} jobs on {SITE_CPUS} CPUs, {label}");
        report.add(with_peer(
            figure(
                "schedule",
                &name("mean wait"),
                got.mean_wait_s,
                "s",
                "~ EASY",
            ),
            "EASY simulated",
            Some(easy.mean_wait_s),
        ));
        report.add(with_peer(
            figure(
                "schedule",
                &name("whole-site jobs' mean wait"),
                got.whole_site_wait_s,
                "s",
                "~ EASY",
            ),
            "EASY simulated",
            Some(easy.whole_site_wait_s),
        ));
        report.add(with_peer(
            figure("schedule", &name("makespan"), got.makespan_s, "s", "~ EASY"),
            "EASY simulated",
            Some(easy.makespan_s),
        ));
        report.add(with_peer(
            figure(
                "schedule",
                &name("utilisation"),
                100.0 * got.utilisation,
                "%",
                "~ EASY",
            ),
            "EASY simulated",
            Some(100.0 * easy.utilisation),
        ));
        report.add(with_peer(
            figure(
                "schedule",
                &name("ends heard late, median"),
                got.end_lag_ms.0 as f64,
                "ms",
                "",
            ),
            "worst",
            Some(got.end_lag_ms.1 as f64),
        ));
        report.add(figure(
            "schedule",
            &name("starts breaking EASY's rule"),
            got.violations as f64,
            "starts",
            "0",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_trace_is_fixed_by_its_seed_and_overloads_the_site() {
        let a = trace(200, SEED);
        assert_eq!(a, trace(200, SEED));
        assert_ne!(a, trace(200, SEED + 1));
        assert!(a.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
        assert!(a.iter().any(|j| j.cpus == SITE_CPUS));
        assert!(a.iter().all(|j| j.walltime_s * 1000 >= j.run_ms));
    }

    #[test]
    fn easy_beats_fifo_and_neither_breaks_easys_rule() {
        let t = trace(200, SEED);
        let easy = outcome(&t, &simulate(&t, Policy::Easy));
        let fifo = outcome(&t, &simulate(&t, Policy::Fifo));
        assert_eq!(easy.violations, 0, "{easy:?}");
        assert_eq!(fifo.violations, 0, "{fifo:?}");
        assert!(easy.mean_wait_s < fifo.mean_wait_s, "{easy:?} {fifo:?}");
        assert!(easy.utilisation > fifo.utilisation, "{easy:?} {fifo:?}");
        assert!(easy.utilisation <= 1.0);
    }

    #[test]
    fn a_start_that_delays_the_first_waiting_job_is_counted() {
        // 16 CPUs: job 0 holds 8 for 10 s; job 1 (16 CPUs) waits for it;
        // job 2 (8 CPUs, 60 s walltime) jumps it and delays it.
        let job = |at_ms, cpus, walltime_s| TraceJob {
            at_ms,
            cpus,
            run_ms: walltime_s * 1000,
            walltime_s,
        };
        let t = [job(0, 8, 10), job(1, 16, 10), job(2, 8, 60)];
        let run = |submit_ms, start_ms, end_ms| Run {
            submit_ms,
            start_ms,
            end_ms,
            heard_ms: end_ms,
        };
        let bad = [run(0, 0, 10_000), run(1, 60_002, 70_002), run(2, 2, 60_002)];
        assert_eq!(violations(&t, &bad), 1);
        // A short one that ends before the reservation is a fair backfill.
        let t = [job(0, 8, 10), job(1, 16, 10), job(2, 8, 5)];
        let good = [run(0, 0, 10_000), run(1, 10_000, 20_000), run(2, 2, 5_002)];
        assert_eq!(violations(&t, &good), 0);
        // Two jobs one decision started 3 ms apart end 3 ms apart: both free
        // their CPUs at the reservation, so a backfill into the second's is fair.
        let t = [
            job(0, 8, 100),
            job(0, 4, 10),
            job(0, 2, 10),
            job(1, 6, 10),
            job(2, 2, 60),
        ];
        let runs = [
            run(0, 0, 100_000),
            run(0, 0, 10_000),
            run(0, 3, 10_003),
            run(1, 10_003, 20_003),
            run(2, 5, 60_005),
        ];
        assert_eq!(violations(&t, &runs), 0);
    }
}
