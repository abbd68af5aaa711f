//! Children of `gantry dev` get SIGTERM when `gantry dev` dies, even by
//! SIGKILL, so no orphaned gantryd keeps the state directory busy.
#![allow(unsafe_code)]

/// Ask the kernel to send SIGTERM to the child when this thread's process
/// ends. Linux only; elsewhere a no-op.
pub fn terminate_with_parent(command: &mut tokio::process::Command) {
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id() as i32;
        // SAFETY: the closure runs between fork and exec and calls only
        // prctl(2) and getppid(2), which are async-signal-safe; it touches no
        // memory shared with the parent and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGTERM)
                    .map_err(std::io::Error::from)?;
                // The parent may have died before prctl took effect.
                if nix::unistd::getppid().as_raw() != parent {
                    return Err(std::io::Error::other(
                        "gantry dev exited while starting a child",
                    ));
                }
                Ok(())
            });
        }
    }
}
