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
