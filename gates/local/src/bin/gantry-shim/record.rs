//! The files the shim leaves in the attempt directory for the gate:
//! `pids` (who runs, written once the job started) and `exit.json` (how it
//! ended). Both are written atomically (temp file + rename).

use std::fs;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A process's start time in clock ticks since boot (field 22 of
/// `/proc/<pid>/stat`), to tell a pid from a later reuse of it.
pub fn start_ticks(pid: u32) -> u64 {
    let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // The command name (field 2) may hold spaces; count from after its ')'.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(19))
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// Write `contents` to `dir/name` atomically.
pub fn write_atomic(dir: &Path, name: &str, contents: &str) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    fs::write(&tmp, contents)?;
    fs::rename(&tmp, dir.join(name))
}

/// The `pids` line: `shim_pid shim_start job_pid job_start start_ms`.
pub fn pids_line(shim_pid: u32, job_pid: u32, start_ms: i64) -> String {
    format!(
        "{shim_pid} {} {job_pid} {} {start_ms}\n",
        start_ticks(shim_pid),
        start_ticks(job_pid)
    )
}

/// How the job ended.
pub struct Exit {
    /// The exit code, 128+N when killed by signal N.
    pub exit_code: i32,
    /// The signal that killed it, if any.
    pub signal: Option<i32>,
    /// Why, when the shim ended it or could not start it: "walltime
    /// exceeded", "cancelled", "cannot start ..."; empty otherwise.
    pub reason: String,
}

impl Exit {
    /// The `exit.json` text.
    pub fn to_json(&self) -> String {
        let signal = self.signal.map_or("null".to_string(), |s| s.to_string());
        format!(
            "{{\"exit_code\":{},\"signal\":{signal},\"reason\":{},\"end_time_ms\":{}}}\n",
            self.exit_code,
            json_string(&self.reason),
            now_ms()
        )
    }
}

fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_json_strings() {
        assert_eq!(json_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn reads_own_start_time() {
        assert!(start_ticks(std::process::id()) > 0);
        assert_eq!(start_ticks(u32::MAX), 0);
    }

    #[test]
    fn exit_json_has_every_field() {
        let e = Exit {
            exit_code: 137,
            signal: Some(9),
            reason: "walltime exceeded".into(),
        };
        let json = e.to_json();
        assert!(
            json.starts_with("{\"exit_code\":137,\"signal\":9,\"reason\":\"walltime exceeded\"")
        );
        assert!(json.contains("\"end_time_ms\":"));
    }
}
