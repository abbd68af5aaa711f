//! One real process: its own log file, readiness through a ready file,
//! SIGKILL and restart on the same address, stopped when dropped.

use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running Gantry binary.
pub struct Process {
    /// The binary's name.
    pub name: String,
    /// The address it listens on.
    pub addr: SocketAddr,
    args: Vec<String>,
    /// Environment variables it starts with, on top of the test's own.
    pub env: Vec<(String, String)>,
    /// A command the binary runs under (e.g. `strace -f -e inject=…`), or
    /// empty; change it to restart the binary under another one (or none).
    pub wrapper: Vec<String>,
    dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Whether the running child is a wrapper; then it leads a process
    /// group of its own with the binary, and signals go to the group.
    wrapped: bool,
    restarts: u32,
}

impl Process {
    /// Start `name` with `args` plus `--ready-file`, and wait for readiness.
    pub async fn start(name: &str, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Self::start_wrapped(&[], name, dir, args).await
    }

    /// Start `name` as the last argument of `wrapper` (a program that runs
    /// it as its child, such as strace); signals go to `name` itself.
    pub async fn start_wrapped(
        wrapper: &[String],
        name: &str,
        dir: &Path,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        Self::launch(wrapper, name, dir, args, &[]).await
    }

    /// Start `name` with `args` and these environment variables.
    pub async fn start_with_env(
        name: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        Self::launch(&[], name, dir, args, env).await
    }

    /// Start `name` with `args` and the environment variables `env`, under
    /// `wrapper` unless it is empty (see [`Self::start_wrapped`]).
    pub async fn launch(
        wrapper: &[String],
        name: &str,
        dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut p = Self::unstarted(name, dir, args)?;
        p.wrapper = wrapper.to_vec();
        p.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        p.spawn().await?;
        Ok(p)
    }

    fn unstarted(name: &str, dir: &Path, args: &[&str]) -> anyhow::Result<Self> {
        Ok(Process {
            name: name.to_string(),
            addr: "127.0.0.1:0".parse()?,
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            wrapper: Vec::new(),
            wrapped: false,
            dir: dir.to_path_buf(),
            log: dir.join(format!("{name}.log")),
            child: None,
            restarts: 0,
        })
    }

    async fn spawn(&mut self) -> anyhow::Result<()> {
        let ready = self
            .dir
            .join(format!("{}.{}.addr", self.name, self.restarts));
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut args = self.args.clone();
        if self.addr.port() != 0 {
            // Restart on the same address so peers find it again.
            if let Some(i) = args.iter().position(|a| a == "--listen") {
                args[i + 1] = self.addr.to_string();
            }
        }
        let binary = super::bin_dir().join(&self.name);
        let mut command = match self.wrapper.split_first() {
            None => Command::new(&binary),
            Some((program, rest)) => {
                let mut c = Command::new(program);
                // One group for the wrapper and the binary: a signal reaches
                // both (strace 6.1 would otherwise leave its tracee running).
                c.args(rest).arg(&binary).process_group(0);
                c
            }
        };
        self.wrapped = !self.wrapper.is_empty();
        let child = command
            .args(&args)
            .arg("--ready-file")
            .arg(&ready)
            .env(
                "RUST_LOG",
                std::env::var("GANTRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .map_err(|e| {
                anyhow::anyhow!(
                    "cannot start {}: {e} (build the binaries first: cargo build --bins)",
                    self.name
                )
            })?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                self.addr = text.trim().parse()?;
                return Ok(());
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            if tokio::time::Instant::now() > deadline {
                anyhow::bail!(
                    "{} was not ready within 30 s:\n{}",
                    self.name,
                    self.log_tail()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Its log file.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The last lines of its log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Its pid (under a wrapper: the binary's, not the wrapper's).
    pub fn pid(&self) -> Option<u32> {
        let child = self.child.as_ref()?.id();
        if !self.wrapped {
            return Some(child);
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let children = std::fs::read_to_string(format!("/proc/{child}/task/{child}/children"))
                .unwrap_or_default();
            if let Some(pid) = children.split_whitespace().next() {
                return pid.parse().ok();
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Send `signal` to the binary (with its wrapper, the whole group).
    fn signal(&self, signal: Signal) {
        if let Some(child) = &self.child {
            let pid = Pid::from_raw(child.id() as i32);
            let _ = if self.wrapped {
                nix::sys::signal::killpg(pid, signal)
            } else {
                kill(pid, signal)
            };
        }
    }

    /// SIGKILL it and reap it (and its wrapper, which ends with it).
    pub fn kill9(&mut self) {
        self.signal(Signal::SIGKILL);
        if let Some(mut child) = self.child.take() {
            let _ = child.wait();
        }
    }

    /// Give `flag` the value `value` from the next start on (added when
    /// it was not given).
    pub fn set_flag(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_string(),
            _ => self.args.extend([flag.to_string(), value.to_string()]),
        }
    }

    /// Start it again on the same address.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill9();
        self.restarts += 1;
        self.spawn().await
    }

    /// SIGTERM it, SIGKILL it after 2 s, reap it.
    pub fn stop(&mut self) {
        if self.child.is_none() {
            return;
        }
        self.signal(Signal::SIGTERM);
        if let Some(mut child) = self.child.take() {
            for _ in 0..100 {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.child = Some(child);
            self.kill9();
        }
    }

    /// Whether it is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}
