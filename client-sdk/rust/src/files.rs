//! Bytes in and out of gantryd: input uploads, log reading, output downloads.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::Stream;
use gantry_proto::v1::{
    DownloadOutputsRequest, InputFile, LogChunk, LogStream, ReadLogsRequest, UploadInputRequest,
};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::retry::{Backoff, RETRY_BUDGET};

/// Bytes per upload message (the contract's limit).
pub const UPLOAD_CHUNK: usize = 1024 * 1024;

/// What the upload body saw while reading the file.
#[derive(Default)]
struct ReadTally {
    size: u64,
    hasher: Sha256,
    error: Option<std::io::Error>,
}

/// `path` as a relative path inside a destination: no root, no `..`.
pub fn safe_relative(path: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            _ => return Err(Error::UnsafePath(path.to_string())),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(Error::UnsafePath(path.to_string()));
    }
    Ok(out)
}

/// Trim the part of `chunk` before `next` (bytes already delivered before a
/// reconnect). `None` when nothing new is left.
fn trim_seen(mut chunk: LogChunk, next: u64) -> Option<LogChunk> {
    let end = chunk.offset + chunk.data.len() as u64;
    if chunk.offset < next {
        if end <= next && !chunk.eof {
            return None;
        }
        let skip = (next.min(end) - chunk.offset) as usize;
        chunk.data.drain(..skip);
        chunk.offset = next.min(end);
    }
    Some(chunk)
}

impl Client {
    /// Store a local file in gantryd, streaming it in 1 MiB messages. The
    /// answer names it for a `JobSpec`: its digest, its file name as `path`
    /// (change it to place the file elsewhere) and its permission bits.
    pub async fn upload_input(&self, path: &Path) -> Result<InputFile> {
        let mut file = tokio::fs::File::open(path).await.map_err(Error::io(path))?;
        let meta = file.metadata().await.map_err(Error::io(path))?;
        if !meta.is_file() {
            let source =
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a regular file");
            return Err(Error::Io {
                path: path.into(),
                source,
            });
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| Error::Io {
                path: path.into(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "no UTF-8 file name"),
            })?
            .to_string();
        let tally = Arc::new(Mutex::new(ReadTally::default()));
        let seen = tally.clone();
        let body = async_stream::stream! {
            loop {
                let mut data = Vec::with_capacity(UPLOAD_CHUNK);
                match (&mut file).take(UPLOAD_CHUNK as u64).read_to_end(&mut data).await {
                    Ok(0) => return,
                    Ok(n) => {
                        let mut t = seen.lock().expect("tally lock");
                        t.size += n as u64;
                        t.hasher.update(&data);
                    }
                    Err(error) => {
                        seen.lock().expect("tally lock").error = Some(error);
                        return;
                    }
                }
                yield UploadInputRequest { data };
            }
        };
        let response = self.raw().upload_input(body).await?.into_inner();
        let tally = std::mem::take(&mut *tally.lock().expect("tally lock"));
        if let Some(source) = tally.error {
            return Err(Error::Io {
                path: path.into(),
                source,
            });
        }
        let digest = format!("{:x}", tally.hasher.finalize());
        if response.digest != digest || response.size != tally.size {
            return Err(Error::Protocol(format!(
                "upload of {} arrived as {} bytes with digest {}, but {} bytes with digest {digest} were sent \
                 (did the file change while uploading?)",
                path.display(),
                response.size,
                response.digest,
                tally.size
            )));
        }
        Ok(InputFile {
            digest,
            path: name,
            mode: meta.permissions().mode() & 0o777,
        })
    }

