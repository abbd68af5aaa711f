//! The Slurm gate's work directory on a tmpfs that fills up: an attempt
//! whose record cannot be written is never handed to Slurm, and its start
//! fails saying why. Needs the shared test Slurm cluster (nextest runs this
//! in the `slurm` group, one test at a time with the Slurm tests).

use std::time::Duration;

use gantry_client::JobState;
use gantry_e2e::faults::Tmpfs;
use gantry_e2e::services::slurm_conf;
use gantry_e2e::{Cluster, Options, eventually};

use crate::common::{ended, recorder, run_counts};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_slurm_gate_work_dir_refuses_starts_with_a_reason() {
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("work"), 4).unwrap();
    let mut cluster = Cluster::start(Options {
        slurm_conf: Some(slurm_conf()),
        gate_work_dir: Some(fs.path().join("slurm")),
        ..Default::default()
    })
    .await
    .unwrap();
    let runs = scratch.path().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let first = alice.submit(recorder(&runs)).await.unwrap().id;
    let job = ended(&alice, first).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.reason);

    // Full (once the first attempt is released, its files removed): the
    // attempt's record cannot be written, so sbatch is never run.
    let attempts = fs.path().join("slurm/attempts");
    eventually(
        Duration::from_secs(30),
        "the first attempt's release",
        async || match std::fs::read_dir(&attempts).unwrap().count() {
            0 => Ok(()),
            n => Err(format!("{n} attempts left")),
        },
    )
    .await;
    fs.fill().unwrap();
    let mut refused = Vec::new();
    for _ in 0..2 {
        let id = alice.submit(recorder(&runs)).await.unwrap().id;
        let job = ended(&alice, id).await;
        assert_eq!(job.state(), JobState::Failed, "job {id}: {}", job.reason);
        assert!(
            job.reason
                .contains("not started: the Slurm gate cannot record it")
                && job.reason.contains("No space left on device")
                && job.reason.contains(&fs.path().display().to_string()),
            "job {id}: {}",
            job.reason
        );
        refused.push(id);
    }

    // Space returns; the gate is SIGKILLed and restarted: a new job runs,
    // the refused ones never ran, nothing ran twice.
    fs.free().unwrap();
    cluster.gate.restart().await.unwrap();
    cluster.wait_site_healthy().await.unwrap();
    let last = alice.submit(recorder(&runs)).await.unwrap().id;
    let job = ended(&alice, last).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.reason);
    let counts = run_counts(&runs);
    for id in [first, last] {
        assert_eq!(counts.get(&id), Some(&1), "job {id}: {counts:?}");
    }
    for id in &refused {
        assert_eq!(counts.get(id), None, "refused job {id} ran: {counts:?}");
        let job = alice.get(*id).await.unwrap();
        assert_eq!(job.state(), JobState::Failed, "{}", job.reason);
    }
}
