//! What the gate and its `gantry-supervisor` say to each other over the
//! supervisor's Unix socket (`work-dir/supervisor.sock`): one JSON object per
//! line each way. The gate sends [`Command`]s; the supervisor answers with
//! [`Event`]s, first a snapshot (one [`Event::Known`] per attempt it
//! remembers, then [`Event::Synced`]) on every new connection.

use std::collections::BTreeMap;

use gantry_gate::Account;
use gantry_proto::v1::GateJobState;
use serde::{Deserialize, Serialize};

/// This protocol's version, in [`Event::Synced`]: a gate meeting an older
/// supervisor (one that outlived an upgrade) uses only what that one knows.
/// 1: the first; 2: successors (a `Start` bound to one running attempt); 3: warning signals
/// ([`Start::warning`]), a job environment that is not the supervisor's
/// ([`Start::env_complete`]), stdin ([`Start::stdin`]) and a working
/// directory of the job's choosing ([`Start::chdir`]); 4: the supervisor's
/// queue ([`Start::queued`]) replaces a successor bound to one running
/// attempt (2), which a gate no longer sends; 5: jobs run as their owner's
/// account ([`Start::account`]).
pub const PROTOCOL: u32 = 5;

/// The first protocol whose supervisor runs a job as another account.
pub const ACCOUNTS_PROTOCOL: u32 = 5;

/// The reason of an attempt whose supervisor died while it ran.
pub const LOST_REASON: &str = "lost: the job's supervisor died";

/// A request from the gate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Start an attempt (a repeat of a known attempt is answered with its
    /// current state and starts nothing).
    Start(Box<Start>),
    /// Stop an attempt's job: SIGTERM to its process group, SIGKILL after
    /// its grace period. Its end arrives as [`Event::Exited`] with `reason`.
    Stop {
        /// The attempt.
        attempt: String,
        /// Why ("cancelled", "its partition was deleted").
        reason: String,
    },
    /// Forget an ended attempt and remove its directory.
    Forget {
        /// The attempt.
        attempt: String,
    },
}

/// How to start one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    /// gantryd's attempt id; also the name of its directory under `attempts/`.
    pub attempt: String,
    /// The program and its arguments.
    pub argv: Vec<String>,
    /// The job's environment: the whole of it when `env_complete`, else
    /// (protocol 1 and 2) added to the supervisor's own.
    pub env: BTreeMap<String, String>,
    /// `env` is the whole environment (protocol 3).
    #[serde(default)]
    pub env_complete: bool,
    /// Its stdin: a file relative to its working directory (protocol 3);
    /// `None`: /dev/null.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Its working directory when not the attempt's `work/` (protocol 3).
    #[serde(default)]
    pub chdir: Option<String>,
    /// A script to write to the attempt's `script` file before starting.
    pub script: Option<Script>,
    /// Host CPU ids to pin the job to (empty: not pinned).
    pub cpus: Vec<usize>,
    /// Seconds it may run (0: no limit).
    pub walltime_seconds: u64,
    /// Seconds between SIGTERM and SIGKILL when it is stopped.
    pub grace_seconds: u64,
    /// A signal (number) to send to its process group `seconds` before the
    /// walltime (`sbatch --signal`); needs protocol 3.
    #[serde(default)]
    pub warning: Option<WarnAt>,
    /// What the gate wants back in snapshots (the supervisor does not read it).
    pub meta: serde_json::Value,
    /// Wait in the supervisor's queue rather than start now (protocol 4):
    /// queued attempts start in the order they were queued, each the moment
    /// a running attempt of its `shape` ends, on what that one held (its
    /// `cpus`, `slot_env` and `held`), without waiting for the gate. The
    /// head of the queue blocks those behind it, so none overtakes another.
    /// A `Start` that is not queued for an attempt that waits so starts it
    /// now, on the resources it names (the gate found it a free slot). A
    /// new connection empties the queue (it is the gate's to fill again).
    #[serde(default)]
    pub queued: bool,
    /// What it holds (or, queued, asks), as the gate names it: a queued
    /// attempt takes over only from an attempt of the same shape.
    #[serde(default)]
    pub shape: String,
    /// The variables of `env` that name what it holds (`CUDA_VISIBLE_DEVICES`):
    /// a queued attempt started on its resources gets these in place of its own.
    #[serde(default)]
    pub slot_env: BTreeMap<String, String>,
    /// What it holds, as the gate records it (the supervisor does not read
    /// it): passed on with its CPUs, and reported in [`Known::held`].
    #[serde(default)]
    pub held: serde_json::Value,
    /// Run it as this account (protocol 5): groups, gid and uid set before
    /// exec, its directory, logs and staged files made the account's.
    /// `None`: as the supervisor's own.
    #[serde(default)]
    pub account: Option<Account>,
}

/// A signal sent before the walltime ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarnAt {
    /// The signal's number.
    pub signal: i32,
    /// Seconds before the walltime (sent at once when the walltime is shorter).
    pub seconds: u64,
}

/// A script task's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Script {
    /// The script.
    pub text: String,
    /// Make it executable (it starts with `#!`).
    pub executable: bool,
}

