//! The scheduler's domain types: what gantryd tells it (a [`Batch`] of
//! changes) and what it answers (a [`Plan`]). prost types never get past
//! `convert.rs`; everything here is already validated.

use std::fmt;

/// gantryd's job id; lower ids were submitted earlier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(pub u64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Compute resources in machine units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// GPUs.
    pub gpus: u32,
    /// Nodes (machines).
    pub nodes: u32,
}

impl Resources {
    /// Whether `self` fits in `room` in every dimension.
    pub fn fits_in(&self, room: &Resources) -> bool {
        self.cpus <= room.cpus
            && self.memory_bytes <= room.memory_bytes
            && self.gpus <= room.gpus
            && self.nodes <= room.nodes
    }

    /// `self - other`, each dimension floored at zero.
    pub fn saturating_sub(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_sub(other.cpus),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
            gpus: self.gpus.saturating_sub(other.gpus),
            nodes: self.nodes.saturating_sub(other.nodes),
        }
    }

    /// `self + other`, each dimension capped at its maximum.
    pub fn saturating_add(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.saturating_add(other.cpus),
            memory_bytes: self.memory_bytes.saturating_add(other.memory_bytes),
            gpus: self.gpus.saturating_add(other.gpus),
            nodes: self.nodes.saturating_add(other.nodes),
        }
    }

    /// What a job with these needs takes away from a partition: CPUs,
    /// memory and GPUs add up; nodes are a shape (a job asking 2 nodes needs a
    /// partition of at least 2 nodes) and are not consumed.
    pub fn consumed(&self) -> Resources {
        Resources { nodes: 0, ..*self }
    }

    /// The larger of `self` and `other` in each dimension.
    pub fn max(&self, other: &Resources) -> Resources {
        Resources {
            cpus: self.cpus.max(other.cpus),
            memory_bytes: self.memory_bytes.max(other.memory_bytes),
            gpus: self.gpus.max(other.gpus),
            nodes: self.nodes.max(other.nodes),
        }
    }
}

/// A shape of compute a site can provide.
#[derive(Debug, Clone, PartialEq)]
pub struct FlavorSpec {
    /// Name, unique within its site.
    pub name: String,
    /// What one partition of this flavor offers.
    pub capacity: Resources,
    /// Price of one partition per hour (0 when free); only compared.
    pub price_per_hour: f64,
    /// How many partitions of this flavor may exist at once.
    pub max_partitions: u32,
    /// Longest walltime a job may ask for, in seconds; 0 means no limit.
    pub max_walltime_seconds: u64,
    /// Whether partitions of it may be created now.
    pub available: bool,
    /// Whether it is its site's default (Slurm's default partition).
    pub is_default: bool,
    /// Why it cannot be used now, for people (empty when it can).
    pub unavailable_reason: String,
}

impl FlavorSpec {
    /// Whether a job asking `walltime_seconds` may run on this flavor: 0
    /// (none asked) always may, and gets the flavor's default time.
    pub fn allows_walltime(&self, walltime_seconds: u64) -> bool {
        allows_walltime(self.max_walltime_seconds, walltime_seconds)
    }
}

/// Whether a job asking `walltime_seconds` (0: none, so it gets the
/// flavor's default time) may run where the limit is `max_walltime_seconds`
/// (0: none).
pub fn allows_walltime(max_walltime_seconds: u64, walltime_seconds: u64) -> bool {
    max_walltime_seconds == 0 || walltime_seconds <= max_walltime_seconds
}

/// A site (a gate) as the scheduler needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteSpec {
    /// The gate's name.
    pub name: String,
    /// Whether jobs may be placed there now.
    pub healthy: bool,
    /// Its flavors.
    pub flavors: Vec<FlavorSpec>,
    /// Whether idle partitions should be deleted.
    pub elastic: bool,
    /// Idle seconds before an elastic site's partition is deleted; 0: as
    /// soon as it is idle.
    pub idle_timeout_seconds: u64,
    /// Why it is unhealthy, for people.
    pub health_message: String,
}

impl SiteSpec {
    /// The flavor called `name`, if the site has it.
    pub fn flavor(&self, name: &str) -> Option<&FlavorSpec> {
        self.flavors.iter().find(|f| f.name == name)
    }
}

/// Where a live partition is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionPhase {
    /// Committed but not ready; jobs may be placed on it and wait.
    Creating,
    /// Ready.
    Ready,
}

/// A partition that exists (or is being created).
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionSpec {
    /// Its site.
    pub site: String,
    /// Its flavor.
    pub flavor: String,
    /// Creating or ready.
    pub phase: PartitionPhase,
    /// What it offers in all.
    pub capacity: Resources,
    /// What its gate queues beyond `capacity`.
    pub queue: Resources,
}

