//! The gRPC `Gate` service over any [`Provider`]: authorize, validate,
//! call the provider, convert the answer. Nothing else happens here.

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::Arc;

use futures::{Stream, StreamExt};
use gantry_proto::splice::{SPLICE_BUFFER, splice};
use gantry_proto::v1::gate_server::Gate;
use gantry_proto::v1::*;
use tokio::sync::watch;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::authorize_core;
use crate::error::{GateError, Result};
use crate::forward::port_number;
use crate::hub::WatchStream;
use crate::ids::{AttemptId, PartitionId};
use crate::logs::{FileLogReader, LogRead, LogReader, read_log_file};
use crate::paths::{glob_set, safe_relative_path};
use crate::provider::{FileChunks, LogSource, Provider};
use crate::recent::RecentIds;
use crate::spec::JobSpec;
use crate::staging::FILE_CHUNK_BYTES;

/// A stream of responses of a server-streaming RPC.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

/// The `Gate` service of a gate named `name` in `installation`, backed by a provider.
pub struct GateService<P> {
    provider: Arc<P>,
    name: String,
    installation: String,
    stop: watch::Receiver<bool>,
    released: RecentIds,
    deleted: RecentIds,
}

impl<P: Provider> GateService<P> {
    /// Serve `provider` as gate `name`; only the core of `installation` may call.
    pub fn new(provider: Arc<P>, name: impl Into<String>, installation: impl Into<String>) -> Self {
        let (_, stop) = watch::channel(false);
        Self {
            provider,
            name: name.into(),
            installation: installation.into(),
            stop,
            released: RecentIds::default(),
            deleted: RecentIds::default(),
        }
    }

    /// End long streams (WatchJobs, followed logs) once `stop` becomes true,
    /// so a graceful shutdown does not wait for them forever.
    pub fn with_stop(mut self, stop: watch::Receiver<bool>) -> Self {
        self.stop = stop;
        self
    }

    fn authorize<T>(&self, request: &Request<T>) -> Result<(), Status> {
        authorize_core(request, &self.installation)
    }
}

/// The request's attempt id, checked; named on the call's span.
fn attempt_id(value: &str) -> Result<AttemptId> {
    gantry_proto::rpc_trace::record_attempt(value);
    AttemptId::parse("attempt_id", value)
}

fn partition_id(value: &str) -> Result<PartitionId> {
    PartitionId::parse("partition_id", value)
}

/// Check a chunk of a file being staged in.
fn checked_chunk(chunk: FileChunk) -> Result<FileChunk> {
    if !chunk.path.is_empty() {
        safe_relative_path("chunk.path", &chunk.path)?;
    }
    if chunk.data.len() > FILE_CHUNK_BYTES {
        return Err(GateError::invalid(
            "chunk.data",
            format!(
                "holds {} bytes; send at most {FILE_CHUNK_BYTES} per chunk",
                chunk.data.len()
            ),
        ));
    }
    Ok(chunk)
}

#[tonic::async_trait]
impl<P: Provider> Gate for GateService<P> {
    async fn describe(
        &self,
        request: Request<DescribeRequest>,
    ) -> Result<Response<DescribeResponse>, Status> {
        self.authorize(&request)?;
        let d = self.provider.describe().await?;
        crate::health::answered();
        Ok(Response::new(DescribeResponse {
            name: self.name.clone(),
            provider: d.provider,
            version: d.version,
            api_versions: vec![gantry_proto::API_VERSION.to_string()],
            capabilities: Some(d.capabilities),
            flavors: d.flavors,
            images: d.images,
            run_as: d.run_as,
        }))
    }

