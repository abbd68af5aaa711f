//! Jobs on a real Grid Engine cell (Debian's gridengine 8.1.9, one
//! execution host on this machine, started by `scripts/sge`) through
//! gantryd, gantry-sched and gantry-gate-sge, checked against Grid Engine's
//! own records (`qacct`). Some run twice: with the gate on the cell's host,
//! and `over_ssh`, reaching it as it would a login node (`--ssh`, the sshd
//! of `scripts/sshd`, logging in as a user of its own).
//!
//! The tests share the cell and run one at a time, with the Slurm tests
//! (nextest group `batch-clusters`: they share the sshd, whose logins a
//! Slurm test counts); `scripts/test` starts it and passes
//! `GANTRY_TEST_SGE_ENV`.

use std::path::{Path, PathBuf};
use std::time::Duration;

mod conformance;

use gantry_e2e::as_alice::{
    refused, show, submit, submit_by, until_shown, until_shown_by, until_state,
};
use gantry_e2e::services::{LOGIN_USER, sge_env, sge_vars, ssh_config};
use gantry_e2e::{Cluster, Options, eventually, run};

/// Held by each test: under `cargo test` the tests share a process, and
/// they must not share the cell at the same time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn cluster(over_ssh: bool) -> (Cluster, PathBuf) {
    let env = sge_env();
    // What a failed test left in the cell would hold its slots.
    let _ = std::process::Command::new("qdel")
        .args(["-u", "*"])
        .envs(sge_vars(&env))
        .output();
    let cluster = Cluster::start(Options {
        sge_env: Some(env.clone()),
        ssh_config: over_ssh.then(ssh_config),
        ..Default::default()
    })
    .await
    .unwrap();
    (cluster, env)
}

/// A Grid Engine command against the test cell; its stdout.
fn sge(env: &Path, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .envs(sge_vars(env))
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A field of `qacct -j` output.
fn acct<'a>(record: &'a str, key: &str) -> &'a str {
    record
        .lines()
        .find_map(|l| l.strip_prefix(key).filter(|v| v.starts_with(' ')))
        .unwrap_or("")
        .trim()
}

/// The Grid Engine job id gantryd recorded ("running on sge (ID)").
fn sge_job_of(cluster: &Cluster, id: &str) -> String {
    let (_, out, _) = run(cluster.cli("alice").args(["show", id]));
    out.split("on sge (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no Grid Engine job id in `gantry show`:\n{out}"))
        .to_string()
}

/// A file jobs wait for, in a directory every user can look into (jobs
/// over SSH run as the login user).
fn go_file() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("gantry-go-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    dir
}

