//! Jobs submitted as their owners' Unix accounts (`--run-as owner`, the gate
//! on the cluster's host as root, or logged in to the login node as root
//! over SSH): Slurm records them as the job's user, the files they write are
//! theirs, another user's job cannot read them, and a user with no account
//! is refused.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use gantry_e2e::accounts::{UnixAccount, cannot_read, run_as_owner, searchable_dir};
use gantry_e2e::services::{slurm_conf, ssh_config};
use gantry_e2e::{Cluster, Options, eventually, run};

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn slurm_jobs_run_as_their_owners_accounts() {
    let _serial = SERIAL.lock().await;
    jobs_run_as_their_owners(Options::default()).await;
}

/// The same over SSH, logged in to the login node as root, which submits
/// each job through `runuser` as its owner.
#[tokio::test(flavor = "multi_thread")]
async fn slurm_jobs_run_as_their_owners_accounts_over_a_root_ssh_login() {
    let _serial = SERIAL.lock().await;
    jobs_run_as_their_owners(Options {
        ssh_config: Some(ssh_config()),
        ssh_login: Some("root".into()),
        ..Default::default()
    })
    .await;
}

/// On a cluster started with `options` and `--run-as owner`: alice's job
/// runs as her account (Slurm's record, its process, its files, its
/// environment), bob's cannot read them, and carol, whom the map does not
/// name, is refused.
async fn jobs_run_as_their_owners(options: Options) {
    let alice = UnixAccount::ensure("gantry-ta", &["gantry-tg"]);
    UnixAccount::ensure("gantry-tb", &[]);
    let conf = slurm_conf();
    let dir = searchable_dir();
    let work = dir.path().join("slurm");
    let cluster = &Cluster::start(Options {
        slurm_conf: Some(conf.clone()),
        gate_work_dir: Some(work.clone()),
        run_as: run_as_owner(dir.path(), "alice = \"gantry-ta\"\nbob = \"gantry-tb\"\n"),
        ..options
    })
    .await
    .unwrap();
    let (_, sites, _) = run(cluster.cli("alice").arg("sites"));
    assert!(sites.contains("each owner"), "{sites}");

    let go = go_file();
    let script = format!(
        "id -un; id -Gn; echo \"user=$USER logname=$LOGNAME path=$PATH gate=${{RUST_LOG-none}}\"; \
         echo mine > out.txt; while [ ! -e {} ]; do sleep 0.2; done",
        go.path().display()
    );
    let id = submit(cluster, &["--", "sh", "-c", &script]);
    let shown = until_state(cluster, &id, "RUNNING").await;
    // Slurm's word: the job is alice's account's.
    let record = slurm(
        &conf,
        "scontrol",
        &["show", "job", "-o", &slurm_job_of(cluster, &id)],
    );
    assert_eq!(
        field(&record, "UserId"),
        format!("gantry-ta({})", alice.uid),
        "{record}"
    );
    let attempt = serde_json::from_str::<serde_json::Value>(&shown).unwrap()["job"]["attempt_id"]
        .as_str()
        .unwrap()
        .to_string();
    let attempt_dir = work.join("attempts").join(&attempt);
    let out = eventually(Duration::from_secs(30), "the job's out.txt", async || {
        std::fs::metadata(attempt_dir.join("work/out.txt")).map_err(|e| e.to_string())
    })
    .await;
    assert_eq!((out.uid(), out.gid()), (alice.uid, alice.gid));
    let work_dir = std::fs::metadata(attempt_dir.join("work")).unwrap();
    assert_eq!(
        (work_dir.uid(), work_dir.mode() & 0o777),
        (alice.uid, 0o700)
    );
    let stdout = std::fs::metadata(attempt_dir.join("stdout")).unwrap();
    assert_eq!((stdout.uid(), stdout.mode() & 0o777), (alice.uid, 0o600));
    // The attempt's directory is the gate's: the job cannot swap its logs.
    assert_eq!(std::fs::metadata(&attempt_dir).unwrap().uid(), 0);

    // Bob's job cannot read what alice's wrote.
    cannot_read(cluster, "bob", &attempt_dir.join("work/out.txt")).await;

    go.open();
    until_state(cluster, &id, "COMPLETED").await;
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &id]));
    assert!(
        log.starts_with("gantry-ta\n") && log.contains("gantry-tg"),
        "{log}"
    );
    // It starts from its account's login environment, nothing of the gate's.
    assert!(
        log.contains(
            "user=gantry-ta logname=gantry-ta path=/usr/local/bin:/usr/bin:/bin gate=none\n"
        ),
        "{log}"
    );

    // A user the map does not name is refused, saying why.
    let carols = submit_by(cluster, "carol", &["--", "true"]);
    let shown = until_shown_by(cluster, "carol", &carols, "\"state\": \"FAILED\"").await;
    assert!(
        shown.contains("is not in this site's --user-map"),
        "{shown}"
    );
}
