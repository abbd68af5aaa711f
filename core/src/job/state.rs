//! The job state machine: the states and the one table of allowed
//! transitions. Every state change in gantryd goes through [`check`].

use gantry_proto::v1::JobState;

use JobState::*;

/// Every allowed `(from, to)` pair. Tests enumerate it; a pair not here is a bug.
pub const TRANSITIONS: &[(JobState, JobState)] = &[
    // Placement and the way forward; steps with nothing to do are skipped.
    (Queued, Scheduled),
    (Scheduled, Provisioning),
    (Scheduled, StagingIn),
    (Scheduled, Running),
    (Provisioning, StagingIn),
    (Provisioning, Running),
    (StagingIn, Running),
    (Running, StagingOut),
    (Running, Completed),
    (Running, Failed),
    (StagingOut, Completed),
    (StagingOut, Failed),
    // The compute went away before the job started: back to the queue.
    (Scheduled, Queued),
    (Provisioning, Queued),
    (StagingIn, Queued),
    // What ran it was lost (its machine, agent or supervisor): run it again
    // on a new attempt while it has retries (`JobSpec.retries`).
    (Running, Queued),
    // A job ended by the provider or by a failure before it ran.
    (Queued, Failed),
    (Scheduled, Failed),
    (Provisioning, Failed),
    (StagingIn, Failed),
    // A gate that reports a job already ended before we saw it run.
    (Scheduled, Completed),
    (Provisioning, Completed),
    (StagingIn, Completed),
    (Scheduled, StagingOut),
    (Provisioning, StagingOut),
    (StagingIn, StagingOut),
    // Cancel from any live state.
    (Queued, Cancelled),
    (Scheduled, Cancelled),
    (Provisioning, Cancelled),
    (StagingIn, Cancelled),
    (Running, Cancelled),
    (StagingOut, Cancelled),
];

/// A transition that is not in [`TRANSITIONS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("job state cannot go from {} to {}", name(*from), name(*to))]
pub struct InvalidTransition {
    /// The current state.
    pub from: JobState,
    /// The requested state.
    pub to: JobState,
}

/// Whether `from → to` is allowed.
pub fn check(from: JobState, to: JobState) -> Result<(), InvalidTransition> {
    if TRANSITIONS.contains(&(from, to)) {
        Ok(())
    } else {
        Err(InvalidTransition { from, to })
    }
}

/// COMPLETED, FAILED and CANCELLED.
pub fn is_end(state: JobState) -> bool {
    matches!(state, Completed | Failed | Cancelled)
}

/// A job placed on compute and not ended: it holds resources on a partition.
pub fn is_active(state: JobState) -> bool {
    matches!(
        state,
        Scheduled | Provisioning | StagingIn | Running | StagingOut
    )
}

/// The state's short name for people: `RUNNING`, `QUEUED`, ...
pub fn name(state: JobState) -> &'static str {
    state
        .as_str_name()
        .strip_prefix("JOB_STATE_")
        .unwrap_or("UNSPECIFIED")
}

/// The state from its stored number; unknown numbers are a corrupt database.
pub fn from_i32(value: i32) -> JobState {
    JobState::try_from(value).unwrap_or(Unspecified)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [JobState; 9] = [
        Queued,
        Scheduled,
        Provisioning,
        StagingIn,
        Running,
        StagingOut,
        Completed,
        Failed,
        Cancelled,
    ];

    #[test]
    fn end_states_are_final() {
        for from in ALL.into_iter().filter(|s| is_end(*s)) {
            for to in ALL {
                assert!(check(from, to).is_err(), "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn every_live_state_can_be_cancelled_and_reach_an_end() {
        for from in ALL.into_iter().filter(|s| !is_end(*s)) {
            assert!(check(from, Cancelled).is_ok());
            assert!(ALL.iter().any(|to| is_end(*to) && check(from, *to).is_ok()));
        }
    }

    #[test]
    fn no_self_loops_and_names_are_short() {
        for (from, to) in TRANSITIONS {
            assert_ne!(from, to);
        }
        assert_eq!(name(StagingIn), "STAGING_IN");
        assert_eq!(
            check(Completed, Running).unwrap_err().to_string(),
            "job state cannot go from COMPLETED to RUNNING"
        );
    }
}
