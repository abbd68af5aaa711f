//! [`SshHost`]: a machine reached over SSH — the system's `ssh` with one
//! master connection (ControlMaster) that every command and the SFTP
//! session share. The host key must already be in known_hosts.

use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry_proto::v1::StageInResponse;
use globset::GlobSet;
use openssh::{ControlPersist, KnownHosts, Session, SessionBuilder, Stdio};
use openssh_sftp_client::metadata::Permissions;
use openssh_sftp_client::{Sftp, SftpOptions};
use tokio::io::AsyncWriteExt;

use super::local::{beside, command_output, shown, timed_out};
use super::{COMMAND_TIMEOUT, Host, sftp};
use crate::error::{GateError, Result};
use crate::provider::{FileChunks, LogSource};

/// How long an idle master connection outlives its last user (a gate killed
/// with SIGKILL cannot close it).
const MASTER_IDLE_SECONDS: usize = 60;
/// Commands run at once over the connection: sshd allows 10 sessions per
/// connection by default (MaxSessions), and SFTP holds one.
const MAX_COMMANDS: usize = 8;
/// How long ssh may take to connect (TCP).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting, logging in and starting SFTP may take in all.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);

/// Where an [`SshHost`] is and how to log in.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// `[user@]host`, `ssh://[user@]host[:port]`, or a `Host` of the ssh config.
    pub destination: String,
    /// The ssh_config to read instead of `~/.ssh/config` (keys,
    /// `UserKnownHostsFile`, `ProxyJump`, ...).
    pub config_file: Option<PathBuf>,
    /// Environment set for every command (e.g. `SLURM_CONF`).
    pub env: Vec<(String, String)>,
}

/// A machine reached over SSH. Cheap to clone; reconnects when the
/// connection is lost.
#[derive(Clone)]
pub struct SshHost {
    inner: Arc<Inner>,
}

struct Inner {
    target: SshTarget,
    connection: tokio::sync::Mutex<Option<Arc<Connection>>>,
    commands: tokio::sync::Semaphore,
}

/// One master connection and the SFTP session on it.
pub(super) struct Connection {
    session: Arc<Session>,
    pub(super) sftp: Sftp,
}

impl SshHost {
    /// Connect to `target` (failing now, with ssh's reason, if it cannot).
    pub async fn connect(target: SshTarget) -> Result<Self> {
        let host = Self {
            inner: Arc::new(Inner {
                target,
                connection: tokio::sync::Mutex::new(None),
                commands: tokio::sync::Semaphore::new(MAX_COMMANDS),
            }),
        };
        host.connection().await?;
        Ok(host)
    }

    /// The destination, as shown in messages.
    pub fn destination(&self) -> &str {
        &self.inner.target.destination
    }

