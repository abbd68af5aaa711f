//! Slurm's job states in Gantry's terms: every state `squeue`/`sacct` can
//! show, with a reason a person can read.

use gantry_gate::batch::JobStatus;
use gantry_gate::batch::hms;
use gantry_proto::v1::GateJobState;

/// What one Slurm job looks like to the gate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Slurm's state name, e.g. `PENDING`, `TIMEOUT`.
    pub state: String,
    /// Slurm's reason (`Resources`, `Priority`, `NonZeroExitCode`, ...).
    pub reason: String,
    /// The batch script's exit code, when it ended.
    pub exit_code: Option<i32>,
    /// The signal that ended it, if any.
    pub signal: Option<i32>,
    /// Its time limit in minutes (0: none known).
    pub time_limit_minutes: u64,
    /// Unix seconds it started (0: not yet).
    pub start_time: i64,
    /// Unix seconds it ended (0: not yet).
    pub end_time: i64,
}

/// Whether Slurm ended the job because its node was lost (NODE_FAIL,
/// BOOT_FAIL), not by the job's own doing (`GateJob.lost`).
pub fn lost(o: &Observed) -> bool {
    matches!(o.state.as_str(), "NODE_FAIL" | "BOOT_FAIL")
}

/// What Slurm shows, in Gantry's terms.
pub fn status(o: &Observed) -> JobStatus {
    let (state, reason) = map(o);
    let end = state.is_final();
    JobStatus {
        state,
        reason,
        exit_code: if end { o.exit_code } else { None },
        lost: end && lost(o),
        // A pending job's start time is Slurm's guess.
        start_time: if state == GateJobState::Pending {
            0
        } else {
            o.start_time
        },
        end_time: if end { o.end_time } else { 0 },
    }
}

/// The Gantry state and reason for what Slurm shows.
pub fn map(o: &Observed) -> (GateJobState, String) {
    use GateJobState::*;
    let with_reason = |s: &str| {
        if o.reason.is_empty() || o.reason == "None" {
            format!("Slurm: {s}")
        } else {
            format!("Slurm: {s} ({})", o.reason)
        }
    };
    match o.state.as_str() {
        "PENDING" | "CONFIGURING" | "REQUEUED" | "REQUEUE_FED" | "REQUEUE_HOLD"
        | "RESV_DEL_HOLD" | "SUSPENDED" | "STOPPED" | "RESIZING" | "SIGNALING" | "STAGE_OUT" => {
            (Pending, with_reason(&o.state))
        }
        "RUNNING" | "COMPLETING" => (Running, String::new()),
        "COMPLETED" if o.exit_code.unwrap_or(0) == 0 => (Succeeded, String::new()),
        "COMPLETED" | "FAILED" => {
            let code = o.exit_code.map_or("unknown".into(), |c| c.to_string());
            (Failed, format!("Slurm: FAILED, exit code {code}"))
        }
        "TIMEOUT" => (
            Failed,
            format!(
                "walltime exceeded (Slurm: TIMEOUT after {})",
                hms(o.time_limit_minutes * 60)
            ),
        ),
        "CANCELLED" => (Cancelled, with_reason("CANCELLED")),
        "OUT_OF_MEMORY" => (Failed, "Slurm: OUT_OF_MEMORY (over its --mem)".into()),
        "NODE_FAIL" => (Failed, "Slurm: NODE_FAIL (its node failed)".into()),
        "BOOT_FAIL" => (Failed, "Slurm: BOOT_FAIL (its node did not boot)".into()),
        "PREEMPTED" => (Failed, "Slurm: PREEMPTED".into()),
        "DEADLINE" => (
            Failed,
            "Slurm: DEADLINE (not run before its deadline)".into(),
        ),
        "REVOKED" | "SPECIAL_EXIT" => (Failed, with_reason(&o.state)),
        other => (Failed, format!("Slurm: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GateJobState::*;

    fn seen(state: &str, reason: &str, code: Option<i32>) -> Observed {
        Observed {
            state: state.into(),
            reason: reason.into(),
            exit_code: code,
            signal: None,
            time_limit_minutes: 1,
            start_time: 0,
            end_time: 0,
        }
    }

    #[test]
    fn maps_every_state_with_a_reason() {
        assert_eq!(
            map(&seen("PENDING", "Resources", None)),
            (Pending, "Slurm: PENDING (Resources)".into())
        );
        assert_eq!(map(&seen("RUNNING", "None", None)).0, Running);
        assert_eq!(map(&seen("COMPLETING", "None", None)).0, Running);
        assert_eq!(map(&seen("COMPLETED", "None", Some(0))).0, Succeeded);
        assert_eq!(
            map(&seen("FAILED", "NonZeroExitCode", Some(3))),
            (Failed, "Slurm: FAILED, exit code 3".into())
        );
        assert_eq!(
            map(&seen("TIMEOUT", "TimeLimit", Some(0))),
            (
                Failed,
                "walltime exceeded (Slurm: TIMEOUT after 00:01:00)".into()
            )
        );
        assert_eq!(map(&seen("CANCELLED", "None", None)).0, Cancelled);
        for s in [
            "NODE_FAIL",
            "PREEMPTED",
            "OUT_OF_MEMORY",
            "BOOT_FAIL",
            "DEADLINE",
        ] {
            let (state, reason) = map(&seen(s, "", None));
            assert_eq!(state, Failed);
            assert!(reason.contains(s), "{reason}");
            assert_eq!(lost(&seen(s, "", None)), s.ends_with("_FAIL"), "{s}");
        }
        assert!(!lost(&seen("FAILED", "NonZeroExitCode", Some(3))));
    }
}
