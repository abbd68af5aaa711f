//! Staging files into and out of a working directory as `FileChunk`s.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use futures::StreamExt;
use gantry_proto::v1::{FileChunk, StageInResponse};
use globset::GlobSet;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use crate::error::{GateError, Result};
use crate::paths::safe_relative_path;
use crate::provider::FileChunks;

/// Largest piece of a file in one `FileChunk`.
pub const FILE_CHUNK_BYTES: usize = 1 << 20;
/// Mode of a staged file whose first chunk gives none.
pub const DEFAULT_FILE_MODE: u32 = 0o644;
/// Chunks buffered by a StageOut reader before back-pressure.
const STAGE_OUT_BUFFER: usize = 4;

/// Write `files` under `dir` (created if missing): each file's first chunk
/// names it and gives its mode; later chunks append. Parents are created;
/// a re-sent file is overwritten. Paths never leave `dir`: `..`, absolute
/// paths and symbolic links on the way are refused.
pub async fn stage_in_dir(dir: &Path, mut files: FileChunks) -> Result<StageInResponse> {
    let mut writer = DirWriter::new(dir.to_path_buf());
    while let Some(chunk) = files.next().await {
        let chunk = chunk?;
        writer = tokio::task::spawn_blocking(move || writer.apply(chunk).map(|()| writer))
            .await
            .map_err(|e| GateError::Internal(format!("stage-in task failed: {e}")))??;
    }
    Ok(StageInResponse {
        files: writer.files,
        bytes: writer.bytes,
    })
}

