//! What the gate keeps on disk under its work directory, so a restarted
//! gate knows its partitions and finds its Slurm jobs again:
//! `partitions/<id>.json` and `attempts/<id>/attempt.json` (next to the
//! attempt's `work/`, `stdout`, `stderr`, `job.sh` and `script`).

use std::path::{Path, PathBuf};

use gantry_gate::{GateError, Result};
use serde::{Deserialize, Serialize};

/// A Gantry partition: a share of one Slurm partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// gantryd's id.
    pub partition_id: String,
    /// The Slurm partition (the flavor).
    pub flavor: String,
}

/// One attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// gantryd's attempt id.
    pub attempt_id: String,
    /// gantryd's partition id.
    pub partition_id: String,
    /// gantryd's job id.
    pub job_id: u64,
    /// Slurm's job id; 0 while it is being submitted.
    pub slurm_job_id: u64,
}

/// Write `value` as JSON to `path` atomically (temp file + rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let bytes = serde_json::to_vec(value).map_err(|e| GateError::Internal(e.to_string()))?;
    std::fs::write(&tmp, bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(GateError::io(format!("write {}", path.display())))
}

/// Every `T` in the JSON files `dir/*.json` (or `dir/*/name` when `name` is given).
pub fn read_all<T: for<'de> Deserialize<'de>>(dir: &Path, name: Option<&str>) -> Vec<(PathBuf, T)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let path = match name {
            Some(name) => entry.path().join(name),
            None if entry.path().extension().is_some_and(|e| e == "json") => entry.path(),
            None => continue,
        };
        match std::fs::read(&path).map(|b| serde_json::from_slice::<T>(&b)) {
            Ok(Ok(value)) => found.push((path, value)),
            Ok(Err(e)) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable record")
            }
            Err(_) => {}
        }
    }
    found
}
