//! `gantry dev` as a user runs it: three processes, a profile other commands
//! find, self-healing after kill -9, and a clean stop on Ctrl-C.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gantry_e2e::bin_dir;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

fn gantry(profile: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(bin_dir().join("gantry"))
        .args(args)
        .env("GANTRY_PROFILE", profile)
        .output()
        .expect("run gantry");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !probe() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn pid_in(state: &Path, name: &str) -> Option<i32> {
    // The child's pid, found through /proc by its command line.
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if cmdline
            .split('\0')
            .next()
            .is_some_and(|p| p.ends_with(&format!("/{name}")))
            && cmdline.contains(&*state.to_string_lossy())
        {
            return Some(pid);
        }
    }
    None
}

/// Kills `gantry dev` if the test fails half-way.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = kill(Pid::from_raw(self.0.id() as i32), Signal::SIGINT);
        let _ = self.0.wait();
    }
}

#[test]
fn gantry_dev_runs_heals_and_stops() {
    let state = tempfile::tempdir().unwrap();
    let profile = state.path().join("client.toml");
    let mut dev = KillOnDrop(
        Command::new(bin_dir().join("gantry"))
            .args(["dev", "--cpus", "2", "--state-dir"])
            .arg(state.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("the profile", || {
        std::fs::read_to_string(&profile).is_ok_and(|t| t.contains("address"))
    });
    let (code, out) = gantry(
        &profile,
        &["submit", "--", "sh", "-c", "sleep 1; echo survived"],
    );
    assert_eq!(code, 0);
    let id = out.split_whitespace().last().unwrap().to_string();
    wait_for("the job to run", || {
        gantry(&profile, &["show", &id, "--json"])
            .1
            .contains("RUNNING")
    });
    let core = pid_in(state.path(), "gantryd").expect("gantryd runs");
    kill(Pid::from_raw(core), Signal::SIGKILL).unwrap();
    wait_for("gantryd to be started again", || {
        pid_in(state.path(), "gantryd").is_some_and(|p| p != core)
            && gantry(&profile, &["ls"]).0 == 0
    });
    let (code, _) = gantry(&profile, &["wait", &id]);
    assert_eq!(code, 0, "the job survives gantryd's death under gantry dev");
    assert_eq!(gantry(&profile, &["logs", &id]).1, "survived\n");
    kill(Pid::from_raw(dev.0.id() as i32), Signal::SIGINT).unwrap();
    let status = dev.0.wait().unwrap();
    assert!(
        status.success(),
        "gantry dev stops cleanly on Ctrl-C: {status}"
    );
    for name in ["gantryd", "gantry-sched", "gantry-gate-local"] {
        assert_eq!(pid_in(state.path(), name), None, "{name} still runs");
    }
    let text = std::fs::read_to_string(&profile).unwrap();
    assert!(
        !text.lines().any(|l| l.starts_with("address")),
        "the stale address is removed: {text}"
    );
}
