//! The few system calls std does not wrap: signalfd and poll, reaping
//! without losing a process group, CPU affinity, process start times, and
//! finding processes by their environment.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

/// Signals blocked in this thread and read from a file descriptor
/// (`signalfd`), so the main loop can `poll` for them with its sockets.
pub struct SignalFd(OwnedFd);

impl SignalFd {
    /// Block `signals` in the calling thread (the process's only one) and
    /// open a non-blocking signalfd for them. Children started with
    /// `std::process::Command` get an empty mask again.
    pub fn new(signals: &[i32]) -> io::Result<Self> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset,
        // pthread_sigmask and signalfd only read that initialised set;
        // signalfd returns a new descriptor we own.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &sig in signals {
                libc::sigaddset(set.as_mut_ptr(), sig);
            }
            let set = set.assume_init();
            let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            if rc != 0 {
                return Err(io::Error::from_raw_os_error(rc));
            }
            let fd = libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC);
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self(OwnedFd::from_raw_fd(fd)))
        }
    }

    /// The signals that arrived since the last call (each at most once).
    pub fn take(&self) -> Vec<i32> {
        let mut signals = Vec::new();
        loop {
            let mut info = MaybeUninit::<libc::signalfd_siginfo>::zeroed();
            let size = std::mem::size_of::<libc::signalfd_siginfo>();
            // SAFETY: reads at most `size` bytes into the zeroed struct.
            let n = unsafe { libc::read(self.0.as_raw_fd(), info.as_mut_ptr().cast(), size) };
            if n != size as isize {
                return signals;
            }
            // SAFETY: the read filled the struct.
            let sig = unsafe { info.assume_init() }.ssi_signo as i32;
            if !signals.contains(&sig) {
                signals.push(sig);
            }
        }
    }
}

impl AsRawFd for SignalFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}

/// Wait until one of `fds` is ready (`events` as in poll(2)) or `timeout`
/// passes; fills in each one's `revents`.
pub fn poll(fds: &mut [libc::pollfd], timeout: Duration) -> io::Result<()> {
    let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
    // SAFETY: fds is a valid slice of pollfd for the length given.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    Ok(())
}

/// Send `sig` to every process of group `pgid`. A gone group is not an error.
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Send `sig` to the process `pid`. A gone process is not an error.
pub fn kill(pid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// The calling thread's CPU affinity.
pub fn affinity() -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data, valid when zeroed; sched_getaffinity
    // writes at most `size_of` bytes into it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(set)
    }
}

/// Pin the calling thread (and the children it starts while pinned) to `set`.
pub fn set_affinity(set: &libc::cpu_set_t) -> io::Result<()> {
    // SAFETY: sched_setaffinity reads `size_of` bytes of an initialised set.
    if unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), set) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The set of `cpus`.
pub fn cpu_set(cpus: &[usize]) -> io::Result<libc::cpu_set_t> {
    // SAFETY: cpu_set_t is plain data, valid when zeroed; CPU_SET only writes
    // inside the set for ids below CPU_SETSIZE (checked).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &cpu in cpus {
            if cpu >= libc::CPU_SETSIZE as usize {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "cpu id too large",
                ));
            }
            libc::CPU_SET(cpu, &mut set);
        }
        Ok(set)
    }
}

/// How a reaped child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaped {
    /// Its pid.
    pub pid: u32,
    /// Its exit code, 128+N when killed by signal N.
    pub exit_code: i32,
    /// The signal that killed it.
    pub signal: Option<i32>,
}

/// Reap one child that has exited, if any. Before the child is reaped,
/// while its pid (and so its process group id) cannot be reused, whatever
/// is left of its group gets SIGKILL: nothing of a job outlives it.
pub fn reap_one() -> Option<Reaped> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: info is a zeroed siginfo_t that waitid may fill; WNOWAIT
    // leaves the child waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return None; // ECHILD: no children
    }
    // SAFETY: waitid succeeded, so info is initialised (zeroed when nothing exited).
    let pid = unsafe { info.assume_init().si_pid() };
    if pid <= 0 {
        return None;
    }
    kill_group(pid as u32, libc::SIGKILL);
    let mut status = 0;
    // SAFETY: status is a valid out pointer; pid is our exited child.
    if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
        return None;
    }
    let (exit_code, signal) = if libc::WIFEXITED(status) {
        (libc::WEXITSTATUS(status), None)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (128 + sig, Some(sig))
    } else {
        (255, None)
    };
    Some(Reaped {
        pid: pid as u32,
        exit_code,
        signal,
    })
}

/// A process's start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), to tell a pid from a later reuse of it; 0 when it
/// is gone.
pub fn start_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; count from after its ')'.
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let mut fields = rest.split_whitespace();
    let state = fields.next().unwrap_or("Z");
    if state == "Z" || state == "X" {
        return 0;
    }
    fields.nth(18).and_then(|t| t.parse().ok()).unwrap_or(0)
}

/// The processes started with the environment entry `entry` (`NAME=value`,
/// as `/proc/<pid>/environ` holds it; only those this process may read).
pub fn started_with_env(entry: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = entry.as_bytes();
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|e| e == wanted))
        })
        .collect()
}

/// Where `program` is: itself when it names a path (has a `/`), else the
/// first executable file of that name in the directories of `path` (as
/// execvp searches; `None` for `path`: the supervisor's own PATH).
pub fn find_program(program: &str, path: Option<&str>) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if program.contains('/') {
        return Some(program.into());
    }
    if program.is_empty() {
        return None;
    }
    let own = std::env::var("PATH").unwrap_or_default();
    let dirs = path.unwrap_or(&own);
    dirs.split(':')
        .map(|dir| std::path::Path::new(if dir.is_empty() { "." } else { dir }).join(program))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Start `sh` (built by the caller with its environment and the like) so
/// that it says "ready" once it runs and then waits on its stdin; return
/// after it said so: before its exec a child's /proc environ is still its
/// parent's.
#[cfg(test)]
pub(super) fn running_with_env(sh: &mut std::process::Command) -> std::process::Child {
    let mut child = sh
        .args(["-c", "echo ready; read line"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut ready = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut ready,
    )
    .unwrap();
    assert_eq!(ready, "ready\n");
    child
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_process_by_its_environment() {
        let entry = format!("GANTRY_TEST_ENTRY={}", std::process::id());
        let (name, value) = entry.split_once('=').unwrap();
        let mut child = running_with_env(std::process::Command::new("sh").env(name, value));
        let found = started_with_env(&entry);
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(found, vec![child.id()]);
        assert!(started_with_env(&format!("{entry}0")).is_empty());
    }

    #[test]
    fn finds_programs_as_execvp_does() {
        assert_eq!(
            find_program("sh", Some("/nonexistent:/bin:/usr/bin")),
            Some("/bin/sh".into())
        );
        assert_eq!(find_program("./x", Some("")), Some("./x".into()));
        assert_eq!(find_program("no-such-program-here", Some("/bin")), None);
        assert_eq!(find_program("", Some("/bin")), None);
    }

    #[test]
    fn reads_own_start_time() {
        assert!(start_ticks(std::process::id()) > 0);
        assert_eq!(start_ticks(u32::MAX), 0);
    }

    #[test]
    fn cpu_sets_refuse_impossible_ids() {
        assert!(cpu_set(&[0, 1]).is_ok());
        assert!(cpu_set(&[usize::MAX]).is_err());
    }
}
