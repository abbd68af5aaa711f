//! What a batch gate keeps on disk under its work directory, so a restarted
//! gate knows its partitions and finds its jobs again:
//! `partitions/<id>.json` and `attempts/<id>/attempt.json` (next to the
//! attempt's `work/`, `stdout`, `stderr`, `job.sh` and `script`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{GateError, Result};
use crate::host::Host;

/// A Gantry partition: one queue of the batch system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// gantryd's id.
    pub partition_id: String,
    /// The queue (the flavor).
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
    /// The batch system's job id; 0 while it is being submitted. (The
    /// Slurm gate of 0.1 wrote it as `slurm_job_id`.)
    #[serde(alias = "slurm_job_id")]
    pub native_job_id: u64,
    /// The gate asked the system to cancel it.
    #[serde(default)]
    pub cancelled: bool,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_records_slurm_gates_wrote_before() {
        let old = r#"{"attempt_id":"a1","partition_id":"p1","job_id":7,"slurm_job_id":42}"#;
        let r: AttemptRecord = serde_json::from_str(old).unwrap();
        assert_eq!((r.native_job_id, r.cancelled), (42, false));
    }
}
