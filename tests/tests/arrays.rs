//! Job arrays through the `gantry` CLI and the SDK: every task runs with its
//! index, `ls` shows the array as one row, `wait` exits with the highest exit
//! code, one task or the whole array can be cancelled, and a retried submit
//! makes the array once.

use gantry_client::{JobSpec, JobState};
use gantry_e2e::{Cluster, Options, run};
use gantry_proto::v1::SubmitJobRequest;

/// The array id in `submitted array 17 of …`.
fn array_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .nth(2)
        .filter(|w| w.parse::<u64>().is_ok())
        .unwrap_or_else(|| panic!("no array id in {stdout:?}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_task_runs_with_its_index_and_the_array_is_one_row() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let (code, out, err) = run(cluster.cli("alice").args([
        "submit",
        "--array",
        "0-9:3,20",
        "--",
        "sh",
        "-c",
        "echo task $GANTRY_ARRAY_INDEX of $GANTRY_ARRAY_COUNT",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("of 5 tasks"), "{out}");
    let id = array_id(&out);
    let (code, _, err) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 0, "{err}");
    for index in [0, 3, 6, 9, 20] {
        let task = format!("{id}_{index}");
        let (code, out, err) = run(cluster.cli("alice").args(["logs", &task]));
        assert_eq!(code, 0, "{err}");
        assert_eq!(out, format!("task {index} of 5\n"));
    }
    let (code, _, err) = run(cluster.cli("alice").args(["logs", &format!("{id}_4")]));
    assert_ne!(code, 0);
    assert!(err.contains("no task with index 4"), "{err}");
    let (code, out, _) = run(cluster.cli("alice").args(["ls"]));
    assert_eq!(code, 0);
    let rows: Vec<&str> = out.lines().filter(|l| l.contains("array [")).collect();
    assert_eq!(rows.len(), 1, "{out}");
    assert!(rows[0].contains("5 COMPLETED"), "{out}");
    let (_, out, _) = run(cluster.cli("alice").args(["ls", "--array", &id, "--json"]));
    assert_eq!(out.matches("\"array_index\"").count(), 5, "{out}");
    let (_, out, _) = run(cluster.cli("alice").args(["show", &id, "--json"]));
    assert!(out.replace(' ', "").contains("\"COMPLETED\":5"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_task_fails_the_array_with_the_highest_exit_code() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let script = cluster.dir().join("sweep.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#GANTRY --array 1-4\nexit $((GANTRY_ARRAY_INDEX % 4))\n",
    )
    .unwrap();
    let (code, out, err) = run(cluster
        .cli("alice")
        .args(["submit", &script.display().to_string()]));
    assert_eq!(code, 0, "{err}");
    let id = array_id(&out);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 3, "the highest exit code of the tasks");
    let (_, out, _) = run(cluster.cli("alice").args(["show", &id, "--json"]));
    let out = out.replace(' ', "");
    assert!(out.contains("\"state\":\"FAILED\""), "{out}");
    assert!(out.contains("\"COMPLETED\":1"), "{out}");
    assert!(out.contains("\"FAILED\":3"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_one_task_or_the_whole_array() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let (code, out, err) = run(cluster
        .cli("alice")
        .args(["submit", "--hold", "--array", "0-99", "--", "true"]));
    assert_eq!(code, 0, "{err}");
    let id = array_id(&out);
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &format!("{id}_7")]));
    assert_eq!(code, 0, "{err}");
    let alice = cluster.user("alice").await.unwrap();
    let array_id: u64 = id.parse().unwrap();
    assert_eq!(
        alice.get_task(array_id, 7).await.unwrap().state(),
        JobState::Cancelled
    );
    assert_eq!(
        alice.get_task(array_id, 8).await.unwrap().state(),
        JobState::Queued
    );
    // Another user sees nothing of it.
    let (code, _, _) = run(cluster.cli("bob").args(["cancel", &id]));
    assert_ne!(code, 0);
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &id]));
    assert_eq!(code, 0, "{err}");
    let array = alice.get(array_id).await.unwrap();
    assert_eq!(array.state(), JobState::Cancelled);
    let summary = array.array.unwrap();
    assert_eq!(summary.task_count, 100);
    assert_eq!(summary.counts.len(), 1, "{summary:?}");
    assert_eq!(summary.counts[0].count, 100);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 130, "a cancelled array waits like a cancelled job");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retried_array_submit_makes_one_array_and_bad_indices_are_refused() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let request = SubmitJobRequest {
        spec: Some(JobSpec {
            argv: vec!["true".into()],
            array: "0-999".into(),
            hold: true,
            ..Default::default()
        }),
        client_request_id: "sweep-1".into(),
        on_behalf_of: String::new(),
    };
    let first = alice.submit_request(request.clone()).await.unwrap();
    let again = alice.submit_request(request).await.unwrap();
    assert!(first.created && !again.created);
    let (a, b) = (first.job.unwrap(), again.job.unwrap());
    assert_eq!(a.id, b.id);
    assert_eq!(a.array.unwrap().task_count, 1000);
    for (indices, says) in [("5-1", "backwards"), ("0-100000", "more than 100000")] {
        let err = alice
            .submit(JobSpec {
                argv: vec!["true".into()],
                array: indices.into(),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(tonic::Code::InvalidArgument));
        assert!(
            err.to_string().contains("array") && err.to_string().contains(says),
            "{err}"
        );
    }
}
