//! The files of one attempt under `work-dir/attempts/<attempt_id>/` and what
//! they mean:
//!
//! - `attempt.json`: written by the gate at StartJob, before the shim starts
//!   (an attempt exists once this file does; a directory without it only
//!   holds staged-in files);
//! - `work/` (the job's cwd), `stdout`, `stderr`, `script` (for script tasks);
//! - `pids`, `exit.json`: written by `gantry-shim` (see its docs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gantry_proto::v1::GateJobState;
use serde::{Deserialize, Serialize};

use crate::alloc::Alloc;

/// Version of `attempt.json`.
pub const RECORD_VERSION: u32 = 1;

/// Paths of one attempt's files.
#[derive(Debug, Clone)]
pub struct AttemptDir {
    /// The attempt's directory.
    pub dir: PathBuf,
}

impl AttemptDir {
    /// The directory of `attempt_id` under `attempts`.
    pub fn new(attempts: &Path, attempt_id: &str) -> Self {
        Self {
            dir: attempts.join(attempt_id),
        }
    }

    /// The job's working directory.
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The sizes of the job's stdout and stderr, where they can be read.
    pub fn log_sizes(&self) -> (Option<u64>, Option<u64>) {
        let size = |name: &str| std::fs::metadata(self.file(name)).ok().map(|m| m.len());
        (size("stdout"), size("stderr"))
    }

    /// A file of the attempt directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

/// `attempt.json`: what the gate must know about an attempt after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The format version, [`RECORD_VERSION`].
    pub version: u32,
    /// gantryd's attempt id.
    pub attempt_id: String,
    /// The partition it runs on.
    pub partition_id: String,
    /// gantryd's job id.
    pub job_id: u64,
    /// The job's name.
    pub name: String,
    /// What it was started with (after script handling).
    pub argv: Vec<String>,
    /// The task's own environment variables.
    pub env: BTreeMap<String, String>,
    /// Walltime in seconds, 0 for none.
    pub walltime_seconds: u64,
    /// What it holds while running.
    pub alloc: Alloc,
}

/// The shim's `pids` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pids {
    /// The shim's pid and start time (clock ticks since boot).
    pub shim: Proc,
    /// The job's pid and start time.
    pub job: Proc,
    /// Unix ms the job started.
    pub start_ms: i64,
}

/// A process, identified so that a reused pid is not mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_ticks: u64,
}

impl Pids {
    /// Parse `shim_pid shim_start job_pid job_start start_ms`.
    pub fn parse(line: &str) -> Option<Self> {
        let mut f = line.split_whitespace();
        let mut next = || f.next();
        let shim = Proc {
            pid: next()?.parse().ok()?,
            start_ticks: next()?.parse().ok()?,
        };
        let job = Proc {
            pid: next()?.parse().ok()?,
            start_ticks: next()?.parse().ok()?,
        };
        let start_ms = next()?.parse().ok()?;
        Some(Self {
            shim,
            job,
            start_ms,
        })
    }
}

impl Proc {
    /// Whether this very process still runs (not a zombie, not a reused pid).
    pub fn alive(&self) -> bool {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)) else {
            return false;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            return false;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let state = fields.first().copied().unwrap_or("Z");
        let ticks = fields.get(19).and_then(|t| t.parse::<u64>().ok());
        state != "Z" && state != "X" && ticks == Some(self.start_ticks)
    }
}

/// The shim's `exit.json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ExitRecord {
    /// The exit code (128+N for signal N).
    pub exit_code: i32,
    /// The signal that killed the job, if one did.
    pub signal: Option<i32>,
    /// "cancelled", "walltime exceeded", "cannot start ...", or empty.
    pub reason: String,
    /// Unix ms it ended.
    pub end_time_ms: i64,
}

/// The reason of an attempt whose shim died without a word.
pub const LOST_REASON: &str = "lost: the job's supervisor died";

impl ExitRecord {
    /// Read `exit.json` of `dir`; `None` when it is not there (yet) or unreadable.
    pub fn read(dir: &AttemptDir) -> Option<Self> {
        let text = std::fs::read(dir.file("exit.json")).ok()?;
        serde_json::from_slice(&text).ok()
    }

    /// The final state and reason this exit means.
    pub fn outcome(&self) -> (GateJobState, String) {
        match self.reason.as_str() {
            "cancelled" => (GateJobState::Cancelled, self.reason.clone()),
            "" if self.exit_code == 0 => (GateJobState::Succeeded, String::new()),
            "" => match self.signal {
                Some(sig) => (GateJobState::Failed, format!("killed by signal {sig}")),
                None => (
                    GateJobState::Failed,
                    format!("exit code {}", self.exit_code),
                ),
            },
            other => (GateJobState::Failed, other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: i32, signal: Option<i32>, reason: &str) -> ExitRecord {
        ExitRecord {
            exit_code: code,
            signal,
            reason: reason.into(),
            end_time_ms: 1,
        }
    }

    #[test]
    fn outcomes() {
        use GateJobState::*;
        assert_eq!(exit(0, None, "").outcome(), (Succeeded, String::new()));
        assert_eq!(exit(3, None, "").outcome(), (Failed, "exit code 3".into()));
        assert_eq!(
            exit(137, Some(9), "").outcome(),
            (Failed, "killed by signal 9".into())
        );
        assert_eq!(
            exit(143, Some(15), "walltime exceeded").outcome().1,
            "walltime exceeded"
        );
        assert_eq!(exit(143, Some(15), "cancelled").outcome().0, Cancelled);
        assert_eq!(exit(0, None, "cancelled").outcome().0, Cancelled);
        assert_eq!(exit(127, None, "cannot start `x`").outcome().0, Failed);
    }

    #[test]
    fn parses_pids_lines() {
        let p = Pids::parse("10 200 11 201 1700000000000\n").unwrap();
        assert_eq!(p.shim.pid, 10);
        assert_eq!(p.job.start_ticks, 201);
        assert_eq!(p.start_ms, 1_700_000_000_000);
        assert!(Pids::parse("10 200").is_none());
    }

    #[test]
    fn knows_a_live_process_from_a_reused_pid() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let ticks = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap();
        let me = Proc {
            pid: std::process::id(),
            start_ticks: ticks.parse().unwrap(),
        };
        assert!(me.alive());
        assert!(
            !Proc {
                start_ticks: me.start_ticks + 1,
                ..me
            }
            .alive()
        );
        assert!(
            !Proc {
                pid: u32::MAX,
                start_ticks: 0
            }
            .alive()
        );
    }
}
