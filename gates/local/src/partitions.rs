//! The local gate's partitions: at most one, of flavor "host", READY at once
//! and persisted as `work-dir/partitions/<id>.json` until deleted.

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;

use gantry_gate::{GateError, PartitionId, Result};
use gantry_proto::v1::{Capacity, Partition, PartitionState};
use serde::{Deserialize, Serialize};

/// The one flavor of the local gate.
pub const HOST_FLAVOR: &str = "host";
/// How many deleted ids are remembered, so a late repeat of CreatePartition
/// does not bring a deleted partition back.
const REMEMBER_DELETED: usize = 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    version: u32,
    partition_id: String,
    flavor: String,
    labels: BTreeMap<String, String>,
}

/// The partitions of this gate.
#[derive(Debug)]
pub struct Partitions {
    dir: PathBuf,
    live: BTreeMap<String, Record>,
    deleted: VecDeque<String>,
    capacity: Capacity,
    queue: Capacity,
    native_id: String,
}

impl Partitions {
    /// Load the partitions persisted in `dir` (created if missing); each
    /// offers `capacity` and queues `queue` beyond it; `native_id` names the
    /// host for people.
    pub fn load(
        dir: PathBuf,
        capacity: Capacity,
        queue: Capacity,
        native_id: String,
    ) -> Result<Self> {
        std::fs::create_dir_all(&dir)
            .map_err(GateError::io(format!("create {}", dir.display())))?;
        let mut live = BTreeMap::new();
        let entries =
            std::fs::read_dir(&dir).map_err(GateError::io(format!("list {}", dir.display())))?;
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            match std::fs::read(&path).map(|b| serde_json::from_slice::<Record>(&b)) {
                Ok(Ok(record)) => {
                    live.insert(record.partition_id.clone(), record);
                }
                _ => {
                    tracing::warn!(path = %path.display(), "ignoring an unreadable partition file")
                }
            }
        }
        Ok(Self {
            dir,
            live,
            deleted: VecDeque::new(),
            capacity,
            queue,
            native_id,
        })
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    fn to_proto(&self, record: &Record) -> Partition {
        Partition {
            partition_id: record.partition_id.clone(),
            flavor: record.flavor.clone(),
            state: PartitionState::Ready as i32,
            message: String::new(),
            capacity: Some(self.capacity),
            native_id: self.native_id.clone(),
            queue: Some(self.queue),
        }
    }

    fn deleted(id: &str) -> Partition {
        Partition {
            partition_id: id.to_string(),
            flavor: HOST_FLAVOR.into(),
            state: PartitionState::Deleted as i32,
            message: "deleted".into(),
            capacity: None,
            native_id: String::new(),
            queue: None,
        }
    }

