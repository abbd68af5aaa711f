//! Issue 3's and 16's measurement: on one single-node Slurm
//! (`scripts/slurm`), bursts of `n` trivial jobs from submit to completion
//! straight through `sbatch`, then through Gantry (gantryd, gantry-sched,
//! gantry-gate-slurm), both polling Slurm every 0.25 s and both begun just
//! after one of Slurm's scheduling passes, `--runs` times; then the time
//! Gantry adds per job, measured one job at a time (a burst measures mostly
//! how Slurm's scheduler takes a burst): `sbatch` of the very job the gate
//! writes, then `squeue` every 0.25 s until it completed, against `gantry
//! submit` then wait, on the same cluster, each split by slurmctld's log
//! into the submitter's two sides and Slurm's part.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use gantry_client::{JobSpec, JobState};
use gantry_gate_slurm::script;

use super::peers::{SlurmCluster, sbatch_on};
use super::report::Spread;
use super::scenarios::{clients, figure, median_figure, submit_many, with_peer};
use super::{Args, Report};
use crate::{Cluster, Options};

/// Run the Slurm scenario (nothing when Slurm cannot run here).
pub async fn slurm(args: &Args, report: &mut Report) -> anyhow::Result<()> {
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
    let one_by_one = args.size(30, 5);
    let cluster = Cluster::start(Options {
        slurm_conf: Some(slurm.conf.clone()),
        ..Default::default()
    })
    .await?;
    let bursts: &[usize] = if args.quick { &[20] } else { &[100, 1000] };
    let mut seen = 0;
    for &n in bursts {
        seen = burst(args, &slurm, &cluster, n, seen, report).await?;
    }
    // One job at a time, through Gantry and by sbatch of the very job the
    // gate writes, taking turns. Slurm's own time per job ranges over a
    // second (its scheduler allocates on a one-second cycle), so totals
    // compare poorly; slurmctld's log says to the millisecond when it took
    // each job and when it saw it end, which splits each job into what the
    // submitter's side took (submit -> slurmctld has it; slurmctld saw the
    // end -> the submitter knows) and Slurm's part in between.
    let client = cluster.user("bench").await?;
    let shape_dir = tempfile::Builder::new()
        .prefix("gantry-bench-shape-")
        .tempdir()?;
    let (mut gantry_jobs, mut sbatch_jobs) = (Vec::new(), Vec::new());
    for k in 0..one_by_one {
        let started = now_ms();
        let spec = JobSpec {
            argv: vec!["true".into()],
            ..Default::default()
        };
        let job = client.submit(spec).await?;
        let mut slurm_id = None;
        let ended = client
            .wait(job.id, |e| {
                slurm_id = slurm_id.or_else(|| slurm_job_in(&e.message));
            })
            .await?;
        let seen = now_ms();
        anyhow::ensure!(
            ended.state() == JobState::Completed,
            "job {} ended {:?}",
            job.id,
            ended.state()
        );
        let id = slurm_id.ok_or_else(|| anyhow::anyhow!("job {}: no Slurm job id", job.id))?;
        gantry_jobs.push((id, started, seen));
        sbatch_jobs.extend(sbatch_one(&slurm, shape_dir.path(), k));
    }
    let ctld = ctld_times(&slurm.ctld_log())?;
    let split = |jobs: &[(u64, i64, i64)]| -> Option<(f64, f64, f64)> {
        let (mut total, mut before, mut after) = (Vec::new(), Vec::new(), Vec::new());
        for (id, started, seen) in jobs {
            let (taken, done) = ctld.get(id)?;
            total.push((seen - started) as f64);
            before.push((taken - started) as f64);
            after.push((seen - done) as f64);
        }
        Some((median(&mut total), median(&mut before), median(&mut after)))
    };
    let gantry = split(&gantry_jobs)
        .ok_or_else(|| anyhow::anyhow!("a Gantry job is missing from slurmctld's log"))?;
    let sbatch = (sbatch_jobs.len() == one_by_one)
        .then(|| split(&sbatch_jobs))
        .flatten();
    let peer = "sbatch of the gate's own script and options, squeue every 0.25 s";
    let rows = [
        ("submit -> completed", gantry.0, sbatch.map(|s| s.0)),
        (
            "submit -> slurmctld has the job",
            gantry.1,
            sbatch.map(|s| s.1),
        ),
        (
            "slurmctld saw the end -> the submitter knows",
            gantry.2,
            sbatch.map(|s| s.2),
        ),
    ];
    for (what, value, peer_value) in rows {
        let mut f = figure(
            "slurm",
            &format!("one `true` job at a time, {what}, median of {one_by_one}, through Gantry"),
            value,
            "ms",
            "",
        );
        if peer_value.is_some() {
            f.peer = Some(peer.into());
            f.peer_value = peer_value;
        }
        report.add(f);
    }
    if let Some(s) = sbatch {
        report.add(figure(
            "slurm",
            "time Gantry adds per job: its two sides minus sbatch's (medians)",
            (gantry.1 - s.1) + (gantry.2 - s.2),
            "ms",
            "",
        ));
    }
    Ok(())
}

