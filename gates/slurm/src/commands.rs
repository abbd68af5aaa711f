//! Slurm's commands and what their output means: `sinfo` (the cluster's
//! partitions and nodes), `sbatch --parsable`, `squeue --json` (read so that
//! both the 22.05 and the later JSON shapes parse), `scontrol show job` for
//! a job squeue no longer lists, `scancel`.

use std::collections::BTreeMap;

use gantry_gate::{GateError, Host, Result};
use serde_json::Value;

use crate::states::Observed;

/// One Slurm partition as `sinfo` shows it, summed over its nodes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SlurmPartition {
    /// Its name.
    pub name: String,
    /// Whether it is the cluster's default.
    pub default: bool,
    /// `up`, `down`, `drain` or `inact`.
    pub avail: String,
    /// Its time limit in seconds (0: none).
    pub max_seconds: u64,
    /// CPUs of the nodes that can run jobs.
    pub cpus: u32,
    /// Memory of those nodes, bytes.
    pub memory_bytes: u64,
    /// GPUs (gres `gpu`) of those nodes.
    pub gpus: u32,
    /// Nodes that can run jobs.
    pub nodes: u32,
    /// The largest node: CPUs, memory bytes, GPUs (what one job can get).
    pub largest: (u32, u64, u32),
    /// Node count by state, e.g. `idle: 1, drained: 1`.
    pub node_states: BTreeMap<String, u32>,
}

impl SlurmPartition {
    /// Why it cannot run jobs now, when it cannot.
    pub fn unavailable(&self) -> Option<String> {
        if self.avail != "up" {
            return Some(format!("Slurm partition {} is {}", self.name, self.avail));
        }
        if self.nodes == 0 {
            let states: Vec<String> = self
                .node_states
                .iter()
                .map(|(s, n)| format!("{n} {s}"))
                .collect();
            return Some(format!(
                "every node of Slurm partition {} is unavailable ({})",
                self.name,
                states.join(", ")
            ));
        }
        None
    }
}

/// The `sinfo` format the gate reads: partition, avail, time limit, node,
/// CPUs, memory (MB), gres, state; one line per node and partition.
const SINFO_FORMAT: &str = "%P|%a|%l|%n|%c|%m|%G|%T";

/// The cluster's partitions.
pub async fn partitions(host: &dyn Host) -> Result<Vec<SlurmPartition>> {
    let out = host
        .run("sinfo", &args(&["-h", "-N", "-o", SINFO_FORMAT]), None)
        .await?;
    Ok(parse_sinfo(&out))
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Parse [`SINFO_FORMAT`] lines.
pub fn parse_sinfo(out: &str) -> Vec<SlurmPartition> {
    let mut parts: BTreeMap<String, SlurmPartition> = BTreeMap::new();
    let mut seen_nodes: BTreeMap<(String, String), ()> = BTreeMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split('|').collect();
        if f.len() < 8 {
            continue;
        }
        let default = f[0].ends_with('*');
        let name = f[0].trim_end_matches('*').to_string();
        if seen_nodes.insert((name.clone(), f[3].into()), ()).is_some() {
            continue;
        }
        let p = parts.entry(name.clone()).or_insert_with(|| SlurmPartition {
            name,
            default,
            avail: f[1].to_string(),
            max_seconds: parse_limit(f[2]),
            ..Default::default()
        });
        let state = f[7].trim_end_matches(['*', '~', '#', '!', '%', '$', '@', '^', '-']);
        *p.node_states.entry(state.to_string()).or_default() += 1;
        let usable = ![
            "down",
            "drained",
            "draining",
            "drain",
            "fail",
            "failing",
            "future",
            "maint",
            "unknown",
            "not_responding",
            "power_down",
            "powered_down",
            "powering_down",
            "reboot_issued",
        ]
        .iter()
        .any(|bad| state.starts_with(bad));
        if !usable {
            continue;
        }
        let cpus: u32 = f[4].parse().unwrap_or(0);
        let mem = f[5].trim_end_matches('+').parse::<u64>().unwrap_or(0) * 1024 * 1024;
        let gpus = parse_gpus(f[6]);
        p.nodes += 1;
        p.cpus += cpus;
        p.memory_bytes += mem;
        p.gpus += gpus;
        p.largest = (
            p.largest.0.max(cpus),
            p.largest.1.max(mem),
            p.largest.2.max(gpus),
        );
    }
    parts.into_values().collect()
}

/// A time limit as sinfo prints it (`infinite`, `1:00:00`, `2-00:00:00`,
/// `30`), in seconds; 0 for none.
pub fn parse_limit(text: &str) -> u64 {
    if text == "infinite" || text == "UNLIMITED" || text.is_empty() {
        return 0;
    }
    let (days, rest) = match text.split_once('-') {
        Some((d, r)) => (d.parse::<u64>().unwrap_or(0), r),
        None => (0, text),
    };
    let parts: Vec<u64> = rest.split(':').map(|p| p.parse().unwrap_or(0)).collect();
    let (h, m, s) = match parts.as_slice() {
        [m] => (0, *m, 0),
        [m, s] => (0, *m, *s),
        [h, m, s] => (*h, *m, *s),
        _ => (0, 0, 0),
    };
    days * 86400 + h * 3600 + m * 60 + s
}

