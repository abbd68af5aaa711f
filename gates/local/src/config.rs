//! The local gate's settings.

use std::path::PathBuf;
use std::time::Duration;

use gantry_gate::RunAs;

/// How the local gate runs jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalConfig {
    /// Where partitions and attempts live (`partitions/`, `attempts/<id>/`).
    pub work_dir: PathBuf,
    /// CPUs the partition offers; `None` means the host's available parallelism.
    /// More than the host has overcommits: slots share the host's CPUs round-robin.
    pub cpus: Option<u32>,
    /// Memory the partition offers in bytes; `None` means the host's MemTotal.
    pub memory_bytes: Option<u64>,
    /// The `gantry-supervisor` binary (started when none runs for `work_dir`).
    pub supervisor: PathBuf,
    /// Time between SIGTERM and SIGKILL when a job is cancelled or over its walltime.
    pub kill_grace: Duration,
    /// How many times its capacity the gate holds in its queue: attempts
    /// that do not fit now wait PENDING, first come first started, so a slot
    /// that frees is refilled here at once. 0 queues nothing.
    pub queue_factor: u32,
    /// Whose account jobs run as.
    pub run_as: RunAs,
}

impl LocalConfig {
    /// Defaults for `work_dir`: host resources, `gantry-supervisor` next to
    /// this executable, a 3 s grace.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Self {
            work_dir: work_dir.into(),
            cpus: None,
            memory_bytes: None,
            supervisor: crate::link::default_binary(),
            kill_grace: Duration::from_secs(3),
            queue_factor: DEFAULT_QUEUE_FACTOR,
            run_as: RunAs::this_process(),
        }
    }
}

/// The default [`LocalConfig::queue_factor`].
pub const DEFAULT_QUEUE_FACTOR: u32 = 16;
