//! Issue 3's measurement: on one single-node Slurm (`scripts/slurm`), `n`
//! trivial jobs from submit to completion straight through `sbatch`, then
//! through Gantry (gantryd, gantry-sched, gantry-gate-slurm polling every
//! 0.25 s), and the time Gantry adds per job.

use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_client::JobState;

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
    Ok(())
}