/// Stream the regular files under `dir` whose path relative to `dir` matches
/// `globs`, in name order, as chunks of at most [`FILE_CHUNK_BYTES`] (the
/// first of each file with its path and mode; an empty file is one chunk).
/// Symbolic links are not followed. A missing `dir` yields no files.
pub fn stage_out_dir(dir: PathBuf, globs: GlobSet) -> FileChunks {
    let (tx, rx) = mpsc::channel(STAGE_OUT_BUFFER);
    tokio::task::spawn_blocking(move || {
        if let Err(err) = walk_out(&dir, &globs, &tx) {
            let _ = tx.blocking_send(Err(err));
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

type Tx = mpsc::Sender<Result<FileChunk>>;

fn walk_out(dir: &Path, globs: &GlobSet, tx: &Tx) -> Result<()> {
    for (path, rel) in matching_paths(dir, globs)? {
        if !send_file(&path, &rel, tx)? {
            return Ok(());
        }
    }
    Ok(())
}

/// A file under a directory that matched staging globs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchedFile {
    /// Relative to the directory.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its mode (permission bits).
    pub mode: u32,
}

/// The regular files under `dir` that [`stage_out_dir`] would send, in the
/// same order, with their sizes and modes, without reading them.
pub fn matching_files(dir: &Path, globs: &GlobSet) -> Result<Vec<MatchedFile>> {
    let mut files = Vec::new();
    for (path, rel) in matching_paths(dir, globs)? {
        let meta =
            fs::metadata(&path).map_err(GateError::io(format!("stat {}", path.display())))?;
        files.push(MatchedFile {
            path: rel,
            size: meta.len(),
            mode: meta.permissions().mode() & 0o777,
        });
    }
    Ok(files)
}

/// Regular files under `dir` matching `globs`, in name order, as (path,
/// path relative to `dir`); links are not followed.
fn matching_paths(dir: &Path, globs: &GlobSet) -> Result<Vec<(PathBuf, String)>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    let walk = walkdir::WalkDir::new(dir)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name();
    for entry in walk {
        let entry =
            entry.map_err(|e| GateError::Internal(format!("walk {}: {e}", dir.display())))?;
        if !entry.file_type().is_file() {
            continue;
        }
        let Ok(rel) = entry.path().strip_prefix(dir) else {
            continue;
        };
        let Some(rel) = rel.to_str() else {
            tracing::warn!(path = %entry.path().display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        if globs.is_match(rel) {
            found.push((entry.path().to_path_buf(), rel.to_string()));
        }
    }
    Ok(found)
}

/// Send one file; false when the receiver went away.
fn send_file(path: &Path, rel: &str, tx: &Tx) -> Result<bool> {
    let mut file = File::open(path).map_err(GateError::io(format!("open {}", path.display())))?;
    let mode = file
        .metadata()
        .map_err(GateError::io(format!("stat {}", path.display())))?
        .permissions()
        .mode()
        & 0o777;
    let mut first = true;
    loop {
        let mut data = Vec::with_capacity(FILE_CHUNK_BYTES.min(64 << 10));
        (&mut file)
            .take(FILE_CHUNK_BYTES as u64)
            .read_to_end(&mut data)
            .map_err(GateError::io(format!("read {}", path.display())))?;
        if data.is_empty() && !first {
            return Ok(true);
        }
        let full = data.len() == FILE_CHUNK_BYTES;
        let chunk = file_chunk(rel, mode, first, data);
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(false);
        }
        first = false;
        if !full {
            return Ok(true);
        }
    }
}

/// INVALID_ARGUMENT: staged file `rel` would pass through something that is
/// not a directory.
pub(crate) fn through_non_directory(rel: &Path) -> GateError {
    GateError::invalid(
        "chunk.path",
        format!(
            "`{}` passes through a file or link, not a directory",
            rel.display()
        ),
    )
}

/// INVALID_ARGUMENT: staged file `rel` is a symbolic link already.
pub(crate) fn is_a_link(rel: &Path) -> GateError {
    GateError::invalid(
        "chunk.path",
        format!(
            "`{}` is a symbolic link; staging never follows links",
            rel.display()
        ),
    )
}

/// One piece of file `rel`: the first names it and gives its mode, later
/// ones carry only data.
pub(crate) fn file_chunk(rel: &str, mode: u32, first: bool, data: Vec<u8>) -> FileChunk {
    FileChunk {
        path: if first {
            rel.to_string()
        } else {
            String::new()
        },
        mode: if first { mode } else { 0 },
        data,
    }
}

/// Applies chunks to files under a directory, one file at a time.
struct DirWriter {
    dir: PathBuf,
    current: Option<(File, PathBuf)>,
    files: u32,
    bytes: u64,
}

impl DirWriter {
    fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            current: None,
            files: 0,
            bytes: 0,
        }
    }

    fn apply(&mut self, chunk: FileChunk) -> Result<()> {
        if !chunk.path.is_empty() {
            self.current = None;
            let rel = safe_relative_path("chunk.path", &chunk.path)?;
            let mode = if chunk.mode == 0 {
                DEFAULT_FILE_MODE
            } else {
                chunk.mode & 0o777
            };
            let file = self.create(&rel, mode)?;
            self.current = Some((file, rel));
            self.files += 1;
        }
        let Some((file, rel)) = self.current.as_mut() else {
            return Err(GateError::invalid(
                "chunk.path",
                "the first chunk of each file must name it",
            ));
        };
        file.write_all(&chunk.data)
            .map_err(GateError::io(format!("write {}", rel.display())))?;
        self.bytes += chunk.data.len() as u64;
        Ok(())
    }

    /// Create (or truncate) `rel` under the directory, creating parents and
    /// refusing to pass through symbolic links.
    fn create(&self, rel: &Path, mode: u32) -> Result<File> {
        fs::create_dir_all(&self.dir)
            .map_err(GateError::io(format!("create {}", self.dir.display())))?;
        let mut at = self.dir.clone();
        let parts: Vec<_> = rel.components().collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            at.push(part);
            match fs::symlink_metadata(&at) {
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => return Err(through_non_directory(rel)),
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    fs::create_dir(&at)
                        .map_err(GateError::io(format!("create {}", at.display())))?;
                }
                Err(e) => return Err(GateError::io(format!("stat {}", at.display()))(e)),
            }
        }
        let path = self.dir.join(rel);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::ELOOP) => is_a_link(rel),
                _ => GateError::io(format!("create {}", path.display()))(e),
            })?;
        file.set_permissions(Permissions::from_mode(mode))
            .map_err(GateError::io(format!("chmod {}", path.display())))?;
        Ok(file)
    }
}

