//! Real disk faults for the durability tests: a size-limited tmpfs that a
//! test fills to the last byte and frees again, and strace's fault
//! injection (a syscall made to fail with an errno). Both need root, as CI
//! runs the suite; strace is Debian's (`scripts/test` installs it).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs of a fixed size mounted for one test; unmounted when dropped.
pub struct Tmpfs {
    path: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `mib` MiB at `path` (created).
    pub fn mount(path: &Path, mib: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(path)?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(path)
            .status()?;
        anyhow::ensure!(
            status.success(),
            "cannot mount a tmpfs at {} ({status}): the disk-fault tests run as root, as CI does",
            path.display()
        );
        Ok(Self {
            path: path.to_path_buf(),
        })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn filler(&self) -> PathBuf {
        self.path.join("filler")
    }

    /// Fill it to the last byte with a file of its own; returns the bytes written.
    pub fn fill(&self) -> anyhow::Result<u64> {
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.filler())?;
        let mut written = 0;
        for size in [1 << 16, 1 << 12, 1] {
            let chunk = vec![0u8; size];
            loop {
                match file.write(&chunk) {
                    Ok(n) if n > 0 => written += n as u64,
                    _ => break,
                }
            }
        }
        Ok(written)
    }

    /// Remove what [`Tmpfs::fill`] wrote.
    pub fn free(&self) -> anyhow::Result<()> {
        std::fs::remove_file(self.filler())?;
        Ok(())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// A wrapper (see [`crate::Process::start_wrapped`]) that runs a binary
/// under strace with `syscalls` failing as `inject` says, e.g.
/// `strace_inject("fsync,fdatasync", "error=EIO:when=40+")`.
pub fn strace_inject(syscalls: &str, inject: &str) -> Vec<String> {
    [
        "strace",
        "-f",
        "-qq",
        "--seccomp-bpf",
        "-o",
        "/dev/null",
        "-e",
        &format!("trace={syscalls}"),
        "-e",
        &format!("inject={syscalls}:{inject}"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}
