//! The files of one attempt under `work-dir/attempts/<attempt_id>/`:
//! `work/` (the job's cwd, where staging in writes before the job starts),
//! `stdout`, `stderr` and, for script tasks, `script`. The supervisor
//! creates them (or reuses a released directory) when the job starts and
//! removes them when the gate releases the attempt.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::alloc::Alloc;

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

/// What the gate must know about an attempt after a restart; it travels
/// with the attempt through the supervisor (`Start::meta`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptMeta {
    /// The partition it runs on.
    pub partition_id: String,
    /// gantryd's job id.
    pub job_id: u64,
    /// What it holds while running.
    pub alloc: Alloc,
}
