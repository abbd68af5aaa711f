//! The few system calls std does not wrap: signal masks and waits, signals
//! to a process group, CPU affinity.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::time::Duration;

/// A set of signals, blocked in this process and waited for synchronously.
pub struct Signals(libc::sigset_t);

impl Signals {
    /// Block `signals` in this (single-threaded) process so they stay
    /// pending until [`Signals::wait`] takes them. Children started with
    /// `std::process::Command` get an empty mask again.
    pub fn block(signals: &[i32]) -> io::Result<Self> {
        let mut set = MaybeUninit::<libc::sigset_t>::uninit();
        // SAFETY: sigemptyset initialises the set it is given; sigaddset and
        // sigprocmask only read/modify that initialised set.
        unsafe {
            libc::sigemptyset(set.as_mut_ptr());
            for &sig in signals {
                libc::sigaddset(set.as_mut_ptr(), sig);
            }
            let set = set.assume_init();
            if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(Self(set))
        }
    }

    /// Wait for one of the signals, at most `timeout` (forever when `None`).
    /// Returns the signal, or `None` on timeout or interruption.
    pub fn wait(&self, timeout: Option<Duration>) -> Option<i32> {
        let ts = timeout.map(|t| libc::timespec {
            tv_sec: t.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        });
        let ts_ptr = ts.as_ref().map_or(std::ptr::null(), |t| t as *const _);
        // SAFETY: the set is initialised; a null info pointer is allowed; ts
        // lives until the call returns.
        let sig = unsafe { libc::sigtimedwait(&self.0, std::ptr::null_mut(), ts_ptr) };
        (sig > 0).then_some(sig)
    }
}

/// Send `sig` to every process of group `pgid`. A gone group is not an error.
pub fn kill_group(pgid: u32, sig: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), sig);
    }
}

/// Pin this process (and the children it starts later) to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> io::Result<()> {
    if cpus.is_empty() {
        return Ok(());
    }
    // SAFETY: cpu_set_t is plain data, valid when zeroed; CPU_SET only writes
    // inside the set for ids below CPU_SETSIZE (checked); sched_setaffinity
    // reads `size_of` bytes of it.
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
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Whether child `pid` has exited, without reaping it: while it is a zombie
/// its pid (and so its process group id) cannot be reused.
pub fn has_exited(pid: u32) -> io::Result<bool> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: info is a zeroed siginfo_t that waitid may fill; WNOWAIT leaves
    // the child waitable for std's `Child::wait`.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            info.as_mut_ptr(),
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid succeeded, so info is initialised (zeroed when nothing exited).
    let pid = unsafe { info.assume_init().si_pid() };
    Ok(pid != 0)
}
