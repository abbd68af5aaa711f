//! Scenario 5, its scheduling part: a million schedulable jobs in the
//! scheduler's view at once, through the real processes. Ten held arrays of
//! 100,000 `true` tasks are accepted, then released (ten calls), so the
//! scheduler receives a million QUEUED jobs. gantry-sched logs, every 10 s,
//! its slowest pass and how many jobs were queued then; the slowest pass
//! over (nearly) all of them is the figure.

use std::time::{Duration, Instant};

use super::arrays::held_array;
use super::scenarios::{cores, figure};
use super::{Args, Report};
use crate::{Cluster, Options};

const ARRAY: usize = 100_000;

/// Run the scheduler-pass measurement.
pub async fn scheduler_pass(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.size(1_000_000, 100_000);
    let cluster = Cluster::start(Options {
        cpus: cores(),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let mut arrays = Vec::new();
    for _ in 0..n / ARRAY {
        let response = client.submit_request(held_array(ARRAY)).await?;
        arrays.push(response.job.map(|j| j.id).unwrap_or_default());
    }
    let released = Instant::now();
    for id in &arrays {
        client.release(*id).await?;
    }
    let release_s = released.elapsed().as_secs_f64();
    report.add(figure(
        "queue",
        &format!("held tasks released/s ({n}, one call per array)"),
        n as f64 / release_s,
        "tasks/s",
        "",
    ));
    // Wait for a pass that saw (nearly) all of them queued.
    let deadline = Instant::now() + Duration::from_secs(180);
    let slowest = loop {
        let passes = logged_passes(cluster.sched.log_path());
        let big: Vec<f64> = passes
            .iter()
            .filter(|(queued, _)| *queued as f64 >= 0.9 * n as f64)
            .map(|(_, ms)| *ms)
            .collect();
        if !big.is_empty() {
            break big.into_iter().fold(0.0, f64::max);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "gantry-sched logged no pass over {n} queued jobs in 180 s (it logs them at info: GANTRY_TEST_LOG=warn,gantry_sched=info, as scripts/bench sets)"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    report.add(figure(
        "queue",
        &format!("one scheduler pass over {n} queued jobs (slowest in 10 s)"),
        slowest,
        "ms",
        "< 1000",
    ));
    Ok(())
}

/// `(queued, slowest ms)` of every pass summary in the scheduler's log.
fn logged_passes(log: &std::path::Path) -> Vec<(u64, f64)> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    text.lines()
        .filter(|l| l.contains("scheduling passes in the last"))
        .filter_map(|line| {
            let plain = strip_ansi(line);
            let field = |name: &str| -> Option<f64> {
                plain
                    .split_whitespace()
                    .find_map(|w| w.strip_prefix(name))
                    .and_then(|v| v.parse().ok())
            };
            Some((field("queued=")? as u64, field("slowest_ms=")?))
        })
        .collect()
}

fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
