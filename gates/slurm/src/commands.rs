//! Slurm's commands and what their output means: `sinfo` (the cluster's
//! partitions and nodes), `sbatch --parsable`, `squeue` (states), `scontrol
//! show job` for how a job ended (or one squeue no longer lists), `sacct`
//! for one slurmctld has let go, `scancel`.

use std::collections::BTreeMap;

use gantry_gate::{GateError, Host, Result};

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
    /// Its DefaultTime in seconds (0: none, the limit applies).
    pub default_seconds: u64,
    /// CPUs of the nodes that can run jobs.
    pub cpus: u32,
    /// Memory of those nodes, bytes.
    pub memory_bytes: u64,
    /// GPUs (gres `gpu`) of those nodes.
    pub gpus: u32,
    /// Nodes that can run jobs.
    pub nodes: u32,
    /// The largest node, usable now or not: CPUs, memory bytes, GPUs (what
    /// one job could ever get).
    pub largest: (u32, u64, u32),
    /// Node count by state, e.g. `idle: 1, drained: 1`.
    pub node_states: BTreeMap<String, u32>,
}

impl SlurmPartition {
    /// Its nodes in all, usable now or not (what one job could ever span).
    pub fn node_count(&self) -> u32 {
        self.node_states.values().sum()
    }

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
/// CPUs, memory (MB), gres, state, default time; one line per node and
/// partition.
/// `%N` is the node's name (unique), not its host name: several nodes may
/// share a host (`slurmd -N`, MULTIPLE_SLURMD).
const SINFO_FORMAT: &str = "%P|%a|%l|%N|%c|%m|%G|%T|%L";

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
            default_seconds: f.get(8).map_or(0, |t| parse_limit(t)),
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
        let cpus: u32 = f[4].parse().unwrap_or(0);
        let mem = f[5].trim_end_matches('+').parse::<u64>().unwrap_or(0) * 1024 * 1024;
        let gpus = parse_gpus(f[6]);
        // What one job could ever get: a drained or down node comes back.
        p.largest = (
            p.largest.0.max(cpus),
            p.largest.1.max(mem),
            p.largest.2.max(gpus),
        );
        if !usable {
            continue;
        }
        p.nodes += 1;
        p.cpus += cpus;
        p.memory_bytes += mem;
        p.gpus += gpus;
    }
    parts.into_values().collect()
}

/// A time limit as sinfo prints it (`infinite`, `1:00:00`, `2-00:00:00`,
/// `30`), in seconds; 0 for none.
pub fn parse_limit(text: &str) -> u64 {
    if matches!(text, "infinite" | "UNLIMITED" | "n/a" | "") {
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

/// Submit a batch script from an environment of `env` alone (and the
/// host's own, e.g. `SLURM_CONF`); Slurm's job id.
pub async fn sbatch(
    host: &dyn Host,
    env: &BTreeMap<String, String>,
    options: &[String],
    script: &str,
) -> Result<u64> {
    let mut args = vec!["-i".to_string()];
    let vars = env.iter().chain(host.env().iter().map(|(k, v)| (k, v)));
    args.extend(vars.map(|(k, v)| format!("{k}={v}")));
    args.push("sbatch".into());
    args.push("--parsable".into());
    args.extend(options.iter().cloned());
    let out = host
        .run("env", &args, Some(script.as_bytes()))
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

/// The `squeue` format the gate reads: id, state, reason, time limit,
/// start and end (Unix seconds, with `SLURM_TIME_FORMAT=%s`). Text, not
/// `--json`: squeue 22.05 dumps every job of the cluster as JSON before
/// choosing the ones asked (130 ms a call with 1,000 jobs queued here,
/// against 5 ms), and has no exit code in either form.
const SQUEUE_FORMAT: &str = "%i|%T|%r|%l|%S|%e";

/// What `squeue` knows about `ids` (also jobs that ended within Slurm's
/// MinJobAge), by job id; an ended job's exit code is not among it.
pub async fn squeue(host: &dyn Host, ids: &[u64]) -> Result<BTreeMap<u64, Observed>> {
    if ids.is_empty() {
        return Ok(BTreeMap::new());
    }
    let list: Vec<String> = ids.iter().map(u64::to_string).collect();
    let out = host
        .run(
            "env",
            &args(&[
                "SLURM_TIME_FORMAT=%s",
                "squeue",
                "--noheader",
                "--states=all",
                "--jobs",
                &list.join(","),
                "--format",
                SQUEUE_FORMAT,
            ]),
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
    Ok(parse_squeue(&out))
}

/// Parse `squeue --noheader --format SQUEUE_FORMAT` lines.
pub fn parse_squeue(out: &str) -> BTreeMap<u64, Observed> {
    out.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split('|').map(str::trim).collect();
            let [id, state, reason, limit, start, end] = f[..] else {
                return None;
            };
            let observed = Observed {
                state: state.to_string(),
                reason: reason.to_string(),
                exit_code: None,
                signal: None,
                time_limit_minutes: parse_limit(limit) / 60,
                start_time: unix_seconds(start),
                end_time: unix_seconds(end),
            };
            Some((id.parse().ok()?, observed))
        })
        .collect()
}

/// Unix seconds as Slurm prints them with `SLURM_TIME_FORMAT=%s` (`N/A`,
/// `Unknown`, `None`: 0).
fn unix_seconds(text: &str) -> i64 {
    text.parse().unwrap_or(0)
}

/// The id of every job `squeue` lists (also recently ended ones), by its
/// `--comment`.
pub async fn jobs_by_comment(host: &dyn Host) -> Result<BTreeMap<String, u64>> {
    let out = host
        .run(
            "squeue",
            &args(&["--noheader", "--states=all", "--format", "%i|%k"]),
            None,
        )
        .await?;
    Ok(parse_comments(&out))
}

/// Parse `squeue --format %i|%k` lines: comment to job id.
fn parse_comments(out: &str) -> BTreeMap<String, u64> {
    out.lines()
        .filter_map(|line| {
            let (id, comment) = line.split_once('|')?;
            Some((comment.trim().to_string(), id.trim().parse().ok()?))
        })
        .collect()
}

/// What `scontrol show job` says of a job squeue no longer lists; `None`
/// when Slurm has forgotten it.
pub async fn scontrol_job(host: &dyn Host, id: u64) -> Result<Option<Observed>> {
    let id = id.to_string();
    let list = ["SLURM_TIME_FORMAT=%s", "scontrol", "show", "job", "-o", &id];
    match host.run("env", &args(&list), None).await {
        Ok(out) => Ok(parse_scontrol(&out)),
        Err(GateError::Unavailable(m)) if m.contains("Invalid job id") => Ok(None),
        Err(e) => Err(e),
    }
}

/// Parse one `scontrol show job -o` line (`Key=Value` pairs; times as Unix
/// seconds).
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
    let (code, sig) = exit_code(&field("ExitCode"));
    Some(Observed {
        state,
        reason: field("Reason"),
        exit_code: sig.map(|s| 128 + s).or(code),
        signal: sig,
        time_limit_minutes: parse_limit(&field("TimeLimit")) / 60,
        start_time: unix_seconds(&field("StartTime")),
        end_time: unix_seconds(&field("EndTime")),
    })
}

/// Where Slurm keeps the record of a job once slurmctld has let it go
/// (after MinJobAge), from `scontrol show config`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobRecords {
    /// The accounting database (slurmdbd): `sacct`.
    Accounting,
    /// The job completion log (`JobCompType=jobcomp/filetxt`): `sacct -c`.
    CompletionLog,
    /// Nowhere: a forgotten job's end cannot be known.
    None,
}

