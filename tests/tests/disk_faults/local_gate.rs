//! The local gate's work directory on a tmpfs that fills up.

use gantry_e2e::faults::Tmpfs;
use gantry_e2e::{Cluster, Options};

use crate::common::{ended, recorder, run_counts};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_local_gate_work_dir_refuses_starts_and_runs_nothing_twice() {
    use gantry_client::JobState;
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("work"), 4).unwrap();
    let mut cluster = Cluster::start(Options {
        gate_work_dir: Some(fs.path().join("local")),
        ..Default::default()
    })
    .await
    .unwrap();
    let runs = scratch.path().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let first = alice.submit(recorder(&runs)).await.unwrap().id;
    assert_eq!(ended(&alice, first).await.state(), JobState::Completed);

    // Full: the supervisor's journal has room for a few more lines in its
    // last page, then starts are refused (or, when only the line with its
    // pid does not fit, stopped at once), saying why.
    fs.fill().unwrap();
    let mut refused = Vec::new();
    let mut completed = vec![first];
    for _ in 0..30 {
        let id = alice.submit(recorder(&runs)).await.unwrap().id;
        let job = ended(&alice, id).await;
        match job.state() {
            JobState::Completed => completed.push(id),
            JobState::Failed => {
                assert!(
                    job.reason.contains("No space left on device")
                        && job.reason.contains("supervisor.journal"),
                    "job {id}: {}",
                    job.reason
                );
                refused.push(id);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("job {id} ended {other:?}: {}", job.reason),
        }
    }
    assert_eq!(refused.len(), 3, "no start was refused on the full disk");

    // Space returns; the gate is SIGKILLed and restarted: new jobs run, the
    // refused ones never ran, nothing ran twice.
    fs.free().unwrap();
    cluster.gate.restart().await.unwrap();
    cluster.wait_site_healthy().await.unwrap();
    for _ in 0..3 {
        let id = alice.submit(recorder(&runs)).await.unwrap().id;
        let job = ended(&alice, id).await;
        assert_eq!(job.state(), JobState::Completed, "{}", job.reason);
        completed.push(id);
    }
    let counts = run_counts(&runs);
    for id in &completed {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ran {:?} times",
            counts.get(id)
        );
    }
    for id in &refused {
        // Refused before it started, it never ran; a job whose pid could not
        // be recorded was killed at once (it may have begun, once).
        let job = alice.get(*id).await.unwrap();
        assert_eq!(job.state(), JobState::Failed, "{}", job.reason);
        let limit = if job.reason.starts_with("not started") {
            0
        } else {
            1
        };
        let ran = counts.get(id).copied().unwrap_or(0);
        assert!(ran <= limit, "job {id} ran {ran} times: {}", job.reason);
    }
}