/// A report from the supervisor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// One attempt the supervisor remembers (part of the snapshot).
    Known(Known),
    /// The snapshot is complete; live events follow.
    Synced {
        /// The supervisor's [`PROTOCOL`] (absent: 1).
        #[serde(default = "first_protocol")]
        protocol: u32,
    },
    /// An attempt's job runs.
    Started {
        /// The attempt.
        attempt: String,
        /// The job's pid (also its process group id).
        pid: u32,
        /// Unix ms it started.
        start_ms: i64,
        /// The attempt whose resources it started on (a queued attempt, see
        /// [`Start::queued`]); `None` when it started on those it was sent.
        #[serde(default)]
        after: Option<String>,
    },
    /// An attempt's job ended (or could not start).
    Exited {
        /// The attempt.
        attempt: String,
        /// How.
        exit: Exit,
        /// The queued attempt that takes over what it held (it starts now;
        /// its [`Event::Started`] follows), if one did.
        #[serde(default)]
        passed_to: Option<String>,
    },
}

/// Everything known about one attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Known {
    /// The attempt.
    pub attempt: String,
    /// The gate's [`Start::meta`].
    pub meta: serde_json::Value,
    /// The job's pid, 0 until it started.
    pub pid: u32,
    /// The job's start in clock ticks since boot (tells a reused pid apart).
    pub start_ticks: u64,
    /// Unix ms it started, 0 until then.
    pub start_ms: i64,
    /// How it ended, once it has.
    pub exit: Option<Exit>,
    /// What it holds ([`Start::held`]: its own, or that of the attempt it
    /// took over from).
    #[serde(default)]
    pub held: serde_json::Value,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Exit {
    /// The exit code, 128+N when killed by signal N; `None` when unknown.
    pub exit_code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    /// Why the supervisor ended it ("cancelled", "walltime exceeded"), why
    /// it could not start or was lost; empty when it ended by itself.
    pub reason: String,
    /// Unix ms it ended.
    pub end_ms: i64,
}

impl Exit {
    /// The final state and reason this exit means.
    pub fn outcome(&self) -> (GateJobState, String) {
        match (self.reason.as_str(), self.exit_code, self.signal) {
            ("cancelled", ..) => (GateJobState::Cancelled, self.reason.clone()),
            ("", Some(0), _) => (GateJobState::Succeeded, String::new()),
            ("", _, Some(sig)) => (GateJobState::Failed, format!("killed by signal {sig}")),
            ("", Some(code), None) => (GateJobState::Failed, format!("exit code {code}")),
            ("", None, None) => (GateJobState::Failed, LOST_REASON.into()),
            (other, ..) => (GateJobState::Failed, other.to_string()),
        }
    }

    /// Whether the job's supervisor was lost while it ran (`GateJob.lost`):
    /// it has no exit of its own, so gantryd may run it again.
    pub fn lost(&self) -> bool {
        self.exit_code.is_none()
            && self.signal.is_none()
            && (self.reason.is_empty() || self.reason == LOST_REASON)
    }
}

fn first_protocol() -> u32 {
    1
}

/// One line of JSON for `value`, newline included.
pub fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut bytes = serde_json::to_vec(value).expect("protocol types serialize");
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit(code: Option<i32>, signal: Option<i32>, reason: &str) -> Exit {
        Exit {
            exit_code: code,
            signal,
            reason: reason.into(),
            end_ms: 1,
        }
    }

    #[test]
    fn outcomes() {
        use GateJobState::*;
        assert_eq!(
            exit(Some(0), None, "").outcome(),
            (Succeeded, String::new())
        );
        assert_eq!(
            exit(Some(3), None, "").outcome(),
            (Failed, "exit code 3".into())
        );
        assert_eq!(
            exit(Some(137), Some(9), "").outcome(),
            (Failed, "killed by signal 9".into())
        );
        assert_eq!(
            exit(Some(143), Some(15), "walltime exceeded").outcome().1,
            "walltime exceeded"
        );
        assert_eq!(
            exit(Some(143), Some(15), "cancelled").outcome().0,
            Cancelled
        );
        assert_eq!(exit(None, None, LOST_REASON).outcome().1, LOST_REASON);
        assert_eq!(exit(None, None, "").outcome().1, LOST_REASON);
        assert!(exit(None, None, LOST_REASON).lost());
        assert!(!exit(Some(137), Some(9), "").lost());
        assert!(!exit(None, None, "could not start: no such directory").lost());
    }

    #[test]
    fn lines_round_trip() {
        let cmd = Command::Stop {
            attempt: "a1".into(),
            reason: "cancelled".into(),
        };
        let bytes = line(&cmd);
        assert_eq!(bytes.last(), Some(&b'\n'));
        assert_eq!(serde_json::from_slice::<Command>(&bytes).unwrap(), cmd);
        let text = String::from_utf8(line(&Event::Synced { protocol: PROTOCOL })).unwrap();
        assert_eq!(text, "{\"ev\":\"synced\",\"protocol\":5}\n");
        let old: Event = serde_json::from_str("{\"ev\":\"synced\"}").unwrap();
        assert_eq!(old, Event::Synced { protocol: 1 });
    }
}