    async fn create_partition(
        &self,
        request: Request<CreatePartitionRequest>,
    ) -> Result<Response<CreatePartitionResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let id = partition_id(&req.partition_id)?;
        if req.flavor.is_empty() {
            return Err(
                GateError::invalid("flavor", "is required; Describe lists the flavors").into(),
            );
        }
        if self.deleted.contains(id.as_str()) {
            // A late repeat of a partition's creation: never provision again.
            return Ok(Response::new(CreatePartitionResponse {
                partition: Some(Partition {
                    partition_id: id.to_string(),
                    flavor: req.flavor,
                    state: PartitionState::Deleted as i32,
                    message: "deleted; a deleted partition is never made again".into(),
                    ..Default::default()
                }),
            }));
        }
        let labels: BTreeMap<_, _> = req.labels.into_iter().collect();
        let partition = self
            .provider
            .create_partition(&id, &req.flavor, &labels)
            .await?;
        Ok(Response::new(CreatePartitionResponse {
            partition: Some(partition),
        }))
    }

    async fn get_partition(
        &self,
        request: Request<GetPartitionRequest>,
    ) -> Result<Response<GetPartitionResponse>, Status> {
        self.authorize(&request)?;
        let id = partition_id(&request.get_ref().partition_id)?;
        let partition = self.provider.get_partition(&id).await?;
        Ok(Response::new(GetPartitionResponse {
            partition: Some(partition),
        }))
    }

    async fn delete_partition(
        &self,
        request: Request<DeletePartitionRequest>,
    ) -> Result<Response<DeletePartitionResponse>, Status> {
        self.authorize(&request)?;
        let id = partition_id(&request.get_ref().partition_id)?;
        // Remembered first, so a CreatePartition racing this one finds it deleted.
        self.deleted.insert(id.as_str());
        let partition = self.provider.delete_partition(&id).await?;
        Ok(Response::new(DeletePartitionResponse {
            partition: Some(partition),
        }))
    }

    async fn list_partitions(
        &self,
        request: Request<ListPartitionsRequest>,
    ) -> Result<Response<ListPartitionsResponse>, Status> {
        self.authorize(&request)?;
        let partitions = self.provider.list_partitions().await?;
        Ok(Response::new(ListPartitionsResponse { partitions }))
    }

    async fn start_job(
        &self,
        request: Request<StartJobRequest>,
    ) -> Result<Response<StartJobResponse>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        if let Some(task) = &req.task {
            gantry_proto::rpc_trace::record_job(task.job_id);
        }
        let attempt = attempt_id(&req.attempt_id)?;
        let partition = partition_id(&req.partition_id)?;
        let spec = JobSpec::from_task(req.task)?;
        if self.released.contains(attempt.as_str()) {
            return Err(Status::failed_precondition(format!(
                "attempt {attempt} was released; a released attempt is never started again"
            )));
        }
        let job = self.provider.start_job(&attempt, &partition, spec).await?;
        Ok(Response::new(StartJobResponse { job: Some(job) }))
    }

    async fn get_job(
        &self,
        request: Request<GateGetJobRequest>,
    ) -> Result<Response<GateGetJobResponse>, Status> {
        self.authorize(&request)?;
        let attempt = attempt_id(&request.get_ref().attempt_id)?;
        let job = self.provider.get_job(&attempt).await?;
        Ok(Response::new(GateGetJobResponse { job: Some(job) }))
    }

    async fn cancel_job(
        &self,
        request: Request<GateCancelJobRequest>,
    ) -> Result<Response<GateCancelJobResponse>, Status> {
        self.authorize(&request)?;
        let attempt = attempt_id(&request.get_ref().attempt_id)?;
        let job = self.provider.cancel_job(&attempt).await?;
        Ok(Response::new(GateCancelJobResponse { job: Some(job) }))
    }

    async fn release_job(
        &self,
        request: Request<GateReleaseJobRequest>,
    ) -> Result<Response<GateReleaseJobResponse>, Status> {
        self.authorize(&request)?;
        let attempt = attempt_id(&request.get_ref().attempt_id)?;
        // Remembered before the provider forgets it, so a StartJob that
        // comes after finds it released rather than gone.
        self.released.insert(attempt.as_str());
        self.provider.release_job(&attempt).await?;
        Ok(Response::new(GateReleaseJobResponse {}))
    }

    type WatchJobsStream = WatchStream;

    async fn watch_jobs(
        &self,
        request: Request<WatchJobsRequest>,
    ) -> Result<Response<Self::WatchJobsStream>, Status> {
        self.authorize(&request)?;
        let stream = self
            .provider
            .hub()
            .watch(self.provider.clone(), self.stop.clone());
        Ok(Response::new(stream))
    }

    type ReadLogsStream = ResponseStream<GateReadLogsResponse>;

    async fn read_logs(
        &self,
        request: Request<GateReadLogsRequest>,
    ) -> Result<Response<Self::ReadLogsStream>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let attempt = attempt_id(&req.attempt_id)?;
        let stream = match LogStream::try_from(req.stream) {
            Ok(s @ (LogStream::Stdout | LogStream::Stderr)) => s,
            _ => {
                return Err(GateError::invalid(
                    "stream",
                    "use LOG_STREAM_STDOUT or LOG_STREAM_STDERR",
                )
                .into());
            }
        };
        let reader: Box<dyn LogReader> = match self.provider.log_source(&attempt, stream).await? {
            LogSource::File(path) => Box::new(FileLogReader::new(path)),
            LogSource::Reader(reader) => reader,
        };
        let provider = self.provider.clone();
        let ended = move || {
            let provider = provider.clone();
            let attempt = attempt.clone();
            async move {
                match provider.get_job(&attempt).await {
                    Ok(job) => Ok(job.state().is_final()),
                    Err(GateError::NotFound { .. }) => Ok(true),
                    Err(err) => Err(err),
                }
            }
        };
        let read = LogRead {
            reader,
            stream,
            offset: req.offset,
            follow: req.follow,
        };
        let out: Self::ReadLogsStream = Box::pin(read_log_file(read, ended, self.stop.clone()));
        Ok(Response::new(out))
    }

    async fn stage_in(
        &self,
        request: Request<Streaming<StageInRequest>>,
    ) -> Result<Response<StageInResponse>, Status> {
        self.authorize(&request)?;
        let mut messages = request.into_inner();
        let first = messages.message().await?.ok_or_else(|| {
            Status::invalid_argument("attempt_id: the first message must name the attempt")
        })?;
        let attempt = attempt_id(&first.attempt_id)?;
        let partition = partition_id(&first.partition_id)?;
        if self.released.contains(attempt.as_str()) {
            // A late repeat would make a directory nobody frees again.
            return Err(Status::failed_precondition(format!(
                "attempt {attempt} was released; nothing is staged for it again"
            )));
        }
        let head = futures::stream::iter(first.chunk.map(Ok));
        let rest = messages.filter_map(|msg| async move {
            match msg {
                Ok(msg) => msg.chunk.map(Ok),
                Err(status) => Some(Err(GateError::Unavailable(format!(
                    "the stage-in stream broke: {}",
                    status.message()
                )))),
            }
        });
        let files: FileChunks = Box::pin(head.chain(rest).map(|c| c.and_then(checked_chunk)));
        let response = self.provider.stage_in(&attempt, &partition, files).await?;
        Ok(Response::new(response))
    }

    type StageOutStream = ResponseStream<StageOutResponse>;

    async fn stage_out(
        &self,
        request: Request<StageOutRequest>,
    ) -> Result<Response<Self::StageOutStream>, Status> {
        self.authorize(&request)?;
        let req = request.into_inner();
        let attempt = attempt_id(&req.attempt_id)?;
        let globs = glob_set("globs", &req.globs)?;
        let files = self.provider.stage_out(&attempt, globs).await?;
        let out = files.map(|chunk| {
            chunk
                .map(|chunk| StageOutResponse { chunk: Some(chunk) })
                .map_err(Status::from)
        });
        Ok(Response::new(Box::pin(out)))
    }

    type ForwardPortStream = ResponseStream<GateForwardPortResponse>;

    async fn forward_port(
        &self,
        request: Request<Streaming<GateForwardPortRequest>>,
    ) -> Result<Response<Self::ForwardPortStream>, Status> {
        self.authorize(&request)?;
        let mut messages = request.into_inner();
        let first = messages.message().await?.ok_or_else(|| {
            Status::invalid_argument("attempt_id: the first message must name the attempt")
        })?;
        let attempt = attempt_id(&first.attempt_id)?;
        let port = port_number("port", first.port)?;
        let conn = self.provider.forward_port(&attempt, port).await?;
        let head = futures::stream::iter((!first.data.is_empty()).then_some(Ok(first.data)));
        let rest = messages.map(|m| m.map(|m| m.data));
        let (tx, rx) = tokio::sync::mpsc::channel(SPLICE_BUFFER);
        tokio::spawn(splice(conn, head.chain(rest), tx, |data| {
            GateForwardPortResponse { data }
        }));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_staged_chunks() {
        let ok = FileChunk {
            path: "a.txt".into(),
            mode: 0o644,
            data: vec![1],
        };
        assert!(checked_chunk(ok).is_ok());
        let escape = FileChunk {
            path: "../a".into(),
            ..Default::default()
        };
        assert!(checked_chunk(escape).is_err());
        let big = FileChunk {
            path: String::new(),
            mode: 0,
            data: vec![0; FILE_CHUNK_BYTES + 1],
        };
        assert!(
            checked_chunk(big)
                .unwrap_err()
                .to_string()
                .starts_with("chunk.data")
        );
    }
}
