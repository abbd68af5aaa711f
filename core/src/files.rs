//! Files gantryd keeps under its state directory: uploaded inputs
//! (content-addressed blobs), and each ended job's logs and outputs.

use std::path::{Path, PathBuf};

use gantry_proto::v1::LogStream;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::error::{CoreError, Result};

/// The layout of gantryd's state directory.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

fn io(context: &str, path: &Path) -> impl FnOnce(std::io::Error) -> CoreError {
    let message = format!("{context} {}", path.display());
    move |e| CoreError::Io(format!("{message}: {e}"))
}

/// A relative path that stays inside its directory.
pub fn is_safe_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && !path.contains('\0')
        && path.split('/').all(|part| part != ".." && !part.is_empty())
}

impl Files {
    /// Use `root`, creating its folders.
    pub fn new(root: &Path) -> Result<Self> {
        for dir in ["blobs", "jobs", "tmp"] {
            let path = root.join(dir);
            std::fs::create_dir_all(&path).map_err(io("cannot create", &path))?;
        }
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// Where the blob with `digest` is.
    pub fn blob(&self, digest: &str) -> PathBuf {
        self.root.join("blobs").join(digest)
    }

    /// A job's folder: `logs/` and `outputs/` below it.
    pub fn job_dir(&self, job_id: u64) -> PathBuf {
        self.root.join("jobs").join(job_id.to_string())
    }

    /// Where a job's copied log is.
    pub fn log(&self, job_id: u64, stream: LogStream) -> PathBuf {
        let name = if stream == LogStream::Stderr {
            "stderr"
        } else {
            "stdout"
        };
        self.job_dir(job_id).join(name)
    }

    /// Where a job's outputs are.
    pub fn outputs(&self, job_id: u64) -> PathBuf {
        self.job_dir(job_id).join("outputs")
    }

    /// Store an upload: hashes while writing a temp file, then renames it to its digest.
    pub async fn store_blob(
        &self,
        mut chunks: impl futures::Stream<Item = Result<Vec<u8>>> + Unpin,
    ) -> Result<(String, u64)> {
        use futures::StreamExt;
        let tmp = self.root.join("tmp").join(uuid::Uuid::now_v7().to_string());
        let mut file = tokio::fs::File::create(&tmp)
            .await
            .map_err(io("cannot create", &tmp))?;
        let mut hasher = Sha256::new();
        let mut size = 0u64;
        let result = async {
            while let Some(chunk) = chunks.next().await {
                let chunk = chunk?;
                hasher.update(&chunk);
                size += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(io("cannot write", &tmp))?;
            }
            file.sync_all().await.map_err(io("cannot sync", &tmp))?;
            Ok::<_, CoreError>(())
        }
        .await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(&tmp).await;
            return Err(e);
        }
        let digest = hex::encode(hasher.finalize());
        let dest = self.blob(&digest);
        tokio::fs::rename(&tmp, &dest)
            .await
            .map_err(io("cannot store", &dest))?;
        Ok((digest, size))
    }

    /// Every file below `dir`, as relative paths, sorted.
    pub fn list_files(dir: &Path) -> Vec<String> {
        fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                match entry.file_type() {
                    Ok(t) if t.is_dir() => walk(base, &path, out),
                    Ok(t) if t.is_file() => {
                        if let Ok(rel) = path.strip_prefix(base) {
                            out.push(rel.to_string_lossy().into_owned());
                        }
                    }
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(dir, dir, &mut out);
        out.sort();
        out
    }
}
