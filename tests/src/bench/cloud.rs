//! Scenario `cloud` (issue 23): Gantry's own overheads on EC2 — gantryd,
//! gantry-sched, gantry-gate-aws and gantry-agent over mTLS, with moto as
//! EC2. moto boots an instance the moment it is asked, and the harness's
//! machine player (`crate::cloud::MachinePlayer`) notices a new instance
//! within its 100 ms poll and runs its boot script, so the figures are
//! Gantry's time plus at most that poll — not a real machine's boot.

use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use gantry_client::{JobEvent, JobState};

use super::scenarios::{figure, median_figure, run_through, trivial};
use super::{Args, Report};
use crate::cloud::{ec2_client, live_instances, moto_endpoint};
use crate::{AwsSite, Cluster, Options};

/// Cold starts and teardowns with an idle timeout of 0, then many jobs
/// through one warm machine.
pub async fn cloud(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let endpoint = moto_endpoint();
    let ec2 = ec2_client(&endpoint).await;
    let site = |idle_timeout_seconds| AwsSite {
        idle_timeout_seconds,
        staging: false,
        ..AwsSite::on(endpoint.clone())
    };

    // Cold: every job needs a new machine, and its machine goes when it ends.
    let runs = args.size(10, 3);
    let cluster = Cluster::start(Options {
        aws: Some(site(0)),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let mut events = Box::pin(client.watch(0, vec![], true));
    let (mut running, mut terminated) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        until_no_machine(&ec2, &cluster.installation, Duration::from_secs(60)).await?;
        let start = Instant::now();
        let job = client.submit(trivial(false)).await?;
        let ended = loop {
            let event = next_event(&mut events, job.id).await?;
            match JobState::try_from(event.to_state) {
                Ok(JobState::Running) => running.push(start.elapsed().as_secs_f64() * 1000.0),
                Ok(JobState::Completed) => break Instant::now(),
                Ok(state @ (JobState::Failed | JobState::Cancelled)) => {
                    anyhow::bail!("job {} ended {state:?}: {}", job.id, event.message)
                }
                _ => {}
            }
        };
        until_no_machine(&ec2, &cluster.installation, Duration::from_secs(60)).await?;
        terminated.push(ended.elapsed().as_secs_f64() * 1000.0);
    }
    drop(cluster);
    report.add(median_figure(
        "cloud",
        "submit -> RUNNING, cold partition (new EC2 machine)",
        &running,
        "ms",
        "< 1000",
    ));
    report.add(median_figure(
        "cloud",
        "job end -> every instance terminated, idle timeout 0",
        &terminated,
        "ms",
        "< 5000",
    ));

    // Warm: one machine (t3.micro, 2 vCPUs, the gate allowed no second) runs
    // them all; each run on a fresh cluster.
    let n = args.size(1_000, 200);
    let (mut rates, mut failed) = (Vec::new(), 0);
    for _ in 0..args.runs {
        let (rate, not_completed) = through_one_machine(&ec2, site(300), n).await?;
        rates.push(rate);
        failed += not_completed;
    }
    report.add(median_figure(
        "cloud",
        &format!("{n} `true` jobs through one agent machine (2 vCPUs)"),
        &rates,
        "jobs/s",
        ">= 500",
    ));
    if failed > 0 {
        report.add(figure(
            "cloud",
            "jobs that did not complete",
            failed as f64,
            "jobs",
            "0",
        ));
    }
    Ok(())
}

/// `n` trivial jobs through the one machine of a new cluster on `site`,
/// after a first job has brought it up: jobs/s, and how many did not complete.
async fn through_one_machine(
    ec2: &aws_sdk_ec2::Client,
    site: AwsSite,
    n: usize,
) -> anyhow::Result<(f64, usize)> {
    let one_machine = AwsSite {
        instance_types: "t3.micro".into(),
        gate_args: vec!["--max-machines".into(), "1".into()],
        ..site
    };
    let cluster = Cluster::start(Options {
        aws: Some(one_machine),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let warm_up = client.submit(trivial(false)).await?;
    let mut events = Box::pin(client.watch(0, vec![warm_up.id], true));
    loop {
        let event = next_event(&mut events, warm_up.id).await?;
        if JobState::try_from(event.to_state) == Ok(JobState::Completed) {
            break;
        }
    }
    let (rate, failed) = run_through(&cluster, n, warm_up.id).await?;
    let machines = live_instances(ec2, &cluster.installation).await?.len();
    if machines != 1 {
        anyhow::bail!("{n} jobs ran on {machines} machines, not one");
    }
    Ok((rate, failed))
}

/// The next event of job `id` on `events`.
async fn next_event(
    events: &mut (impl Stream<Item = gantry_client::Result<JobEvent>> + Unpin),
    id: u64,
) -> anyhow::Result<JobEvent> {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(60), events.next())
            .await
            .map_err(|_| anyhow::anyhow!("job {id} made no progress for 60 s"))?
            .ok_or_else(|| anyhow::anyhow!("the event stream ended"))??;
        if event.job_id == id {
            return Ok(event);
        }
    }
}

/// Wait until EC2 lists no live instance of `installation`, polling every 10 ms.
async fn until_no_machine(
    ec2: &aws_sdk_ec2::Client,
    installation: &str,
    within: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + within;
    loop {
        let live = live_instances(ec2, installation).await?;
        if live.is_empty() {
            return Ok(());
        }
        if Instant::now() > deadline {
            anyhow::bail!("instances {live:?} still live after {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
