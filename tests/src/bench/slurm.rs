//! Issue 3's measurement: on one single-node Slurm (`scripts/slurm`), `n`
//! trivial jobs from submit to completion straight through `sbatch`, then
//! through Gantry (gantryd, gantry-sched, gantry-gate-slurm polling every
//! 0.25 s); then the time Gantry adds per job, measured one job at a time
//! (a burst of jobs measures mostly how Slurm's scheduler takes a burst):
//! `sbatch` then `squeue` every 0.25 s until the job completed, against
//! `gantry submit` then wait, on the same cluster.

use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_client::{JobSpec, JobState};

use super::peers::{SlurmCluster, sbatch_on};
use super::scenarios::{clients, figure, submit_many};
use super::{Args, Report};
use crate::{Cluster, Options};

/// Run the Slurm scenario (nothing when Slurm cannot run here).
pub async fn slurm(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let n = args.size(100, 20);
    let Some(slurm) = SlurmCluster::start(args, "slurm-gate") else {
        report.add(figure(
            "slurm",
            "Slurm could not be started here",
            0.0,
            "",
            "",
        ));
        return Ok(());
    };
    let straight = sbatch_on(args, &slurm, n);
    let one_by_one = args.size(20, 5);
    let straight_latency = sbatch_one_by_one(&slurm, one_by_one);
    let cluster = Cluster::start(Options {
        slurm_conf: Some(slurm.conf.clone()),
        ..Default::default()
    })
    .await?;
    let watcher = cluster.user("bench").await?;
    let mut events = Box::pin(watcher.watch(0, vec![], true));
    let start = Instant::now();
    let submitter = tokio::spawn(submit_many(clients(&cluster, 4).await?, n, false));
    let mut ended = 0;
    while ended < n {
        let event = tokio::time::timeout(Duration::from_secs(300), events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no progress for 300 s after {ended} jobs"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
        if matches!(
            JobState::try_from(event.to_state),
            Ok(JobState::Completed | JobState::Failed | JobState::Cancelled)
        ) {
            ended += 1;
        }
    }
    let gantry_s = start.elapsed().as_secs_f64();
    submitter.await??;
    let metric = format!("{n} `true` jobs submit -> completed on single-node Slurm");
    let mut f = figure(
        "slurm",
        &format!("{metric}, through Gantry"),
        n as f64 / gantry_s,
        "jobs/s",
        "",
    );
    if let Some(s) = straight {
        f.peer = Some(format!("sbatch, {n} jobs"));
        f.peer_value = Some(s.complete_per_s);
        let sbatch_s = n as f64 / s.complete_per_s;
        report.add(f);
        report.add(figure(
            "slurm",
            "time Gantry adds per job (its total minus sbatch's, per job)",
            (gantry_s - sbatch_s) / n as f64 * 1000.0,
            "ms",
            "",
        ));
    } else {
        report.add(f);
    }
    let client = cluster.user("bench").await?;
    let mut latencies = Vec::with_capacity(one_by_one);
    for _ in 0..one_by_one {
        let start = Instant::now();
        let spec = JobSpec {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let job = client.submit(spec).await?;
        let ended = client.wait(job.id, |_| {}).await?;
        anyhow::ensure!(
            ended.state() == JobState::Completed,
            "job {} ended {:?}",
            job.id,
            ended.state()
        );
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let gantry_ms = mean(&latencies);
    let mut f = figure(
        "slurm",
        &format!(
            "one `true` job at a time, submit -> completed, mean of {one_by_one}, through Gantry"
        ),
        gantry_ms,
        "ms",
        "",
    );
    if let Some(straight_ms) = straight_latency.as_deref().map(mean) {
        f.peer = Some("sbatch, then squeue every 0.25 s".into());
        f.peer_value = Some(straight_ms);
        report.add(f);
        report.add(figure(
            "slurm",
            "time Gantry adds per job, one at a time (mean through Gantry minus sbatch's)",
            gantry_ms - straight_ms,
            "ms",
            "",
        ));
    } else {
        report.add(f);
    }
    Ok(())
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len().max(1) as f64
}

/// `n` trivial jobs one after another, each `sbatch` then `squeue` every
/// 0.25 s (the gate's poll in this benchmark) until it completed; each
/// one's milliseconds. `None` when a command fails.
fn sbatch_one_by_one(slurm: &SlurmCluster, n: usize) -> Option<Vec<f64>> {
    let run = |program: &str, args: &[&str]| -> Option<String> {
        let out = std::process::Command::new(program)
            .args(args)
            .env("SLURM_CONF", &slurm.conf)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let start = Instant::now();
        let out = run(
            "sbatch",
            &[
                "--parsable",
                "--wrap",
                "true",
                "-o",
                "/dev/null",
                "-J",
                "one-by-one",
            ],
        )?;
        let id = out.split(';').next()?.to_string();
        loop {
            let state = run("squeue", &["-h", "-t", "all", "-j", &id, "-o", "%T"])?;
            match state.as_str() {
                "COMPLETED" => break,
                "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "" => {
                    std::thread::sleep(Duration::from_millis(250))
                }
                _ => return None,
            }
        }
        latencies.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    Some(latencies)
}