/// Where this cluster keeps the records of finished jobs.
pub async fn job_records(host: &dyn Host) -> Result<JobRecords> {
    let out = host
        .run("scontrol", &args(&["show", "config"]), None)
        .await?;
    Ok(parse_job_records(&out))
}

/// Read `scontrol show config` for [`JobRecords`].
pub fn parse_job_records(out: &str) -> JobRecords {
    let value = |key: &str| {
        out.lines()
            .find_map(|l| {
                let (k, v) = l.split_once('=')?;
                (k.trim() == key).then(|| v.trim().to_string())
            })
            .unwrap_or_default()
    };
    let accounting = value("AccountingStorageType");
    if !accounting.is_empty() && accounting != "accounting_storage/none" {
        JobRecords::Accounting
    } else if value("JobCompType") == "jobcomp/filetxt" {
        JobRecords::CompletionLog
    } else {
        JobRecords::None
    }
}

/// The fields asked of `sacct`, in this order.
const SACCT_FIELDS: &str = "JobID,State,ExitCode,Start,End,Timelimit,Reason";

/// What Slurm's records (`from`) say of a job slurmctld has let go; `None`
/// when they do not have it. `sacct --parsable2` rather than `--json`: the
/// same parser serves the accounting database and the completion log, and
/// the columns do not change shape from one Slurm release to the next.
pub async fn sacct_job(host: &dyn Host, from: JobRecords, id: u64) -> Result<Option<Observed>> {
    let log = match from {
        JobRecords::None => return Ok(None),
        JobRecords::Accounting => None,
        JobRecords::CompletionLog => Some("-c"),
    };
    let id_text = id.to_string();
    let mut list = vec!["SLURM_TIME_FORMAT=%s", "sacct"];
    list.extend(log);
    list.extend(["-X", "-P", "-n", "-j", &id_text, "-o", SACCT_FIELDS]);
    let out = host.run("env", &args(&list), None).await?;
    Ok(parse_sacct(&out, id))
}

/// The last line for job `id` in `sacct -P -n -o SACCT_FIELDS` output with
/// times as Unix seconds (a cluster whose ids started over may list it twice).
pub fn parse_sacct(out: &str, id: u64) -> Option<Observed> {
    let line = out.lines().rev().find(|l| {
        l.split('|')
            .next()
            .is_some_and(|j| j.trim() == id.to_string())
    })?;
    let f: Vec<&str> = line.split('|').map(str::trim).collect();
    let field = |i: usize| f.get(i).copied().unwrap_or("");
    // `CANCELLED by 1001`
    let state = field(1).split_whitespace().next()?.to_string();
    let (code, sig) = exit_code(field(2));
    Some(Observed {
        state,
        reason: field(6).to_string(),
        exit_code: sig.map(|s| 128 + s).or(code),
        signal: sig,
        time_limit_minutes: parse_limit(field(5)) / 60,
        start_time: unix_seconds(field(3)),
        end_time: unix_seconds(field(4)),
    })
}

