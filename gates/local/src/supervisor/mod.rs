//! `gantry-supervisor`: the one process per local gate that starts, watches
//! and ends its jobs, so the gate can die (even by SIGKILL) without losing a
//! job or its outcome.
//!
//! It listens on `work-dir/supervisor.sock` for one gate at a time (a new
//! connection replaces the old), starts each job directly as its own child
//! (`posix_spawn`: one exec per job), in its own process group with cwd
//! `attempts/<id>/work` and its output in `attempts/<id>/{stdout,stderr}`,
//! enforces walltimes, stops jobs on request (SIGTERM, SIGKILL after the
//! grace period) and records every change in `supervisor.journal` before
//! the gate hears of it. It exits once no gate is connected and no job runs;
//! the next one, started by the next gate, reads the journal. A job that
//! was running when a supervisor died is ended and reported lost.
//!
//! Threads: the main one owns all state; one accepts connections, one per
//! connection reads lines, one takes signals. They talk to the main thread
//! over a channel.

mod dirs;
mod journal;
mod sys;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use dirs::Dirs;
use journal::{Entry, Journal};

use crate::protocol::{Command, Event, Exit, Known, LOST_REASON, Start, line};

/// The socket's file name in the work directory.
pub const SOCKET: &str = "supervisor.sock";
/// The journal's file name in the work directory.
pub const JOURNAL: &str = "supervisor.journal";
/// The lock file's name: locked by the running supervisor, which writes
/// its pid in it.
pub const LOCK: &str = "supervisor.lock";

/// How long the supervisor stays without a gate and without jobs.
const IDLE_EXIT: Duration = Duration::from_secs(2);
/// The longest the main loop sleeps (a safety net for missed signals).
const TICK: Duration = Duration::from_secs(1);

/// What the main thread is told.
enum Input {
    /// A gate connected.
    Connected(u64, UnixStream),
    /// A line from connection `.0`.
    Line(u64, String),
    /// Connection `.0` closed.
    Closed(u64),
    /// A signal arrived.
    Signal(i32),
}

/// A job the supervisor knows, with what it needs to stop it.
struct Tracked {
    known: Known,
    walltime_at: Option<Instant>,
    grace: Duration,
    /// Why it is being stopped; empty while it is not.
    stop_reason: String,
    kill_at: Option<Instant>,
}

impl Tracked {
    fn running(&self) -> bool {
        self.known.pid != 0 && self.known.exit.is_none()
    }

    fn stop(&mut self, reason: &str) {
        if self.running() && self.stop_reason.is_empty() {
            self.stop_reason = reason.to_string();
            sys::kill_group(self.known.pid, libc::SIGTERM);
            self.kill_at = Some(Instant::now() + self.grace);
        }
    }
}

/// The supervisor's state, owned by the main thread.
struct Supervisor {
    journal: Journal,
    dirs: Dirs,
    jobs: HashMap<String, Tracked>,
    by_pid: HashMap<u32, String>,
    client: Option<(u64, BufWriter<UnixStream>)>,
    /// The affinity children get when they are not pinned.
    unpinned: libc::cpu_set_t,
    /// Set by SIGTERM/SIGINT: stop every job and exit.
    shutting_down: bool,
}

