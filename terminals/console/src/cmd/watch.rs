//! `gantry watch`: follow job events as they happen, for people (a line per
//! change) and for programs (`--json`: one JSON object per line), resuming
//! from a sequence number so an integration never has to poll.

use std::collections::HashSet;
use std::io::Write;

use anyhow::bail;
use clap::Args;
use futures::{Stream, StreamExt};
use gantry_client::{JobEvent, JobRef, is_end_state, state_name};

use crate::cmd::Ctx;
use crate::output::{self, EventView};

/// Arguments of `gantry watch`.
#[derive(Args, Debug)]
#[command(after_help = "\
Without IDs it follows every job you may see, from now on, until Ctrl-C. With
IDs it prints those jobs' history first and exits once each has ended. The SEQ
column (\"seq\" in JSON) orders all events; give the last one you saw to
--since to resume without missing or repeating one.

Examples:
  gantry watch                      # every change from now on
  gantry watch 42 43                # these jobs, until both have ended
  gantry watch --json --since 1200  # JSON lines after event 1200, then follow")]
pub struct WatchArgs {
    /// Only these jobs (ARRAY_ID_INDEX names a task of an array)
    ids: Vec<JobRef>,
    /// Start after this event sequence number [default: now, or the named
    /// jobs' whole history]
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
}

/// Run `gantry watch`.
pub async fn run(ctx: &Ctx, args: WatchArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let mut ids = Vec::with_capacity(args.ids.len());
    for reference in args.ids {
        let job = client.resolve(reference).await?;
        let id = job.id;
        if job.array.is_some() {
            bail!(
                "job {id} is an array; watch its tasks ({id}_0, ...), or every job with `gantry watch`"
            );
        }
        ids.push(id);
    }
    let events: std::pin::Pin<Box<dyn Stream<Item = _> + Send>> = match args.since {
        None if ids.is_empty() => Box::pin(client.watch_new(Vec::new())),
        since => Box::pin(client.watch(since.unwrap_or(0), ids.clone(), true)),
    };
    follow(ctx, events, ids).await
}

/// Print events until the named jobs have all ended (never, when none are).
async fn follow(
    ctx: &Ctx,
    mut events: impl Stream<Item = gantry_client::Result<JobEvent>> + Unpin,
    ids: Vec<u64>,
) -> anyhow::Result<i32> {
    let mut running: HashSet<u64> = ids.iter().copied().collect();
    let mut out = std::io::stdout().lock();
    if !ctx.json
        && let Err(e) = writeln!(out, "{}", header())
    {
        crate::output::exit_on_write_error(&e);
    }
    while let Some(event) = events.next().await {
        let event = event?;
        let line = if ctx.json {
            serde_json::to_string(&EventView::from(&event))?
        } else {
            line(&event)
        };
        // A closed pipe (`gantry watch | head`) ends the watch quietly, as
        // every command (exit status 141).
        if let Err(e) = writeln!(out, "{line}").and_then(|()| out.flush()) {
            crate::output::exit_on_write_error(&e);
        }
        if is_end_state(event.to_state()) {
            running.remove(&event.job_id);
            if !ids.is_empty() && running.is_empty() {
                return Ok(0);
            }
        }
    }
    Ok(0)
}

fn header() -> String {
    format!(
        "{:>8}  {:<20}  {:>8}  {:<25}  {:<14}  MESSAGE",
        "SEQ", "TIME", "JOB", "CHANGE", "ACTOR"
    )
}

/// One event as a line of text, aligned with [`header`].
fn line(e: &JobEvent) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_millis(e.time_ms.max(0) as u64);
    let change = format!(
        "{} -> {}",
        state_name(e.from_state()),
        state_name(e.to_state())
    );
    format!(
        "{:>8}  {:<20}  {:>8}  {:<25}  {:<14}  {}",
        e.seq,
        humantime::format_rfc3339_seconds(time).to_string(),
        e.job_id,
        change,
        e.actor,
        output::truncate(&e.message, 100)
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_client::JobState;

    #[test]
    fn a_line_per_event_under_its_header() {
        let e = JobEvent {
            seq: 12,
            job_id: 3,
            time_ms: 0,
            from_state: JobState::Running as i32,
            to_state: JobState::Completed as i32,
            actor: "gate/local".into(),
            message: "exit code 0".into(),
            ..Default::default()
        };
        let l = line(&e);
        assert!(l.starts_with("      12  1970-01-01T00:00:00Z"), "{l}");
        assert!(l.contains("RUNNING -> COMPLETED"), "{l}");
        assert!(l.ends_with("gate/local      exit code 0"), "{l}");
        assert_eq!(header().find("CHANGE"), l.find("RUNNING"));
    }
}
