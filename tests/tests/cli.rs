//! The `gantry` CLI as a user runs it: submit, wait with the job's exit code,
//! logs, --json, and one-line errors.

use gantry_e2e::{Cluster, Options, run};

fn submitted_id(stdout: &str) -> u64 {
    stdout
        .split_whitespace()
        .last()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no job id in {stdout:?}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn submit_wait_logs_and_json() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let (code, out, err) = run(cluster.cli("alice").args([
        "submit",
        "--",
        "sh",
        "-c",
        "echo hello from gantry; exit 7",
    ]));
    assert_eq!(code, 0, "{err}");
    let id = submitted_id(&out);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id.to_string()]));
    assert_eq!(code, 7, "gantry wait must exit with the job's exit code");
    let (code, out, _) = run(cluster.cli("alice").args(["logs", &id.to_string()]));
    assert_eq!(code, 0);
    assert_eq!(out, "hello from gantry\n");
    let (code, out, _) = run(cluster
        .cli("alice")
        .args(["show", &id.to_string(), "--json"]));
    assert_eq!(code, 0);
    let text = out.replace(' ', "");
    assert!(text.contains("\"state\":\"FAILED\""), "{out}");
    assert!(text.contains("\"exit_code\":7"), "{out}");
    let (code, out, _) = run(cluster.cli("alice").args(["ls", "--json"]));
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!("\"id\":{id}")) || out.contains(&format!("\"id\": {id}")),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn script_directives_and_clear_errors() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let script = cluster.dir().join("job.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\n#GANTRY --cpus 1\n#GANTRY --label kind=demo\necho from script\n",
    )
    .unwrap();
    let (code, out, err) = run(cluster
        .cli("alice")
        .args(["submit", script.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    let id = submitted_id(&out);
    let (code, _, _) = run(cluster.cli("alice").args(["wait", &id.to_string()]));
    assert_eq!(code, 0);
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &id.to_string()]));
    assert_eq!(out, "from script\n");
    let (code, _, err) =
        run(cluster
            .cli("alice")
            .args(["submit", "--walltime", "abc", "--", "true"]));
    assert_ne!(code, 0);
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains("resources.walltime"), "{err}");
}

/// The JSON lines of `gantry watch ARGS --json` (it must end by itself).
fn watch_json(cluster: &Cluster, args: &[&str]) -> Vec<serde_json::Value> {
    let (code, out, err) = run(cluster.cli("alice").arg("watch").args(args).arg("--json"));
    assert_eq!(code, 0, "{err}");
    out.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn watch_follows_a_job_to_its_end_resumes_and_starts_from_now() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let (code, out, err) =
        run(cluster
            .cli("alice")
            .args(["submit", "--", "sh", "-c", "sleep 0.5"]));
    assert_eq!(code, 0, "{err}");
    let id = submitted_id(&out);
    // Named jobs: their history, then each change, until they have ended.
    let events = watch_json(&cluster, &[&id.to_string()]);
    let states: Vec<&str> = events
        .iter()
        .map(|e| e["to_state"].as_str().unwrap())
        .collect();
    assert_eq!(states.first(), Some(&"QUEUED"), "{events:?}");
    assert_eq!(states.last(), Some(&"COMPLETED"), "{events:?}");
    assert!(states.contains(&"RUNNING"), "{events:?}");
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Resumed after an event: exactly the ones after it.
    let resumed = watch_json(
        &cluster,
        &["--since", &seqs[1].to_string(), &id.to_string()],
    );
    assert_eq!(resumed, events[2..], "resumed after seq {}", seqs[1]);

    // Without ids: from now on, nothing of the past.
    let mut watcher = cluster
        .cli("alice")
        .args(["watch", "--json"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watcher.stdout.take().unwrap();
    let (lines, seen) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout).lines() {
            if lines.send(line.unwrap()).is_err() {
                return;
            }
        }
    });
    // The watcher starts at some moment: submit until it has seen a job.
    let mut submitted = Vec::new();
    let first = loop {
        let (code, out, err) = run(cluster.cli("alice").args(["submit", "--", "true"]));
        assert_eq!(code, 0, "{err}");
        submitted.push(submitted_id(&out));
        if let Ok(line) = seen.recv_timeout(std::time::Duration::from_millis(300)) {
            break line;
        }
        assert!(submitted.len() < 100, "the watcher printed nothing");
    };
    watcher.kill().unwrap();
    watcher.wait().unwrap();
    let first: serde_json::Value = serde_json::from_str(&first).unwrap();
    assert!(
        first["seq"].as_u64().unwrap() > *seqs.last().unwrap(),
        "{first}"
    );
    let job = first["job_id"].as_u64().unwrap();
    assert!(
        submitted.contains(&job),
        "{first} is not one of {submitted:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn every_command_ends_quietly_when_its_reader_goes_away() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let (code, out, err) = run(cluster
        .cli("alice")
        .args(["submit", "--", "seq", "1", "100000"]));
    assert_eq!(code, 0, "{err}");
    let id = submitted_id(&out).to_string();
    let (code, _, err) = run(cluster.cli("alice").args(["wait", &id]));
    assert_eq!(code, 0, "{err}");
    // The reader is gone before the command writes a byte (`| head -0`):
    // every write fails with EPIPE.
    for args in [
        vec!["ls"],
        vec!["ls", "--json"],
        vec!["show", &id],
        vec!["logs", &id],
        vec!["sites"],
        vec!["watch", &id],
        vec!["cancel", &id],
    ] {
        let mut child = cluster
            .cli("alice")
            .args(&args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let output = child.wait_with_output().unwrap();
        let err = String::from_utf8_lossy(&output.stderr);
        assert_eq!(
            (output.status.code(), err.as_ref()),
            (Some(141), ""),
            "gantry {args:?} must end quietly with 141 (128 + SIGPIPE), as `ls` does"
        );
    }
}
