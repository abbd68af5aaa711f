//! What the console prints: JSON views of the proto types (states as
//! strings like "RUNNING", maps in key order) and the human tables.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comfy_table::{ContentArrangement, Table, presets};
use gantry_client::{Flavor, InputFile, Job, JobEvent, JobSpec, Site, state_name};
use serde::Serialize;

/// `println!` for command output: one line on stdout. A reader that went
/// away (`gantry ls | head -1`) ends the command at once and quietly, as it
/// ends `ls` (exit status 141, 128 + SIGPIPE); another write error ends it
/// with that error, never a panic.
#[macro_export]
macro_rules! out {
    ($($arg:tt)*) => { $crate::output::print_line(format_args!($($arg)*)) };
}

/// Write `args` and a newline to stdout (see [`out!`]).
pub fn print_line(args: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_fmt(args)
        .and_then(|()| stdout.write_all(b"\n"))
    {
        exit_on_write_error(&e);
    }
}

/// The exit status of a command whose reader went away: a shell's for SIGPIPE.
pub const BROKEN_PIPE_EXIT: u8 = 141;

/// End the process after stdout could not be written: quietly when its
/// reader went away, else saying why.
pub fn exit_on_write_error(e: &std::io::Error) -> ! {
    if e.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(BROKEN_PIPE_EXIT.into());
    }
    eprintln!("gantry: error: cannot write the output: {e}");
    std::process::exit(1);
}

/// Whether `error` comes from a reader that went away (a broken pipe).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Print a value as pretty JSON on stdout.
pub fn print_json(value: &impl Serialize) -> anyhow::Result<()> {
    out!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table without borders, columns two spaces apart, as `ls` prints.
pub fn table(header: &[&str]) -> Table {
    let mut table = Table::new();
    table
        .load_style(presets::NOTHING)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.to_vec());
    for column in table.column_iter_mut() {
        column.set_padding((0, 2));
    }
    table
}

/// A job as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct JobView {
    /// The job id.
    pub id: u64,
    /// The owner.
    pub owner: String,
    /// The identity that submitted it, when not the owner.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub submitted_by: String,
    /// The state, e.g. "RUNNING".
    pub state: &'static str,
    /// Why it is in its state.
    pub reason: String,
    /// The exit code, when a process ended.
    pub exit_code: Option<i32>,
    /// The site it was placed on.
    pub site: String,
    /// The partition it was placed on.
    pub partition_id: String,
    /// The current attempt.
    pub attempt_id: String,
    /// Whether it is held.
    pub held: bool,
    /// Unix ms of submission.
    pub submit_time_ms: i64,
    /// Unix ms of start (0 before).
    pub start_time_ms: i64,
    /// Unix ms of the end (0 before).
    pub end_time_ms: i64,
    /// Sequence number of its latest event.
    pub last_event_seq: u64,
    /// Stored output files.
    pub output_files: Vec<String>,
    /// The spec, with defaults filled in.
    pub spec: SpecView,
    /// For a task of an array: the array's id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_id: Option<u64>,
    /// For a task of an array: its index.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array_index: Option<u32>,
    /// For an array as a whole: its tasks and their states.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayView>,
    /// Times it went back to the queue after its compute was lost.
    pub requeues: u32,
    /// The walltime it runs with, in seconds: asked, or its partition's
    /// default once placed (0: none).
    pub walltime_seconds: u64,
    /// Its partition's flavor (a Slurm partition's name), once placed.
    pub flavor: String,
    /// The provider's id of its run (a Slurm job id, a pid).
    pub native_id: String,
}

/// An array as a whole, as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct ArrayView {
    /// The indices as submitted.
    pub indices: String,
    /// How many tasks.
    pub task_count: u64,
    /// The id of the first task.
    pub first_task_id: u64,
    /// Tasks per state, e.g. {"COMPLETED": 90, "RUNNING": 2}.
    pub counts: BTreeMap<&'static str, u64>,
}

impl From<&gantry_client::ArraySummary> for ArrayView {
    fn from(a: &gantry_client::ArraySummary) -> Self {
        Self {
            indices: a.indices.clone(),
            task_count: a.task_count,
            first_task_id: a.first_task_id,
            counts: a
                .counts
                .iter()
                .map(|c| (state_name(c.state()), c.count))
                .collect(),
        }
    }
}

/// An array's counts for people: "90 COMPLETED, 2 RUNNING, 8 QUEUED".
pub fn array_counts(a: &gantry_client::ArraySummary) -> String {
    a.counts
        .iter()
        .map(|c| format!("{} {}", c.count, state_name(c.state())))
        .collect::<Vec<_>>()
        .join(", ")
}

