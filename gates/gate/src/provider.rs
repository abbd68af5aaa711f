//! What a gate implements: the gate operations in domain terms. The harness
//! ([`GateService`](crate::GateService)) authorizes and validates every call
//! before it reaches a [`Provider`], so providers see only valid input.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::pin::Pin;

use futures::Stream;
use gantry_proto::v1::{
    Capabilities, FileChunk, Flavor, GateJob, LogStream, Partition, StageInResponse,
};
use globset::GlobSet;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{GateError, Result};
use crate::hub::JobHub;
use crate::ids::{AttemptId, PartitionId};
use crate::logs::LogReader;
use crate::spec::JobSpec;

/// A stream of file pieces, for staging in or out. Files come one after
/// another; the first chunk of each names it (relative path, mode).
pub type FileChunks = Pin<Box<dyn Stream<Item = Result<FileChunk>> + Send>>;

/// A byte stream both ways: a forwarded connection ([`Provider::forward_port`]).
pub trait Connection: AsyncRead + AsyncWrite + Send + Unpin + 'static {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Connection for T {}

/// What a gate says about itself in `Describe` (the harness adds the name).
#[derive(Debug, Clone, PartialEq)]
pub struct Description {
    /// The kind of provider: "local", "slurm", "aws", ...
    pub provider: String,
    /// The gate software's version.
    pub version: String,
    /// Optional features it has.
    pub capabilities: Capabilities,
    /// What it can provide.
    pub flavors: Vec<Flavor>,
    /// OS images jobs can run on; empty when not applicable.
    pub images: Vec<String>,
    /// Whose Unix account jobs run as ([`crate::RunAs::info`]); `None` when
    /// the gate does not say (jobs on machines of their own partition).
    pub run_as: Option<gantry_proto::v1::RunAs>,
}

/// Where an attempt's stdout or stderr can be read.
pub enum LogSource {
    /// A file this process can read (local, or on a shared filesystem). The
    /// harness streams it from the offset and, when following, keeps reading
    /// as it grows until [`Provider::get_job`] reports the attempt ended.
    File(PathBuf),
    /// A log the provider reads some other way (e.g. from a remote host); the
    /// harness reads and follows it as it does a file.
    Reader(Box<dyn LogReader>),
}

/// A compute provider behind a gate. Every method is called with validated
/// input and must be idempotent on the ids it gets (see `gate.proto`).
///
/// A provider keeps every attempt it started, with its final state, until
/// [`Provider::release_job`], and publishes every change of an attempt to its
/// [`JobHub`] (after the change is visible through [`Provider::list_jobs`]).
#[tonic::async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The hub this provider publishes attempt changes to.
    fn hub(&self) -> &JobHub;

    /// Who the gate is and what it offers. Cheap: it serves as a health check.
    async fn describe(&self) -> Result<Description>;

    /// Provision a partition of `flavor`; a repeat returns what the first made.
    async fn create_partition(
        &self,
        id: &PartitionId,
        flavor: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Partition>;

    /// One partition; [`GateError::NotFound`] when unknown.
    async fn get_partition(&self, id: &PartitionId) -> Result<Partition>;

    /// Tear a partition down, stopping its jobs; succeeds when already gone.
    async fn delete_partition(&self, id: &PartitionId) -> Result<Partition>;

    /// Every partition not yet deleted.
    async fn list_partitions(&self) -> Result<Vec<Partition>>;

    /// Start an attempt; a repeat returns the existing attempt in whatever state.
    async fn start_job(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: JobSpec,
    ) -> Result<GateJob>;

    /// One attempt; [`GateError::NotFound`] when unknown or released.
    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob>;

    /// Stop an attempt; a no-op returning its state when it already ended.
    async fn cancel_job(&self, attempt: &AttemptId) -> Result<GateJob>;

    /// Forget an ended attempt and free its files; succeeds when already released.
    async fn release_job(&self, attempt: &AttemptId) -> Result<()>;

    /// Every unreleased attempt with its current state.
    async fn list_jobs(&self) -> Result<Vec<GateJob>>;

    /// Where to read an attempt's stdout or stderr.
    async fn log_source(&self, attempt: &AttemptId, stream: LogStream) -> Result<LogSource>;

    /// Write files into an attempt's working directory before it starts.
    /// Chunk paths are already checked by the harness
    /// ([`safe_relative_path`](crate::safe_relative_path)); see
    /// [`stage_in_dir`](crate::stage_in_dir) for a ready implementation.
    async fn stage_in(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        let _ = (attempt, partition, files);
        Err(GateError::Unimplemented("staging"))
    }

    /// The files of an ended attempt matching `globs`; see
    /// [`stage_out_dir`](crate::stage_out_dir) for a ready implementation.
    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        let _ = (attempt, globs);
        Err(GateError::Unimplemented("staging"))
    }

    /// Connect to `port` on the machine of a running attempt, as its own
    /// processes reach it (see `Capabilities.port_forward`); see
    /// [`connect_loopback`](crate::connect_loopback) for a ready
    /// implementation on the gate's own machine.
    async fn forward_port(&self, attempt: &AttemptId, port: u16) -> Result<Box<dyn Connection>> {
        let _ = (attempt, port);
        Err(GateError::Unimplemented("port forwarding"))
    }
}