fn waiting_for(go: &Path, then: &str) -> String {
    format!(
        "echo ready; i=0; while [ ! -e {} ] && [ $i -lt 1500 ]; do sleep 0.2; i=$((i+1)); done; {then}",
        go.join("go").display()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_under_grid_engine_with_logs_outputs_and_exit_codes() {
    logs_outputs_and_exit_codes(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_under_grid_engine_with_logs_outputs_and_exit_codes_over_ssh() {
    logs_outputs_and_exit_codes(true).await;
}

async fn logs_outputs_and_exit_codes(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (cluster, env) = cluster(over_ssh).await;
    let input = cluster.dir().join("input.txt");
    std::fs::write(&input, "staged in\n").unwrap();
    let staged = submit(
        &cluster,
        &[
            "--input",
            &format!("{}:in/data.txt", input.display()),
            "--output",
            "out/*",
            "--",
            "sh",
            "-c",
            "mkdir out && tr a-z A-Z < in/data.txt > out/upper.txt",
        ],
    );
    let ok = submit(
        &cluster,
        &[
            "--output",
            "result.txt",
            "--",
            "sh",
            "-c",
            "echo hello from grid engine; echo 42 > result.txt",
        ],
    );
    let failing = submit(&cluster, &["--", "sh", "-c", "echo oops >&2; exit 3"]);
    let vars = submit(&cluster, &["--env", "ASKED=yes", "--", "env"]);
    let two = submit(&cluster, &["--cpus", "2", "--", "sh", "-c", "echo $NSLOTS"]);
    for (id, want) in [(&ok, 0), (&failing, 3), (&staged, 0), (&vars, 0), (&two, 0)] {
        let (code, _, err) = run(cluster.cli("alice").args(["wait", id]));
        assert_eq!(code, want, "job {id}: {err}\n{}", show(&cluster, id));
    }
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &ok]));
    assert_eq!(out, "hello from grid engine\n");
    let (_, out, _) = run(cluster.cli("alice").args(["logs", "--stderr", &failing]));
    assert_eq!(out, "oops\n");
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &two]));
    assert_eq!(out, "2\n", "two CPUs are two slots of the PE");
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &vars]));
    assert!(
        out.contains("ASKED=yes")
            && out.contains("GANTRY_JOB_ID=")
            && out.contains("GANTRY_NODELIST="),
        "{out}"
    );
    assert!(
        !out.contains("CARGO_MANIFEST_DIR="),
        "the gate's environment leaked:\n{out}"
    );
    let fetched = cluster.dir().join("fetched");
    for id in [&ok, &staged] {
        let (code, _, err) =
            run(cluster
                .cli("alice")
                .args(["outputs", id, "--dest", fetched.to_str().unwrap()]));
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(
        std::fs::read_to_string(fetched.join("result.txt")).unwrap(),
        "42\n"
    );
    assert_eq!(
        std::fs::read_to_string(fetched.join("out/upper.txt")).unwrap(),
        "STAGED IN\n"
    );
    // Grid Engine's own record agrees, and names the job after its attempt.
    let record = sge(&env, "qacct", &["-j", &sge_job_of(&cluster, &failing)]);
    assert_eq!(
        acct(&record, "exit_status").split_whitespace().next(),
        Some("3"),
        "{record}"
    );
    assert!(acct(&record, "jobname").starts_with("gantry-"), "{record}");
    if over_ssh {
        assert_eq!(acct(&record, "owner"), LOGIN_USER, "{record}");
    }
    // Times are Grid Engine's: the job started before it ended.
    let out: serde_json::Value = serde_json::from_str(&show(&cluster, &ok)).unwrap();
    let (start, end) = (&out["job"]["start_time_ms"], &out["job"]["end_time_ms"]);
    assert!(
        start.as_i64().unwrap() > 0 && start.as_i64() <= end.as_i64(),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn grid_engine_cancel_a_pending_reason_and_a_too_big_job_say_why() {
    let _serial = SERIAL.lock().await;
    let (cluster, env) = cluster(false).await;
    // Every slot taken, so the next job waits, saying why in Grid
    // Engine's words (the whole reason: a first poll may see qw alone).
    let go = go_file();
    let slots = sge(&env, "qconf", &["-sq", "all.q"]);
    let slots = slots
        .lines()
        .find_map(|l| l.strip_prefix("slots"))
        .unwrap()
        .trim()
        .to_string();
    let blocker = submit(
        &cluster,
        &[
            "--cpus",
            &slots,
            "--",
            "sh",
            "-c",
            &waiting_for(go.path(), "exit 0"),
        ],
    );
    until_state(&cluster, &blocker, "RUNNING").await;
    // Of the blocker's shape: gantryd hands the gate a job to queue only
    // where it takes over the resources of one like it.
    let waits = submit(&cluster, &["--cpus", &slots, "--", "true"]);
    let out = until_shown(&cluster, &waits, "Grid Engine: qw (").await;
    assert!(out.contains("\"state\": \"SCHEDULED\""), "{out}");
    // Cancelled while it waits: Grid Engine keeps no record of it.
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &waits]));
    assert_eq!(code, 0, "{err}");
    until_state(&cluster, &waits, "CANCELLED").await;
    // Cancelled while it runs: Grid Engine's record says it was killed.
    let native = sge_job_of(&cluster, &blocker);
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &blocker]));
    assert_eq!(code, 0, "{err}");
    until_state(&cluster, &blocker, "CANCELLED").await;
    let record = eventually(
        Duration::from_secs(30),
        "the cancelled job's record",
        async || {
            let out = std::process::Command::new("qacct")
                .args(["-j", &native])
                .envs(sge_vars(&env))
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() {
                Ok(text)
            } else {
                Err(text)
            }
        },
    )
    .await;
    assert_ne!(
        acct(&record, "failed").split_whitespace().next(),
        Some("0"),
        "{record}"
    );
    let queued = sge(&env, "qstat", &["-u", "*"]);
    assert!(queued.trim().is_empty(), "jobs left in qstat:\n{queued}");

    // More than any host has: refused at submit, saying what is too big.
    let err = refused(&cluster, &["--cpus", "4096", "--", "true"]);
    assert!(
        err.contains("4096 CPUs (the most any site offers is"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grid_engine_job_over_its_walltime_is_killed_at_its_h_rt() {
    let _serial = SERIAL.lock().await;
    let (cluster, env) = cluster(false).await;
    let id = submit(
        &cluster,
        &[
            "--walltime",
            "3s",
            "--",
            "sh",
            "-c",
            "echo started; sleep 60",
        ],
    );
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_ne!(code, 0);
    let out = until_state(&cluster, &id, "FAILED").await;
    assert!(
        out.contains("walltime exceeded (Grid Engine: killed at h_rt 00:00:03)"),
        "{out}"
    );
    let record = sge(&env, "qacct", &["-j", &sge_job_of(&cluster, &id)]);
    assert!(acct(&record, "failed").starts_with("37"), "{record}");
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &id]));
    assert_eq!(log, "started\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gate_finds_its_grid_engine_jobs_again_and_submits_nothing_twice() {
    killed_gate(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gate_finds_its_grid_engine_jobs_again_and_submits_nothing_twice_over_ssh() {
    killed_gate(true).await;
}

async fn killed_gate(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (mut cluster, env) = cluster(over_ssh).await;
    // The jobs run until the test says, so they are surely running when
    // the gate dies; a third ends while it is down.
    let go = go_file();
    let mut ids: Vec<String> = (0..2)
        .map(|k| {
            let script = waiting_for(go.path(), &format!("exit {}", k + 3));
            submit(&cluster, &["--", "sh", "-c", &script])
        })
        .collect();
    for id in &ids {
        until_state(&cluster, id, "RUNNING").await;
    }
    cluster.gate.kill9();
    go_open(go.path());
    std::thread::sleep(Duration::from_secs(3));
    cluster.gate.restart().await.unwrap();
    ids.push(submit(&cluster, &["--", "sh", "-c", "exit 5"]));
    for (k, id) in ids.iter().enumerate() {
        let (code, _, _) = run(cluster.cli("alice").args(["wait", id]));
        assert_eq!(code, k as i32 + 3, "job {id}: {}", show(&cluster, id));
    }
    // One Grid Engine job per Gantry job: by name, one record.
    for id in &ids {
        let out = show(&cluster, id);
        let attempt = out
            .split("\"attempt_id\"")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .unwrap_or_else(|| panic!("no attempt id:\n{out}"))
            .to_string();
        let records = sge(&env, "qacct", &["-j", &format!("gantry-{attempt}")]);
        let count = records
            .lines()
            .filter(|l| l.starts_with("jobnumber"))
            .count();
        assert_eq!(
            count, 1,
            "Grid Engine jobs of attempt {attempt}:\n{records}"
        );
    }
}

fn go_open(dir: &Path) {
    std::fs::write(dir.join("go"), "").unwrap();
}

/// Jobs submitted as their owners' accounts (`--run-as owner`, the gate on
/// the cell's host as root): Grid Engine records them as the job's owner,
/// what they write is theirs, and a user the map does not name is refused.
#[tokio::test(flavor = "multi_thread")]
async fn grid_engine_jobs_run_as_their_owners_accounts() {
    use gantry_e2e::accounts::{UnixAccount, run_as_owner, searchable_dir};
    use std::os::unix::fs::MetadataExt;
    let _serial = SERIAL.lock().await;
    let alice = UnixAccount::ensure("gantry-ta", &["gantry-tg"]);
    let env = sge_env();
    let dir = searchable_dir();
    let work = dir.path().join("sge");
    let cluster = Cluster::start(Options {
        sge_env: Some(env.clone()),
        gate_work_dir: Some(work.clone()),
        run_as: run_as_owner(dir.path(), "alice = \"gantry-ta\"\n"),
        ..Default::default()
    })
    .await
    .unwrap();
    let id = submit(
        &cluster,
        &[
            "--",
            "sh",
            "-c",
            "id -un; echo mine > out.txt; ls -ln out.txt",
        ],
    );
    until_state(&cluster, &id, "COMPLETED").await;
    let record = sge(&env, "qacct", &["-j", &sge_job_of(&cluster, &id)]);
    assert_eq!(acct(&record, "owner"), "gantry-ta", "{record}");
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &id]));
    let mut lines = log.lines();
    assert_eq!(lines.next(), Some("gantry-ta"), "{log}");
    // `ls -ln`: mode, links, uid, gid.
    let ids: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let (uid, gid) = (alice.uid.to_string(), alice.gid.to_string());
    assert_eq!(
        ids.get(2..4),
        Some(&[uid.as_str(), gid.as_str()][..]),
        "{log}"
    );
    // The gate keeps the attempt's directory; its logs were alice's.
    let attempts = std::fs::metadata(work.join("attempts")).unwrap();
    assert_eq!(attempts.mode() & 0o001, 0o001);

    let carols = submit_by(&cluster, "carol", &["--", "true"]);
    let shown = until_shown_by(&cluster, "carol", &carols, "\"state\": \"FAILED\"").await;
    assert!(
        shown.contains("is not in this site's --user-map"),
        "{shown}"
    );
}
