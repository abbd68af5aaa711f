//! One server process of `gantry dev`: started in its own process group with
//! its output in a log file, ready when it writes its ready file, stopped with
//! SIGTERM then SIGKILL.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::files::log_tail;
use super::pdeathsig;

/// How many log lines an error shows.
const TAIL_LINES: usize = 20;

/// A running server process.
pub struct Child {
    /// Its program name, e.g. `gantryd`.
    pub name: String,
    /// Its log file (stdout and stderr).
    pub log: PathBuf,
    process: tokio::process::Child,
    pid: Pid,
    program: PathBuf,
    args: Vec<String>,
    /// The ready file and the address it gave, once ready.
    ready: Option<(PathBuf, SocketAddr)>,
}

impl Child {
    /// Start `program` with `args`, output to `log` (truncated first).
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> anyhow::Result<Self> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !program.is_file() {
            bail!(
                "{name} not found at {}; build the binaries (`cargo build --bins`) or pass --bin-dir",
                program.display()
            );
        }
        let out = std::fs::File::create(log)
            .with_context(|| format!("cannot create log file {}", log.display()))?;
        let (process, pid) = Self::launch(program, args, out)?;
        Ok(Self {
            name,
            log: log.to_path_buf(),
            process,
            pid,
            program: program.to_path_buf(),
            args: args.to_vec(),
            ready: None,
        })
    }

    fn launch(
        program: &Path,
        args: &[String],
        out: std::fs::File,
    ) -> anyhow::Result<(tokio::process::Child, Pid)> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .process_group(0)
            .kill_on_drop(true);
        pdeathsig::terminate_with_parent(&mut command);
        let process = command
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let pid = Pid::from_raw(process.id().context("child has no pid")? as i32);
        Ok((process, pid))
    }

    /// Start it again after it died, on the address it had (so its peers
    /// find it), appending to its log; waits until it is ready again.
    pub async fn restart(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let Some((ready_file, addr)) = self.ready.clone() else {
            bail!("{} died before it was ever ready", self.name);
        };
        let mut args = self.args.clone();
        if let Some(i) = args.iter().position(|a| a == "--listen") {
            args[i + 1] = addr.to_string();
        }
        let _ = std::fs::remove_file(&ready_file);
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("cannot open log file {}", self.log.display()))?;
        let (process, pid) = Self::launch(&self.program, &args, out)?;
        self.process = process;
        self.pid = pid;
        self.wait_ready(&ready_file, timeout).await?;
        Ok(())
    }

    /// The last lines of the log, indented, after a header naming the file.
    pub fn tail(&self) -> String {
        format!(
            "last lines of {}:\n{}",
            self.log.display(),
            log_tail(&self.log, TAIL_LINES)
        )
    }

    /// Wait until the process writes its bound address to `ready_file`.
    pub async fn wait_ready(
        &mut self,
        ready_file: &Path,
        timeout: Duration,
    ) -> anyhow::Result<SocketAddr> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(ready_file) {
                let addr = text.trim().parse().with_context(|| {
                    format!(
                        "{} wrote `{}` to {}, not host:port",
                        self.name,
                        text.trim(),
                        ready_file.display()
                    )
                })?;
                self.ready = Some((ready_file.to_path_buf(), addr));
                return Ok(addr);
            }
            if let Some(status) = self.process.try_wait()? {
                bail!(
                    "{} exited before it was ready ({status}); {}",
                    self.name,
                    self.tail()
                );
            }
            if Instant::now() >= deadline {
                bail!(
                    "{} was not ready within {} s (no {}); {}",
                    self.name,
                    timeout.as_secs(),
                    ready_file.display(),
                    self.tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Resolves when the process exits.
    pub async fn exited(&mut self) -> std::io::Result<ExitStatus> {
        self.process.wait().await
    }

    /// Send SIGKILL now.
    pub fn kill(&mut self) {
        if matches!(self.process.try_wait(), Ok(None)) {
            let _ = kill(self.pid, Signal::SIGKILL);
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(&mut self, grace: Duration) {
        if !matches!(self.process.try_wait(), Ok(None)) {
            return;
        }
        let _ = kill(self.pid, Signal::SIGTERM);
        if tokio::time::timeout(grace, self.process.wait())
            .await
            .is_err()
        {
            eprintln!(
                "gantry dev: {} did not stop within {} s; killing it",
                self.name,
                grace.as_secs()
            );
            let _ = kill(self.pid, Signal::SIGKILL);
            let _ = self.process.wait().await;
        }
    }
}
