//! `gantry ls`: a table of jobs.

use clap::Args;
use gantry_client::{Job, JobState, ListJobsRequest, state_name};

use crate::cmd::Ctx;
use crate::output;
use crate::parse;

/// The page size gantryd uses when none is asked for.
const DEFAULT_PAGE: u32 = 100;
/// The largest page gantryd serves.
const MAX_PAGE: u32 = 1000;

/// Arguments of `gantry ls`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gantry ls                          # your 100 newest jobs
  gantry ls --state running,queued   # only active ones
  gantry ls --label project=x --all  # every job with this label
  gantry ls --array 17               # the tasks of array 17
  gantry ls --json | jq '.[].id'

An array is one row (its id, and its tasks counted by state) unless --expand,
--array or a state, site or label filter is given.")]
pub struct LsArgs {
    /// Only jobs in this state, e.g. running (repeatable, or comma-separated)
    #[arg(long, value_name = "STATE", value_delimiter = ',', value_parser = parse::state)]
    state: Vec<JobState>,
    /// Only jobs placed on this site
    #[arg(long, value_name = "SITE")]
    site: Option<String>,
    /// Only jobs with this label (repeatable; all must match)
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse::key_value)]
    label: Vec<(String, String)>,
    /// Only this owner's jobs (admins; users always see their own)
    #[arg(long, value_name = "USER")]
    owner: Option<String>,
    /// Page through every matching job instead of showing the first page
    #[arg(long)]
    all: bool,
    /// Show at most N jobs [default: 100, or no limit with --all]
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Only the tasks of this array
    #[arg(long, value_name = "ID")]
    array: Option<u64>,
    /// Show the tasks of arrays one per row instead of one row per array
    #[arg(long)]
    expand: bool,
}

/// Run `gantry ls`.
pub async fn run(ctx: &Ctx, args: LsArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let limit = args.limit.map(|n| n as usize).unwrap_or(if args.all {
        usize::MAX
    } else {
        DEFAULT_PAGE as usize
    });
    let mut request = ListJobsRequest {
        states: args.state.iter().map(|s| *s as i32).collect(),
        owner: args.owner.unwrap_or_default(),
        site: args.site.unwrap_or_default(),
        labels: args.label.into_iter().collect(),
        page_size: 0,
        page_token: String::new(),
        group_arrays: !args.expand,
        array_id: args.array.unwrap_or(0),
    };
    let mut jobs: Vec<Job> = Vec::new();
    let more = loop {
        let want = (limit - jobs.len()).min(MAX_PAGE as usize) as u32;
        request.page_size = want.max(1);
        let page = client.list(request.clone()).await?;
        jobs.extend(page.jobs);
        if page.next_page_token.is_empty() {
            break false;
        }
        if jobs.len() >= limit || !args.all {
            break true;
        }
        request.page_token = page.next_page_token;
    };
    jobs.truncate(limit);
    if ctx.json {
        let views: Vec<_> = jobs.iter().map(output::JobView::from).collect();
        output::print_json(&views)?;
        return Ok(0);
    }
    print_table(&jobs);
    if more {
        eprintln!("(more jobs match: use --all or --limit N)");
    }
    Ok(0)
}

fn print_table(jobs: &[Job]) {
    let now = output::now_ms();
    let mut table = output::table(&[
        "ID",
        "NAME",
        "OWNER",
        "STATE",
        "SITE",
        "EXIT",
        "AGE/DURATION",
        "REASON",
    ]);
    for job in jobs {
        let name = job
            .spec
            .as_ref()
            .map(|s| s.name.as_str())
            .unwrap_or_default();
        let mut state = state_name(job.state()).to_string();
        if job.held && job.state() == JobState::Queued {
            state.push_str(" (held)");
        }
        let reason = match &job.array {
            Some(array) => format!("array [{}]: {}", array.indices, output::array_counts(array)),
            None => output::truncate(&job.reason, 40),
        };
        table.add_row(vec![
            output::job_name(job),
            output::truncate(name, 24),
            job.owner.clone(),
            state,
            if job.site.is_empty() {
                "-".into()
            } else {
                job.site.clone()
            },
            output::exit_cell(job.exit_code),
            output::age_or_duration(job, now),
            reason,
        ]);
    }
    crate::out!("{table}");
}
