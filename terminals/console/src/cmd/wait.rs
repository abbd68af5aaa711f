//! `gantry wait`: wait for a job to end; exit with its exit status.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Args;
use gantry_client::{Job, JobEvent, JobState, exit_status, is_end_state, state_name};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry wait`.
#[derive(Args, Debug)]
#[command(after_help = "\
The exit status is the job's: 0 when COMPLETED, its exit code when it FAILED or
was CANCELLED after its process ran, else 1 for FAILED and 130 for CANCELLED.

Examples:
  gantry wait 42 && echo done
  id=$(gantry submit --json -- ./step1 | jq .id) && gantry wait \"$id\"")]
pub struct WaitArgs {
    /// The job id
    id: gantry_client::JobRef,
}

/// Shows progress on stderr: a spinner on a terminal, else a line per change.
enum Progress {
    Spinner(ProgressBar),
    Lines,
}

impl Progress {
    fn new(job: &Job) -> Self {
        if !std::io::stderr().is_terminal() {
            eprintln!("job {}: {}", job.id, describe(job.state(), &job.reason));
            return Progress::Lines;
        }
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} job {prefix}: {msg} [{elapsed_precise}]")
                .expect("valid template"),
        );
        bar.set_prefix(job.id.to_string());
        bar.set_message(describe(job.state(), &job.reason));
        bar.enable_steady_tick(Duration::from_millis(120));
        Progress::Spinner(bar)
    }

    fn event(&self, event: &JobEvent) {
        let text = describe(event.to_state(), &event.message);
        match self {
            Progress::Spinner(bar) => bar.set_message(text),
            Progress::Lines => eprintln!("job {}: {text}", event.job_id),
        }
    }

    fn finish(self) {
        if let Progress::Spinner(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn describe(state: JobState, why: &str) -> String {
    if why.is_empty() {
        state_name(state).to_string()
    } else {
        format!("{} ({})", state_name(state), output::truncate(why, 60))
    }
}

/// Run `gantry wait`.
pub async fn run(ctx: &Ctx, args: WaitArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let job = client.resolve(args.id).await?;
    let job = if is_end_state(job.state()) {
        job
    } else {
        let progress = Progress::new(&job);
        let ended = client.wait(job.id, |event| progress.event(event)).await;
        progress.finish();
        ended?
    };
    if ctx.json {
        output::print_json(&output::JobView::from(&job))?;
    } else {
        let exit = job.exit_code.map(|c| format!("exit code {c}"));
        // The reason often is just the exit code; say each thing once.
        let details: Vec<&str> = exit
            .as_deref()
            .into_iter()
            .chain(
                Some(job.reason.as_str()).filter(|r| !r.is_empty() && Some(*r) != exit.as_deref()),
            )
            .collect();
        let details = if details.is_empty() {
            String::new()
        } else {
            format!(": {}", details.join(", "))
        };
        eprintln!("job {} {}{details}", job.id, state_name(job.state()));
    }
    Ok(exit_status(&job))
}
