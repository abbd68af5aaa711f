//! Jobs on a real Slurm cluster (Debian's slurm-wlm, one node on localhost,
//! started by `scripts/slurm`) through gantryd, gantry-sched and
//! gantry-gate-slurm, checked against Slurm's own records (`scontrol`).
//!
//! Each test runs twice: with the gate on the cluster's host, and `over_ssh`
//! with the gate reaching it as it would a login node (`--ssh`, an sshd on
//! loopback started by `scripts/sshd`, logging in as a user of its own).
//!
//! The tests share that one cluster and run one at a time (nextest group
//! `batch-clusters`, with the Grid Engine tests, which use the same sshd);
//! `scripts/test` starts it and the sshd and passes
//! `GANTRY_TEST_SLURM_CONF` and `GANTRY_TEST_SSH_CONFIG`. Jobs that span
//! nodes run on a second cluster of two nodes (`nodes`,
//! `GANTRY_TEST_SLURM_NODES_CONF`).

use std::path::PathBuf;
use std::time::Duration;

mod common;
mod conformance;
mod nodes;
mod run_as;

use common::*;
use gantry_e2e::services::{LOGIN_USER, ssh_config, start_script};
use gantry_e2e::{Cluster, Options, eventually, run};

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_under_slurm_with_logs_outputs_and_exit_codes() {
    logs_outputs_and_exit_codes(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_run_under_slurm_with_logs_outputs_and_exit_codes_over_ssh() {
    logs_outputs_and_exit_codes(true).await;
}

async fn logs_outputs_and_exit_codes(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let logins = over_ssh.then(|| ssh_logins(&ssh_config()));
    let (cluster, conf) = cluster(over_ssh).await;
    let who = submit(&cluster, &["--", "id", "-un"]);
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
            "echo hello from slurm; echo 42 > result.txt",
        ],
    );
    let failing = submit(&cluster, &["--", "sh", "-c", "echo oops >&2; exit 3"]);
    let env = submit(&cluster, &["--env", "ASKED=yes", "--", "env"]);
    let elsewhere = submit(&cluster, &["--chdir", "/tmp", "--", "pwd"]);
    let (code, _, err) = run(cluster.cli("alice").args(["wait", &ok]));
    assert_eq!(code, 0, "{err}");
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &failing]));
    assert_eq!(code, 3, "gantry wait exits with the job's exit code");

    let (_, out, _) = run(cluster.cli("alice").args(["logs", &ok]));
    assert_eq!(out, "hello from slurm\n");
    // The job gets its own variables, not the gate's environment (the gate
    // inherited this test's CARGO_MANIFEST_DIR).
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &env]));
    assert_eq!(code, 0);
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &env]));
    assert!(
        out.contains("ASKED=yes") && out.contains("GANTRY_JOB_ID="),
        "{out}"
    );
    assert!(
        !out.contains("CARGO_MANIFEST_DIR="),
        "the gate's environment leaked:\n{out}"
    );
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &elsewhere]));
    assert_eq!(code, 0);
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &elsewhere]));
    assert_eq!(out, "/tmp\n", "--chdir");
    let (_, out, _) = run(cluster.cli("alice").args(["logs", "--stderr", &failing]));
    assert_eq!(out, "oops\n");
    let outputs = cluster.dir().join("fetched");
    let (code, _, err) =
        run(cluster
            .cli("alice")
            .args(["outputs", &ok, "--dest", outputs.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(outputs.join("result.txt")).unwrap(),
        "42\n"
    );

    // A log followed while the job runs gets what is written later and
    // ends when the job does (the job waits for the test's word).
    let go = go_file();
    let script = format!(
        "echo first; while [ ! -e {} ]; do sleep 0.2; done; echo second",
        go.path().display()
    );
    let slow = submit(&cluster, &["--", "sh", "-c", &script]);
    until_state(&cluster, &slow, "RUNNING").await;
    let follower = cluster
        .cli("alice")
        .args(["logs", "-f", &slow])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    go.open();
    let out = follower.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "first\nsecond\n");

    // Files staged in before the job and out after it, in subdirectories.
    let (code, _, err) = run(cluster.cli("alice").args(["wait", &staged]));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) =
        run(cluster
            .cli("alice")
            .args(["outputs", &staged, "--dest", outputs.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(outputs.join("out/upper.txt")).unwrap(),
        "STAGED IN\n"
    );

    // Slurm's own records agree.
    let slurm_ok = slurm_job_of(&cluster, &ok);
    let record = slurm(&conf, "scontrol", &["show", "job", "-o", &slurm_ok]);
    assert_eq!(field(&record, "JobState"), "COMPLETED", "{record}");
    assert!(field(&record, "Comment").starts_with("gantry:"), "{record}");
    let slurm_failing = slurm_job_of(&cluster, &failing);
    let record = slurm(&conf, "scontrol", &["show", "job", "-o", &slurm_failing]);
    assert_eq!(field(&record, "JobState"), "FAILED", "{record}");
    assert_eq!(field(&record, "ExitCode"), "3:0", "{record}");

    if let Some(before) = logins {
        // Over SSH, jobs are the login user's, and every command and file
        // went over the one connection the gate made.
        run(cluster.cli("alice").args(["wait", &who]));
        let (_, out, _) = run(cluster.cli("alice").args(["logs", &who]));
        assert_eq!(out.trim(), LOGIN_USER);
        let record = slurm(
            &conf,
            "scontrol",
            &["show", "job", "-o", &slurm_job_of(&cluster, &who)],
        );
        assert!(field(&record, "UserId").starts_with(LOGIN_USER), "{record}");
        let config = ssh_config();
        assert_eq!(
            ssh_logins(&config) - before,
            1,
            "SSH logins by the gate; its log:\n{}",
            cluster.gate.log_tail()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_drained_node_and_too_big_jobs_say_why() {
    cancel_drain_and_too_big(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_drained_node_and_too_big_jobs_say_why_over_ssh() {
    cancel_drain_and_too_big(true).await;
}

async fn cancel_drain_and_too_big(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (cluster, conf) = cluster(over_ssh).await;
    // A running job cancelled through gantry is CANCELLED in Slurm too; it
    // gets SIGTERM first, and what it does then is kept (its log, its exit).
    let trapping = "trap 'echo saved; exit 0' TERM; echo ready; while :; do sleep 1; done";
    let long = submit(&cluster, &["--", "sh", "-c", trapping]);
    until_state(&cluster, &long, "RUNNING").await;
    eventually(Duration::from_secs(30), "the job's traps", async || {
        let (_, out, _) = run(cluster.cli("alice").args(["logs", &long]));
        if out == "ready\n" { Ok(()) } else { Err(out) }
    })
    .await;
    let slurm_long = slurm_job_of(&cluster, &long);
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &long]));
    assert_eq!(code, 0, "{err}");
    until_state(&cluster, &long, "CANCELLED").await;
    // gantryd records the cancel at once and tells the gate after; Slurm
    // says RUNNING until scancel reaches it, COMPLETING while slurmd cleans up.
    let record = eventually(
        Duration::from_secs(30),
        "Slurm to end the job",
        async || {
            let record = slurm(&conf, "scontrol", &["show", "job", "-o", &slurm_long]);
            let state = field(&record, "JobState");
            match state.as_str() {
                "RUNNING" | "COMPLETING" => Err(record),
                _ => Ok(record),
            }
        },
    )
    .await;
    assert_eq!(field(&record, "JobState"), "CANCELLED", "{record}");
    let out = eventually(
        Duration::from_secs(30),
        "the cancelled job's exit code",
        async || show_until(&cluster, &long, "\"exit_code\": 0"),
    )
    .await;
    assert!(out.contains("\"state\": \"CANCELLED\""), "{out}");
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &long]));
    assert_eq!(log, "ready\nsaved\n");

    // On a drained node a job waits, and says so; resumed, it runs. The
    // node is resumed however this ends, or every later test would wait.
    let _resume = Resumed(&conf);
    slurm(
        &conf,
        "scontrol",
        &[
            "update",
            "nodename=localhost",
            "state=drain",
            "reason=gantry-test",
        ],
    );
    // Once gantryd hears of it (the gate's partition changed), a job waits
    // in gantryd saying why; resumed, it runs.
    eventually(
        Duration::from_secs(30),
        "the drained node in `gantry sites`",
        async || {
            let (_, sites, _) = run(cluster.cli("alice").args(["sites"]));
            if sites.contains("1 drained") {
                Ok(())
            } else {
                Err(sites)
            }
        },
    )
    .await;
    let waits = submit(&cluster, &["--", "true"]);
    let reason = eventually(
        Duration::from_secs(30),
        "the drained node as its reason",
        async || show_until(&cluster, &waits, "is unavailable (1 drained)"),
    )
    .await;
    assert!(reason.contains("\"state\": \"QUEUED\""), "{reason}");
    slurm(
        &conf,
        "scontrol",
        &["update", "nodename=localhost", "state=resume"],
    );
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &waits]));
    assert_eq!(code, 0);

    // More than any node has: refused at submit, saying what is too big.
    let err = refused(&cluster, &["--cpus", "4096", "--", "true"]);
    assert!(
        err.contains("4096 CPUs (the most any site offers is"),
        "{err}"
    );

    // A secret reaches the job through a file of its own (0600), which the
    // job deletes as it starts: no script Slurm or the gate keeps holds it.
    let token = format!("slurm-secret-{}-{over_ssh}", std::process::id());
    let (code, out, err) = run(cluster.cli("alice").env("HUB_TOKEN", &token).args([
        "submit",
        "--secret-env",
        "HUB_TOKEN",
        "--",
        "sh",
        "-c",
        r#"printf %s "$HUB_TOKEN" | sha256sum | cut -d" " -f1; test -e ../secrets && echo kept || echo gone"#,
    ]));
    assert_eq!(code, 0, "{err}");
    let secret = submitted_id(&out);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &secret]));
    assert_eq!(code, 0, "{}", show(&cluster, &secret));
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &secret]));
    let digest = {
        use sha2::{Digest, Sha256};
        format!("{:x}", Sha256::digest(token.as_bytes()))
    };
    assert_eq!(log, format!("{digest}\ngone\n"));
    let leaks: Vec<_> = walk(cluster.dir())
        .into_iter()
        .filter(|p| {
            std::fs::read(p).is_ok_and(|b| b.windows(token.len()).any(|w| w == token.as_bytes()))
        })
        .collect();
    assert!(leaks.is_empty(), "the secret is in {leaks:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_its_time_limit_times_out() {
    time_limit(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_over_its_time_limit_times_out_over_ssh() {
    time_limit(true).await;
}

async fn time_limit(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (cluster, conf) = cluster(over_ssh).await;
    // Slurm's limits are whole minutes: this takes a little over one. The
    // job is warned (Slurm sends it up to a minute early) and gets SIGTERM.
    let trapping =
        "trap 'echo warned' USR1; trap 'echo saved; exit 0' TERM; while :; do sleep 1; done";
    let id = submit(
        &cluster,
        &[
            "--walltime",
            "1m",
            "--signal",
            "USR1@20",
            "--",
            "sh",
            "-c",
            trapping,
        ],
    );
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_ne!(code, 0);
    let out = until_state(&cluster, &id, "FAILED").await;
    assert!(
        out.contains("walltime exceeded (Slurm: TIMEOUT after 00:01:00)"),
        "{out}"
    );
    let record = slurm(
        &conf,
        "scontrol",
        &["show", "job", "-o", &slurm_job_of(&cluster, &id)],
    );
    assert_eq!(field(&record, "JobState"), "TIMEOUT", "{record}");
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &id]));
    assert_eq!(log, "warned\nsaved\n");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gate_finds_its_slurm_jobs_again_and_submits_nothing_twice() {
    killed_gate(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gate_finds_its_slurm_jobs_again_and_submits_nothing_twice_over_ssh() {
    killed_gate(true).await;
}

async fn killed_gate(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (mut cluster, conf) = cluster(over_ssh).await;
    // The jobs run until the test says, so they are surely running when
    // the gate dies, however slow the machine. Two: the node has two CPUs.
    let go = go_file();
    let ids: Vec<String> = (0..2)
        .map(|k| {
            let script = format!(
                "while [ ! -e {} ]; do sleep 0.2; done; exit {}",
                go.path().display(),
                k + 3
            );
            submit(&cluster, &["--", "sh", "-c", &script])
        })
        .collect();
    for id in &ids {
        until_state(&cluster, id, "RUNNING").await;
    }
    cluster.gate.restart().await.unwrap(); // SIGKILL, then start again
    go.open();
    for (k, id) in ids.iter().enumerate() {
        let (code, _, _) = run(cluster.cli("alice").args(["wait", id]));
        assert_eq!(code, k as i32 + 3, "job {id}");
    }
    // One Slurm job per Gantry job.
    let names = slurm(&conf, "squeue", &["-h", "-t", "all", "-o", "%k"]);
    for id in &ids {
        let (_, show, _) = run(cluster.cli("alice").args(["show", id, "--json"]));
        let attempt = show
            .split("\"attempt_id\"")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .unwrap_or_else(|| panic!("no attempt id:\n{show}"))
            .to_string();
        let count = names
            .lines()
            .filter(|c| c.trim() == format!("gantry:{attempt}"))
            .count();
        assert_eq!(count, 1, "Slurm jobs of attempt {attempt}:\n{names}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_login_node_whose_host_key_is_not_known_is_refused() {
    let config = ssh_config();
    let dir = tempfile::tempdir().unwrap();
    // The same login node, with a known_hosts that does not list it.
    let text = std::fs::read_to_string(&config).unwrap();
    let empty = dir.path().join("known_hosts");
    std::fs::write(&empty, "").unwrap();
    let text: String = text
        .lines()
        .map(|l| {
            if l.trim_start().starts_with("UserKnownHostsFile") {
                format!("    UserKnownHostsFile {}\n", empty.display())
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let strict = dir.path().join("ssh_config");
    std::fs::write(&strict, text).unwrap();
    let out = std::process::Command::new(gantry_e2e::bin_dir().join("gantry-gate-slurm"))
        .args(["--name", "slurm", "--listen", "127.0.0.1:0"])
        .arg("--pki-dir")
        .arg(dir.path().join("pki"))
        .args(["--ssh", gantry_e2e::SSH_HOST, "--ssh-config"])
        .arg(&strict)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("cannot reach gantry-test-login over SSH")
            && stderr.contains("Host key verification failed"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_ssh_connection_is_made_again_and_jobs_end_true() {
    let _serial = SERIAL.lock().await;
    let (cluster, _conf) = cluster(true).await;
    let id = submit(&cluster, &["--", "sh", "-c", "sleep 4; echo done; exit 5"]);
    until_state(&cluster, &id, "RUNNING").await;
    // Cut the gate's connection on the login node's side.
    let killed = std::process::Command::new("pkill")
        .args(["-KILL", "-u", LOGIN_USER, "-x", "sshd"])
        .status()
        .unwrap();
    assert!(killed.success(), "no SSH session of {LOGIN_USER} to cut");
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 5);
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &id]));
    assert_eq!(out, "done\n");
    let later = submit(&cluster, &["--", "echo", "again"]);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &later]));
    assert_eq!(code, 0);
    assert!(
        cluster
            .gate
            .log_tail()
            .contains("SSH connection or SFTP session lost"),
        "{}",
        cluster.gate.log_tail()
    );
}

/// A cluster of its own that keeps finished jobs only 2 s, with an
/// accounting database or only its job completion log; stopped when dropped.
struct ForgetfulSlurm {
    dir: tempfile::TempDir,
    conf: PathBuf,
}

impl ForgetfulSlurm {
    fn start(accounting: bool) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("gantry-slurm-")
            .tempdir()
            .unwrap();
        let conf = start_script(
            "slurm",
            &[dir.path().as_os_str()],
            &[
                ("SLURM_MIN_JOB_AGE", "2"),
                ("SLURM_ACCOUNTING", if accounting { "1" } else { "0" }),
            ],
        );
        Self { dir, conf }
    }
}

impl Drop for ForgetfulSlurm {
    fn drop(&mut self) {
        let _ = std::process::Command::new(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../scripts/slurm"),
        )
        .arg("stop")
        .arg(self.dir.path())
        .output();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_slurmctld_let_go_while_the_gate_was_down_ends_true() {
    forgotten_job(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_slurmctld_let_go_ends_true_from_the_accounting_database() {
    forgotten_job(true).await;
}

/// The gate is down while its job ends and slurmctld lets the job go; the
/// restarted gate learns its end from sacct: the accounting database, or
/// without one the job completion log.
async fn forgotten_job(accounting: bool) {
    let _serial = SERIAL.lock().await;
    let slurm = ForgetfulSlurm::start(accounting);
    let mut cluster = Cluster::start(Options {
        slurm_conf: Some(slurm.conf.clone()),
        ..Default::default()
    })
    .await
    .unwrap();
    let go = go_file();
    let script = format!(
        "while [ ! -e {} ]; do sleep 0.2; done; echo bye; exit 7",
        go.path().display()
    );
    let id = submit(&cluster, &["--", "sh", "-c", &script]);
    until_state(&cluster, &id, "RUNNING").await;
    let slurm_id = slurm_job_of(&cluster, &id);
    cluster.gate.kill9();
    go.open();
    // slurmctld lets the job go once it is 2 s old, at its next purge.
    let what = format!("slurmctld to let job {slurm_id} go");
    eventually(Duration::from_secs(150), &what, async || {
        let out = std::process::Command::new("scontrol")
            .args(["show", "job", "-o", &slurm_id])
            .env("SLURM_CONF", &slurm.conf)
            .output()
            .unwrap();
        if out.status.success() {
            Err(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Ok(())
        }
    })
    .await;
    if accounting {
        // Only the database can answer now.
        std::fs::remove_file(slurm.dir.path().join("jobcomp.txt")).unwrap();
    }
    cluster.gate.restart().await.unwrap();
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 7, "the exit code from Slurm's records");
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &id]));
    assert_eq!(out, "bye\n");
}

#[test]
fn a_missing_slurm_conf_stops_the_gate_saying_why() {
    // Slurm's commands would retry such a file for a minute, then fail.
    let work = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(gantry_e2e::bin_dir().join("gantry-gate-slurm"))
        .args(["--name", "slurm", "--listen", "127.0.0.1:0", "--pki-dir"])
        .arg(work.path().join("pki"))
        .args(["--slurm-conf", "/nonexistent/slurm.conf", "--work-dir"])
        .arg(work.path())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a gate whose slurm.conf is missing started"
    );
    assert!(
        stderr.contains("--slurm-conf /nonexistent/slurm.conf: no such file"),
        "the gate's own log says why: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gate_whose_slurm_does_not_answer_says_so_in_its_own_log_at_start() {
    // A readable slurm.conf naming a controller port nothing listens on.
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(gantry_e2e::services::slurm_conf()).unwrap();
    let port = gantry_e2e::free_port();
    let text: Vec<String> = text
        .lines()
        .map(|l| match l.starts_with("SlurmctldPort=") {
            true => format!("SlurmctldPort={port}"),
            false => l.to_string(),
        })
        .collect();
    let conf = dir.path().join("slurm.conf");
    std::fs::write(&conf, text.join("\n")).unwrap();
    let pki = gantry_e2e::kit::pki(dir.path(), "slurm");
    let work = dir.path().join("work").display().to_string();
    let conf = conf.display().to_string();
    let args = [
        "--name",
        "slurm",
        "--listen",
        "127.0.0.1:0",
        "--pki-dir",
        &pki,
        "--work-dir",
        &work,
        "--slurm-conf",
        &conf,
        "--run-as",
        "gate",
    ];
    let gate = gantry_e2e::Process::start("gantry-gate-slurm", dir.path(), &args)
        .await
        .unwrap();
    // No gantryd asks: the gate looks by itself as it starts.
    eventually(
        Duration::from_secs(120),
        "the gate's log to say Slurm does not answer",
        async || {
            let log = std::fs::read_to_string(gate.log_path()).unwrap_or_default();
            match log
                .lines()
                .find(|l| l.contains("the provider does not answer"))
            {
                Some(line) if line.contains("sinfo") || line.contains("Slurm") => Ok(()),
                _ => Err(gate.log_tail()),
            }
        },
    )
    .await;
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
