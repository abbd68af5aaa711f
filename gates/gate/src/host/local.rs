//! [`LocalHost`]: the machine the gate runs on.

use std::io::ErrorKind;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use gantry_proto::v1::StageInResponse;
use globset::GlobSet;
use tokio::io::AsyncWriteExt;

use super::{COMMAND_TIMEOUT, Host};
use crate::error::{GateError, Result};
use crate::provider::{FileChunks, LogSource};
use crate::staging::{remove_dir, stage_in_dir, stage_out_dir};

/// The gate's own machine.
#[derive(Debug, Clone, Default)]
pub struct LocalHost {
    /// Environment added to every command (e.g. `SLURM_CONF`).
    pub env: Vec<(String, String)>,
}

#[tonic::async_trait]
impl Host for LocalHost {
    fn env(&self) -> &[(String, String)] {
        &self.env
    }

    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = shown(program, args);
        let mut child = cmd
            .spawn()
            .map_err(|e| GateError::Unavailable(format!("cannot run `{program}`: {e}")))?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes).await.map_err(|e| {
                GateError::Unavailable(format!("`{shown}`: writing its input: {e}"))
            })?;
        }
        let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| timed_out(&shown))?
            .map_err(|e| GateError::Unavailable(format!("`{shown}`: {e}")))?;
        command_output(&shown, out)
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(GateError::io(format!("create {}", dir.display())))
    }

    async fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        tokio::fs::canonicalize(path)
            .await
            .map_err(GateError::io(format!("resolve {}", path.display())))
    }

    async fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        let tmp = beside(path);
        let (owned, bytes) = (path.to_path_buf(), bytes.to_vec());
        tokio::task::spawn_blocking(move || write_durably(&owned, &tmp, &bytes, mode))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
            .map_err(GateError::io(format!("write {}", path.display())))
    }

    async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        match tokio::fs::read(path).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(GateError::io(format!("read {}", path.display()))(e)),
        }
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(GateError::io(format!("list {}", dir.display()))(e)),
        };
        let mut names = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(GateError::io(format!("list {}", dir.display())))?
        {
            names.push(entry.file_name().to_string_lossy().into_owned());
        }
        Ok(names)
    }

    async fn size(&self, path: &Path) -> Option<u64> {
        tokio::fs::metadata(path).await.ok().map(|m| m.len())
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        match tokio::fs::remove_file(path).await {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                Err(GateError::io(format!("remove {}", path.display()))(e))
            }
            _ => Ok(()),
        }
    }

    async fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        remove_dir(dir.to_path_buf()).await
    }

    async fn stage_in(&self, dir: &Path, files: FileChunks) -> Result<StageInResponse> {
        stage_in_dir(dir, files).await
    }

    fn stage_out(&self, dir: PathBuf, globs: GlobSet) -> FileChunks {
        stage_out_dir(dir, globs)
    }

    fn log(&self, path: PathBuf) -> LogSource {
        LogSource::File(path)
    }
}

/// Write `bytes` to `tmp`, sync it, rename it over `path` and sync the
/// directory. (Blocking std calls: tokio's `File` reports a failed write
/// only to a later flush, which is easy to miss on a full disk.)
fn write_durably(path: &Path, tmp: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::File::create(tmp)?;
    // Its mode before its bytes: a file of secrets (0600) is never readable by others.
    file.set_permissions(std::fs::Permissions::from_mode(mode))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)?;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty());
    std::fs::File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// `path` with `.tmp` added: where a file is written before it replaces `path`.
pub(super) fn beside(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".tmp");
    PathBuf::from(name)
}

/// A command line as shown in errors.
pub(super) fn shown(program: &str, args: &[String]) -> String {
    format!("{program} {}", args.join(" "))
}

pub(super) fn timed_out(shown: &str) -> GateError {
    GateError::Unavailable(format!("`{shown}` took over {COMMAND_TIMEOUT:?}"))
}

/// Stdout of a command that exited 0, else UNAVAILABLE with its stderr.
pub(super) fn command_output(shown: &str, out: std::process::Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        Err(GateError::Unavailable(format!(
            "`{shown}` failed ({}): {}",
            out.status,
            stderr.trim()
        )))
    }
}
