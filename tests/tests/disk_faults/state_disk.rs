//! gantryd's state directory on a tmpfs that fills up: its SQLite
//! database, and the logs it brings home.

use std::time::Duration;

use gantry_client::JobSpec;
use gantry_e2e::faults::Tmpfs;
use gantry_e2e::{Cluster, Options, eventually};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::common::{
    accepted_again, assert_all_present, ended, health, submit_accepted, submit_held,
    submit_until_refused,
};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_database_disk_refuses_changes_then_serves_again_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    let mut cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut acked = Vec::new();
    submit_accepted(&alice, 20, "the disk has room", &mut acked).await;
    assert_eq!(health(&cluster).await, ServingStatus::Serving);

    fs.fill().unwrap();
    // Submits go on until the database meets the full disk (its WAL may
    // still have room); from then on each is refused, saying why and where.
    let refused = submit_until_refused(&alice, &mut acked, 5, 5000).await;
    assert_eq!(refused.len(), 5, "the database never met the full disk");
    for (code, message) in refused {
        assert_eq!(code, Code::ResourceExhausted, "{message}");
        assert!(
            message.contains("the database disk is full")
                && message.contains(&fs.path().display().to_string()),
            "{message}"
        );
    }
    // Every change is refused, not only submits.
    let cancel = alice.cancel(acked[0], "test").await.unwrap_err();
    assert_eq!(cancel.code(), Some(Code::ResourceExhausted), "{cancel}");
    let core = alice.overview().await.unwrap().core.unwrap();
    assert!(!core.accepting_changes);
    assert!(core.message.contains("disk is full"), "{}", core.message);
    assert_eq!(health(&cluster).await, ServingStatus::NotServing);
    let sites = cluster.cli("alice").arg("sites").output().unwrap();
    let text = String::from_utf8_lossy(&sites.stdout);
    assert!(
        text.starts_with("gantryd: NOT ACCEPTING CHANGES") && text.contains("disk is full"),
        "{text}"
    );

    // Space returns: gantryd accepts changes again by itself.
    fs.free().unwrap();
    acked.push(accepted_again(&alice).await);
    let core = alice.overview().await.unwrap().core.unwrap();
    assert!(core.accepting_changes, "{}", core.message);
    assert_eq!(health(&cluster).await, ServingStatus::Serving);
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;

    // Full again, then SIGKILL: a gantryd started on the full disk still
    // has everything, refuses changes, and serves again once space returns.
    fs.fill().unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let refused = submit_until_refused(&alice, &mut acked, 1, 5000).await;
    assert!(
        matches!(refused.as_slice(), [(Code::ResourceExhausted, _)]),
        "the database never met the full disk again: {refused:?}"
    );
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
    // Starting, SQLite may move its WAL into the database file and empty
    // it, which can give back room (then a submit rightly lands; seen on a
    // busy machine): take that room too, so the disk is full again.
    fs.fill().unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let again = submit_held(&alice).await;
    assert!(
        matches!(again, Err((Code::ResourceExhausted, _))),
        "a submit on the still full disk: {again:?}"
    );
    fs.free().unwrap();
    acked.push(accepted_again(&alice).await);
    submit_accepted(&alice, 20, "space is back", &mut acked).await;
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_ending_while_the_state_disk_is_full_keeps_its_log_and_completes_once_space_returns()
{
    use futures::StreamExt;
    use gantry_client::{JobState, LogStream};
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    // Logs and outputs on the tmpfs, the database beside it: the job's end
    // is recorded, only its log cannot come home.
    let cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        database_url: Some(format!(
            "sqlite://{}",
            scratch.path().join("gantry.db").display()
        )),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    // 2 MiB of stdout, written once the test says go.
    let go = scratch.path().join("go");
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; head -c 2097152 /dev/zero | tr '\\0' x",
        go = go.display()
    );
    let id = alice
        .submit(JobSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(30), "the job running", async || {
        let job = alice.get(id).await.map_err(|e| e.to_string())?;
        (job.state() == JobState::Running)
            .then_some(())
            .ok_or(format!("{:?}", job.state()))
    })
    .await;
    fs.fill().unwrap();
    std::fs::write(&go, "").unwrap();
    // Its log cannot come home: the job waits in STAGING_OUT, saying why in
    // gantryd's log, and is not FAILED for gantryd's own disk.
    eventually(
        Duration::from_secs(30),
        "the job waiting in STAGING_OUT for gantryd's disk",
        async || {
            let job = alice.get(id).await.map_err(|e| e.to_string())?;
            let log = std::fs::read_to_string(cluster.core.log_path()).unwrap_or_default();
            (job.state() == JobState::StagingOut
                && log.contains("cannot bring a job's logs and outputs home"))
            .then_some(())
            .ok_or(format!("{:?}: {}", job.state(), job.reason))
        },
    )
    .await;
    fs.free().unwrap();
    let job = ended(&alice, id).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.reason);
    let mut log = std::pin::pin!(
        alice
            .read_logs(id, LogStream::Stdout, 0, false)
            .await
            .unwrap()
    );
    let mut bytes = 0;
    while let Some(chunk) = log.next().await {
        bytes += chunk.unwrap().data.len();
    }
    assert_eq!(bytes, 2 << 20);
}