/// Run the supervisor of `work_dir` until it is idle. `ready` is told (a
/// line, "ready") once the socket accepts connections.
pub fn run(work_dir: &Path, mut ready: impl Write) -> Result<(), String> {
    let err = |what: String| move |e: std::io::Error| format!("{what}: {e}");
    std::fs::create_dir_all(work_dir).map_err(err(format!("create {}", work_dir.display())))?;
    let lock_path = work_dir.join(LOCK);
    let mut lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(err(format!("open {}", lock_path.display())))?;
    // A supervisor that is exiting holds the lock for a moment more.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lock.try_lock().is_err() {
        if Instant::now() >= deadline {
            return Err(format!(
                "another gantry-supervisor runs for {}",
                work_dir.display()
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // Who holds it, for people and tests.
    lock.set_len(0)
        .and_then(|()| writeln!(lock, "{}", std::process::id()))
        .map_err(err(format!("write {}", lock_path.display())))?;
    let signals = sys::Signals::block(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT])
        .map_err(err("block signals".into()))?;
    let (mut journal, known) =
        Journal::open(&work_dir.join(JOURNAL)).map_err(err("read the journal".into()))?;
    let known = known.into_values().map(end_lost).collect::<Vec<_>>();
    journal
        .compact(known.iter())
        .map_err(err("rewrite the journal".into()))?;
    let dirs = Dirs::open(work_dir).map_err(err("open attempts/".into()))?;
    let socket = work_dir.join(SOCKET);
    let _ = std::fs::remove_file(&socket);
    let listener =
        UnixListener::bind(&socket).map_err(err(format!("bind {}", socket.display())))?;

    let (tx, rx) = channel();
    let signal_tx = tx.clone();
    std::thread::spawn(move || {
        while let Some(sig) = signals.wait() {
            if signal_tx.send(Input::Signal(sig)).is_err() {
                return;
            }
        }
    });
    std::thread::spawn(move || accept(listener, tx));
    let mut supervisor = Supervisor {
        journal,
        dirs,
        jobs: known
            .into_iter()
            .map(|k| (k.attempt.clone(), tracked(k, Duration::ZERO, 0)))
            .collect(),
        by_pid: HashMap::new(),
        client: None,
        unpinned: sys::affinity().map_err(err("read cpu affinity".into()))?,
        shutting_down: false,
    };
    let _ = ready.write_all(b"ready\n").and_then(|()| ready.flush());
    drop(ready);
    supervisor.serve(&rx);
    let _ = std::fs::remove_file(&socket);
    Ok(())
}

/// An attempt from the journal that was starting or running under a
/// supervisor that is gone: its job is ended (killed if it somehow still
/// runs) and reported lost.
fn end_lost(mut k: Known) -> Known {
    if k.exit.is_none() {
        if k.pid != 0 && sys::start_ticks(k.pid) == k.start_ticks {
            sys::kill_group(k.pid, libc::SIGKILL);
        }
        k.exit = Some(Exit {
            exit_code: None,
            signal: None,
            reason: LOST_REASON.into(),
            end_ms: now_ms(),
        });
    }
    k
}

fn tracked(known: Known, grace: Duration, walltime_seconds: u64) -> Tracked {
    Tracked {
        known,
        walltime_at: (walltime_seconds > 0)
            .then(|| Instant::now() + Duration::from_secs(walltime_seconds)),
        grace,
        stop_reason: String::new(),
        kill_at: None,
    }
}

fn accept(listener: UnixListener, tx: Sender<Input>) {
    for (id, stream) in (1u64..).zip(listener.incoming()) {
        let Ok(stream) = stream else { continue };
        let Ok(reader) = stream.try_clone() else {
            continue;
        };
        if tx.send(Input::Connected(id, stream)).is_err() {
            return;
        }
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(reader).lines() {
                let Ok(line) = line else { break };
                if tx.send(Input::Line(id, line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Input::Closed(id));
        });
    }
}

/// Unix ms now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Supervisor {
    fn serve(&mut self, rx: &Receiver<Input>) {
        let mut idle_since = Instant::now();
        loop {
            let timeout = self.next_deadline().map_or(TICK, |at| {
                at.saturating_duration_since(Instant::now()).min(TICK)
            });
            match rx.recv_timeout(timeout) {
                Ok(input) => {
                    self.handle(input);
                    // Take what else is waiting before answering in one write.
                    while let Ok(input) = rx.try_recv() {
                        self.handle(input);
                    }
                }
                Err(RecvTimeoutError::Timeout) => self.reap(),
                Err(RecvTimeoutError::Disconnected) => return,
            }
            self.timers();
            self.flush();
            let busy = self.jobs.values().any(Tracked::running);
            if busy || (self.client.is_some() && !self.shutting_down) {
                idle_since = Instant::now();
            } else if self.shutting_down || idle_since.elapsed() >= IDLE_EXIT {
                return;
            }
        }
    }

    fn handle(&mut self, input: Input) {
        match input {
            Input::Connected(id, stream) => {
                if let Some((_, old)) = self.client.take() {
                    let _ = old.get_ref().shutdown(std::net::Shutdown::Both);
                }
                let mut out = BufWriter::with_capacity(64 * 1024, stream);
                let mut known: Vec<&Known> = self.jobs.values().map(|t| &t.known).collect();
                known.sort_by(|a, b| a.attempt.cmp(&b.attempt));
                let sent = known
                    .into_iter()
                    .try_for_each(|k| out.write_all(&line(&Event::Known(k.clone()))))
                    .and_then(|()| out.write_all(&line(&Event::Synced)));
                if sent.is_ok() {
                    self.client = Some((id, out));
                }
            }
            Input::Line(id, text) => {
                if self
                    .client
                    .as_ref()
                    .is_none_or(|(current, _)| *current != id)
                {
                    return;
                }
                match serde_json::from_str::<Command>(&text) {
                    Ok(command) => self.command(command),
                    Err(e) => eprintln!("gantry-supervisor: ignoring a bad command ({e}): {text}"),
                }
            }
            Input::Closed(id) => {
                if self
                    .client
                    .as_ref()
                    .is_some_and(|(current, _)| *current == id)
                {
                    self.client = None;
                }
            }
            Input::Signal(libc::SIGCHLD) => self.reap(),
            Input::Signal(_) => {
                self.shutting_down = true;
                for job in self.jobs.values_mut() {
                    job.stop("its supervisor was stopped");
                }
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start(start) => self.start(start),
            Command::Stop { attempt, reason } => {
                if let Some(job) = self.jobs.get_mut(&attempt) {
                    job.stop(&reason);
                }
            }
            Command::Forget { attempt } => {
                if self.jobs.get(&attempt).is_some_and(Tracked::running) {
                    eprintln!("gantry-supervisor: not forgetting {attempt}: it runs");
                    return;
                }
                if self.jobs.remove(&attempt).is_some() {
                    self.record(Entry::Forget {
                        attempt: attempt.clone(),
                    });
                }
                self.dirs.release(&attempt);
                if self.journal.wants_compaction(self.jobs.len()) {
                    let known = self.jobs.values().map(|t| &t.known);
                    if let Err(e) = self.journal.compact(known) {
                        eprintln!("gantry-supervisor: cannot compact the journal: {e}");
                    }
                }
            }
        }
    }

    fn start(&mut self, start: Start) {
        if let Some(job) = self.jobs.get(&start.attempt) {
            // A repeat: say again where it stands.
            let k = job.known.clone();
            if let Some(exit) = k.exit {
                self.send(&Event::Exited {
                    attempt: k.attempt,
                    exit,
                });
            } else if k.pid != 0 {
                self.send(&Event::Started {
                    attempt: k.attempt,
                    pid: k.pid,
                    start_ms: k.start_ms,
                });
            }
            return;
        }
        let attempt = start.attempt.clone();
        self.record(Entry::Start {
            attempt: attempt.clone(),
            meta: start.meta.clone(),
        });
        let known = Known {
            attempt: attempt.clone(),
            meta: start.meta.clone(),
            pid: 0,
            start_ticks: 0,
            start_ms: 0,
            exit: None,
        };
        let grace = Duration::from_secs(start.grace_seconds);
        self.jobs.insert(
            attempt.clone(),
            tracked(known, grace, start.walltime_seconds),
        );
        match self.spawn(&start) {
            Ok(pid) => {
                let start_ms = now_ms();
                let start_ticks = sys::start_ticks(pid);
                let job = self.jobs.get_mut(&attempt).expect("inserted above");
                (job.known.pid, job.known.start_ticks, job.known.start_ms) =
                    (pid, start_ticks, start_ms);
                self.by_pid.insert(pid, attempt.clone());
                self.record(Entry::Pid {
                    attempt: attempt.clone(),
                    pid,
                    start_ticks,
                    start_ms,
                });
                self.send(&Event::Started {
                    attempt,
                    pid,
                    start_ms,
                });
            }
            Err((code, reason)) => self.ended(
                &attempt,
                Exit {
                    exit_code: Some(code),
                    signal: None,
                    reason,
                    end_ms: now_ms(),
                },
            ),
        }
    }

    /// Start the job; on failure the exit code (127: not found, 126: not
    /// executable) and why.
    fn spawn(&mut self, start: &Start) -> Result<u32, (i32, String)> {
        let program = start.argv.first().cloned().unwrap_or_default();
        let prepared = self
            .dirs
            .prepare(&start.attempt, start.script.as_ref())
            .map_err(|e| (126, format!("cannot prepare its directory: {e}")))?;
        let pinned = !start.cpus.is_empty();
        if pinned {
            match sys::cpu_set(&start.cpus).and_then(|set| sys::set_affinity(&set)) {
                Ok(()) => {}
                Err(e) => eprintln!(
                    "gantry-supervisor: cannot pin to cpus {:?}: {e}",
                    start.cpus
                ),
            }
        }
        let spawned = std::process::Command::new(&program)
            .args(start.argv.iter().skip(1))
            .envs(&start.env)
            .current_dir(&prepared.work)
            .stdin(Stdio::null())
            .stdout(prepared.stdout)
            .stderr(prepared.stderr)
            .process_group(0)
            .spawn();
        if pinned {
            let _ = sys::set_affinity(&self.unpinned);
        }
        match spawned {
            // Dropping the handle neither waits nor kills; `reap` waits.
            Ok(child) => Ok(child.id()),
            Err(e) => {
                let code = if e.kind() == ErrorKind::NotFound {
                    127
                } else {
                    126
                };
                Err((code, format!("cannot start `{program}`: {e}")))
            }
        }
    }

    /// Reap every child that exited.
    fn reap(&mut self) {
        while let Some(r) = sys::reap_one() {
            let Some(attempt) = self.by_pid.remove(&r.pid) else {
                continue;
            };
            let reason = self
                .jobs
                .get(&attempt)
                .map(|j| j.stop_reason.clone())
                .unwrap_or_default();
            let exit = Exit {
                exit_code: Some(r.exit_code),
                signal: r.signal,
                reason,
                end_ms: now_ms(),
            };
            self.ended(&attempt, exit);
        }
    }

    fn ended(&mut self, attempt: &str, exit: Exit) {
        let Some(job) = self.jobs.get_mut(attempt) else {
            return;
        };
        job.known.exit = Some(exit.clone());
        job.kill_at = None;
        self.record(Entry::Exit {
            attempt: attempt.to_string(),
            exit: exit.clone(),
        });
        self.send(&Event::Exited {
            attempt: attempt.to_string(),
            exit,
        });
    }

    /// Walltimes and kill deadlines that are due.
    fn timers(&mut self) {
        let now = Instant::now();
        for job in self.jobs.values_mut().filter(|j| j.running()) {
            if job.kill_at.is_some_and(|at| now >= at) {
                sys::kill_group(job.known.pid, libc::SIGKILL);
                job.kill_at = None;
            }
            if job.walltime_at.is_some_and(|at| now >= at) {
                job.walltime_at = None;
                job.stop("walltime exceeded");
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.jobs
            .values()
            .filter(|j| j.running())
            .flat_map(|j| [j.walltime_at, j.kill_at])
            .flatten()
            .min()
    }

    fn record(&mut self, entry: Entry) {
        if let Err(e) = self.journal.append(&entry) {
            eprintln!("gantry-supervisor: cannot append to the journal: {e}");
        }
    }

    fn send(&mut self, event: &Event) {
        if let Some((_, out)) = &mut self.client
            && out.write_all(&line(event)).is_err()
        {
            self.client = None;
        }
    }

    fn flush(&mut self) {
        if let Some((_, out)) = &mut self.client
            && out.flush().is_err()
        {
            self.client = None;
        }
    }
}

/// The socket of the supervisor of `work_dir`.
pub fn socket_path(work_dir: &Path) -> PathBuf {
    work_dir.join(SOCKET)
}