/// How to name a job: `17_3` for a task of an array, else its id.
pub fn job_name(j: &Job) -> String {
    if j.array_id != 0 {
        format!("{}_{}", j.array_id, j.array_index)
    } else {
        j.id.to_string()
    }
}

/// A job spec as JSON.
#[derive(Debug, Serialize, PartialEq, Default)]
pub struct SpecView {
    /// The job's name.
    pub name: String,
    /// The program and arguments (empty for scripts).
    pub argv: Vec<String>,
    /// The script (empty for argv jobs).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub script: String,
    /// Added environment variables.
    pub env: BTreeMap<String, String>,
    /// The names of its secret environment variables (their values are
    /// never shown).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// Requested resources.
    pub resources: ResourcesView,
    /// Requested site.
    pub site: String,
    /// Input files.
    pub inputs: Vec<InputView>,
    /// Output globs.
    pub outputs: Vec<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Priority.
    pub priority: i32,
    /// Dependencies.
    pub after: Vec<u64>,
    /// Submitted held.
    pub hold: bool,
    /// The warning signal before the walltime ("USR1@60").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub signal: String,
    /// The file it reads as stdin, relative to its working directory.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub stdin: String,
    /// The site's directory it runs in, when it chose one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub chdir: String,
    /// Runs again after lost compute, at most.
    pub retries: Option<u32>,
}

/// Requested resources as JSON.
#[derive(Debug, Serialize, PartialEq, Default)]
pub struct ResourcesView {
    /// CPUs per task.
    pub cpus: Option<u32>,
    /// Memory per node, as given.
    pub memory: String,
    /// GPUs per node.
    pub gpus: u32,
    /// Nodes.
    pub nodes: Option<u32>,
    /// Walltime as given.
    pub walltime: String,
    /// Tasks.
    pub tasks: Option<u32>,
    /// At most this many tasks per node (0: the site's choice).
    #[serde(skip_serializing_if = "is_zero")]
    pub tasks_per_node: u32,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// An input file as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct InputView {
    /// Content digest.
    pub digest: String,
    /// Destination path.
    pub path: String,
    /// Permission bits, octal.
    pub mode: String,
}

/// A job event as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct EventView {
    /// Global sequence number.
    pub seq: u64,
    /// The job.
    pub job_id: u64,
    /// Unix ms.
    pub time_ms: i64,
    /// State before ("UNSPECIFIED" for the submission).
    pub from_state: &'static str,
    /// State after.
    pub to_state: &'static str,
    /// Who caused it.
    pub actor: String,
    /// What happened.
    pub message: String,
    /// Exit code on end states.
    pub exit_code: Option<i32>,
}

/// A site as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct SiteView {
    /// Gate name.
    pub name: String,
    /// Provider kind.
    pub provider: String,
    /// Gate version.
    pub version: String,
    /// Reachable now.
    pub healthy: bool,
    /// Why not healthy.
    pub health_message: String,
    /// What it offers.
    pub flavors: Vec<FlavorView>,
    /// Partitions existing now.
    pub partitions: u32,
    /// Jobs running or staging now.
    pub active_jobs: u32,
    /// Whose Unix account jobs run as; `null` when the gate does not say.
    pub run_as: Option<RunAsView>,
}

/// Whose Unix account a site runs jobs as, as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct RunAsView {
    /// Each job as its owner's account.
    pub owner: bool,
    /// Otherwise the one account every job runs as.
    pub account: String,
}

/// Whose account a site's jobs run as, for people: `each owner`, `root`,
/// `-` when the gate does not say.
pub fn run_as(site: &Site) -> String {
    match &site.run_as {
        None => "-".into(),
        Some(r) if r.owner => "each owner".into(),
        Some(r) => r.account.clone(),
    }
}

/// A flavor as JSON.
#[derive(Debug, Serialize, PartialEq)]
pub struct FlavorView {
    /// Name within the gate.
    pub name: String,
    /// CPUs per partition.
    pub cpus: u32,
    /// Memory per partition in bytes.
    pub memory_bytes: u64,
    /// GPUs per partition.
    pub gpus: u32,
    /// Nodes per partition.
    pub nodes: u32,
    /// Price per hour.
    pub price_per_hour: f64,
    /// Currency of the price.
    pub currency: String,
    /// Quota of partitions.
    pub max_partitions: u32,
    /// Longest walltime in seconds (0: no limit).
    pub max_walltime_seconds: u64,
    /// Walltime a job that asks for none gets, in seconds (0: the limit).
    pub default_walltime_seconds: u64,
    /// The site's default flavor.
    pub is_default: bool,
    /// Usable now.
    pub available: bool,
    /// Why not.
    pub unavailable_reason: String,
}

