//! `gantry-shim`: supervises ONE job of the local gate, so that the gate can
//! die (even by SIGKILL) without losing the job or its outcome.
//!
//! ```text
//! gantry-shim --dir ATTEMPT_DIR [--walltime SECS] [--cpus 0,3] [--grace SECS] -- PROGRAM ARGS...
//! ```
//!
//! It pins itself (and so the job) to `--cpus`, starts the job in its own
//! process group with cwd `ATTEMPT_DIR/work` and stdout/stderr appended to
//! `ATTEMPT_DIR/stdout` and `ATTEMPT_DIR/stderr`, writes `ATTEMPT_DIR/pids`
//! and prints `started <pids line>` on its stdout (the gate reads it), then
//! waits. On walltime, or on SIGTERM/SIGINT (how the gate cancels), it sends
//! SIGTERM to the job's group and SIGKILL after the grace period. Finally it
//! writes `ATTEMPT_DIR/exit.json` (`exit_code`, `signal`, `reason`,
//! `end_time_ms`) and exits 0. Only std and libc: it must start fast.

mod record;
mod sys;

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use record::Exit;
use sys::Signals;

/// Default time between SIGTERM and SIGKILL.
const DEFAULT_GRACE: Duration = Duration::from_secs(3);

struct Args {
    dir: PathBuf,
    walltime: Option<Duration>,
    cpus: Vec<usize>,
    grace: Duration,
    argv: Vec<String>,
}

const USAGE: &str = "usage: gantry-shim --dir ATTEMPT_DIR [--walltime SECS] [--cpus 0,3] [--grace SECS] -- PROGRAM [ARGS...]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut parsed = Args {
        dir: PathBuf::new(),
        walltime: None,
        cpus: Vec::new(),
        grace: DEFAULT_GRACE,
        argv: Vec::new(),
    };
    let secs = |v: Option<String>, flag: &str| -> Result<u64, String> {
        v.and_then(|v| v.parse().ok())
            .ok_or_else(|| format!("{flag} needs whole seconds"))
    };
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--dir" => parsed.dir = args.next().ok_or("--dir needs a path")?.into(),
            "--walltime" => {
                let s = secs(args.next(), "--walltime")?;
                parsed.walltime = (s > 0).then(|| Duration::from_secs(s));
            }
            "--grace" => parsed.grace = Duration::from_secs(secs(args.next(), "--grace")?),
            "--cpus" => {
                let list = args.next().ok_or("--cpus needs a list such as 0,3")?;
                parsed.cpus = list
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| {
                        s.parse()
                            .map_err(|_| format!("--cpus: `{s}` is not a cpu id"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            "--" => {
                parsed.argv = args.collect();
                break;
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.dir.as_os_str().is_empty() || parsed.argv.is_empty() {
        return Err(USAGE.into());
    }
    Ok(parsed)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(msg) => {
            eprintln!("gantry-shim: {msg}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("gantry-shim: {msg}");
            ExitCode::from(1)
        }
    }
}

fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

fn io_err(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}

fn run(args: &Args) -> Result<(), String> {
    let dir = &args.dir;
    let signals = Signals::block(&[libc::SIGTERM, libc::SIGINT, libc::SIGCHLD])
        .map_err(|e| format!("block signals: {e}"))?;
    if let Err(e) = sys::set_affinity(&args.cpus) {
        eprintln!("gantry-shim: cannot pin to cpus {:?}: {e}", args.cpus);
    }
    let work = dir.join("work");
    std::fs::create_dir_all(&work).map_err(io_err("create work/"))?;
    let stdout = append(&dir.join("stdout")).map_err(io_err("open stdout"))?;
    let stderr = append(&dir.join("stderr")).map_err(io_err("open stderr"))?;
    let spawned = Command::new(&args.argv[0])
        .args(&args.argv[1..])
        .current_dir(&work)
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0)
        .spawn();
    let mut announce = std::io::stdout();
    let child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let exit_code = if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            };
            let exit = Exit {
                exit_code,
                signal: None,
                reason: format!("cannot start `{}`: {e}", args.argv[0]),
            };
            record::write_atomic(dir, "exit.json", &exit.to_json())
                .map_err(io_err("write exit.json"))?;
            let _ = writeln!(announce, "failed");
            return Ok(());
        }
    };
    let line = record::pids_line(std::process::id(), child.id(), record::now_ms());
    record::write_atomic(dir, "pids", &line).map_err(io_err("write pids"))?;
    // The gate may be gone already; the job runs on regardless.
    let _ = write!(announce, "started {line}").and_then(|()| announce.flush());
    let exit = supervise(child, args, &signals);
    record::write_atomic(dir, "exit.json", &exit.to_json()).map_err(io_err("write exit.json"))
}