/// A change to one partition.
#[derive(Debug, Clone, PartialEq)]
pub struct PartitionUpdate {
    /// gantryd's id.
    pub id: String,
    /// Its new state; `None` when it is gone.
    pub spec: Option<PartitionSpec>,
}

/// What a job needs, independent of where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// Higher first.
    pub priority: i32,
    /// What it needs.
    pub resources: Resources,
    /// Walltime in seconds; 0 when unlimited.
    pub walltime_seconds: u64,
    /// The site it must run on; `None` for any.
    pub site: Option<String>,
}

/// Where a job is, as gantryd says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobChange {
    /// Waiting to be placed.
    Queued(JobSpec),
    /// Placed on `partition` at `start_ms` and using its resources.
    Active {
        /// What it uses.
        spec: JobSpec,
        /// The partition.
        partition: String,
        /// Unix ms it was placed.
        start_ms: i64,
    },
    /// Ended, held or cancelled: forget it.
    Gone,
}

/// A change to one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    /// The job.
    pub id: JobId,
    /// Its new state.
    pub change: JobChange,
}

/// One message from gantryd, validated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// gantryd's sequence number after these changes.
    pub seq: u64,
    /// Forget everything known so far.
    pub reset: bool,
    /// The full picture is complete with this message.
    pub snapshot_done: bool,
    /// Sites whose description or health changed.
    pub sites: Vec<SiteSpec>,
    /// Partitions that changed.
    pub partitions: Vec<PartitionUpdate>,
    /// Jobs that changed.
    pub jobs: Vec<JobUpdate>,
    /// gantryd's clock (Unix ms) when this was sent; 0 when not given.
    pub now_ms: i64,
}

/// Create a partition (advice to gantryd).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatePartition {
    /// The new partition's id (a UUID).
    pub partition_id: String,
    /// The site.
    pub site: String,
    /// The flavor.
    pub flavor: String,
}

/// Start a queued job on a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartJob {
    /// The job.
    pub job_id: JobId,
    /// An existing partition or one created in the same plan.
    pub partition_id: String,
}

/// Why a job still waits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The job.
    pub job_id: JobId,
    /// For people.
    pub reason: String,
    /// No site can ever run the job as specified.
    pub unsatisfiable: bool,
}

/// The scheduler's answer to what it has seen.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// The `seq` of the last batch applied.
    pub based_on_seq: u64,
    /// Partitions to create.
    pub create_partitions: Vec<CreatePartition>,
    /// Jobs to start.
    pub start_jobs: Vec<StartJob>,
    /// Idle partitions to delete (by id).
    pub delete_partitions: Vec<String>,
    /// Reasons that changed.
    pub pending: Vec<Pending>,
}

impl Plan {
    /// Whether the plan holds nothing worth sending.
    pub fn is_empty(&self) -> bool {
        self.create_partitions.is_empty()
            && self.start_jobs.is_empty()
            && self.delete_partitions.is_empty()
            && self.pending.is_empty()
    }

    /// Decisions and reasons in the plan (what the per-plan cap counts).
    pub fn len(&self) -> usize {
        self.create_partitions.len()
            + self.start_jobs.len()
            + self.delete_partitions.len()
            + self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cpus: u32, mem: u64) -> Resources {
        Resources {
            cpus,
            memory_bytes: mem,
            gpus: 0,
            nodes: 1,
        }
    }

    #[test]
    fn resources_arithmetic() {
        assert!(r(2, 10).fits_in(&r(2, 10)));
        assert!(!r(3, 10).fits_in(&r(2, 10)));
        assert_eq!(r(2, 10).saturating_sub(&r(3, 4)), r(0, 6).with_nodes(0));
        assert_eq!(r(2, 10).saturating_add(&r(3, 4)).cpus, 5);
        assert_eq!(r(2, 10).max(&r(3, 4)), r(3, 10));
    }

    #[test]
    fn walltime_limits() {
        let mut f = FlavorSpec {
            name: "x".into(),
            capacity: r(1, 1),
            price_per_hour: 0.0,
            max_partitions: 1,
            max_walltime_seconds: 0,
            available: true,
            is_default: false,
            unavailable_reason: String::new(),
        };
        assert!(f.allows_walltime(0));
        f.max_walltime_seconds = 60;
        assert!(f.allows_walltime(60));
        assert!(!f.allows_walltime(61));
        // A job that asks for no time gets the flavor's default.
        assert!(f.allows_walltime(0), "none asked fits a limit");
    }

    impl Resources {
        fn with_nodes(mut self, nodes: u32) -> Self {
            self.nodes = nodes;
            self
        }
    }
}
