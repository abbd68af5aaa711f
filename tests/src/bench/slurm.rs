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
use gantry_gate_slurm::script;

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
    let one_by_one = args.size(30, 5);
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
    // One job at a time, taking turns so that all see the cluster in the
    // same moods (Slurm's own time per job ranges over a second or more);
    // medians. Straight sbatch twice: as a user types it (`--wrap true`),
    // and with the very batch script and options the gate writes, which
    // leaves Gantry's own work as the difference.
    let client = cluster.user("bench").await?;
    let shape_dir = tempfile::Builder::new()
        .prefix("gantry-bench-shape-")
        .tempdir()?;
    let (mut through_gantry, mut plain, mut same_shape) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..one_by_one {
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
        through_gantry.push(start.elapsed().as_secs_f64() * 1000.0);
        plain.extend(sbatch_one(&slurm, None));
        same_shape.extend(sbatch_one(&slurm, Some((shape_dir.path(), k))));
    }
    let gantry_ms = median(&mut through_gantry);
    let metric = format!("one `true` job at a time, submit -> completed, median of {one_by_one}");
    let mut peers = [
        (plain, "sbatch --wrap true, then squeue every 0.25 s"),
        (
            same_shape,
            "sbatch of the gate's own script and options, then squeue every 0.25 s",
        ),
    ];
    for (times, peer) in &mut peers {
        let mut f = figure(
            "slurm",
            &format!("{metric}, through Gantry"),
            gantry_ms,
            "ms",
            "",
        );
        if times.len() == one_by_one {
            f.peer = Some(peer.to_string());
            f.peer_value = Some(median(times));
        }
        report.add(f);
    }
    let [(plain, _), (same_shape, _)] = &mut peers;
    if plain.len() == one_by_one && same_shape.len() == one_by_one {
        report.add(figure(
            "slurm",
            "of which Slurm's time for the job Gantry asks for (its options minus --wrap true)",
            median(same_shape) - median(plain),
            "ms",
            "",
        ));
        report.add(figure(
            "slurm",
            "time Gantry's own work adds per job (through Gantry minus the same job by sbatch)",
            gantry_ms - median(same_shape),
            "ms",
            "",
        ));
    }
    Ok(())
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One trivial job: `sbatch` (plain `--wrap true`, or with `shape`: the
/// batch script and options the gate would write for attempt `k` in that
/// directory), then `squeue` every 0.25 s (the gate's poll in this
/// benchmark) until it completed; its milliseconds. `None` when a command
/// fails or the job does not complete.
fn sbatch_one(slurm: &SlurmCluster, shape: Option<(&std::path::Path, usize)>) -> Option<f64> {
    let run = |program: &str, args: &[String], stdin: Option<&str>| -> Option<String> {
        use std::io::Write;
        let mut child = std::process::Command::new(program)
            .args(args)
            .env("SLURM_CONF", &slurm.conf)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut pipe = child.stdin.take()?;
        pipe.write_all(stdin.unwrap_or("").as_bytes()).ok()?;
        drop(pipe);
        let out = child
            .wait_with_output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let (mut args, script) = match shape {
        None => (
            owned(&["--wrap", "true", "-o", "/dev/null", "-J", "one-by-one"]),
            None,
        ),
        Some((dir, k)) => {
            let attempt = gantry_gate::AttemptId::parse("attempt", &format!("shape-{k}")).ok()?;
            let dir = dir.join(attempt.as_str());
            std::fs::create_dir_all(dir.join("work")).ok()?;
            let spec = gantry_gate::JobSpec {
                job_id: k as u64,
                name: String::new(),
                command: gantry_gate::Command::Argv(vec!["true".into()]),
                env: Default::default(),
                resources: gantry_gate::Resources {
                    cpus: 1,
                    ..Default::default()
                },
                walltime: None,
                owner: String::new(),
            };
            let script = script::batch_script(&dir, &attempt, "bench", &spec);
            (
                script::sbatch_options(&dir, &attempt, "debug", &spec),
                Some(script),
            )
        }
    };
    args.insert(0, "--parsable".into());
    let start = Instant::now();
    let out = run("sbatch", &args, script.as_deref())?;
    let id = out.split(';').next()?.to_string();
    loop {
        let state = run(
            "squeue",
            &owned(&["-h", "-t", "all", "-j", &id, "-o", "%T"]),
            None,
        )?;
        match state.as_str() {
            "COMPLETED" => return Some(start.elapsed().as_secs_f64() * 1000.0),
            "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "" => {
                std::thread::sleep(Duration::from_millis(250))
            }
            _ => return None,
        }
    }
}
