//! The file work of an [`SshHost`] over SFTP: listing, staging in and out
//! (the same rules as [`stage_in_dir`](crate::stage_in_dir) and
//! [`stage_out_dir`](crate::stage_out_dir)) and reading logs.

use std::io::SeekFrom;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::BytesMut;
use futures::StreamExt;
use gantry_proto::v1::{FileChunk, StageInResponse};
use globset::GlobSet;
use openssh_sftp_client::error::SftpErrorKind;
use openssh_sftp_client::file::File;
use openssh_sftp_client::metadata::{MetaData, Permissions};
use openssh_sftp_client::{Error as SftpError, Sftp};
use tokio::io::AsyncSeekExt;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::ssh::{Connection, SshHost};
use crate::error::{GateError, Result};
use crate::logs::LogReader;
use crate::paths::safe_relative_path;
use crate::provider::FileChunks;
use crate::staging::{
    DEFAULT_FILE_MODE, FILE_CHUNK_BYTES, file_chunk, is_a_link, through_non_directory,
};

/// Chunks buffered by a StageOut reader before back-pressure.
const STAGE_OUT_BUFFER: usize = 4;

/// Why a step failed: the gate's own error, or an SFTP call (with what it did).
enum Failure {
    Gate(GateError),
    Sftp(String, SftpError),
}

impl From<GateError> for Failure {
    fn from(e: GateError) -> Self {
        Self::Gate(e)
    }
}

trait Context<T> {
    fn doing(self, what: impl FnOnce() -> String) -> std::result::Result<T, Failure>;
}

impl<T> Context<T> for std::result::Result<T, SftpError> {
    fn doing(self, what: impl FnOnce() -> String) -> std::result::Result<T, Failure> {
        self.map_err(|e| Failure::Sftp(what(), e))
    }
}

impl SshHost {
    async fn failure(&self, connection: &Arc<Connection>, failure: Failure) -> GateError {
        match failure {
            Failure::Gate(e) => e,
            Failure::Sftp(what, e) => self.sftp_failed(connection, what, e).await,
        }
    }
}

/// Whether `e` says the file does not exist.
pub(super) fn not_found(e: &SftpError) -> bool {
    matches!(e, SftpError::SftpError(SftpErrorKind::NoSuchFile, _))
}

fn is_dir(m: &MetaData) -> bool {
    m.file_type().is_some_and(|t| t.is_dir())
}