/// GPUs in a gres string such as `gpu:2`, `gpu:a100:4(S:0-1)`, `(null)`.
pub fn parse_gpus(gres: &str) -> u32 {
    gres.split(',')
        .filter(|g| g.starts_with("gpu"))
        .filter_map(|g| {
            let g = g.split('(').next().unwrap_or(g);
            g.rsplit(':').next().and_then(|n| n.parse::<u32>().ok())
        })
        .sum()
}

/// Submit a batch script; Slurm's job id.
pub async fn sbatch(host: &dyn Host, options: &[String], script: &str) -> Result<u64> {
    let out = host
        .run(
            "sbatch",
            &[&["--parsable".to_string()], options].concat(),
            Some(script.as_bytes()),
        )
        .await
        .map_err(refusal)?;
    // `--parsable` prints `id` or `id;cluster`.
    out.trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .ok_or_else(|| GateError::Internal(format!("sbatch printed no job id: {out:?}")))
}

/// sbatch refusing a job for what it asks is the job's fault, not the
/// cluster's: say so as INVALID_ARGUMENT.
fn refusal(e: GateError) -> GateError {
    match e {
        GateError::Unavailable(m)
            if m.contains("Requested node configuration is not available")
                || m.contains("More processors requested than permitted")
                || m.contains("Memory required by task is not available")
                || m.contains("Invalid generic resource")
                || m.contains("Requested time limit is invalid") =>
        {
            GateError::invalid("task.resources", format!("Slurm refused the job: {m}"))
        }
        other => other,
    }
}

/// What `squeue` knows about `ids` (also jobs that ended within Slurm's
/// MinJobAge), by job id.
pub async fn squeue(host: &dyn Host, ids: &[u64]) -> Result<BTreeMap<u64, Observed>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let out = host
        .run(
            "squeue",
            &args(&["--json", "--states=all", "--jobs", &list.join(",")]),
            None,
        )
        .await;
    let out = match out {
        Ok(out) => out,
        // squeue fails outright when every id is unknown to it.
        Err(GateError::Unavailable(m)) if m.contains("Invalid job id") => {
            return Ok(BTreeMap::new());
        }
        Err(e) => return Err(e),
    };
    parse_squeue(&out)
}

/// The id of every job `squeue` lists (also recently ended ones), by its
/// `--comment`.
pub async fn jobs_by_comment(host: &dyn Host) -> Result<BTreeMap<String, u64>> {
    let out = host
        .run("squeue", &args(&["--json", "--states=all"]), None)
        .await?;
    Ok(squeue_jobs(&out)?
        .filter_map(|job| {
            Some((
                job["comment"].as_str()?.to_string(),
                number(&job["job_id"])? as u64,
            ))
        })
        .collect())
}

/// The job objects of `squeue --json`.
fn squeue_jobs(out: &str) -> Result<impl Iterator<Item = Value>> {
    let mut doc: Value = serde_json::from_str(out)
        .map_err(|e| GateError::Internal(format!("squeue --json: {e}")))?;
    let jobs = match doc["jobs"].take() {
        Value::Array(jobs) => jobs,
        _ => Vec::new(),
    };
    Ok(jobs.into_iter())
}

/// Parse `squeue --json`.
pub fn parse_squeue(out: &str) -> Result<BTreeMap<u64, Observed>> {
    Ok(squeue_jobs(out)?
        .filter_map(|job| Some((number(&job["job_id"])? as u64, observed(&job))))
        .collect())
}

fn observed(job: &Value) -> Observed {
    let state = match &job["job_state"] {
        Value::String(s) => s.clone(),
        Value::Array(a) => a.first().and_then(Value::as_str).unwrap_or("").to_string(),
        _ => String::new(),
    };
    let (exit_code, signal) = exit_of(&job["exit_code"]);
    Observed {
        state,
        reason: job["state_reason"].as_str().unwrap_or("").to_string(),
        exit_code,
        signal,
        time_limit_minutes: number(&job["time_limit"]).unwrap_or(0).max(0) as u64,
        start_time: number(&job["start_time"]).unwrap_or(0),
        end_time: number(&job["end_time"]).unwrap_or(0),
    }
}

/// A JSON number, or Slurm's `{"set": true, "number": n}`.
fn number(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::Object(o) if o.get("set").and_then(Value::as_bool) != Some(false) => {
            o.get("number").and_then(Value::as_i64)
        }
        _ => None,
    }
}