/// Remove an attempt's directory (on a blocking thread); fine when it is gone.
pub async fn remove_dir(dir: std::path::PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(GateError::io(format!("remove {}", dir.display()))(e))
        }
        _ => Ok(()),
    })
    .await
    .map_err(|e| GateError::Internal(format!("remove task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::glob_set;
    use futures::stream;

    fn chunk(path: &str, mode: u32, data: &[u8]) -> Result<FileChunk> {
        Ok(FileChunk {
            path: path.into(),
            mode,
            data: data.to_vec(),
        })
    }

    fn chunks(items: Vec<Result<FileChunk>>) -> FileChunks {
        Box::pin(stream::iter(items))
    }

    #[tokio::test]
    async fn writes_files_with_parents_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let work = dir.path().join("work");
        let resp = stage_in_dir(
            &work,
            chunks(vec![
                chunk("a/b/c.txt", 0o600, b"he"),
                chunk("", 0, b"llo"),
                chunk("run.sh", 0o755, b"#!/bin/sh\n"),
                chunk("empty", 0, b""),
            ]),
        )
        .await
        .unwrap();
        assert_eq!((resp.files, resp.bytes), (3, 15));
        assert_eq!(fs::read(work.join("a/b/c.txt")).unwrap(), b"hello");
        let mode = |p: &str| fs::metadata(work.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("a/b/c.txt"), 0o600);
        assert_eq!(mode("run.sh"), 0o755);
        assert_eq!(mode("empty"), DEFAULT_FILE_MODE);
    }

    #[tokio::test]
    async fn refuses_headless_chunks_escapes_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let err = stage_in_dir(dir.path(), chunks(vec![chunk("", 0, b"x")]))
            .await
            .unwrap_err();
        assert!(err.to_string().starts_with("chunk.path"), "{err}");
        assert!(
            stage_in_dir(dir.path(), chunks(vec![chunk("../x", 0, b"x")]))
                .await
                .is_err()
        );

        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink(outside.path().join("f"), dir.path().join("flink")).unwrap();
        for path in ["link/f", "flink"] {
            let err = stage_in_dir(dir.path(), chunks(vec![chunk(path, 0, b"x")]))
                .await
                .unwrap_err();
            assert!(
                matches!(err, GateError::InvalidArgument { .. }),
                "{path}: {err}"
            );
        }
        assert!(!outside.path().join("f").exists());
    }

    #[tokio::test]
    async fn stages_out_matching_files_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("out/sub")).unwrap();
        fs::write(
            dir.path().join("out/sub/big"),
            vec![7u8; FILE_CHUNK_BYTES + 3],
        )
        .unwrap();
        fs::write(dir.path().join("out/empty"), b"").unwrap();
        fs::write(dir.path().join("skip.txt"), b"no").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join("out/link")).unwrap();
        let globs = glob_set("globs", &["out/**".into()]).unwrap();
        let got: Vec<FileChunk> = stage_out_dir(dir.path().to_path_buf(), globs)
            .map(|c| c.unwrap())
            .collect()
            .await;
        let heads: Vec<_> = got
            .iter()
            .map(|c| (c.path.as_str(), c.data.len()))
            .collect();
        assert_eq!(
            heads,
            [("out/empty", 0), ("out/sub/big", FILE_CHUNK_BYTES), ("", 3)]
        );
        assert_eq!(got[1].mode, 0o644 & !umask_bits());
    }

    #[tokio::test]
    async fn stage_out_of_a_missing_dir_is_empty() {
        let globs = glob_set("globs", &["*".into()]).unwrap();
        let got: Vec<_> = stage_out_dir("/nonexistent/gantry".into(), globs)
            .collect()
            .await;
        assert!(got.is_empty());
    }

    fn umask_bits() -> u32 {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("probe");
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o777)
            .open(&p)
            .unwrap();
        0o777 & !(fs::metadata(&p).unwrap().permissions().mode() & 0o777)
    }
}
