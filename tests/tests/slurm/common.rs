//! What the Slurm tests share: the cluster, Slurm's own commands, the CLI
//! as alice, waiting for a job's state, and a file jobs wait for.

use std::path::{Path, PathBuf};

pub(crate) use gantry_e2e::as_alice::{
    refused, show, show_until, submit, submit_by, submitted_id, until_shown_by, until_state,
};
use gantry_e2e::services::{slurm_conf, ssh_config};
use gantry_e2e::{Cluster, Options, run};

/// How many logins the test sshd has accepted so far.
pub(crate) fn ssh_logins(config: &std::path::Path) -> usize {
    let log = config.with_file_name("sshd.log");
    std::fs::read_to_string(&log)
        .unwrap_or_else(|e| panic!("read {}: {e}", log.display()))
        .matches("Accepted publickey")
        .count()
}

/// A file jobs wait for (`while [ ! -e PATH ]`), in a directory every user
/// can look into (jobs over SSH run as the login user).
pub(crate) struct GoFile {
    dir: tempfile::TempDir,
}

pub(crate) fn go_file() -> GoFile {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("gantry-go-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    GoFile { dir }
}

impl GoFile {
    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("go")
    }

    /// Let the waiting jobs go on.
    pub(crate) fn open(&self) {
        std::fs::write(self.path(), "").unwrap();
    }
}

/// Held by each test: under `cargo test` the tests of this file share a
/// process, and they must not share the Slurm cluster at the same time.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub(crate) async fn cluster(over_ssh: bool) -> (Cluster, PathBuf) {
    cluster_on(slurm_conf(), over_ssh).await
}

/// Gantry with its Slurm gate on the cluster of `conf`.
pub(crate) async fn cluster_on(conf: PathBuf, over_ssh: bool) -> (Cluster, PathBuf) {
    let cluster = Cluster::start(Options {
        slurm_conf: Some(conf.clone()),
        ssh_config: over_ssh.then(ssh_config),
        ..Default::default()
    })
    .await
    .unwrap();
    (cluster, conf)
}

/// A Slurm command against the test cluster; its stdout.
pub(crate) fn slurm(conf: &Path, program: &str, args: &[&str]) -> String {
    let out = std::process::Command::new(program)
        .args(args)
        .env("SLURM_CONF", conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{program} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The Slurm job id gantryd recorded ("running on slurm (ID)").
pub(crate) fn slurm_job_of(cluster: &Cluster, id: &str) -> String {
    let (_, out, _) = run(cluster.cli("alice").args(["show", id]));
    out.split("running on slurm (")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap_or_else(|| panic!("no Slurm job id in `gantry show`:\n{out}"))
        .to_string()
}

pub(crate) fn field(scontrol: &str, key: &str) -> String {
    scontrol
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        .unwrap_or("")
        .to_string()
}

/// Resumes the test cluster's node when dropped.
pub(crate) struct Resumed<'a>(pub(crate) &'a PathBuf);

impl Drop for Resumed<'_> {
    fn drop(&mut self) {
        let _ = std::process::Command::new("scontrol")
            .args(["update", "nodename=localhost", "state=resume"])
            .env("SLURM_CONF", self.0)
            .output();
    }
}
