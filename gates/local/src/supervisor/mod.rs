//! `gantry-supervisor`: the one process per local gate that starts, watches
//! and ends its jobs, so the gate can die (even by SIGKILL) without losing a
//! job or its outcome.
//!
//! It listens on `work-dir/supervisor.sock` for one gate at a time (a new
//! connection replaces the old), starts each job directly as its own child
//! (`posix_spawn`: one exec per job), in its own process group with cwd
//! `attempts/<id>/work` and its output in `attempts/<id>/{stdout,stderr}`,
//! enforces walltimes (with a warning signal first when asked), stops jobs
//! on request (SIGTERM, SIGKILL after the grace period) and records every
//! change in `supervisor.journal` before the gate hears of it. It exits once no gate is connected and no job runs;
//! the next one, started by the next gate, reads the journal. A job that
//! was running when a supervisor died is ended and reported lost.
//!
//! One thread: a `poll` loop over the listening socket, the gate's
//! connection and a signalfd (SIGCHLD, SIGTERM, SIGINT), so a job's end
//! reaches the gate, and the next start reaches the supervisor, without a
//! hand-off between threads.

/// Write one line to the supervisor's log (its stderr, `supervisor.log`),
/// dropping it when that cannot be written: `eprintln!` would panic on a
/// full disk and take every running job's supervisor with it.
macro_rules! note {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

mod account;
mod client;
mod dirs;
mod journal;
mod lost;
mod queue;
mod spawn;
mod sys;

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use client::Client;
use dirs::Dirs;
use journal::{Entry, Journal};
use lost::end_lost;

use crate::protocol::{Command, Event, Exit, Known, PROTOCOL, Start, WarnAt, line};

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

/// A job the supervisor knows, with what it needs to stop it.
struct Tracked {
    known: Known,
    walltime_at: Option<Instant>,
    /// When to send the warning signal (`sbatch --signal`), and which.
    warn_at: Option<(Instant, i32)>,
    grace: Duration,
    /// Why it is being stopped; empty while it is not.
    stop_reason: String,
    /// The queued attempt whose resources it took over, if it was one.
    started_after: Option<String>,
    kill_at: Option<Instant>,
    /// What it holds while it runs, passed on to a queued attempt when it ends.
    slot: Option<queue::Slot>,
}

impl Tracked {
    fn running(&self) -> bool {
        self.known.pid != 0 && self.known.exit.is_none()
    }

    /// Start its clocks: the walltime (and the warning before it) counts
    /// from now, its start.
    fn arm(&mut self, walltime_seconds: u64, warning: Option<WarnAt>) {
        let now = Instant::now();
        self.walltime_at =
            (walltime_seconds > 0).then(|| now + Duration::from_secs(walltime_seconds));
        self.warn_at = self.walltime_at.zip(warning).map(|(end, w)| {
            let at = end
                .checked_sub(Duration::from_secs(w.seconds))
                .unwrap_or(now);
            (at, w.signal)
        });
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
    /// Attempts that wait to take over from a running one, in order
    /// ([`Start::queued`]).
    queue: VecDeque<Start>,
    client: Option<Client>,
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
    let signals = sys::SignalFd::new(&[libc::SIGCHLD, libc::SIGTERM, libc::SIGINT])
        .map_err(err("open a signalfd".into()))?;
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
    listener
        .set_nonblocking(true)
        .map_err(err("set the socket non-blocking".into()))?;
    let mut supervisor = Supervisor {
        journal,
        dirs,
        jobs: known
            .into_iter()
            .map(|k| (k.attempt.clone(), tracked(k, Duration::ZERO)))
            .collect(),
        by_pid: HashMap::new(),
        queue: VecDeque::new(),
        client: None,
        unpinned: sys::affinity().map_err(err("read cpu affinity".into()))?,
        shutting_down: false,
    };
    let _ = ready.write_all(b"ready\n").and_then(|()| ready.flush());
    drop(ready);
    let served = supervisor.serve(&listener, &signals);
    let _ = std::fs::remove_file(&socket);
    served.map_err(err("poll".into()))
}

fn tracked(known: Known, grace: Duration) -> Tracked {
    Tracked {
        known,
        walltime_at: None,
        warn_at: None,
        grace,
        stop_reason: String::new(),
        kill_at: None,
        started_after: None,
        slot: None,
    }
}

/// An end now with no exit code (the job never ran, or was lost), and why.
fn ended_now(reason: impl Into<String>) -> Exit {
    Exit {
        exit_code: None,
        signal: None,
        reason: reason.into(),
        end_ms: now_ms(),
    }
}

/// Unix ms now.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Supervisor {
    /// The main loop, until idle (or stopped and every job has ended).
    fn serve(&mut self, listener: &UnixListener, signals: &sys::SignalFd) -> std::io::Result<()> {
        let mut idle_since = Instant::now();
        loop {
            let timeout = self.next_deadline().map_or(TICK, |at| {
                at.saturating_duration_since(Instant::now()).min(TICK)
            });
            let pollfd = |fd: i32, events: i16| libc::pollfd {
                fd,
                events,
                revents: 0,
            };
            let mut fds = vec![
                pollfd(signals.as_raw_fd(), libc::POLLIN),
                pollfd(listener.as_raw_fd(), libc::POLLIN),
            ];
            if let Some(client) = &self.client {
                let write = if client.wants_write() {
                    libc::POLLOUT
                } else {
                    0
                };
                fds.push(pollfd(client.stream.as_raw_fd(), libc::POLLIN | write));
            }
            sys::poll(&mut fds, timeout)?;
            for sig in signals.take() {
                if sig == libc::SIGCHLD {
                    continue; // reaped below in any case
                }
                self.shutting_down = true;
                let waiting: Vec<String> = self.queue.iter().map(|s| s.attempt.clone()).collect();
                for attempt in waiting {
                    self.drop_queued(&attempt, "its supervisor was stopped");
                }
                for job in self.jobs.values_mut() {
                    job.stop("its supervisor was stopped");
                }
            }
            // Commands first: a Stop for a queued attempt that arrived with
            // a running one's end must come before the end starts it.
            if fds.get(2).is_some_and(|fd| fd.revents != 0) {
                self.read_commands();
            }
            if fds[1].revents != 0 {
                self.accept(listener);
            }
            self.reap();
            self.timers();
            self.flush();
            let busy = self.jobs.values().any(Tracked::running);
            if busy || (self.client.is_some() && !self.shutting_down) {
                idle_since = Instant::now();
            } else if self.shutting_down || idle_since.elapsed() >= IDLE_EXIT {
                return Ok(());
            }
        }
    }

    /// Take a new gate connection (it replaces the one before) and send it
    /// the snapshot.
    fn accept(&mut self, listener: &UnixListener) {
        while let Ok((stream, _)) = listener.accept() {
            let mut client = match Client::new(stream) {
                Ok(client) => client,
                Err(e) => {
                    note!("gantry-supervisor: cannot take a connection: {e}");
                    continue;
                }
            };
            let mut known: Vec<&Known> = self.jobs.values().map(|t| &t.known).collect();
            known.sort_by(|a, b| a.attempt.cmp(&b.attempt));
            for k in known {
                client.queue(&line(&Event::Known(k.clone())));
            }
            // Its queue was the gate's before; a gate that connects (again)
            // queues anew what it still wants started.
            self.queue.clear();
            client.queue(&line(&Event::Synced { protocol: PROTOCOL }));
            if let Some(old) = self.client.replace(client) {
                let _ = old.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }

    /// Carry out the commands that arrived.
    fn read_commands(&mut self) {
        let Some(client) = &mut self.client else {
            return;
        };
        let (lines, open) = client.read_lines();
        if !open {
            self.client = None;
        }
        for text in lines {
            match serde_json::from_str::<Command>(&text) {
                Ok(command) => self.command(command),
                // Not the text: a start carries the job's secret environment.
                Err(e) => note!(
                    "gantry-supervisor: ignoring a bad command of {} bytes ({e})",
                    text.len()
                ),
            }
        }
    }

    fn command(&mut self, command: Command) {
        match command {
            Command::Start(start) => self.start(*start),
            Command::Stop { attempt, reason } => {
                self.drop_queued(&attempt, &reason);
                if let Some(job) = self.jobs.get_mut(&attempt) {
                    job.stop(&reason);
                }
            }
            Command::Forget { attempt } => {
                if self.jobs.get(&attempt).is_some_and(Tracked::running) {
                    note!("gantry-supervisor: not forgetting {attempt}: it runs");
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
                        note!("gantry-supervisor: cannot compact the journal: {e}");
                    }
                }
            }
        }
    }

    /// Start `start` now: on what it names, or, when `after` is given, on
    /// what that ended attempt held (its caller put it in `start`).
    fn start_now(&mut self, start: Start, after: Option<String>) {
        if let Some(job) = self.jobs.get(&start.attempt) {
            // A repeat: say again where it stands.
            let k = job.known.clone();
            if let Some(exit) = k.exit {
                self.send(&Event::Exited {
                    attempt: k.attempt,
                    exit,
                    passed_to: None,
                });
            } else if k.pid != 0 && job.stop_reason.is_empty() {
                // (A job being stopped at its start was never reported started.)
                self.send(&Event::Started {
                    attempt: k.attempt,
                    pid: k.pid,
                    start_ms: k.start_ms,
                    after: job.started_after.clone(),
                });
            }
            return;
        }
        if self.shutting_down {
            // Nothing new starts while every job is being stopped.
            self.send(&Event::Exited {
                attempt: start.attempt,
                exit: ended_now("its supervisor was stopped"),
                passed_to: None,
            });
            return;
        }
        let attempt = start.attempt.clone();
        let known = Known {
            attempt: attempt.clone(),
            meta: start.meta.clone(),
            pid: 0,
            start_ticks: 0,
            start_ms: 0,
            exit: None,
            held: start.held.clone(),
        };
        // Recorded before it starts, so that a supervisor started after this
        // one died knows of it; a start that cannot be recorded (a full or
        // failing disk) is refused rather than run where no one would find it.
        self.record(Entry::Known(known.clone()));
        if let Err(e) = self.journal.write() {
            let reason = format!(
                "not started: the local gate cannot record it in {}: {e}",
                self.journal.path().display()
            );
            note!("gantry-supervisor: {attempt}: {reason}");
            self.send(&Event::Exited {
                attempt,
                exit: ended_now(reason),
                passed_to: None,
            });
            return;
        }
        let grace = Duration::from_secs(start.grace_seconds);
        self.jobs.insert(attempt.clone(), tracked(known, grace));
        match spawn::spawn(&mut self.dirs, &self.unpinned, &start) {
            Ok(pid) => {
                let start_ms = now_ms();
                let start_ticks = sys::start_ticks(pid);
                let job = self.jobs.get_mut(&attempt).expect("inserted above");
                job.arm(start.walltime_seconds, start.warning);
                (job.known.pid, job.known.start_ticks, job.known.start_ms) =
                    (pid, start_ticks, start_ms);
                job.started_after = after.clone();
                job.slot = Some(queue::Slot::of(&start));
                self.by_pid.insert(pid, attempt.clone());
                let known = job.known.clone();
                self.record(Entry::Known(known));
                if let Err(e) = self.journal.write() {
                    // Its pid is not on record: stop it now; its end (with
                    // this reason) is reported when it is reaped.
                    let reason = format!(
                        "stopped at its start: the local gate cannot record it in {}: {e}",
                        self.journal.path().display()
                    );
                    note!("gantry-supervisor: {attempt}: {reason}");
                    let job = self.jobs.get_mut(&attempt).expect("inserted above");
                    job.stop_reason = reason;
                    sys::kill_group(pid, libc::SIGKILL);
                    return;
                }
                self.send(&Event::Started {
                    attempt,
                    pid,
                    start_ms,
                    after,
                });
            }
            // Its line was written before the spawn; only the end follows.
            Err((code, reason)) => {
                self.ended(
                    &attempt,
                    Exit {
                        exit_code: Some(code),
                        signal: None,
                        reason,
                        end_ms: now_ms(),
                    },
                );
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
        let slot = job.slot.take();
        let next = slot.and_then(|slot| self.take_over(slot));
        self.record(Entry::Exit {
            attempt: attempt.to_string(),
            exit: exit.clone(),
        });
        self.send(&Event::Exited {
            attempt: attempt.to_string(),
            exit,
            passed_to: next.as_ref().map(|n| n.attempt.clone()),
        });
        if let Some(next) = next {
            self.start_now(next, Some(attempt.to_string()));
        }
    }

    /// Walltimes and kill deadlines that are due.
    fn timers(&mut self) {
        let now = Instant::now();
        for job in self.jobs.values_mut().filter(|j| j.running()) {
            if job.kill_at.is_some_and(|at| now >= at) {
                sys::kill_group(job.known.pid, libc::SIGKILL);
                job.kill_at = None;
            }
            if let Some((at, signal)) = job.warn_at
                && now >= at
            {
                sys::kill_group(job.known.pid, signal);
                job.warn_at = None;
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
            .flat_map(|j| [j.walltime_at, j.kill_at, j.warn_at.map(|(at, _)| at)])
            .flatten()
            .min()
    }

    fn record(&mut self, entry: Entry) {
        self.journal.append(&entry);
    }

    fn send(&mut self, event: &Event) {
        if let Some(client) = &mut self.client {
            client.queue(&line(event));
        }
    }

    /// Write the journal, then tell the gate: it hears nothing the journal
    /// does not hold.
    fn flush(&mut self) {
        if let Err(e) = self.journal.write() {
            note!("gantry-supervisor: cannot append to the journal: {e}");
        }
        if let Some(client) = &mut self.client
            && client.flush().is_err()
        {
            self.client = None;
        }
    }
}

/// The socket of the supervisor of `work_dir`.
pub fn socket_path(work_dir: &Path) -> PathBuf {
    work_dir.join(SOCKET)
}
