//! What the gate keeps on disk under its work directory, so a restarted
//! gate knows its partitions and finds its Slurm jobs again:
//! `partitions/<id>.json` and `attempts/<id>/attempt.json` (next to the
//! attempt's `work/`, `stdout`, `stderr`, `job.sh` and `script`).

use std::path::{Path, PathBuf};

use gantry_gate::{GateError, Host, Result};
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

/// Write `value` as JSON to `path` on `host` atomically (temp file + rename).
pub async fn write_json<T: Serialize>(host: &dyn Host, path: &Path, value: &T) -> Result<()> {
    let bytes = serde_json::to_vec(value).map_err(|e| GateError::Internal(e.to_string()))?;
    host.write(path, &bytes, 0o644).await
}

/// Every `T` in the JSON files `dir/*.json` (or `dir/*/name` when `name` is
/// given) on `host`; unreadable ones are logged and left out.
pub async fn read_all<T: for<'de> Deserialize<'de>>(
    host: &dyn Host,
    dir: &Path,
    name: Option<&str>,
) -> Result<Vec<(PathBuf, T)>> {
    let mut found = Vec::new();
    for entry in host.list(dir).await? {
        let path = match name {
            Some(name) => dir.join(&entry).join(name),
            None if entry.ends_with(".json") => dir.join(&entry),
            None => continue,
        };
        let Some(bytes) = host.read(&path).await? else {
            continue;
        };
        match serde_json::from_slice::<T>(&bytes) {
            Ok(value) => found.push((path, value)),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "ignoring an unreadable record")
            }
        }
    }
    Ok(found)
}