    /// The live connection, made if there is none.
    pub(super) async fn connection(&self) -> Result<Arc<Connection>> {
        let mut current = self.inner.connection.lock().await;
        if let Some(c) = current.as_ref() {
            return Ok(c.clone());
        }
        // Bounded as a whole: ssh's ConnectTimeout covers only the TCP
        // connect, and every caller waits on this lock meanwhile.
        let connection = tokio::time::timeout(SETUP_TIMEOUT, self.open())
            .await
            .map_err(|_| {
                GateError::Unavailable(format!(
                    "cannot reach {} over SSH: no session within {SETUP_TIMEOUT:?}",
                    self.destination()
                ))
            })??;
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// A new master connection with an SFTP session on it.
    async fn open(&self) -> Result<Arc<Connection>> {
        let target = &self.inner.target;
        let unreachable = |e: &dyn std::fmt::Display| {
            GateError::Unavailable(format!("cannot reach {} over SSH: {e}", target.destination))
        };
        let mut builder = SessionBuilder::default();
        builder
            .known_hosts_check(KnownHosts::Strict)
            .control_persist(ControlPersist::IdleFor(
                NonZeroUsize::new(MASTER_IDLE_SECONDS).expect("not zero"),
            ))
            .control_directory(std::env::temp_dir())
            .connect_timeout(CONNECT_TIMEOUT)
            .server_alive_interval(Duration::from_secs(15));
        if let Some(config) = &target.config_file {
            builder.config_file(config);
        }
        let session = Arc::new(
            builder
                .connect(&target.destination)
                .await
                .map_err(|e| unreachable(&with_sources(&e)))?,
        );
        let sftp = Sftp::from_clonable_session(session.clone(), SftpOptions::default())
            .await
            .map_err(|e| unreachable(&format!("starting SFTP: {}", with_sources(&e))))?;
        if !sftp.support_posix_rename() {
            // Records are replaced by renaming over them.
            return Err(unreachable(
                &"its SFTP server lacks the posix-rename@openssh.com extension (OpenSSH's has it)",
            ));
        }
        tracing::info!(destination = %target.destination, "connected over SSH");
        Ok(Arc::new(Connection { session, sftp }))
    }

    /// After an error on `connection`: forget it if it is dead, so the next
    /// call connects again.
    pub(super) async fn check(&self, connection: &Arc<Connection>) {
        if connection.session.check().await.is_ok() {
            return;
        }
        self.forget(connection).await;
    }

    /// Forget `connection` (if it is still the current one): the next call
    /// connects again.
    async fn forget(&self, connection: &Arc<Connection>) {
        let mut current = self.inner.connection.lock().await;
        if current.as_ref().is_some_and(|c| Arc::ptr_eq(c, connection)) {
            tracing::warn!(destination = %self.destination(), "SSH connection or SFTP session lost; reconnecting on next use");
            *current = None;
        }
    }

    /// UNAVAILABLE for a failed SFTP call on `connection`; a broken
    /// session (its server may have died while the connection lives on) is
    /// forgotten, so the next call starts both again.
    pub(super) async fn sftp_failed(
        &self,
        connection: &Arc<Connection>,
        what: String,
        error: openssh_sftp_client::Error,
    ) -> GateError {
        if !matches!(error, openssh_sftp_client::Error::SftpError(..)) {
            self.forget(connection).await;
        }
        GateError::Unavailable(format!("{what} on {}: {error}", self.destination()))
    }

    /// `result` of an SFTP call, a missing file taken as `missing`.
    async fn missing_ok<T>(
        &self,
        connection: &Arc<Connection>,
        what: impl FnOnce() -> String,
        result: std::result::Result<T, openssh_sftp_client::Error>,
        missing: T,
    ) -> Result<T> {
        match result {
            Ok(value) => Ok(value),
            Err(e) if sftp::not_found(&e) => Ok(missing),
            Err(e) => Err(self.sftp_failed(connection, what(), e).await),
        }
    }
}

/// `error` and its sources, `: `-separated (ssh's own message is a source).
fn with_sources(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let more = e.to_string();
        if !text.contains(more.trim()) {
            text.push_str(": ");
            text.push_str(more.trim());
        }
        source = e.source();
    }
    text
}

