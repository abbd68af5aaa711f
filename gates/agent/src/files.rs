//! An attempt's files, moved through URLs its gate signed for one object
//! each (see `FileTransfer` in agent.proto): inputs fetched into its working
//! directory before it starts, outputs uploaded after it ends. The machine
//! holds no storage credential.

use futures::StreamExt;
use gantry_gate::{
    AttemptId, FileChunks, GateError, PartitionId, Provider, Result, glob_set, matching_files,
    safe_relative_path,
};
use gantry_gate_local::LocalProvider;
use gantry_proto::v1::{
    AttemptFile, AttemptFiles, FetchFiles, FileChunk, ListFilesRequest, PutFiles,
};

fn http_error<'a>(what: &'a str, path: &'a str) -> impl Fn(reqwest::Error) -> GateError + 'a {
    move |e| GateError::Unavailable(format!("{what} {path}: {e}"))
}

/// Download `req.files` into the attempt's working directory, through the
/// local runner's own staging (paths checked, links refused).
pub async fn fetch(local: &LocalProvider, http: &reqwest::Client, req: FetchFiles) -> Result<()> {
    let attempt = AttemptId::parse("attempt_id", &req.attempt_id)?;
    let partition = PartitionId::parse("partition_id", &req.partition_id)?;
    let http = http.clone();
    let files = req.files;
    let chunks: FileChunks = Box::pin(async_stream::try_stream! {
        for file in files {
            let response = http
                .get(&file.url)
                .send()
                .await
                .map_err(http_error("fetching input", &file.path))?;
            if !response.status().is_success() {
                Err(GateError::Unavailable(format!(
                    "fetching input {}: HTTP {}",
                    file.path,
                    response.status()
                )))?;
            }
            let mut body = response.bytes_stream().fuse();
            let next = |piece: Option<reqwest::Result<bytes::Bytes>>| {
                piece.transpose().map_err(http_error("fetching input", &file.path))
            };
            // The first chunk names the file, even an empty one.
            let mut chunk = FileChunk {
                path: file.path.clone(),
                mode: file.mode,
                data: next(body.next().await)?.map(|b| b.to_vec()).unwrap_or_default(),
            };
            loop {
                yield chunk;
                match next(body.next().await)? {
                    Some(data) => {
                        chunk = FileChunk {
                            path: String::new(),
                            mode: 0,
                            data: data.to_vec(),
                        }
                    }
                    None => break,
                }
            }
        }
    });
    local
        .stage_in(&attempt, &partition, chunks)
        .await
        .map(|_| ())
}

/// The ended attempt's files that match `req.globs`, with sizes and modes.
pub async fn list(local: &LocalProvider, req: ListFilesRequest) -> Result<AttemptFiles> {
    let attempt = AttemptId::parse("attempt_id", &req.attempt_id)?;
    let dir = local.ended_work_dir(&attempt)?;
    let globs = glob_set("globs", &req.globs)?;
    let found = tokio::task::spawn_blocking(move || matching_files(&dir, &globs))
        .await
        .map_err(|e| GateError::Internal(format!("listing task failed: {e}")))??;
    Ok(AttemptFiles {
        files: found
            .into_iter()
            .map(|f| AttemptFile {
                path: f.path,
                size: f.size,
                mode: f.mode,
            })
            .collect(),
    })
}

/// Upload the ended attempt's `req.files`, each to its URL.
pub async fn put(local: &LocalProvider, http: &reqwest::Client, req: PutFiles) -> Result<()> {
    let attempt = AttemptId::parse("attempt_id", &req.attempt_id)?;
    let dir = local.ended_work_dir(&attempt)?;
    for file in req.files {
        let path = dir.join(safe_relative_path("files.path", &file.path)?);
        let opened = tokio::fs::File::open(&path)
            .await
            .map_err(GateError::io(format!("open {}", path.display())))?;
        let size = opened
            .metadata()
            .await
            .map_err(GateError::io(format!("stat {}", path.display())))?
            .len();
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::new(opened));
        let response = http
            .put(&file.url)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(http_error("uploading output", &file.path))?;
        if !response.status().is_success() {
            return Err(GateError::Unavailable(format!(
                "uploading output {}: HTTP {}",
                file.path,
                response.status()
            )));
        }
    }
    Ok(())
}
