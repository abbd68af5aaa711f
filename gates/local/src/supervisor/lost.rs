//! Attempts a supervisor that is gone left starting or running: each is
//! ended (its processes killed if they somehow still run) and reported lost.

use super::{ended_now, sys};
use crate::protocol::{Known, LOST_REASON};

/// An attempt from the journal that was starting or running under a
/// supervisor that is gone: its job is ended (killed if it somehow still
/// runs) and reported lost.
pub(super) fn end_lost(mut k: Known) -> Known {
    if k.exit.is_none() {
        // Killed only when it is that very process (a reused pid is not).
        if k.pid != 0 && k.start_ticks != 0 && sys::start_ticks(k.pid) == k.start_ticks {
            sys::kill_group(k.pid, libc::SIGKILL);
        }
        // Its start was recorded but not its pid (the supervisor died in
        // between): whatever began is found by the attempt id in its
        // environment, so nothing of it runs on unseen. The scan is made
        // twice: a process in the middle of an exec cannot be read.
        if k.pid == 0 {
            let entry = format!("{}={}", crate::launch::ATTEMPT_ENV, k.attempt);
            for pass in 0..2 {
                if pass > 0 {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                for pid in sys::started_with_env(&entry) {
                    sys::kill_group(pid, libc::SIGKILL);
                    sys::kill(pid, libc::SIGKILL);
                }
            }
        }
        k.exit = Some(ended_now(LOST_REASON));
    }
    k
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::{CommandExt, ExitStatusExt};

    fn known(attempt: &str, pid: u32, start_ticks: u64) -> Known {
        Known {
            attempt: attempt.into(),
            meta: serde_json::Value::Null,
            pid,
            start_ticks,
            start_ms: 0,
            exit: None,
            held: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_start_recorded_without_its_pid_is_found_by_its_attempt_id_and_killed() {
        let attempt = format!("lost-test-{}", std::process::id());
        let mut job = sys::running_with_env(
            std::process::Command::new("sh")
                .env(crate::launch::ATTEMPT_ENV, &attempt)
                .process_group(0),
        );
        let ended = end_lost(known(&attempt, 0, 0));
        assert_eq!(ended.exit.map(|e| e.reason), Some(LOST_REASON.to_string()));
        let status = job.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }

    #[test]
    fn a_recorded_pid_is_killed_only_when_it_is_still_that_process() {
        let mut job = std::process::Command::new("sleep")
            .arg("30")
            .process_group(0)
            .spawn()
            .unwrap();
        let pid = job.id();
        end_lost(known("reused", pid, sys::start_ticks(pid) + 1));
        assert!(job.try_wait().unwrap().is_none(), "a reused pid was killed");
        end_lost(known("same", pid, sys::start_ticks(pid)));
        let status = job.wait().unwrap();
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    }
}