fn sorted(map: &std::collections::HashMap<String, String>) -> BTreeMap<String, String> {
    map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

impl From<&InputFile> for InputView {
    fn from(f: &InputFile) -> Self {
        Self {
            digest: f.digest.clone(),
            path: f.path.clone(),
            mode: format!("{:o}", f.mode),
        }
    }
}

impl From<&JobSpec> for SpecView {
    fn from(s: &JobSpec) -> Self {
        let r = s.resources.clone().unwrap_or_default();
        Self {
            name: s.name.clone(),
            argv: s.argv.clone(),
            script: s.script.clone(),
            env: sorted(&s.env),
            secret_env: sorted(&s.secret_env).into_keys().collect(),
            resources: ResourcesView {
                cpus: r.cpus,
                memory: r.memory,
                gpus: r.gpus,
                nodes: r.nodes,
                walltime: r.walltime,
                tasks: r.tasks,
                tasks_per_node: r.tasks_per_node,
            },
            site: s.site.clone(),
            inputs: s.inputs.iter().map(InputView::from).collect(),
            outputs: s.outputs.clone(),
            labels: sorted(&s.labels),
            priority: s.priority,
            after: s.after.clone(),
            hold: s.hold,
            signal: s.signal.clone(),
            stdin: s.stdin.clone(),
            chdir: s.chdir.clone(),
            retries: s.retries,
        }
    }
}

impl From<&Job> for JobView {
    fn from(j: &Job) -> Self {
        Self {
            id: j.id,
            owner: j.owner.clone(),
            submitted_by: j.submitted_by.clone(),
            state: state_name(j.state()),
            reason: j.reason.clone(),
            exit_code: j.exit_code,
            site: j.site.clone(),
            partition_id: j.partition_id.clone(),
            attempt_id: j.attempt_id.clone(),
            held: j.held,
            submit_time_ms: j.submit_time_ms,
            start_time_ms: j.start_time_ms,
            end_time_ms: j.end_time_ms,
            last_event_seq: j.last_event_seq,
            output_files: j.output_files.clone(),
            spec: j.spec.as_ref().map(SpecView::from).unwrap_or_default(),
            array_id: (j.array_id != 0).then_some(j.array_id),
            array_index: (j.array_id != 0).then_some(j.array_index),
            array: j.array.as_ref().map(ArrayView::from),
            requeues: j.requeues,
            walltime_seconds: j.walltime_seconds,
            flavor: j.flavor.clone(),
            native_id: j.native_id.clone(),
        }
    }
}

impl From<&JobEvent> for EventView {
    fn from(e: &JobEvent) -> Self {
        Self {
            seq: e.seq,
            job_id: e.job_id,
            time_ms: e.time_ms,
            from_state: state_name(e.from_state()),
            to_state: state_name(e.to_state()),
            actor: e.actor.clone(),
            message: e.message.clone(),
            exit_code: e.exit_code,
        }
    }
}

impl From<&Flavor> for FlavorView {
    fn from(f: &Flavor) -> Self {
        let c = f.capacity.unwrap_or_default();
        Self {
            name: f.name.clone(),
            cpus: c.cpus,
            memory_bytes: c.memory_bytes,
            gpus: c.gpus,
            nodes: c.nodes,
            price_per_hour: f.price_per_hour,
            currency: f.currency.clone(),
            max_partitions: f.max_partitions,
            max_walltime_seconds: f.max_walltime_seconds,
            default_walltime_seconds: f.default_walltime_seconds,
            is_default: f.is_default,
            available: f.available,
            unavailable_reason: f.unavailable_reason.clone(),
        }
    }
}

impl From<&Site> for SiteView {
    fn from(s: &Site) -> Self {
        Self {
            name: s.name.clone(),
            provider: s.provider.clone(),
            version: s.version.clone(),
            healthy: s.healthy,
            health_message: s.health_message.clone(),
            flavors: s.flavors.iter().map(FlavorView::from).collect(),
            partitions: s.partitions,
            active_jobs: s.active_jobs,
            run_as: s.run_as.as_ref().map(|r| RunAsView {
                owner: r.owner,
                account: r.account.clone(),
            }),
        }
    }
}

/// Unix ms now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A duration in its two largest units: `45s`, `5m12s`, `2h05m`, `3d04h`.
pub fn short_duration(ms: i64) -> String {
    let s = (ms.max(0) / 1000) as u64;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86400 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86400, s % 86400 / 3600),
    }
}

