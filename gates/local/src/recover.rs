//! What a (re)starting gate finds in `attempts/`, and the watch over the
//! jobs whose shims outlived the previous gate.

use std::path::Path;
use std::sync::Weak;
use std::time::Duration;

use gantry_proto::v1::{GateJob, GateJobState};

use crate::layout::{AttemptDir, AttemptRecord, ExitRecord, LOST_REASON, Pids, Proc};
use crate::provider::Inner;
use crate::state::now_ms;

/// How often recovered attempts are checked for their end.
const POLL: Duration = Duration::from_millis(100);

/// One attempt found on disk.
pub struct Found {
    /// Its directory.
    pub dir: AttemptDir,
    /// Its `attempt.json`.
    pub record: AttemptRecord,
    /// Its state now.
    pub job: GateJob,
    /// Its shim, when it still runs.
    pub running: Option<Proc>,
}

/// Every attempt under `attempts` (a directory with an `attempt.json`).
pub fn scan(attempts: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(attempts)?.flatten() {
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let dir = AttemptDir::new(attempts, &name);
        let Ok(bytes) = std::fs::read(dir.file("attempt.json")) else {
            continue; // staged-in files only, never started
        };
        let Ok(record) = serde_json::from_slice::<AttemptRecord>(&bytes) else {
            tracing::warn!(dir = %dir.dir.display(), "ignoring an unreadable attempt.json");
            continue;
        };
        found.push(classify(dir, record));
    }
    Ok(found)
}

fn classify(dir: AttemptDir, record: AttemptRecord) -> Found {
    let pids = std::fs::read_to_string(dir.file("pids"))
        .ok()
        .and_then(|line| Pids::parse(&line));
    let mut job = GateJob {
        attempt_id: record.attempt_id.clone(),
        partition_id: record.partition_id.clone(),
        job_id: record.job_id,
        native_id: pids.map(|p| p.job.pid.to_string()).unwrap_or_default(),
        start_time_ms: pids.map_or(0, |p| p.start_ms),
        ..Default::default()
    };
    let mut running = None;
    // exit.json is written before the shim exits: look for it first.
    if let Some(exit) = ExitRecord::read(&dir) {
        let (state, reason) = exit.outcome();
        job.set_state(state);
        job.reason = reason;
        job.exit_code = Some(exit.exit_code);
        job.end_time_ms = exit.end_time_ms;
    } else if let Some(shim) = pids.map(|p| p.shim).filter(Proc::alive) {
        job.set_state(GateJobState::Running);
        running = Some(shim);
    } else if let Some(exit) = ExitRecord::read(&dir) {
        let (state, reason) = exit.outcome();
        job.set_state(state);
        job.reason = reason;
        job.exit_code = Some(exit.exit_code);
        job.end_time_ms = exit.end_time_ms;
    } else {
        job.set_state(GateJobState::Failed);
        job.reason = LOST_REASON.into();
        job.end_time_ms = now_ms();
    }
    if running.is_none() {
        (job.stdout_bytes, job.stderr_bytes) = dir.log_sizes();
    }
    Found {
        dir,
        record,
        job,
        running,
    }
}

/// Until each recovered attempt ends: poll for its `exit.json`, or notice
/// its shim died without one. Stops early when the gate is dropped.
pub async fn watch_recovered(inner: Weak<Inner>, mut watching: Vec<(String, AttemptDir, Proc)>) {
    while !watching.is_empty() {
        tokio::time::sleep(POLL).await;
        let Some(inner) = inner.upgrade() else {
            return;
        };
        watching.retain(|(id, dir, shim)| {
            let exit = ExitRecord::read(dir);
            if exit.is_none() && shim.alive() {
                return true;
            }
            // A shim that just exited wrote exit.json first; read it again.
            inner.finish(id, exit.or_else(|| ExitRecord::read(dir)));
            false
        });
        crate::provider::LocalProvider::from_inner(inner)
            .drain()
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc::Alloc;

    fn record() -> AttemptRecord {
        AttemptRecord {
            version: 1,
            attempt_id: "a1".into(),
            partition_id: "p1".into(),
            job_id: 9,
            name: String::new(),
            argv: vec!["true".into()],
            env: Default::default(),
            walltime_seconds: 0,
            alloc: Alloc::default(),
        }
    }

    fn write(dir: &AttemptDir, name: &str, text: &str) {
        std::fs::create_dir_all(&dir.dir).unwrap();
        std::fs::write(dir.file(name), text).unwrap();
    }

    #[test]
    fn classifies_ended_running_and_lost() {
        let tmp = tempfile::tempdir().unwrap();
        let json = serde_json::to_string(&record()).unwrap();

        let ended = AttemptDir::new(tmp.path(), "ended");
        write(&ended, "attempt.json", &json);
        write(
            &ended,
            "exit.json",
            r#"{"exit_code":4,"signal":null,"reason":"","end_time_ms":5}"#,
        );
        let f = classify(ended, record());
        assert_eq!(
            (f.job.state(), f.job.exit_code, f.job.reason.as_str()),
            (GateJobState::Failed, Some(4), "exit code 4")
        );

        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        let ticks = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .nth(19)
            .unwrap()
            .to_string();
        let me = std::process::id();
        let alive = AttemptDir::new(tmp.path(), "alive");
        write(&alive, "pids", &format!("{me} {ticks} {me} {ticks} 77"));
        let f = classify(alive, record());
        assert_eq!(f.job.state(), GateJobState::Running);
        assert_eq!(f.job.start_time_ms, 77);
        assert!(f.running.is_some());

        let lost = AttemptDir::new(tmp.path(), "lost");
        write(&lost, "pids", &format!("{me} 1 {me} 1 77"));
        let f = classify(lost, record());
        assert_eq!(
            (f.job.state(), f.job.reason.as_str()),
            (GateJobState::Failed, LOST_REASON)
        );
    }

    #[test]
    fn scan_skips_directories_without_a_record() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("staged/work")).unwrap();
        assert!(scan(tmp.path()).unwrap().is_empty());
    }
}
