//! Jobs run as their owners' Unix accounts: the local gate as root with
//! `--run-as owner` and a `--user-map`. The process, its groups and its
//! files are the account's, another user's job cannot read them, and a user
//! with no account the gate may use is refused saying why.

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use gantry_e2e::accounts::{UnixAccount, cannot_read, run_as_owner, searchable_dir};
use gantry_e2e::as_alice::{submit_by, until_shown_by, until_state};
use gantry_e2e::{Cluster, Options, eventually, run};

/// The `Uid:`, `Gid:` or `Groups:` values of /proc/PID/status.
fn status_ids(pid: &str, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in {status}"));
    line[key.len()..]
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn each_job_runs_as_its_owners_account_and_what_it_writes_is_theirs() {
    let alice = UnixAccount::ensure("gantry-ta", &["gantry-tg"]);
    UnixAccount::ensure("gantry-tb", &[]);
    let extra_group = UnixAccount::group_id("gantry-tg");
    let dir = searchable_dir();
    let work = dir.path().join("local");
    let cluster = Cluster::start(Options {
        gate_work_dir: Some(work.clone()),
        run_as: run_as_owner(dir.path(), "alice = \"gantry-ta\"\nbob = \"gantry-tb\"\n"),
        ..Default::default()
    })
    .await
    .unwrap();

    let (_, sites, _) = run(cluster.cli("alice").arg("sites"));
    assert!(
        sites.contains("JOBS RUN AS") && sites.contains("each owner"),
        "{sites}"
    );

    // Alice's job, with a file staged in by the gate (as root).
    std::fs::write(cluster.dir().join("in.txt"), "staged\n").unwrap();
    let script = "echo pid=$$; id -un; echo home=$HOME user=$USER; cat in.txt; \
                  echo result > out.txt; sleep 120";
    let id = submit_by(
        &cluster,
        "alice",
        &["--input", "in.txt", "--", "sh", "-c", script],
    );
    let shown = until_state(&cluster, &id, "RUNNING").await;
    let attempt = serde_json::from_str::<serde_json::Value>(&shown).unwrap()["job"]["attempt_id"]
        .as_str()
        .unwrap_or_else(|| panic!("no attempt in {shown}"))
        .to_string();
    let out = eventually(
        Duration::from_secs(30),
        "alice's job to print",
        async || {
            let (_, out, _) = run(cluster.cli("alice").args(["logs", &id]));
            if out.contains("user=") && out.contains("staged") {
                Ok(out)
            } else {
                Err(out)
            }
        },
    )
    .await;
    assert!(out.contains("gantry-ta\n"), "{out}");
    assert!(out.contains("home=/home/gantry-ta user=gantry-ta"), "{out}");
    let pid = out
        .lines()
        .find_map(|l| l.strip_prefix("pid="))
        .expect("the job printed its pid");
    // The kernel's word: every uid and gid of the process is alice's, and
    // her supplementary group came with her.
    assert_eq!(status_ids(pid, "Uid:"), [alice.uid; 4]);
    assert_eq!(status_ids(pid, "Gid:"), [alice.gid; 4]);
    let groups = status_ids(pid, "Groups:");
    assert!(groups.contains(&extra_group), "{groups:?}");
    assert!(!groups.contains(&0), "{groups:?}");

    // Her directory, what was staged into it and what she wrote are hers
    // and no one else's.
    let job_dir = work.join("attempts").join(&attempt).join("work");
    let meta = std::fs::metadata(&job_dir).unwrap();
    assert_eq!((meta.uid(), meta.mode() & 0o777), (alice.uid, 0o700));
    for file in ["in.txt", "out.txt"] {
        let meta = std::fs::metadata(job_dir.join(file)).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (alice.uid, alice.gid), "{file}");
    }

    // Bob's job cannot read it.
    cannot_read(&cluster, "bob", &job_dir.join("in.txt")).await;

    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &id]));
    assert_eq!(code, 0, "{err}");
    until_state(&cluster, &id, "CANCELLED").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_user_without_an_account_the_gate_may_use_is_refused_saying_why() {
    UnixAccount::ensure("gantry-ta", &["gantry-tg"]);
    let dir = searchable_dir();
    let map = dir.path().join("users.toml");
    std::fs::write(
        &map,
        "alice = \"gantry-ta\"\nmallory = \"root\"\nsys = \"daemon\"\nghost = \"gantry-none\"\n",
    )
    .unwrap();
    let cluster = Cluster::start(Options {
        gate_work_dir: Some(dir.path().join("local")),
        run_as: ["--run-as", "owner", "--same-name", "false", "--user-map"]
            .iter()
            .map(|s| s.to_string())
            .chain([map.display().to_string()])
            .collect(),
        ..Default::default()
    })
    .await
    .unwrap();
    let cases = [
        (
            "mallory",
            "maps to the account `root`, which never runs jobs on this site",
        ),
        (
            "sys",
            "maps to the account `daemon` (uid 1), a system account",
        ),
        ("ghost", "has no Unix account `gantry-none` on this site"),
        ("carol", "is not in this site's --user-map"),
    ];
    for (user, why) in cases {
        let id = submit_by(&cluster, user, &["--", "true"]);
        let shown = until_shown_by(&cluster, user, &id, "\"state\": \"FAILED\"").await;
        assert!(shown.contains(why), "{user}: {shown}");
        assert!(
            shown.contains("the gate refused the job"),
            "{user}: {shown}"
        );
    }
    // The mapped user runs.
    let id = submit_by(&cluster, "alice", &["--", "true"]);
    until_state(&cluster, &id, "COMPLETED").await;
}