/// A burst of `n` `true` jobs, `args.runs` times: by `sbatch`, one after
/// another as a user would, then through Gantry, each from its first submit
/// until all completed and each begun just after one of Slurm's scheduling
/// passes ([`SlurmCluster::after_a_pass`]). The figures are the medians;
/// "time added" is the median of each run's Gantry-minus-sbatch. Gantry's
/// events after `seen` are this burst's; the last one's is returned.
async fn burst(
    args: &Args,
    slurm: &SlurmCluster,
    cluster: &Cluster,
    n: usize,
    mut seen: u64,
    report: &mut Report,
) -> anyhow::Result<u64> {
    let watcher = cluster.user("bench").await?;
    let (mut gantry, mut straight, mut added) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..args.runs.max(1) {
        let peer = if args.no_peers {
            None
        } else {
            slurm.after_a_pass()?;
            sbatch_on(args, slurm, n)
        };
        slurm.after_a_pass()?;
        let (gantry_s, last) = gantry_burst(cluster, &watcher, n, seen).await?;
        seen = last;
        gantry.push(n as f64 / gantry_s);
        if let Some(s) = peer {
            straight.push(s.complete_per_s);
            let sbatch_s = n as f64 / s.complete_per_s;
            added.push((gantry_s - sbatch_s) / n as f64 * 1000.0);
        }
    }
    let metric = format!("{n} `true` jobs submit -> completed on single-node Slurm");
    let f = median_figure(
        "slurm",
        &format!("{metric}, through Gantry"),
        &gantry,
        "jobs/s",
        ">= sbatch",
    );
    let Some((peer, _)) = Spread::median_of(&straight) else {
        report.add(f);
        return Ok(seen);
    };
    report.add(with_peer(f, &format!("sbatch, {n} jobs"), Some(peer)));
    report.add(median_figure(
        "slurm",
        &format!("time Gantry adds per job, {n} jobs (its total minus sbatch's, per job)"),
        &added,
        "ms",
        "<= 0",
    ));
    Ok(seen)
}