/// Ends the job's process group: SIGTERM first, SIGKILL after the grace period.
struct Stopper {
    pgid: u32,
    grace: Duration,
    /// Why the job is being stopped; empty while it is not.
    reason: String,
    kill_at: Option<Instant>,
}

impl Stopper {
    fn stop(&mut self, why: &str) {
        if self.reason.is_empty() {
            self.reason = why.to_string();
            sys::kill_group(self.pgid, libc::SIGTERM);
            self.kill_at = Some(Instant::now() + self.grace);
        }
    }

    fn kill_when_due(&mut self, now: Instant) {
        if self.kill_at.is_some_and(|at| now >= at) {
            sys::kill_group(self.pgid, libc::SIGKILL);
            self.kill_at = None;
        }
    }
}

/// Wait for the job, enforcing walltime and cancellation.
fn supervise(mut child: Child, args: &Args, signals: &Signals) -> Exit {
    let walltime_at = args.walltime.map(|w| Instant::now() + w);
    let mut stopper = Stopper {
        pgid: child.id(),
        grace: args.grace,
        reason: String::new(),
        kill_at: None,
    };
    loop {
        match sys::has_exited(stopper.pgid) {
            Ok(true) => break,
            Ok(false) => {}
            Err(e) => {
                eprintln!("gantry-shim: waitid: {e}");
                break;
            }
        }
        let now = Instant::now();
        stopper.kill_when_due(now);
        if walltime_at.is_some_and(|at| now >= at) {
            stopper.stop("walltime exceeded");
        }
        let walltime_next = walltime_at.filter(|_| stopper.reason.is_empty());
        let next = [walltime_next, stopper.kill_at].into_iter().flatten().min();
        let timeout = next.map(|at| at.saturating_duration_since(Instant::now()));
        if let Some(libc::SIGTERM | libc::SIGINT) = signals.wait(timeout) {
            stopper.stop("cancelled");
        }
    }
    // Nothing of the job outlives it. The leader is not reaped yet, so the
    // group id cannot have been reused.
    sys::kill_group(stopper.pgid, libc::SIGKILL);
    let status = child.wait().unwrap_or_else(|e| {
        eprintln!("gantry-shim: wait: {e}");
        std::process::ExitStatus::from_raw(127 << 8)
    });
    let (exit_code, signal) = match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(sig)) => (128 + sig, Some(sig)),
        (None, None) => (255, None),
    };
    Exit {
        exit_code,
        signal,
        reason: stopper.reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_every_flag() {
        let a = parse(&[
            "--dir",
            "/d",
            "--walltime",
            "5",
            "--cpus",
            "0,3",
            "--grace",
            "1",
            "--",
            "sh",
            "-c",
            "x",
        ])
        .unwrap();
        assert_eq!(a.dir, PathBuf::from("/d"));
        assert_eq!(a.walltime, Some(Duration::from_secs(5)));
        assert_eq!(a.cpus, [0, 3]);
        assert_eq!(a.grace, Duration::from_secs(1));
        assert_eq!(a.argv, ["sh", "-c", "x"]);
        assert_eq!(
            parse(&["--dir", "/d", "--walltime", "0", "--", "x"])
                .unwrap()
                .walltime,
            None
        );
    }

    #[test]
    fn refuses_missing_or_bad_flags() {
        assert!(parse(&["--dir", "/d"]).is_err());
        assert!(parse(&["--", "x"]).is_err());
        assert!(parse(&["--dir", "/d", "--cpus", "a", "--", "x"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