#[tonic::async_trait]
impl Host for SshHost {
    fn env(&self) -> &[(String, String)] {
        &self.inner.target.env
    }

    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
        let _session = self.inner.commands.acquire().await.expect("never closed");
        let connection = self.connection().await?;
        let shown = shown(program, args);
        let env = &self.inner.target.env;
        let mut cmd = if env.is_empty() {
            connection.session.command(program)
        } else {
            let mut cmd = connection.session.command("env");
            cmd.args(env.iter().map(|(k, v)| format!("{k}={v}")));
            cmd.arg(program);
            cmd
        };
        cmd.args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let run = async {
            let mut child = cmd.spawn().await?;
            if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin().take()) {
                pipe.write_all(bytes)
                    .await
                    .map_err(openssh::Error::ChildIo)?;
            }
            child.wait_with_output().await
        };
        let out = match tokio::time::timeout(COMMAND_TIMEOUT, run).await {
            Err(_) => {
                self.check(&connection).await;
                return Err(timed_out(&shown));
            }
            Ok(Ok(out)) => out,
            Ok(Err(e)) => {
                self.check(&connection).await;
                return Err(GateError::Unavailable(format!(
                    "`{shown}` on {}: {}",
                    self.destination(),
                    with_sources(&e)
                )));
            }
        };
        command_output(&shown, out)
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        let connection = self.connection().await?;
        let mut fs = connection.sftp.fs();
        let mut at = PathBuf::new();
        for part in dir.components() {
            at.push(part);
            if at.as_os_str() == "/" {
                continue;
            }
            match fs.metadata(&at).await {
                Ok(m) if m.file_type().is_some_and(|t| t.is_dir()) => continue,
                Ok(_) => {
                    return Err(GateError::Unavailable(format!(
                        "create {}: {} is not a directory on {}",
                        dir.display(),
                        at.display(),
                        self.destination()
                    )));
                }
                Err(e) if sftp::not_found(&e) => {}
                Err(e) => {
                    let what = format!("stat {}", at.display());
                    return Err(self.sftp_failed(&connection, what, e).await);
                }
            }
            if let Err(e) = fs.create_dir(&at).await {
                // Another call may have made it in between.
                if !fs
                    .metadata(&at)
                    .await
                    .is_ok_and(|m| m.file_type().is_some_and(|t| t.is_dir()))
                {
                    return Err(self
                        .sftp_failed(&connection, format!("create {}", at.display()), e)
                        .await);
                }
            }
        }
        Ok(())
    }

    async fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        let connection = self.connection().await?;
        match connection.sftp.fs().canonicalize(path).await {
            Ok(p) => Ok(p),
            Err(e) => Err(self
                .sftp_failed(&connection, format!("resolve {}", path.display()), e)
                .await),
        }
    }

    async fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        let connection = self.connection().await?;
        let tmp = beside(path);
        let result = async {
            let mut file = connection
                .sftp
                .options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)
                .await?;
            // Its mode before its bytes: a file of secrets (0600) is never readable by others.
            file.set_permissions(Permissions::from((mode & 0o7777) as u16))
                .await?;
            file.write_all(bytes).await?;
            if connection.sftp.support_fsync() {
                file.sync_all().await?;
            }
            file.close().await?;
            connection.sftp.fs().rename(&tmp, path).await
        };
        match result.await {
            Ok(()) => Ok(()),
            Err(e) => Err(self
                .sftp_failed(&connection, format!("write {}", path.display()), e)
                .await),
        }
    }

    async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let connection = self.connection().await?;
        let read = connection.sftp.fs().read(path).await;
        let what = || format!("read {}", path.display());
        self.missing_ok(&connection, what, read.map(|b| Some(b.to_vec())), None)
            .await
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        let connection = self.connection().await?;
        let names = sftp::list(&connection.sftp, dir)
            .await
            .map(|entries| entries.into_iter().map(|(name, _)| name).collect());
        let what = || format!("list {}", dir.display());
        self.missing_ok(&connection, what, names, Vec::new()).await
    }

    async fn size(&self, path: &Path) -> Option<u64> {
        let connection = self.connection().await.ok()?;
        connection.sftp.fs().metadata(path).await.ok()?.len()
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        let connection = self.connection().await?;
        let removed = connection.sftp.fs().remove_file(path).await;
        let what = || format!("remove {}", path.display());
        self.missing_ok(&connection, what, removed, ()).await
    }

    async fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        // One command instead of a round trip per file.
        let dir = dir.to_string_lossy().into_owned();
        self.run("rm", &["-rf".into(), "--".into(), dir], None)
            .await
            .map(drop)
    }

    async fn stage_in(&self, dir: &Path, files: FileChunks) -> Result<StageInResponse> {
        let connection = self.connection().await?;
        self.create_dir_all(dir).await?;
        sftp::stage_in(self, &connection, dir, files).await
    }

    fn stage_out(&self, dir: PathBuf, globs: GlobSet) -> FileChunks {
        sftp::stage_out(self.clone(), dir, globs)
    }

    fn log(&self, path: PathBuf) -> LogSource {
        LogSource::Reader(Box::new(sftp::LogFile::new(self.clone(), path)))
    }
}