/// A Unix ms time as UTC RFC 3339 with its age, or `-` when unset.
pub fn time_and_age(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "-".into();
    }
    let time = UNIX_EPOCH + Duration::from_millis(ms as u64);
    format!(
        "{} ({} ago)",
        humantime::format_rfc3339_seconds(time),
        short_duration(now - ms)
    )
}

/// "exit code 0", "143 (SIGTERM)" for 128+N, or "-" without one.
pub fn exit_text(code: Option<i32>) -> String {
    match code {
        None => "-".into(),
        Some(c) => match gantry_proto::signal::killed_by(c) {
            Some(name) => format!("{c} (SIG{name})"),
            None => c.to_string(),
        },
    }
}

/// How long a job's process ran (`took 1m05s`), or "-" when it did not.
pub fn run_time(job: &Job) -> String {
    if job.start_time_ms > 0 && job.end_time_ms >= job.start_time_ms {
        short_duration(job.end_time_ms - job.start_time_ms)
    } else {
        "-".into()
    }
}

/// The AGE/DURATION cell: how long an ended job took, or how long ago an
/// active job was submitted.
pub fn age_or_duration(job: &Job, now: i64) -> String {
    if job.end_time_ms > 0 {
        let start = if job.start_time_ms > 0 {
            job.start_time_ms
        } else {
            job.submit_time_ms
        };
        format!("took {}", short_duration(job.end_time_ms - start))
    } else if job.submit_time_ms > 0 {
        format!("{} ago", short_duration(now - job.submit_time_ms))
    } else {
        "-".into()
    }
}

/// `text` cut to `max` characters, with `…` when cut.
pub fn truncate(text: &str, max: usize) -> String {
    let text = text.replace('\n', " ");
    if text.chars().count() <= max {
        text
    } else {
        let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

/// Bytes in binary units: `512 MiB`, `15.5 GiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if value.fract() == 0.0 || unit == 0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// An exit code cell: the code or `-`.
pub fn exit_cell(code: Option<i32>) -> String {
    code.map_or_else(|| "-".into(), |c| c.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_client::{JobState, ResourceRequest};

    #[test]
    fn job_json_uses_state_names_and_sorted_maps() {
        let job = Job {
            id: 7,
            owner: "alice".into(),
            state: JobState::Failed as i32,
            exit_code: Some(3),
            spec: Some(JobSpec {
                name: "x".into(),
                argv: vec!["false".into()],
                labels: [("b".into(), "2".into()), ("a".into(), "1".into())].into(),
                resources: Some(ResourceRequest {
                    cpus: Some(2),
                    memory: "1GiB".into(),
                    ..Default::default()
                }),
                inputs: vec![InputFile {
                    digest: "ab".into(),
                    path: "in".into(),
                    mode: 0o755,
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let json = serde_json::to_value(JobView::from(&job)).unwrap();
        assert_eq!(json["state"], "FAILED");
        assert_eq!(json["exit_code"], 3);
        assert_eq!(json["spec"]["resources"]["cpus"], 2);
        assert_eq!(json["spec"]["inputs"][0]["mode"], "755");
        assert!(json.get("submitted_by").is_none());
        assert!(json["spec"].get("script").is_none());
        let text = serde_json::to_string(&JobView::from(&job)).unwrap();
        assert!(text.find("\"a\"").unwrap() < text.find("\"b\"").unwrap());
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(short_duration(5_000), "5s");
        assert_eq!(short_duration(312_000), "5m12s");
        assert_eq!(short_duration(7_500_000), "2h05m");
        assert_eq!(short_duration(3 * 86_400_000 + 4 * 3_600_000), "3d04h");
        assert_eq!(bytes(512 * 1024 * 1024), "512 MiB");
        assert_eq!(
            bytes(15 * 1024 * 1024 * 1024 + 512 * 1024 * 1024),
            "15.5 GiB"
        );
        assert_eq!(bytes(10), "10 B");
        assert_eq!(truncate("abcdef", 4), "abc…");
        assert_eq!(truncate("abc", 4), "abc");
    }

    #[test]
    fn age_of_active_and_duration_of_ended_jobs() {
        let mut job = Job {
            submit_time_ms: 1_000,
            ..Default::default()
        };
        assert_eq!(age_or_duration(&job, 61_000), "1m00s ago");
        job.start_time_ms = 2_000;
        job.end_time_ms = 12_000;
        assert_eq!(age_or_duration(&job, 61_000), "took 10s");
    }
}
