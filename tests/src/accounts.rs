//! Real Unix accounts for the tests that run jobs as their owners: made
//! with `useradd` when missing (the suite runs as root) and kept, so a
//! second run finds them.

use std::process::Command;
use std::time::Duration;

/// A Unix account of this machine.
#[derive(Debug, Clone)]
pub struct UnixAccount {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl UnixAccount {
    /// The account `name` (created with a home, a group of its own and
    /// membership of `groups` when missing).
    pub fn ensure(name: &str, groups: &[&str]) -> Self {
        assert!(
            nix::unistd::geteuid().is_root(),
            "this test makes Unix accounts and runs a gate as root; run the suite as root"
        );
        for group in groups {
            retry_locked(Command::new("groupadd").args(["--force", group]));
        }
        if nix::unistd::User::from_name(name).unwrap().is_none() {
            let mut useradd = Command::new("useradd");
            useradd.args(["--create-home", "--user-group", "--shell", "/bin/sh"]);
            if !groups.is_empty() {
                useradd.args(["--groups", &groups.join(",")]);
            }
            retry_locked(useradd.arg(name));
        }
        let user = nix::unistd::User::from_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("useradd made no account {name}"));
        Self {
            name: name.to_string(),
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
        }
    }

    /// The gid of group `name`.
    pub fn group_id(name: &str) -> u32 {
        nix::unistd::Group::from_name(name)
            .unwrap()
            .unwrap_or_else(|| panic!("no group {name}"))
            .gid
            .as_raw()
    }
}

/// Run `cmd` until it succeeds: the shadow tools refuse while another holds
/// the lock of /etc/passwd or /etc/group (tests run in parallel); an
/// account or group that exists by then is success too (exit 9).
fn retry_locked(cmd: &mut Command) {
    let mut last = String::new();
    for _ in 0..50 {
        let out = cmd
            .output()
            .expect("the shadow tools (useradd, groupadd) run");
        if out.status.success() || out.status.code() == Some(9) {
            return;
        }
        last = String::from_utf8_lossy(&out.stderr).into_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{cmd:?} failed: {last}");
}

/// A directory every account can pass through (mode 0711), for a gate's
/// work directory: a gate that runs jobs as their owners needs one.
pub fn searchable_dir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    dir
}

/// The flags of a gate that runs each job as its owner's account, mapped
/// by `users` (TOML `user = "account"` lines, written to `dir/users.toml`)
/// and by nothing else.
pub fn run_as_owner(dir: &std::path::Path, users: &str) -> Vec<String> {
    let map = dir.join("users.toml");
    std::fs::write(&map, users).unwrap();
    let flags = ["--run-as", "owner", "--same-name", "false", "--user-map"];
    let mut flags: Vec<String> = flags.map(String::from).to_vec();
    flags.push(map.display().to_string());
    flags
}

/// `user`'s job cannot read `path`: its `cat` fails, saying permission denied.
pub async fn cannot_read(cluster: &crate::Cluster, user: &str, path: &std::path::Path) {
    use crate::as_alice::{submit_by, until_shown_by};
    let peek = format!("cat {}", path.display());
    let id = submit_by(cluster, user, &["--", "sh", "-c", &peek]);
    until_shown_by(cluster, user, &id, "\"exit_code\": 1").await;
    let (_, err, _) = crate::run(cluster.cli(user).args(["logs", "--stderr", &id]));
    assert!(err.contains("Permission denied"), "{err}");
}