/// One burst of `n` jobs through Gantry (4 SDK clients), watched by
/// `watcher` from event `seen`: seconds from the first submit until all
/// ended, and the last event's sequence number.
async fn gantry_burst(
    cluster: &Cluster,
    watcher: &gantry_client::Client,
    n: usize,
    seen: u64,
) -> anyhow::Result<(f64, u64)> {
    let mut events = Box::pin(watcher.watch(seen, vec![], true));
    let start = Instant::now();
    let submitter = tokio::spawn(submit_many(clients(cluster, 4).await?, n, false));
    let (mut ended, mut last) = (0, seen);
    while ended < n {
        let event = tokio::time::timeout(Duration::from_secs(300), events.next())
            .await
            .map_err(|_| anyhow::anyhow!("no progress for 300 s after {ended} jobs"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
        last = event.seq;
        if matches!(
            JobState::try_from(event.to_state),
            Ok(JobState::Completed | JobState::Failed | JobState::Cancelled)
        ) {
            ended += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    submitter.await??;
    Ok((secs, last))
}

/// The Slurm job id in a RUNNING event's message ("running on slurm (ID)").
fn slurm_job_in(message: &str) -> Option<u64> {
    message.rsplit_once('(')?.1.strip_suffix(')')?.parse().ok()
}

/// Unix milliseconds now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// From slurmctld's log: when it took each job and when it saw it end
/// (Unix ms), by job id.
fn ctld_times(log: &std::path::Path) -> anyhow::Result<HashMap<u64, (i64, i64)>> {
    let text = std::fs::read_to_string(log)?;
    let offset = local_offset_ms()?;
    let (mut taken, mut done) = (HashMap::new(), HashMap::new());
    for line in text.lines() {
        let Some((stamp, rest)) = line.strip_prefix('[').and_then(|l| l.split_once("] ")) else {
            continue;
        };
        let id = |after: &str| -> Option<u64> {
            rest.strip_prefix(after)?
                .split_whitespace()
                .next()?
                .strip_prefix("JobId=")?
                .parse()
                .ok()
        };
        let Some(at) = local_ms(stamp).map(|t| t - offset) else {
            continue;
        };
        if let Some(id) = id("_slurm_rpc_submit_batch_job:") {
            taken.insert(id, at);
        } else if rest.ends_with(" done")
            && let Some(id) = id("_job_complete:")
        {
            done.insert(id, at);
        }
    }
    Ok(taken
        .into_iter()
        .filter_map(|(id, t)| Some((id, (t, *done.get(&id)?))))
        .collect())
}

/// `YYYY-MM-DDTHH:MM:SS.mmm` (slurmctld's log time, local) as milliseconds
/// since 1970-01-01 in local time.
fn local_ms(stamp: &str) -> Option<i64> {
    let (date, time) = stamp.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, ms) = time.split_once('.')?;
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, s) = (t.next()??, t.next()??, t.next()??);
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((((days * 24 + h) * 60 + min) * 60 + s) * 1000 + ms.parse::<i64>().ok()?)
}

/// This machine's offset from UTC in milliseconds (`date +%z`).
fn local_offset_ms() -> anyhow::Result<i64> {
    let out = std::process::Command::new("date").arg("+%z").output()?;
    let z = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let sign = if z.starts_with('-') { -1 } else { 1 };
    let digits = z.trim_start_matches(['+', '-']);
    anyhow::ensure!(digits.len() == 4, "date +%z printed {z:?}");
    let (h, m): (i64, i64) = (digits[..2].parse()?, digits[2..].parse()?);
    Ok(sign * (h * 60 + m) * 60_000)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// One trivial job by `sbatch` of the batch script and options the gate
/// would write for attempt `k` in `dir`, then `squeue` every 0.25 s (the
/// gate's poll in this benchmark) until it completed: its Slurm job id,
/// and the Unix ms before sbatch ran and when its end was seen. `None` when
/// a command fails or the job does not complete.
fn sbatch_one(slurm: &SlurmCluster, dir: &std::path::Path, k: usize) -> Option<(u64, i64, i64)> {
    let run = |program: &str, args: &[String], stdin: &str| -> Option<String> {
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
        pipe.write_all(stdin.as_bytes()).ok()?;
        drop(pipe);
        let out = child
            .wait_with_output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let attempt = gantry_gate::AttemptId::parse("attempt", &format!("shape-{k}")).ok()?;
    let dir = dir.join(attempt.as_str());
    std::fs::create_dir_all(dir.join("work")).ok()?;
    let spec = gantry_gate::JobSpec {
        job_id: k as u64,
        name: String::new(),
        command: gantry_gate::Command::Argv(vec!["true".into()]),
        env: Default::default(),
        secret_env: Default::default(),
        resources: gantry_gate::Resources {
            cpus: 1,
            ..Default::default()
        },
        layout: Default::default(),
        walltime: None,
        owner: String::new(),
        warning: None,
        stdin: None,
        chdir: None,
    };
    let text = script::batch_script(&dir, &attempt, "bench", &spec);
    let mut args = script::sbatch_options(&dir, &attempt, "debug", &spec);
    args.insert(0, "--parsable".into());
    let started = now_ms();
    let out = run("sbatch", &args, &text)?;
    let id = out.split(';').next()?.to_string();
    let query: Vec<String> = ["-h", "-t", "all", "-j", &id, "-o", "%T"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    loop {
        let state = run("squeue", &query, "")?;
        match state.as_str() {
            "COMPLETED" => return Some((id.parse().ok()?, started, now_ms())),
            "PENDING" | "CONFIGURING" | "RUNNING" | "COMPLETING" | "" => {
                std::thread::sleep(Duration::from_millis(250))
            }
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_slurmctld_times_and_messages() {
        assert_eq!(local_ms("1970-01-01T00:00:00.000"), Some(0));
        assert_eq!(local_ms("2026-11-24T03:02:27.206"), Some(1_795_489_347_206));
        assert_eq!(local_ms("2000-02-29T12:00:00.005"), Some(951_825_600_005));
        assert_eq!(local_ms("garbage"), None);
        assert_eq!(slurm_job_in("running on slurm (146)"), Some(146));
        assert_eq!(slurm_job_in("queued"), None);
    }
}
