//! SIGKILL in the middle of real work loses no job and runs none twice.

use std::collections::HashMap;
use std::time::Duration;

use futures::TryStreamExt;
use gantry_client::{Client, JobSpec, JobState};
use gantry_e2e::{Cluster, Options};

fn recorder(path: &std::path::Path, secs: f32) -> JobSpec {
    let script = format!("sleep {secs}; echo $GANTRY_JOB_ID >> {}", path.display());
    JobSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script],
        ..Default::default()
    }
}

/// A cluster whose local gate has two CPUs.
async fn two_cpus() -> Cluster {
    Cluster::start(Options {
        cpus: 2,
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn wait_until(client: &Client, ids: &[u64], pred: impl Fn(&[JobState]) -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let mut states = Vec::new();
        for id in ids {
            states.push(client.get(*id).await.expect("get").state());
        }
        if pred(&states) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out; states {states:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn finish_and_check(cluster: &Cluster, ids: &[u64], runs: &std::path::Path) {
    let alice = cluster.user("alice").await.unwrap();
    for id in ids {
        let job = tokio::time::timeout(Duration::from_secs(60), alice.wait(*id, |_| {}))
            .await
            .expect("job did not end")
            .expect("wait");
        assert_eq!(job.state(), JobState::Completed, "job {id}: {job:?}");
    }
    let text = std::fs::read_to_string(runs).unwrap();
    let mut counts: HashMap<u64, u32> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    for id in ids {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ran {:?} times",
            counts.get(id)
        );
    }
    assert_eq!(counts.len(), ids.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_gantryd_while_jobs_are_queued_and_running() {
    let mut cluster = two_cpus().await;
    let runs = cluster.dir().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..8 {
        ids.push(alice.submit(recorder(&runs, 0.7)).await.unwrap().id);
    }
    // Some run, others wait (in gantryd's queue or the gate's).
    wait_until(&alice, &ids, |s| {
        s.contains(&JobState::Running)
            && s.iter()
                .any(|s| matches!(s, JobState::Queued | JobState::Scheduled))
    })
    .await;
    cluster.core.restart().await.unwrap();
    finish_and_check(&cluster, &ids, &runs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_the_local_gate_while_jobs_run() {
    let mut cluster = two_cpus().await;
    let runs = cluster.dir().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(alice.submit(recorder(&runs, 0.7)).await.unwrap().id);
    }
    wait_until(&alice, &ids, |s| s.contains(&JobState::Running)).await;
    cluster.gate.restart().await.unwrap();
    finish_and_check(&cluster, &ids, &runs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_the_scheduler_delays_but_loses_nothing() {
    let mut cluster = two_cpus().await;
    let runs = cluster.dir().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(alice.submit(recorder(&runs, 0.3)).await.unwrap().id);
    }
    cluster.sched.restart().await.unwrap();
    for _ in 0..4 {
        ids.push(alice.submit(recorder(&runs, 0.1)).await.unwrap().id);
    }
    finish_and_check(&cluster, &ids, &runs).await;
}

/// SIGKILL the local gate's supervisor (its pid is in its lock file).
fn sigkill_supervisor(cluster: &Cluster) {
    let lock = cluster.dir().join("local").join("supervisor.lock");
    let pid = std::fs::read_to_string(&lock).expect("the supervisor's lock file");
    let status = std::process::Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -9 {pid}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_whose_supervisor_is_sigkilled_is_requeued_and_completes() {
    let cluster = two_cpus().await;
    let runs = cluster.dir().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let requeued = alice.submit(recorder(&runs, 2.0)).await.unwrap().id;
    let no_retries = JobSpec {
        retries: Some(0),
        ..recorder(&runs, 2.0)
    };
    let failed = alice.submit(no_retries).await.unwrap().id;
    wait_until(&alice, &[requeued, failed], |s| {
        s.iter().all(|s| *s == JobState::Running)
    })
    .await;
    sigkill_supervisor(&cluster);

    let job = tokio::time::timeout(Duration::from_secs(60), alice.wait(requeued, |_| {}))
        .await
        .expect("the requeued job did not end")
        .expect("wait");
    assert_eq!(job.state(), JobState::Completed, "{job:?}");
    assert_eq!(job.requeues, 1, "{job:?}");
    let history: Vec<_> = alice
        .watch(0, vec![requeued], false)
        .try_collect()
        .await
        .unwrap();
    assert!(
        history.iter().any(|e| e.to_state() == JobState::Queued
            && e.from_state() == JobState::Running
            && e.message
                .starts_with("requeued (1 of 3 retries): lost: the job's supervisor died")),
        "its history says it was requeued and why: {history:#?}"
    );
    let job = tokio::time::timeout(Duration::from_secs(60), alice.wait(failed, |_| {}))
        .await
        .expect("the job without retries did not end")
        .expect("wait");
    assert_eq!(
        (job.state(), job.reason.as_str(), job.requeues),
        (JobState::Failed, "lost: the job's supervisor died", 0),
        "--retries 0 keeps a lost job failed: {job:?}"
    );
    // The lost run never reached its echo; the second run did, once.
    let text = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(text.trim(), requeued.to_string(), "runs recorded: {text:?}");
}
