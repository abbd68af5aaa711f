//! Becoming a job's account between fork and exec: groups, gid, uid, then
//! the working directory and stdin opened as that account, so the job
//! reaches only what the account may.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use gantry_gate::Account;

/// Everything the child needs, prepared before the fork: after it, only
/// async-signal-safe calls on this data.
pub struct Become {
    groups: Vec<libc::gid_t>,
    gid: libc::gid_t,
    uid: libc::uid_t,
    cwd: CString,
    stdin: Option<CString>,
}

impl Become {
    /// `account`, running in `cwd`, reading `stdin` (a path) when given.
    pub fn new(account: &Account, cwd: &Path, stdin: Option<&Path>) -> io::Result<Self> {
        let c = |p: &Path| {
            CString::new(p.as_os_str().as_bytes()).map_err(|_| io::Error::other("a NUL in a path"))
        };
        Ok(Self {
            groups: account.groups.clone(),
            gid: account.gid,
            uid: account.uid,
            cwd: c(cwd)?,
            stdin: stdin.map(c).transpose()?,
        })
    }

    /// Run in the child (`CommandExt::pre_exec`, after std set up stdio and
    /// the process group): drop every privilege for good, then enter the
    /// working directory and open stdin as the account.
    pub fn run(&self) -> io::Result<()> {
        let check = |r: libc::c_int| {
            if r < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(r)
            }
        };
        // SAFETY: plain system calls on memory owned by `self`, which
        // outlives them; each is async-signal-safe.
        unsafe {
            check(libc::setgroups(self.groups.len(), self.groups.as_ptr()))?;
            check(libc::setgid(self.gid))?;
            check(libc::setuid(self.uid))?;
            check(libc::chdir(self.cwd.as_ptr()))?;
            if let Some(stdin) = &self.stdin {
                let fd = check(libc::open(stdin.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC))?;
                check(libc::dup2(fd, 0))?;
                libc::close(fd);
            }
        }
        Ok(())
    }
}