/// `code:signal` (as scontrol and sacct print ExitCode).
fn exit_code(text: &str) -> (Option<i32>, Option<i32>) {
    text.split_once(':')
        .map(|(c, s)| {
            (
                c.parse::<i32>().ok(),
                s.parse::<i32>().ok().filter(|s| *s != 0),
            )
        })
        .unwrap_or((None, None))
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
    fn reads_where_finished_jobs_are_kept() {
        let none = "AccountingStorageType   = accounting_storage/none\nJobCompType             = jobcomp/none\n";
        assert_eq!(parse_job_records(none), JobRecords::None);
        let log = "AccountingStorageType   = accounting_storage/none\nJobCompType             = jobcomp/filetxt\n";
        assert_eq!(parse_job_records(log), JobRecords::CompletionLog);
        let db = "AccountingStorageType   = accounting_storage/slurmdbd\nJobCompType             = jobcomp/filetxt\n";
        assert_eq!(parse_job_records(db), JobRecords::Accounting);
    }

    #[test]
    fn reads_sacct_lines_of_the_job() {
        let out = "117|COMPLETED|0:0|1700000000|1700000001|UNLIMITED|None\n\
                   1170|FAILED|1:0|1|2|00:01:00|\n\
                   117|FAILED|3:0|1764000000|1764000005|00:02:00|NonZeroExitCode\n";
        let o = parse_sacct(out, 117).unwrap();
        assert_eq!(o.state, "FAILED");
        assert_eq!((o.exit_code, o.signal), (Some(3), None));
        assert_eq!((o.start_time, o.end_time), (1764000000, 1764000005));
        assert_eq!(o.time_limit_minutes, 2);
        assert_eq!(o.reason, "NonZeroExitCode");
        let cancelled = parse_sacct("9|CANCELLED by 1001|0:15|5|6|UNLIMITED|\n", 9).unwrap();
        assert_eq!(cancelled.state, "CANCELLED");
        assert_eq!(
            (cancelled.exit_code, cancelled.signal),
            (Some(143), Some(15))
        );
        assert!(parse_sacct("", 9).is_none());
        assert!(parse_sacct("10|COMPLETED|0:0|1|2|UNLIMITED|\n", 9).is_none());
    }

    #[test]
    fn reads_partitions_and_node_states() {
        let out = "debug*|up|infinite|n1|8|16000|(null)|idle|n/a\n\
                   debug*|up|infinite|n2|4|8000|gpu:2|drained|n/a\n\
                   gpu|up|1-00:00:00|n3|16|64000|gpu:a100:4(S:0-1)|mixed|1:00:00\n\
                   off|down|30|n4|2|1000|(null)|idle|n/a\n";
        let parts = parse_sinfo(out);
        let debug = &parts[0];
        assert_eq!(debug.name, "debug");
        assert!(debug.default);
        assert_eq!((debug.cpus, debug.nodes, debug.gpus), (8, 1, 0));
        assert_eq!(debug.node_states["drained"], 1);
        assert_eq!(debug.unavailable(), None);
        let gpu = &parts[1];
        assert_eq!((gpu.gpus, gpu.max_seconds), (4, 86400));
        assert_eq!((debug.default_seconds, gpu.default_seconds), (0, 3600));
        assert!(!gpu.default);
        assert_eq!(gpu.largest, (16, 64000 * 1024 * 1024, 4));
        assert!(parts[2].unavailable().unwrap().contains("down"));
        assert_eq!(parse_limit("1:02:03"), 3723);
        assert_eq!(parse_limit("30"), 1800);
    }

    #[test]
    fn reads_squeue_lines() {
        let out = "12|FAILED|NonZeroExitCode|1:00|1764000000|1764000005\n\
                   13|PENDING|Resources|UNLIMITED|N/A|N/A\n\
                   14_2|RUNNING|None|5:00|1764000000|1764000300\n";
        let jobs = parse_squeue(out);
        assert_eq!(jobs.len(), 2, "{jobs:?}");
        assert_eq!(jobs[&12].state, "FAILED");
        assert_eq!(jobs[&12].time_limit_minutes, 1);
        assert_eq!(
            (jobs[&12].start_time, jobs[&12].end_time),
            (1764000000, 1764000005)
        );
        assert_eq!(jobs[&12].exit_code, None);
        assert_eq!(
            (jobs[&13].reason.as_str(), jobs[&13].start_time),
            ("Resources", 0)
        );
        let ids = parse_comments("7|gantry:a1\n8|(null)\n9|a|b\n");
        assert_eq!(ids["gantry:a1"], 7);
        assert_eq!(ids["a|b"], 9);
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
