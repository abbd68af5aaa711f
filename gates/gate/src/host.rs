//! [`Host`]: where a gate runs its commands and keeps its attempts' files —
//! this machine ([`LocalHost`]) or another one reached over SSH
//! ([`SshHost`]: one multiplexed connection for commands and SFTP).

use std::path::{Path, PathBuf};
use std::time::Duration;

use gantry_proto::v1::StageInResponse;
use globset::GlobSet;

use crate::error::Result;
use crate::provider::{FileChunks, LogSource};

mod local;
mod sftp;
mod ssh;

pub use local::LocalHost;
pub use ssh::{SshHost, SshTarget};

/// How long one command may take before the gate gives up on it.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// A machine a gate works on: runs programs and reads and writes files there.
/// Relative paths are relative to the host's own starting directory (the
/// login directory over SSH). Errors reaching the host are UNAVAILABLE.
#[tonic::async_trait]
pub trait Host: Send + Sync + 'static {
    /// The environment added to every command it runs (e.g. `SLURM_CONF`).
    fn env(&self) -> &[(String, String)];

    /// Run `program args` with `stdin`; its stdout when it exits 0, else
    /// UNAVAILABLE carrying its stderr.
    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String>;

    /// Create `dir` and its missing parents.
    async fn create_dir_all(&self, dir: &Path) -> Result<()>;

    /// The absolute path of `path`, which must exist.
    async fn canonicalize(&self, path: &Path) -> Result<PathBuf>;

    /// Replace `path` with `bytes` (readable by nobody else until whole:
    /// written beside it, then renamed over it), with permissions `mode`.
    /// Durable when it returns: the file and its directory are synced (over
    /// SFTP the file only, when the server offers `fsync@openssh.com` as
    /// OpenSSH's does: SFTP has no way to sync a directory).
    async fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<()>;

    /// The contents of `path`; `None` when it does not exist.
    async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>>;

    /// The names in `dir`; empty when it does not exist.
    async fn list(&self, dir: &Path) -> Result<Vec<String>>;

    /// The size of `path` in bytes; `None` when it cannot be read.
    async fn size(&self, path: &Path) -> Option<u64>;

    /// Remove the file `path`; fine when it is gone.
    async fn remove_file(&self, path: &Path) -> Result<()>;

    /// Remove `dir` and all it holds; fine when it is gone.
    async fn remove_dir_all(&self, dir: &Path) -> Result<()>;

    /// Write staged files under `dir`, as [`stage_in_dir`](crate::stage_in_dir) does.
    async fn stage_in(&self, dir: &Path, files: FileChunks) -> Result<StageInResponse>;

    /// Stream the files under `dir` matching `globs`, as
    /// [`stage_out_dir`](crate::stage_out_dir) does.
    fn stage_out(&self, dir: PathBuf, globs: GlobSet) -> FileChunks;

    /// Where the log in the file `path` can be read and followed.
    fn log(&self, path: PathBuf) -> LogSource;
}
