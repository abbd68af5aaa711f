//! Running the gate conformance kit (`gantry-gate-conformance`) from a
//! test: a PKI for it and the gate, and its verdicts read from `--json`.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use gantry_proto::identity::Principal;
use gantry_proto::pki::Pki;

use crate::{bin_dir, run};

/// A PKI for installation `e2e` with the core, the scheduler and `gate/<site>`.
pub fn pki(dir: &Path, site: &str) -> String {
    let pki = Pki::init(&dir.join("pki"), "e2e").expect("pki");
    for p in [
        Principal::Core,
        Principal::Scheduler,
        Principal::Gate(site.into()),
    ] {
        pki.issue(&p, &[]).expect("issue");
    }
    dir.join("pki").display().to_string()
}

/// Run the kit with `--json`: its exit code, each check's result and
/// detail, and its stderr.
pub fn conformance(args: &[&str]) -> (i32, BTreeMap<String, (String, String)>, String) {
    let (code, out, err) = run(Command::new(bin_dir().join("gantry-gate-conformance"))
        .args(args)
        .arg("--json"));
    let rows = out
        .lines()
        .map(|line| {
            let row: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let field = |name: &str| row[name].as_str().expect("a string").to_string();
            (field("check"), (field("result"), field("detail")))
        })
        .collect();
    (code, rows, err)
}

/// Assert that the kit passed every check but the `skipped` ones (which
/// may only be skipped) and exited 0; `context` is shown with a failure
/// (the gate's log, say).
pub fn assert_passed(
    code: i32,
    rows: &BTreeMap<String, (String, String)>,
    err: &str,
    skipped: &[&str],
    context: &str,
) {
    let failed: Vec<_> = rows
        .iter()
        .filter(|(name, (r, _))| r != "pass" && !(r == "skip" && skipped.contains(&name.as_str())))
        .collect();
    assert!(failed.is_empty(), "not passed: {failed:#?}\n{err}{context}");
    assert_eq!(code, 0, "{err}");
}

/// The flags that put a batch gate's work directory in `dir` on this
/// host, or (`over_ssh`) under the login user's home on the test login
/// node (`scripts/sshd`), reached with `--ssh`.
pub fn work_dir_flags(dir: &Path, over_ssh: bool) -> Vec<String> {
    if !over_ssh {
        let work = dir.join("work").display().to_string();
        return vec!["--work-dir".into(), work];
    }
    let name = dir.file_name().expect("named").to_string_lossy();
    let config = crate::services::ssh_config().display().to_string();
    [
        "--work-dir",
        &format!("gantry-conformance/{name}"),
        "--ssh",
        crate::SSH_HOST,
        "--ssh-config",
        &config,
    ]
    .map(String::from)
    .to_vec()
}

/// A gate run from a shell script that `--restart-cmd` can run again: each
/// run kills the gate with SIGKILL and starts it on the address it had.
/// Dropping it stops the gate.
pub struct RestartableGate {
    /// The gate's address.
    pub addr: String,
    /// The script that (re)starts it: give it to `--restart-cmd`.
    pub restart_cmd: String,
    dir: std::path::PathBuf,
}

impl RestartableGate {
    /// Start `program` with `args` plus `--listen` and `--ready-file`, in `dir`.
    pub fn start(dir: &Path, program: &Path, args: &[&str]) -> Self {
        let quoted: Vec<String> = std::iter::once(program.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
            .collect();
        let script = format!(
            r#"#!/bin/sh
# Start the gate, or kill it with SIGKILL and start it again on its address.
set -eu
cd '{dir}'
addr=127.0.0.1:0
if [ -s gate.pid ]; then
    pid=$(cat gate.pid)
    addr=$(cat ready)
    kill -9 "$pid" 2>/dev/null || true
    # Gone, or a zombie (its socket is closed either way).
    while [ -e /proc/$pid/stat ] && ! grep -q ') Z' /proc/$pid/stat; do sleep 0.05; done
fi
rm -f ready
{command} --listen "$addr" --ready-file ready >>gate.log 2>&1 &
echo $! >gate.pid
tries=0
until [ -s ready ]; do
    tries=$((tries + 1))
    [ $tries -lt 600 ] || {{ echo "the gate did not start; see {dir}/gate.log" >&2; exit 1; }}
    sleep 0.05
done
"#,
            dir = dir.display(),
            command = quoted.join(" "),
        );
        let path = dir.join("gate.sh");
        std::fs::write(&path, script).expect("write gate.sh");
        let restart_cmd = format!("sh '{}'", path.display());
        let (code, _, err) = run(Command::new("sh").arg("-c").arg(&restart_cmd));
        assert_eq!(code, 0, "the gate did not start: {err}");
        let addr = std::fs::read_to_string(dir.join("ready")).expect("the ready file");
        RestartableGate {
            addr,
            restart_cmd,
            dir: dir.to_path_buf(),
        }
    }
}

impl Drop for RestartableGate {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("gate.pid")) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}
