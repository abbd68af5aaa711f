//! Grid Engine's job states and `failed` codes in Gantry's terms, with a
//! reason a person can read.

use gantry_gate::batch::{JobStatus, hms};
use gantry_proto::v1::GateJobState;

use crate::commands::{Accounted, Listed};

/// A job qstat lists (`why`: qstat -j's scheduling info or error reason).
pub fn listed(job: &Listed, why: Option<&str>) -> JobStatus {
    use GateJobState::*;
    let s = job.state.as_str();
    let with_why = |what: String| match why {
        Some(w) if !w.is_empty() && !w.starts_with('(') => format!("Grid Engine: {what} ({w})"),
        _ => format!("Grid Engine: {what}"),
    };
    if s.contains('E') {
        // Eqw: it could not start and waits for an operator; the gate
        // deletes it.
        JobStatus::new(Failed, with_why(format!("{s}, in error")))
    } else if s.contains('r') || s.contains('t') {
        let mut status = JobStatus::new(Running, "");
        if s.contains(['s', 'S', 'T']) {
            status.reason = format!("Grid Engine: {s}, suspended");
        }
        status.start_time = job.start_time;
        status
    } else if s.contains('h') {
        JobStatus::new(Pending, with_why(format!("{s}, held")))
    } else {
        JobStatus::new(Pending, with_why(s.to_string()))
    }
}

/// A finished job, from its accounting record; `cancelled`: the gate
/// deleted it.
pub fn accounted(a: &Accounted, cancelled: bool) -> JobStatus {
    use GateJobState::*;
    let code = a.exit_status;
    let (state, reason) = match a.failed {
        // The job ran and ended by itself.
        0 if code == 0 => (Succeeded, String::new()),
        0 => (Failed, format!("Grid Engine: exit code {code}")),
        _ if cancelled => (Cancelled, "Grid Engine: deleted".to_string()),
        37 => (
            Failed,
            if a.h_rt > 0 {
                format!(
                    "walltime exceeded (Grid Engine: killed at h_rt {})",
                    hms(a.h_rt)
                )
            } else {
                format!(
                    "walltime exceeded (Grid Engine: failed 37: {})",
                    a.failed_text
                )
            },
        ),
        n => (
            Failed,
            format!(
                "Grid Engine: failed {n}: {}, exit code {code}",
                a.failed_text
            ),
        ),
    };
    JobStatus {
        state,
        reason,
        exit_code: Some(code),
        lost: false,
        start_time: a.start_time,
        end_time: a.end_time,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use GateJobState::*;

    fn job(state: &str) -> Listed {
        Listed {
            id: 1,
            name: "gantry-a".into(),
            state: state.into(),
            start_time: 5,
        }
    }

    fn record(failed: u32, text: &str, code: i32, h_rt: u64) -> Accounted {
        Accounted {
            failed,
            failed_text: text.into(),
            exit_status: code,
            start_time: 1,
            end_time: 2,
            h_rt,
        }
    }

    #[test]
    fn maps_what_qstat_lists() {
        let full = "queue instance \"all.q@vm\" dropped because it is full";
        assert_eq!(
            listed(&job("qw"), Some(full)),
            JobStatus::new(Pending, format!("Grid Engine: qw ({full})"))
        );
        assert_eq!(listed(&job("qw"), None).reason, "Grid Engine: qw");
        // Scheduler job information turned off says so in parentheses.
        let off = "(Collecting of scheduler job information is turned off)";
        assert_eq!(listed(&job("qw"), Some(off)).reason, "Grid Engine: qw");
        assert_eq!(listed(&job("hqw"), None).reason, "Grid Engine: hqw, held");
        let running = listed(&job("r"), None);
        assert_eq!((running.state, running.start_time), (Running, 5));
        assert_eq!(listed(&job("dr"), None).state, Running);
        assert!(listed(&job("rs"), None).reason.contains("suspended"));
        let error = listed(&job("Eqw"), Some("error: can't chdir to /x"));
        assert_eq!(error.state, Failed);
        assert!(
            error.reason.contains("can't chdir to /x"),
            "{}",
            error.reason
        );
    }

    #[test]
    fn maps_every_end() {
        assert_eq!(accounted(&record(0, "", 0, 0), false).state, Succeeded);
        let failed = accounted(&record(0, "", 3, 0), false);
        assert_eq!((failed.state, failed.exit_code), (Failed, Some(3)));
        assert_eq!(failed.reason, "Grid Engine: exit code 3");
        let walltime = accounted(&record(37, "qmaster enforced h_rt", 137, 60), false);
        assert_eq!(walltime.state, Failed);
        assert_eq!(
            walltime.reason,
            "walltime exceeded (Grid Engine: killed at h_rt 00:01:00)"
        );
        let deleted = accounted(&record(100, "assumedly after job", 137, 0), true);
        assert_eq!(deleted.state, Cancelled);
        let killed = accounted(&record(100, "assumedly after job", 137, 0), false);
        assert_eq!(killed.state, Failed);
        assert_eq!(
            killed.reason,
            "Grid Engine: failed 100: assumedly after job, exit code 137"
        );
        let shell = accounted(&record(27, "searching requested shell", 0, 0), false);
        assert_eq!(shell.state, Failed);
    }
}
