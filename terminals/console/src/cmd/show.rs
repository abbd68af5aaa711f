//! `gantry show`: every field of one job and its event history.

use clap::Args;
use futures::TryStreamExt;
use gantry_client::{Job, JobEvent, state_name};
use serde::Serialize;

use crate::cmd::Ctx;
use crate::output::{self, EventView, JobView};

/// Arguments of `gantry show`.
#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  gantry show 42\n  gantry show 42 --json | jq .events")]
pub struct ShowArgs {
    /// The job id
    id: gantry_client::JobRef,
}

#[derive(Serialize)]
struct ShowView {
    job: JobView,
    events: Vec<EventView>,
}

/// Run `gantry show`.
pub async fn run(ctx: &Ctx, args: ShowArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let job = client.resolve(args.id).await?;
    let events: Vec<JobEvent> = client.watch(0, vec![job.id], false).try_collect().await?;
    if ctx.json {
        output::print_json(&ShowView {
            job: JobView::from(&job),
            events: events.iter().map(EventView::from).collect(),
        })?;
    } else {
        print_job(&job);
        print_events(&events);
    }
    Ok(0)
}

fn join_words(words: &[String]) -> String {
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}

fn pairs(map: &std::collections::BTreeMap<String, String>) -> String {
    let items: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(" ")
    }
}

/// The walltime asked (`2:00:00`), or the one its partition gave a job
/// that asked none (`120s (its partition's default)`), or `-`.
fn walltime(asked: &str, seconds: u64) -> String {
    match (asked, seconds) {
        ("", 0) => "-".into(),
        ("", s) => format!("{s}s (its partition's default)"),
        (asked, _) => asked.into(),
    }
}

/// `short (01a2…)`: the partition's flavor (a Slurm partition) and
/// gantryd's id of it; `-` before it is placed.
fn partition(flavor: &str, id: &str) -> String {
    match (flavor, id) {
        (_, "") => "-".into(),
        ("", id) => id.into(),
        (flavor, id) => format!("{flavor} ({id})"),
    }
}

fn or_dash(text: &str) -> String {
    if text.is_empty() {
        "-".into()
    } else {
        text.into()
    }
}

/// "1", or "3 (requeued twice after its compute was lost)".
fn attempts(requeues: u32) -> String {
    match requeues {
        0 => "1".into(),
        1 => "2 (requeued once after its compute was lost)".into(),
        n => format!("{} (requeued {n} times after its compute was lost)", n + 1),
    }
}

fn print_job(job: &Job) {
    let now = output::now_ms();
    let view = JobView::from(job);
    let spec = &view.spec;
    let r = &spec.resources;
    let mut rows: Vec<(&str, String)> = vec![
        ("id", view.id.to_string()),
        ("name", or_dash(&spec.name)),
        ("owner", view.owner.clone()),
    ];
    if !view.submitted_by.is_empty() {
        rows.push(("submitted by", view.submitted_by.clone()));
    }
    if job.array_id != 0 {
        rows.push(("array task", output::job_name(job)));
    }
    if let Some(array) = &job.array {
        rows.push((
            "array",
            format!(
                "[{}]: {} tasks, jobs {}-{} (gantry ls --array {})",
                array.indices,
                array.task_count,
                array.first_task_id,
                array.first_task_id + array.task_count.saturating_sub(1),
                job.id
            ),
        ));
        rows.push(("tasks", output::array_counts(array)));
    }
    rows.extend([
        (
            "state",
            format!("{}{}", view.state, if view.held { " (held)" } else { "" }),
        ),
        ("reason", or_dash(&view.reason)),
        ("exit code", output::exit_text(view.exit_code)),
        ("site", or_dash(&view.site)),
        ("partition", partition(&view.flavor, &view.partition_id)),
        ("id on site", or_dash(&view.native_id)),
        ("attempt", or_dash(&view.attempt_id)),
        ("attempts", attempts(view.requeues)),
        ("submitted", output::time_and_age(view.submit_time_ms, now)),
        ("started", output::time_and_age(view.start_time_ms, now)),
        ("ended", output::time_and_age(view.end_time_ms, now)),
        ("ran for", output::run_time(job)),
    ]);
    if spec.script.is_empty() {
        rows.push(("command", join_words(&spec.argv)));
    } else {
        rows.push(("script", format!("{} lines", spec.script.lines().count())));
    }
    rows.extend([
        (
            "resources",
            format!(
                "cpus={} memory={} gpus={} nodes={} tasks={}{} walltime={}",
                r.cpus.map_or("-".into(), |c| c.to_string()),
                or_dash(&r.memory),
                r.gpus,
                r.nodes.map_or("-".into(), |n| n.to_string()),
                r.tasks.map_or("-".into(), |n| n.to_string()),
                if r.tasks_per_node > 0 {
                    format!(" tasks-per-node={}", r.tasks_per_node)
                } else {
                    String::new()
                },
                walltime(&r.walltime, job.walltime_seconds)
            ),
        ),
        ("signal", or_dash(&spec.signal)),
        (
            "retries",
            spec.retries.map_or("-".into(), |n| n.to_string()),
        ),
        ("stdin", or_dash(&spec.stdin)),
        ("directory", or_dash(&spec.chdir)),
        ("requested site", or_dash(&spec.site)),
        ("priority", spec.priority.to_string()),
        (
            "after",
            or_dash(
                &spec
                    .after
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
            ),
        ),
        ("labels", pairs(&spec.labels)),
        ("env", pairs(&spec.env)),
        ("secret env", or_dash(&spec.secret_env.join(","))),
        (
            "inputs",
            or_dash(
                &spec
                    .inputs
                    .iter()
                    .map(|i| {
                        format!(
                            "{} ({})",
                            i.path,
                            i.digest.chars().take(12).collect::<String>()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ),
        ("outputs", or_dash(&spec.outputs.join(" "))),
        ("output files", or_dash(&view.output_files.join(" "))),
        ("last event", view.last_event_seq.to_string()),
    ]);
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in rows {
        crate::out!("{key:<width$}  {value}");
    }
}

fn print_events(events: &[JobEvent]) {
    crate::out!("\nevents:");
    let mut table = output::table(&["SEQ", "TIME", "FROM", "TO", "ACTOR", "MESSAGE"]);
    for e in events {
        let time =
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.time_ms.max(0) as u64);
        table.add_row(vec![
            e.seq.to_string(),
            humantime::format_rfc3339_seconds(time).to_string(),
            state_name(e.from_state()).to_string(),
            state_name(e.to_state()).to_string(),
            e.actor.clone(),
            output::truncate(&e.message, 80),
        ]);
    }
    crate::out!("{table}");
}