/// The entries of `dir` (not `.` and `..`, nor names that are not UTF-8,
/// as the local walk skips them) with what `lstat` says of them, in name
/// order.
pub(super) async fn list(
    sftp: &Sftp,
    dir: &Path,
) -> std::result::Result<Vec<(String, MetaData)>, SftpError> {
    let entries = sftp.fs().open_dir(dir).await?.read_dir();
    let mut entries = std::pin::pin!(entries);
    let mut found = Vec::new();
    while let Some(entry) = entries.next().await {
        let entry = entry?;
        let Some(name) = entry.filename().to_str() else {
            tracing::warn!(dir = %dir.display(), name = %entry.filename().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if name != "." && name != ".." {
            found.push((name.to_string(), entry.metadata()));
        }
    }
    found.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(found)
}

/// Write `files` under `dir` (which exists).
pub(super) async fn stage_in(
    host: &SshHost,
    connection: &Arc<Connection>,
    dir: &Path,
    files: FileChunks,
) -> Result<StageInResponse> {
    match write_files(&connection.sftp, dir, files).await {
        Ok(response) => Ok(response),
        Err(failure) => Err(host.failure(connection, failure).await),
    }
}

async fn write_files(
    sftp: &Sftp,
    dir: &Path,
    mut files: FileChunks,
) -> std::result::Result<StageInResponse, Failure> {
    let mut response = StageInResponse::default();
    let mut current: Option<(File, PathBuf)> = None;
    while let Some(chunk) = files.next().await {
        let chunk = chunk?;
        if !chunk.path.is_empty() {
            if let Some((file, rel)) = current.take() {
                file.close()
                    .await
                    .doing(|| format!("write {}", rel.display()))?;
            }
            let rel = safe_relative_path("chunk.path", &chunk.path)?;
            let mode = if chunk.mode == 0 {
                DEFAULT_FILE_MODE
            } else {
                chunk.mode & 0o777
            };
            current = Some((create(sftp, dir, &rel, mode).await?, rel));
            response.files += 1;
        }
        let Some((file, rel)) = current.as_mut() else {
            return Err(GateError::invalid(
                "chunk.path",
                "the first chunk of each file must name it",
            )
            .into());
        };
        file.write_all(&chunk.data)
            .await
            .doing(|| format!("write {}", rel.display()))?;
        response.bytes += chunk.data.len() as u64;
    }
    if let Some((file, rel)) = current.take() {
        file.close()
            .await
            .doing(|| format!("write {}", rel.display()))?;
    }
    Ok(response)
}

/// Create (or truncate) `rel` under `dir` with `mode`, creating parents and
/// refusing to pass through or write to symbolic links.
async fn create(
    sftp: &Sftp,
    dir: &Path,
    rel: &Path,
    mode: u32,
) -> std::result::Result<File, Failure> {
    let mut fs = sftp.fs();
    let mut at = dir.to_path_buf();
    let parts: Vec<_> = rel.components().collect();
    for part in &parts[..parts.len().saturating_sub(1)] {
        at.push(part);
        match fs.symlink_metadata(&at).await {
            Ok(m) if is_dir(&m) => {}
            Ok(_) => return Err(through_non_directory(rel).into()),
            Err(e) if not_found(&e) => {
                fs.create_dir(&at)
                    .await
                    .doing(|| format!("create {}", at.display()))?;
            }
            Err(e) => return Err(Failure::Sftp(format!("stat {}", at.display()), e)),
        }
    }
    let path = dir.join(rel);
    if let Ok(m) = fs.symlink_metadata(&path).await
        && m.file_type().is_some_and(|t| t.is_symlink())
    {
        return Err(is_a_link(rel).into());
    }
    let mut file = sftp
        .options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .await
        .doing(|| format!("create {}", path.display()))?;
    file.set_permissions(Permissions::from(mode as u16))
        .await
        .doing(|| format!("chmod {}", path.display()))?;
    Ok(file)
}

/// Stream the regular files under `dir` matching `globs`, in name order
/// (depth first), without following links; a missing `dir` yields none.
pub(super) fn stage_out(host: SshHost, dir: PathBuf, globs: GlobSet) -> FileChunks {
    let (tx, rx) = mpsc::channel(STAGE_OUT_BUFFER);
    tokio::spawn(async move {
        let connection = match host.connection().await {
            Ok(c) => c,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if let Err(failure) = read_files(&connection.sftp, &dir, &globs, &tx).await {
            let _ = tx.send(Err(host.failure(&connection, failure).await)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

type Tx = mpsc::Sender<Result<FileChunk>>;

async fn read_files(
    sftp: &Sftp,
    dir: &Path,
    globs: &GlobSet,
    tx: &Tx,
) -> std::result::Result<(), Failure> {
    // Entries still to visit, the next one last: (path relative to `dir`, lstat).
    let mut todo: Vec<(String, MetaData)> = match list(sftp, dir).await {
        Ok(entries) => entries,
        Err(e) if not_found(&e) => return Ok(()),
        Err(e) => return Err(Failure::Sftp(format!("list {}", dir.display()), e)),
    };
    todo.reverse();
    while let Some((rel, meta)) = todo.pop() {
        let path = dir.join(&rel);
        if is_dir(&meta) {
            let entries = list(sftp, &path)
                .await
                .doing(|| format!("list {}", path.display()))?;
            todo.extend(
                entries
                    .into_iter()
                    .rev()
                    .map(|(name, m)| (format!("{rel}/{name}"), m)),
            );
            continue;
        }
        if !meta.file_type().is_some_and(|t| t.is_file()) || !globs.is_match(&rel) {
            continue;
        }
        let mode = meta
            .permissions()
            .map_or(DEFAULT_FILE_MODE, |p| p.as_raw().bits() & 0o777);
        if !send_file(sftp, &path, &rel, mode, tx).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// Send one file; false when the receiver went away.
async fn send_file(
    sftp: &Sftp,
    path: &Path,
    rel: &str,
    mode: u32,
    tx: &Tx,
) -> std::result::Result<bool, Failure> {
    let mut file = sftp
        .open(path)
        .await
        .doing(|| format!("open {}", path.display()))?;
    let mut first = true;
    let mut offset = 0;
    loop {
        let data = read_up_to(&mut file, offset, FILE_CHUNK_BYTES)
            .await
            .doing(|| format!("read {}", path.display()))?;
        if data.is_empty() && !first {
            break;
        }
        let full = data.len() == FILE_CHUNK_BYTES;
        offset += data.len() as u64;
        let chunk = file_chunk(rel, mode, first, data);
        if tx.send(Ok(chunk)).await.is_err() {
            return Ok(false);
        }
        first = false;
        if !full {
            break;
        }
    }
    file.close()
        .await
        .doing(|| format!("close {}", path.display()))?;
    Ok(true)
}

/// Up to `max` bytes from `offset` on: fewer only at the file's end (as it
/// is now). Leaves the file's offset after what was read.
async fn read_up_to(
    file: &mut File,
    offset: u64,
    max: usize,
) -> std::result::Result<Vec<u8>, SftpError> {
    let mut data = Vec::new();
    while data.len() < max {
        // `File::read` moves the offset by what it asked for, not by what
        // it got: a short read (a log still being written) would skip bytes.
        file.seek(SeekFrom::Start(offset + data.len() as u64))
            .await
            .map_err(SftpError::from)?;
        let want = u32::try_from(max - data.len()).unwrap_or(u32::MAX);
        match file.read(want, BytesMut::new()).await? {
            Some(piece) if !piece.is_empty() => data.extend_from_slice(&piece),
            _ => break,
        }
    }
    Ok(data)
}

/// A log file on an [`SshHost`], kept open between reads.
pub(super) struct LogFile {
    host: SshHost,
    path: PathBuf,
    open: Option<(Arc<Connection>, File)>,
}

impl LogFile {
    pub(super) fn new(host: SshHost, path: PathBuf) -> Self {
        Self {
            host,
            path,
            open: None,
        }
    }
}

#[tonic::async_trait]
impl LogReader for LogFile {
    async fn read_at(&mut self, offset: u64, max: usize) -> Result<Vec<u8>> {
        match self.try_read_at(offset, max).await {
            // Once more, on a new connection if that one was lost.
            Err(_) if self.open.is_none() => self.try_read_at(offset, max).await,
            result => result,
        }
    }
}

impl LogFile {
    /// Read at `offset`, opening the file first if need be; on an error the
    /// file is closed (and the connection forgotten if it is dead).
    async fn try_read_at(&mut self, offset: u64, max: usize) -> Result<Vec<u8>> {
        if self.open.is_none() {
            let connection = self.host.connection().await?;
            match connection.sftp.open(&self.path).await {
                Ok(file) => self.open = Some((connection, file)),
                Err(e) if not_found(&e) => return Ok(Vec::new()),
                Err(e) => {
                    let what = format!("open {}", self.path.display());
                    return Err(self.host.sftp_failed(&connection, what, e).await);
                }
            }
        }
        let (connection, file) = self.open.as_mut().expect("opened above");
        match read_up_to(file, offset, max).await {
            Ok(data) => Ok(data),
            Err(e) => {
                let connection = connection.clone();
                self.open = None;
                let what = format!("read {}", self.path.display());
                Err(self.host.sftp_failed(&connection, what, e).await)
            }
        }
    }
}