    /// A job's stdout or stderr from byte `offset`. With `follow`, chunks keep
    /// coming until the job ends (the last one has `eof`). A broken connection
    /// is resumed from the next byte, so no byte is repeated or lost.
    pub async fn read_logs(
        &self,
        job_id: u64,
        stream: LogStream,
        offset: u64,
        follow: bool,
    ) -> Result<impl Stream<Item = Result<LogChunk>> + Send + 'static> {
        let mut client = self.raw();
        let request = move |offset| ReadLogsRequest {
            job_id,
            stream: stream as i32,
            offset,
            follow,
        };
        let first = client.read_logs(request(offset)).await?.into_inner();
        Ok(async_stream::stream! {
            let mut next = offset;
            let mut current = Some(first);
            let mut backoff = Backoff::new(RETRY_BUDGET);
            loop {
                let result = match current.as_mut() {
                    Some(chunks) => chunks.message().await,
                    None => match client.read_logs(request(next)).await {
                        Ok(response) => {
                            current = Some(response.into_inner());
                            continue;
                        }
                        Err(status) => Err(status),
                    },
                };
                match result {
                    Ok(Some(response)) => {
                        backoff.reset(RETRY_BUDGET);
                        let Some(chunk) = response.chunk.and_then(|c| trim_seen(c, next)) else {
                            continue;
                        };
                        next = chunk.offset + chunk.data.len() as u64;
                        let eof = chunk.eof;
                        yield Ok(chunk);
                        if eof {
                            return;
                        }
                    }
                    Ok(None) => return,
                    Err(status) => {
                        let error = Error::Status(status);
                        if error.is_retryable() && backoff.wait().await {
                            current = None;
                            continue;
                        }
                        yield Err(error);
                        return;
                    }
                }
            }
        })
    }

    /// Download an ended job's output files under `dest` (created if needed),
    /// keeping their relative paths and modes. Paths that are absolute or
    /// contain `..` are refused. Returns the files written, in order.
    pub async fn download_outputs(&self, job_id: u64, dest: &Path) -> Result<Vec<PathBuf>> {
        let request = DownloadOutputsRequest { job_id };
        let mut chunks = self.raw().download_outputs(request).await?.into_inner();
        tokio::fs::create_dir_all(dest)
            .await
            .map_err(Error::io(dest))?;
        let mut written = Vec::new();
        let mut current: Option<(PathBuf, BufWriter<tokio::fs::File>, u32)> = None;
        while let Some(response) = chunks.message().await? {
            let Some(chunk) = response.chunk else {
                continue;
            };
            if !chunk.path.is_empty() {
                finish(current.take()).await?;
                let full = dest.join(safe_relative(&chunk.path)?);
                if let Some(parent) = full.parent() {
                    tokio::fs::create_dir_all(parent)
                        .await
                        .map_err(Error::io(parent))?;
                }
                let file = tokio::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&full)
                    .await
                    .map_err(Error::io(&full))?;
                let mode = if chunk.mode == 0 {
                    0o644
                } else {
                    chunk.mode & 0o777
                };
                written.push(full.clone());
                current = Some((full, BufWriter::with_capacity(256 * 1024, file), mode));
            }
            let Some((path, file, _)) = current.as_mut() else {
                return Err(Error::Protocol(
                    "output data came before its file's path".into(),
                ));
            };
            file.write_all(&chunk.data)
                .await
                .map_err(Error::io(path.as_path()))?;
        }
        finish(current).await?;
        Ok(written)
    }
}

/// Flush a downloaded file and give it its mode.
async fn finish(current: Option<(PathBuf, BufWriter<tokio::fs::File>, u32)>) -> Result<()> {
    let Some((path, mut file, mode)) = current else {
        return Ok(());
    };
    file.flush().await.map_err(Error::io(&path))?;
    let file = file.into_inner();
    file.set_permissions(std::fs::Permissions::from_mode(mode))
        .await
        .map_err(Error::io(&path))?;
    file.sync_all().await.map_err(Error::io(&path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsafe_output_paths_are_refused() {
        assert_eq!(
            safe_relative("out/a.csv").unwrap(),
            PathBuf::from("out/a.csv")
        );
        assert_eq!(safe_relative("./a").unwrap(), PathBuf::from("a"));
        for bad in ["/etc/passwd", "../x", "a/../../x", "", ".", "a/.."] {
            assert!(safe_relative(bad).is_err(), "{bad}");
        }
    }

    fn chunk(offset: u64, data: &[u8], eof: bool) -> LogChunk {
        LogChunk {
            stream: 1,
            offset,
            data: data.to_vec(),
            eof,
        }
    }

    #[test]
    fn resumed_log_chunks_drop_bytes_already_seen() {
        assert_eq!(trim_seen(chunk(0, b"abc", false), 0).unwrap().data, b"abc");
        assert!(trim_seen(chunk(0, b"abc", false), 3).is_none());
        let c = trim_seen(chunk(0, b"abcdef", false), 4).unwrap();
        assert_eq!((c.offset, c.data.as_slice()), (4, &b"ef"[..]));
        let c = trim_seen(chunk(0, b"ab", true), 2).unwrap();
        assert!(c.eof && c.data.is_empty());
    }
}
