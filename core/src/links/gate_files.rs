//! Moving bytes between gantryd and a gate: inputs in, logs and outputs back.

use std::time::Duration;

use gantry_proto::v1::{
    FileChunk, GateReadLogsRequest, LogStream, StageInRequest, StageOutRequest,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::Ctx;
use crate::files::is_safe_relative;
use crate::store::JobRow;

type Client = super::GateClient;

const CHUNK: usize = 1 << 20;

/// Send the job's inputs (stored blobs) to its attempt's working directory.
pub async fn stage_in(ctx: &Ctx, client: &mut Client, job: &JobRow) -> Result<(), String> {
    let mut messages = vec![StageInRequest {
        attempt_id: job.attempt_id.clone(),
        partition_id: job.partition_id.clone(),
        chunk: None,
    }];
    for input in &job.spec.inputs {
        let path = ctx.files.blob(&input.digest);
        let mut file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| format!("input {} is missing from gantryd: {e}", input.path))?;
        let mut first = true;
        loop {
            let mut buf = vec![0u8; CHUNK];
            let n = file.read(&mut buf).await.map_err(|e| e.to_string())?;
            buf.truncate(n);
            if n == 0 && !first {
                break;
            }
            let chunk = FileChunk {
                path: if first {
                    input.path.clone()
                } else {
                    String::new()
                },
                mode: if first { input.mode } else { 0 },
                data: buf,
            };
            messages.push(StageInRequest {
                chunk: Some(chunk),
                ..Default::default()
            });
            first = false;
            if n == 0 {
                break;
            }
        }
    }
    client
        .stage_in(futures::stream::iter(messages))
        .await
        .map(|_| ())
        .map_err(|s| s.message().to_string())
}

/// Why logs or outputs could not be brought home.
#[derive(Debug)]
pub enum StagingError {
    /// gantryd's own disk refused them (full, failing): the gate still has
    /// them, so the copy is tried again later and the job waits.
    Local(String),
    /// The gate failed or sent something wrong: the job ends with this reason.
    Gate(String),
}

impl std::fmt::Display for StagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Local(e) | Self::Gate(e) => f.write_str(e),
        }
    }
}

/// A failure to store at `path`: one of gantryd's disk (full, over quota,
/// failing, read-only) is tried again later; any other ends the job.
fn local(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StagingError {
    move |e| {
        let message = format!("cannot store {}: {e}", path.display());
        match e.raw_os_error() {
            Some(libc::ENOSPC | libc::EDQUOT | libc::EIO | libc::EROFS) => {
                StagingError::Local(message)
            }
            _ => StagingError::Gate(message),
        }
    }
}

/// Sync a directory, so the names just made in it survive a crash.
async fn sync_dir(dir: &std::path::Path) -> Result<(), StagingError> {
    let d = tokio::fs::File::open(dir).await.map_err(local(dir))?;
    d.sync_all().await.map_err(local(dir))
}

fn gate(status: tonic::Status) -> StagingError {
    StagingError::Gate(status.message().to_string())
}

/// Copy the attempt's stdout and stderr into gantryd, synced: once the job
/// ends and the gate forgets the attempt, these are the only copies.
pub async fn copy_logs(ctx: &Ctx, client: &mut Client, job: &JobRow) -> Result<(), StagingError> {
    for stream in [LogStream::Stdout, LogStream::Stderr] {
        let path = ctx.files.log(job.id, stream);
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(local(dir))?;
        }
        let tmp = path.with_extension("partial");
        let mut file = tokio::fs::File::create(&tmp).await.map_err(local(&tmp))?;
        let request = GateReadLogsRequest {
            attempt_id: job.attempt_id.clone(),
            stream: stream as i32,
            offset: 0,
            follow: false,
        };
        let mut chunks = client.read_logs(request).await.map_err(gate)?.into_inner();
        while let Some(msg) = chunks.message().await.map_err(gate)? {
            if let Some(chunk) = msg.chunk {
                file.write_all(&chunk.data).await.map_err(local(&tmp))?;
            }
        }
        file.sync_all().await.map_err(local(&tmp))?;
        tokio::fs::rename(&tmp, &path).await.map_err(local(&path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir).await?;
        }
    }
    Ok(())
}

/// Bring `job`'s logs and outputs home ([`stage_out`]): the stored outputs,
/// or why the gate's side failed. While gantryd's own disk is full or
/// failing the gate keeps the files and this tries again (0.5 s doubling to
/// 30 s); the job stays STAGING_OUT until they fit.
pub async fn bring_home(
    ctx: &Ctx,
    client: &mut Client,
    job: &JobRow,
) -> (Vec<String>, Option<String>) {
    let mut delay = Duration::from_millis(500);
    loop {
        match stage_out(ctx, client, job).await {
            Ok(outputs) => return (outputs, None),
            Err(StagingError::Gate(e)) => return (Vec::new(), Some(e)),
            Err(StagingError::Local(e)) => {
                tracing::error!(job = job.id, error = %e, "cannot bring a job's logs and outputs home; trying again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
        }
    }
}

/// Copy logs and the files matching the job's output globs, synced; returns
/// the stored paths.
pub async fn stage_out(
    ctx: &Ctx,
    client: &mut Client,
    job: &JobRow,
) -> Result<Vec<String>, StagingError> {
    copy_logs(ctx, client, job).await?;
    if job.spec.outputs.is_empty() {
        return Ok(Vec::new());
    }
    let root = ctx.files.outputs(job.id);
    let request = StageOutRequest {
        attempt_id: job.attempt_id.clone(),
        globs: job.spec.outputs.clone(),
    };
    let mut chunks = client.stage_out(request).await.map_err(gate)?.into_inner();
    let mut stored = Vec::new();
    let mut file: Option<(tokio::fs::File, std::path::PathBuf)> = None;
    while let Some(msg) = chunks.message().await.map_err(gate)? {
        let Some(chunk) = msg.chunk else { continue };
        if !chunk.path.is_empty() {
            if !is_safe_relative(&chunk.path) {
                return Err(StagingError::Gate(format!(
                    "the gate sent an unsafe path {:?}",
                    chunk.path
                )));
            }
            let path = root.join(&chunk.path);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir).await.map_err(local(dir))?;
            }
            if let Some((f, done)) = file.take() {
                f.sync_all().await.map_err(local(&done))?;
            }
            let f = tokio::fs::File::create(&path).await.map_err(local(&path))?;
            if let Some(dir) = path.parent() {
                sync_dir(dir).await?;
            }
            file = Some((f, path));
            stored.push(chunk.path.clone());
        }
        match file.as_mut() {
            Some((f, path)) => f.write_all(&chunk.data).await.map_err(local(path))?,
            None => {
                return Err(StagingError::Gate(
                    "the gate sent data before a file name".into(),
                ));
            }
        }
    }
    if let Some((f, done)) = file.take() {
        f.sync_all().await.map_err(local(&done))?;
    }
    Ok(stored)
}
