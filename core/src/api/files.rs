//! Logs, outputs and uploads.

use std::time::Duration;

use futures::StreamExt;
use gantry_proto::v1::{
    DownloadOutputsResponse, FileChunk, GateReadLogsRequest, JobState, LogChunk, LogStream,
    ReadLogsRequest, ReadLogsResponse, UploadInputRequest, UploadInputResponse,
};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::{GantryService, ResponseStream};
use crate::error::CoreError;
use crate::files::Files;
use crate::job::state;
use crate::store::JobRow;

const CHUNK: usize = 1 << 20;

type LogTx = mpsc::Sender<Result<ReadLogsResponse, Status>>;

async fn send_file(
    path: &std::path::Path,
    stream: LogStream,
    offset: u64,
    tx: &LogTx,
) -> Result<(), Status> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    file.seek(std::io::SeekFrom::Start(offset))
        .await
        .map_err(|e| Status::internal(e.to_string()))?;
    let mut offset = offset;
    loop {
        let mut data = vec![0; CHUNK];
        let n = file
            .read(&mut data)
            .await
            .map_err(|e| Status::internal(e.to_string()))?;
        data.truncate(n);
        let chunk = LogChunk {
            stream: stream as i32,
            offset,
            data,
            eof: n == 0,
        };
        offset += n as u64;
        if tx
            .send(Ok(ReadLogsResponse { chunk: Some(chunk) }))
            .await
            .is_err()
            || n == 0
        {
            return Ok(());
        }
    }
}

/// The last, empty piece of a log at `offset`.
fn eof(stream: LogStream, offset: u64) -> ReadLogsResponse {
    ReadLogsResponse {
        chunk: Some(LogChunk {
            stream: stream as i32,
            offset,
            data: Vec::new(),
            eof: true,
        }),
    }
}

impl GantryService {
    /// The stream behind ReadLogs: gantryd's copy once the job ended, the
    /// gate's live file before (waiting for the job to start when following).
    pub(super) async fn logs(
        &self,
        job: JobRow,
        req: ReadLogsRequest,
    ) -> Result<ResponseStream<ReadLogsResponse>, Status> {
        let stream = match LogStream::try_from(req.stream) {
            Ok(LogStream::Stderr) => LogStream::Stderr,
            _ => LogStream::Stdout,
        };
        let ctx = self.ctx.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            let mut job = job;
            let mut commits = ctx.store.subscribe();
            // How far the caller has read: a gate stream that breaks is
            // taken up again from here, from the gate or gantryd's copy.
            let mut offset = req.offset;
            loop {
                let copy = ctx.files.log(job.id, stream);
                if state::is_end(job.state) && copy.exists() {
                    if let Err(e) = send_file(&copy, stream, offset, &tx).await {
                        let _ = tx.send(Err(e)).await;
                    }
                    return;
                }
                let mut failed = None;
                if let Some(mut gate) = ctx.gate(&job.site).filter(|_| !job.attempt_id.is_empty()) {
                    let request = GateReadLogsRequest {
                        attempt_id: job.attempt_id.clone(),
                        stream: stream as i32,
                        offset,
                        follow: req.follow,
                    };
                    match gate.read_logs(request).await {
                        Ok(resp) => {
                            let mut chunks = resp.into_inner();
                            loop {
                                match chunks.next().await {
                                    Some(Ok(m)) => {
                                        if let Some(c) = &m.chunk {
                                            offset = c.offset + c.data.len() as u64;
                                        }
                                        let msg = ReadLogsResponse { chunk: m.chunk };
                                        if tx.send(Ok(msg)).await.is_err() {
                                            return;
                                        }
                                    }
                                    Some(Err(s)) => {
                                        failed = Some(s);
                                        break;
                                    }
                                    None => return,
                                }
                            }
                        }
                        Err(s) => failed = Some(s),
                    }
                }
                if let Some(status) = failed {
                    // The job may have ended and its gate forgotten it since
                    // (gantryd's copy is then whole), or the gate may be
                    // away for a moment: look again before giving up.
                    match ctx.store.job(job.id).await {
                        Ok(Some(fresh)) => job = fresh,
                        _ => return,
                    }
                    if state::is_end(job.state) {
                        if ctx.files.log(job.id, stream).exists() {
                            continue;
                        }
                        // Ended with nothing copied: the log was empty.
                        let _ = tx.send(Ok(eof(stream, offset))).await;
                        return;
                    }
                    if !req.follow {
                        // Placed but not yet started on its gate (StartJob
                        // is on its way): nothing is written yet.
                        let unstarted = matches!(
                            job.state,
                            JobState::Queued
                                | JobState::Scheduled
                                | JobState::Provisioning
                                | JobState::StagingIn
                        );
                        let answer = if status.code() == tonic::Code::NotFound && unstarted {
                            Ok(eof(stream, offset))
                        } else {
                            Err(status)
                        };
                        let _ = tx.send(answer).await;
                        return;
                    }
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                    continue;
                }
                if !req.follow || state::is_end(job.state) {
                    let _ = tx.send(Ok(eof(stream, offset))).await;
                    return;
                }
                // Follow a job that has not started: wait for a change to it.
                tokio::select! {
                    _ = tx.closed() => return,
                    _ = commits.recv() => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
                match ctx.store.job(job.id).await {
                    Ok(Some(fresh)) => job = fresh,
                    _ => return,
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// The stream behind DownloadOutputs.
    pub(super) fn outputs(
        &self,
        job: JobRow,
    ) -> Result<ResponseStream<DownloadOutputsResponse>, Status> {
        if !state::is_end(job.state) {
            return Err(CoreError::Precondition(format!(
                "job {} is {}; its outputs can be downloaded once it ends",
                job.id,
                state::name(job.state)
            ))
            .into());
        }
        let root = self.ctx.files.outputs(job.id);
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            for rel in Files::list_files(&root) {
                let path = root.join(&rel);
                let Ok(mut file) = tokio::fs::File::open(&path).await else {
                    continue;
                };
                let mode = file
                    .metadata()
                    .await
                    .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                    .unwrap_or(0o644);
                let mut first = true;
                loop {
                    let mut data = vec![0; CHUNK];
                    let n = match file.read(&mut data).await {
                        Ok(n) => n,
                        Err(e) => {
                            let _ = tx.send(Err(Status::internal(e.to_string()))).await;
                            return;
                        }
                    };
                    if n == 0 && !first {
                        break;
                    }
                    data.truncate(n);
                    let chunk = FileChunk {
                        path: if first { rel.clone() } else { String::new() },
                        mode: if first { mode } else { 0 },
                        data,
                    };
                    first = false;
                    if tx
                        .send(Ok(DownloadOutputsResponse { chunk: Some(chunk) }))
                        .await
                        .is_err()
                    {
                        return;
                    }
                    if n == 0 {
                        break;
                    }
                }
            }
        });
        Ok(Box::pin(ReceiverStream::new(rx)))
    }

    /// Store an upload and answer its digest.
    pub(super) async fn upload(
        &self,
        stream: Streaming<UploadInputRequest>,
    ) -> Result<UploadInputResponse, Status> {
        let chunks = stream.map(|msg| {
            msg.map(|m| m.data)
                .map_err(|s| CoreError::Io(format!("upload broke: {}", s.message())))
        });
        let (digest, size) = self.ctx.files.store_blob(Box::pin(chunks)).await?;
        Ok(UploadInputResponse { digest, size })
    }
}