    /// Create partition `id` of `flavor`; a repeat returns it as it is.
    pub fn create(
        &mut self,
        id: &PartitionId,
        flavor: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Partition> {
        if let Some(record) = self.live.get(id.as_str()) {
            return Ok(self.to_proto(record));
        }
        if self.deleted.iter().any(|d| d == id.as_str()) {
            return Ok(Self::deleted(id.as_str()));
        }
        if flavor != HOST_FLAVOR {
            return Err(GateError::invalid(
                "flavor",
                format!(
                    "`{flavor}` is not a flavor of this gate; the local gate offers only \"{HOST_FLAVOR}\""
                ),
            ));
        }
        if let Some(other) = self.live.keys().next() {
            return Err(GateError::ResourceExhausted(format!(
                "the local gate holds one partition at a time and `{other}` exists; delete it first"
            )));
        }
        let record = Record {
            version: 1,
            partition_id: id.to_string(),
            flavor: flavor.to_string(),
            labels: labels.clone(),
        };
        let path = self.path(id.as_str());
        let tmp = path.with_extension("tmp");
        let json = serde_json::to_vec(&record).map_err(|e| GateError::Internal(e.to_string()))?;
        std::fs::write(&tmp, json)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(GateError::io(format!("write {}", path.display())))?;
        let partition = self.to_proto(&record);
        self.live.insert(id.to_string(), record);
        Ok(partition)
    }

    /// Partition `id`: READY, DELETED when recently deleted, else NOT_FOUND.
    pub fn get(&self, id: &PartitionId) -> Result<Partition> {
        if let Some(record) = self.live.get(id.as_str()) {
            return Ok(self.to_proto(record));
        }
        if self.deleted.iter().any(|d| d == id.as_str()) {
            return Ok(Self::deleted(id.as_str()));
        }
        Err(GateError::no_partition(id.as_str()))
    }

    /// Whether jobs can start on `id` now; NOT_FOUND or FAILED_PRECONDITION otherwise.
    pub fn check_ready(&self, id: &str) -> Result<()> {
        if self.live.contains_key(id) {
            Ok(())
        } else if self.deleted.iter().any(|d| d == id) {
            Err(GateError::FailedPrecondition(format!(
                "partition `{id}` was deleted; jobs cannot start on it"
            )))
        } else {
            Err(GateError::no_partition(id))
        }
    }

    /// Delete `id` (its jobs are the caller's business); succeeds when gone.
    pub fn delete(&mut self, id: &PartitionId) -> Result<Partition> {
        if self.live.remove(id.as_str()).is_some() {
            let path = self.path(id.as_str());
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(GateError::io(format!("remove {}", path.display()))(e)),
            }
            if self.deleted.len() == REMEMBER_DELETED {
                self.deleted.pop_front();
            }
            self.deleted.push_back(id.to_string());
        }
        Ok(Self::deleted(id.as_str()))
    }

    /// Every partition not deleted.
    pub fn list(&self) -> Vec<Partition> {
        self.live.values().map(|r| self.to_proto(r)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(dir: &std::path::Path) -> Partitions {
        let capacity = Capacity {
            cpus: 2,
            memory_bytes: 1 << 30,
            gpus: 0,
            nodes: 1,
        };
        Partitions::load(
            dir.join("partitions"),
            capacity,
            Capacity::default(),
            "host1".into(),
        )
        .unwrap()
    }

    fn id(s: &str) -> PartitionId {
        PartitionId::parse("partition_id", s).unwrap()
    }

    #[test]
    fn one_host_partition_idempotent_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = open(dir.path());
        let p = parts
            .create(&id("p1"), HOST_FLAVOR, &BTreeMap::new())
            .unwrap();
        assert_eq!(p.state(), PartitionState::Ready);
        assert_eq!(p.capacity.unwrap().cpus, 2);
        assert_eq!(
            parts
                .create(&id("p1"), HOST_FLAVOR, &BTreeMap::new())
                .unwrap(),
            p
        );
        let err = parts
            .create(&id("p2"), HOST_FLAVOR, &BTreeMap::new())
            .unwrap_err();
        assert!(matches!(err, GateError::ResourceExhausted(_)), "{err}");
        let err = parts
            .create(&id("p2"), "gpu", &BTreeMap::new())
            .unwrap_err();
        assert!(matches!(err, GateError::InvalidArgument { .. }));

        let reopened = open(dir.path());
        assert_eq!(reopened.list(), vec![p]);
    }

    #[test]
    fn delete_is_idempotent_and_frees_the_slot() {
        let dir = tempfile::tempdir().unwrap();
        let mut parts = open(dir.path());
        parts
            .create(&id("p1"), HOST_FLAVOR, &BTreeMap::new())
            .unwrap();
        assert_eq!(
            parts.delete(&id("p1")).unwrap().state(),
            PartitionState::Deleted
        );
        assert_eq!(
            parts.delete(&id("p1")).unwrap().state(),
            PartitionState::Deleted
        );
        assert_eq!(
            parts.get(&id("p1")).unwrap().state(),
            PartitionState::Deleted
        );
        assert!(parts.check_ready("p1").is_err());
        assert!(parts.list().is_empty());
        assert!(matches!(
            parts.get(&id("zz")),
            Err(GateError::NotFound { .. })
        ));
        parts
            .create(&id("p2"), HOST_FLAVOR, &BTreeMap::new())
            .unwrap();
        assert!(open(dir.path()).check_ready("p2").is_ok());
        assert!(open(dir.path()).check_ready("p1").is_err());
    }
}
