//! The `gantry` CLI as the test user alice (or another user, `_by`), as
//! the gate tests drive it: submit a job, show it, wait until it shows a
//! state or a text, or see a submit refused.

use std::time::Duration;

use crate::{Cluster, eventually, run};

/// The job id in `gantry submit`'s output (its last word).
pub fn submitted_id(stdout: &str) -> String {
    stdout
        .split_whitespace()
        .last()
        .unwrap_or_else(|| panic!("no job id in {stdout:?}"))
        .to_string()
}

/// `gantry submit ARGS`; the job id.
pub fn submit(cluster: &Cluster, args: &[&str]) -> String {
    submit_by(cluster, "alice", args)
}

/// `gantry submit ARGS` as `user`; the job id.
pub fn submit_by(cluster: &Cluster, user: &str, args: &[&str]) -> String {
    let (code, out, err) = run(cluster.cli(user).arg("submit").args(args));
    assert_eq!(code, 0, "{err}");
    submitted_id(&out)
}

/// `gantry submit ARGS`, which gantryd must refuse; what it said.
pub fn refused(cluster: &Cluster, args: &[&str]) -> String {
    let (code, out, err) = run(cluster.cli("alice").arg("submit").args(args));
    assert_ne!(code, 0, "accepted: {out}");
    err
}

/// `gantry show ID --json`.
pub fn show(cluster: &Cluster, id: &str) -> String {
    run(cluster.cli("alice").args(["show", id, "--json"])).1
}

/// `gantry show ID --json` if it contains `text`, else `Err` with it and
/// the gate's last log lines.
pub fn show_until(cluster: &Cluster, id: &str, text: &str) -> Result<String, String> {
    shown_by(cluster, "alice", id, text)
}

fn shown_by(cluster: &Cluster, user: &str, id: &str, text: &str) -> Result<String, String> {
    let out = run(cluster.cli(user).args(["show", id, "--json"])).1;
    if out.contains(text) {
        Ok(out)
    } else {
        Err(format!("{out}\n--- gate:\n{}", cluster.gate.log_tail()))
    }
}

/// Poll `gantry show ID --json` until it contains `text`, for up to a
/// minute; the output.
pub async fn until_shown(cluster: &Cluster, id: &str, text: &str) -> String {
    until_shown_by(cluster, "alice", id, text).await
}

/// [`until_shown`] as `user`.
pub async fn until_shown_by(cluster: &Cluster, user: &str, id: &str, text: &str) -> String {
    let what = format!("{user}'s job {id} to show {text}");
    eventually(Duration::from_secs(60), &what, async || {
        shown_by(cluster, user, id, text)
    })
    .await
}

/// Poll `gantry show ID --json` until its state is `state`, for up to a
/// minute; the output.
pub async fn until_state(cluster: &Cluster, id: &str, state: &str) -> String {
    until_shown(cluster, id, &format!("\"state\": \"{state}\"")).await
}
