//! What this machine offers: its CPUs, memory and GPUs, and the
//! environment a login on it starts with.

use std::collections::BTreeMap;
use std::path::Path;

use gantry_gate::login_env_of;

/// The host's resources as the local gate sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Host {
    /// The CPU ids this process may run on (its affinity mask), ascending.
    pub cpu_ids: Vec<usize>,
    /// Total memory in bytes (MemTotal), 0 when unknown.
    pub memory_bytes: u64,
    /// The number of `/dev/nvidia<N>` devices.
    pub gpus: u32,
    /// The host name, for people.
    pub hostname: String,
    /// The environment a login of the gate's user starts with (HOME, USER,
    /// LOGNAME, SHELL, PATH): jobs start from it, never from the gate's own.
    pub login_env: BTreeMap<String, String>,
}

impl Host {
    /// Inspect this machine.
    pub fn detect() -> Self {
        Self {
            cpu_ids: cpu_ids(),
            memory_bytes: std::fs::read_to_string("/proc/meminfo")
                .map(|s| mem_total(&s))
                .unwrap_or(0),
            gpus: gpu_count(Path::new("/dev")),
            hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "localhost".into()),
            login_env: login_env(),
        }
    }
}

/// What `login` gives the user this process runs as.
fn login_env() -> BTreeMap<String, String> {
    let uid = nix::unistd::getuid();
    match nix::unistd::User::from_uid(uid).ok().flatten() {
        Some(u) => {
            let (home, shell) = (u.dir.to_string_lossy(), u.shell.to_string_lossy());
            login_env_of(uid.as_raw(), Some((&u.name, &home, &shell)))
        }
        None => login_env_of(uid.as_raw(), None),
    }
}

fn cpu_ids() -> Vec<usize> {
    use nix::sched::{CpuSet, sched_getaffinity};
    use nix::unistd::Pid;
    let ids: Vec<usize> = sched_getaffinity(Pid::from_raw(0))
        .map(|set| {
            (0..CpuSet::count())
                .filter(|&i| set.is_set(i).unwrap_or(false))
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        (0..n).collect()
    } else {
        ids
    }
}

/// MemTotal of a `/proc/meminfo` text, in bytes.
fn mem_total(meminfo: &str) -> u64 {
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The number of `nvidia<digits>` entries in `dev`.
fn gpu_count(dev: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dev) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("nvidia"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .count() as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mem_total() {
        assert_eq!(
            mem_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"),
            16384 * 1024
        );
        assert_eq!(mem_total("nothing"), 0);
    }

    #[test]
    fn counts_only_numbered_nvidia_devices() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["nvidia0", "nvidia12", "nvidiactl", "nvidia-uvm", "sda"] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        assert_eq!(gpu_count(dir.path()), 2);
    }

    #[test]
    fn detects_at_least_one_cpu() {
        let host = Host::detect();
        assert!(!host.cpu_ids.is_empty());
        assert!(host.memory_bytes > 0);
        assert!(host.login_env["PATH"].contains("/usr/bin"));
        assert!(host.login_env.contains_key("HOME"), "{:?}", host.login_env);
    }
}