/// The exit code and signal: 22.05 gives a wait status as a number; later
/// versions `{"return_code": .., "signal": {"id": ..}}`.
fn exit_of(v: &Value) -> (Option<i32>, Option<i32>) {
    match v {
        Value::Number(n) => {
            let status = n.as_i64().unwrap_or(0) as i32;
            let signal = status & 0x7f;
            if signal != 0 {
                (Some(128 + signal), Some(signal))
            } else {
                (Some((status >> 8) & 0xff), None)
            }
        }
        Value::Object(o) => {
            let code = o.get("return_code").and_then(number).map(|c| c as i32);
            let signal = o
                .get("signal")
                .and_then(|s| s.get("id"))
                .and_then(number)
                .map(|s| s as i32)
                .filter(|s| *s != 0);
            (code, signal)
        }
        _ => (None, None),
    }
}

/// What `scontrol show job` says of a job squeue no longer lists; `None`
/// when Slurm has forgotten it.
pub async fn scontrol_job(host: &dyn Host, id: u64) -> Result<Option<Observed>> {
    match host
        .run(
            "scontrol",
            &args(&["show", "job", "-o", &id.to_string()]),
            None,
        )
        .await
    {
        Ok(out) => Ok(parse_scontrol(&out)),
        Err(GateError::Unavailable(m)) if m.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse one `scontrol show job -o` line (`Key=Value` pairs).
pub fn parse_scontrol(out: &str) -> Option<Observed> {
    let line = out.lines().next()?;
    let field = |key: &str| {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
            .unwrap_or("")
            .to_string()
    };
    let state = field("JobState");
    if state.is_empty() {
        return None;
    }
    let (code, sig) = field("ExitCode")
        .split_once(':')
        .map(|(c, s)| {
            (
                c.parse::<i32>().ok(),
                s.parse::<i32>().ok().filter(|s| *s != 0),
            )
        })
        .unwrap_or((None, None));
    Some(Observed {
        state,
        reason: field("Reason"),
        exit_code: sig.map(|s| 128 + s).or(code),
        signal: sig,
        time_limit_minutes: parse_limit(&field("TimeLimit")) / 60,
        start_time: 0,
        end_time: 0,
    })
}

/// Cancel a job (fine when it already ended).
pub async fn scancel(host: &dyn Host, id: u64) -> Result<()> {
    host.run("scancel", &[id.to_string()], None)
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_partitions_and_node_states() {
        let out = "debug*|up|infinite|n1|8|16000|(null)|idle\n\
                   debug*|up|infinite|n2|4|8000|gpu:2|drained\n\
                   gpu|up|1-00:00:00|n3|16|64000|gpu:a100:4(S:0-1)|mixed\n\
                   off|down|30|n4|2|1000|(null)|idle\n";
        let parts = parse_sinfo(out);
        let debug = &parts[0];
        assert_eq!(debug.name, "debug");
        assert!(debug.default);
        assert_eq!((debug.cpus, debug.nodes, debug.gpus), (8, 1, 0));
        assert_eq!(debug.node_states["drained"], 1);
        assert_eq!(debug.unavailable(), None);
        let gpu = &parts[1];
        assert_eq!((gpu.gpus, gpu.max_seconds), (4, 86400));
        assert_eq!(gpu.largest, (16, 64000 * 1024 * 1024, 4));
        assert!(parts[2].unavailable().unwrap().contains("down"));
        assert_eq!(parse_limit("1:02:03"), 3723);
        assert_eq!(parse_limit("30"), 1800);
    }

    #[test]
    fn reads_squeue_json_of_either_shape() {
        let old = r#"{"jobs":[{"job_id":12,"job_state":"FAILED","state_reason":"NonZeroExitCode","exit_code":768,"time_limit":1}]}"#;
        let jobs = parse_squeue(old).unwrap();
        assert_eq!(jobs[&12].state, "FAILED");
        assert_eq!(jobs[&12].exit_code, Some(3));
        let new = r#"{"jobs":[{"job_id":13,"job_state":["TIMEOUT"],"state_reason":"None","exit_code":{"status":["SIGNALED"],"return_code":{"set":true,"number":0},"signal":{"id":{"set":true,"number":15}}},"time_limit":{"set":true,"number":1}}]}"#;
        let jobs = parse_squeue(new).unwrap();
        assert_eq!(jobs[&13].state, "TIMEOUT");
        assert_eq!(jobs[&13].signal, Some(15));
        assert_eq!(jobs[&13].time_limit_minutes, 1);
    }

    #[test]
    fn reads_scontrol_lines() {
        let line =
            "JobId=7 JobName=x JobState=CANCELLED Reason=None ExitCode=0:15 TimeLimit=00:01:00";
        let o = parse_scontrol(line).unwrap();
        assert_eq!(
            (o.state.as_str(), o.exit_code, o.signal),
            ("CANCELLED", Some(143), Some(15))
        );
        assert_eq!(o.time_limit_minutes, 1);
        assert_eq!(parse_gpus("gpu:2,gpu:t4:1"), 3);
    }
}
