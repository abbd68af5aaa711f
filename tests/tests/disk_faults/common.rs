//! What the disk-fault tests share: submitting held jobs one call at a
//! time, waiting for gantryd to accept them again, checking that every
//! acknowledged job is there, and jobs that record each run.

use std::time::Duration;

use gantry_client::{Client, JobSpec, SubmitJobRequest};
use gantry_e2e::{Cluster, eventually};
use gantry_proto::Principal;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One held job, submitted once (no SDK retry): its id, or the refusal.
pub async fn submit_held(client: &Client) -> Result<u64, (Code, String)> {
    let request = SubmitJobRequest {
        spec: Some(JobSpec {
            argv: vec!["true".into()],
            hold: true,
            ..Default::default()
        }),
        client_request_id: uuid::Uuid::now_v7().to_string(),
        on_behalf_of: String::new(),
    };
    match client.submit_request(request).await {
        Ok(response) => Ok(response.job.expect("a job").id),
        Err(e) => Err((e.code().unwrap_or(Code::Unknown), e.to_string())),
    }
}

/// Submit `n` held jobs that must all be acknowledged (`why`: why they
/// must); their ids go to `acked`.
pub async fn submit_accepted(client: &Client, n: usize, why: &str, acked: &mut Vec<u64>) {
    for _ in 0..n {
        acked.push(submit_held(client).await.expect(why));
    }
}

/// Submit held jobs until `refusals` are refused (at most `tries`), 100 ms
/// apart after a refusal; the acknowledged ids go to `acked`. The refusals.
pub async fn submit_until_refused(
    client: &Client,
    acked: &mut Vec<u64>,
    refusals: usize,
    tries: usize,
) -> Vec<(Code, String)> {
    let mut refused = Vec::new();
    for _ in 0..tries {
        match submit_held(client).await {
            Ok(id) => acked.push(id),
            Err(refusal) => {
                refused.push(refusal);
                if refused.len() == refusals {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    refused
}

/// Wait until a submit is acknowledged again; its id.
pub async fn accepted_again(client: &Client) -> u64 {
    eventually(
        Duration::from_secs(60),
        "submits accepted again",
        async || {
            submit_held(client)
                .await
                .map_err(|(code, message)| format!("{code:?}: {message}"))
        },
    )
    .await
}

/// Every id in `acked` is a job gantryd knows.
pub async fn assert_all_present(cluster: &Cluster, acked: &[u64]) {
    let alice = cluster.user("alice").await.expect("connect");
    for id in acked {
        if let Err(e) = alice.get(*id).await {
            panic!(
                "acknowledged job {id} is lost ({e}); {} acknowledged in all\n{}",
                acked.len(),
                cluster.core.log_tail()
            );
        }
    }
}

/// gantryd's health service's answer for its client API.
pub async fn health(cluster: &Cluster) -> ServingStatus {
    let config = cluster.config_for(&Principal::User("alice".into()));
    let channel = config
        .tls
        .endpoint(&config.address)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "gantry.v1.Gantry".into(),
        })
        .await
        .expect("health check");
    answer.into_inner().status()
}

/// A job that appends its id to `runs` (outside any full file system).
pub fn recorder(runs: &std::path::Path) -> JobSpec {
    JobSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo $GANTRY_JOB_ID >> {}", runs.display()),
        ],
        ..Default::default()
    }
}

/// How often each job id appears in `runs`.
pub fn run_counts(runs: &std::path::Path) -> std::collections::HashMap<u64, u32> {
    let mut counts = std::collections::HashMap::new();
    for line in std::fs::read_to_string(runs).unwrap_or_default().lines() {
        *counts.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    counts
}

pub async fn ended(client: &Client, id: u64) -> gantry_client::Job {
    tokio::time::timeout(Duration::from_secs(60), client.wait(id, |_| {}))
        .await
        .unwrap_or_else(|_| panic!("job {id} did not end"))
        .expect("wait")
}
