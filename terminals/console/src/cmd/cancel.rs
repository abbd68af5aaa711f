//! `gantry cancel`: cancel one or more jobs.

use clap::Args;
use gantry_client::{JobState, state_name};

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry cancel`.
#[derive(Args, Debug)]
#[command(
    after_help = "Examples:\n  gantry cancel 42\n  gantry cancel 42 43 44 --reason 'wrong input'"
)]
pub struct CancelArgs {
    /// The jobs to cancel: ids, 17_3 for one task of array 17, or an
    /// array's id for all of its tasks
    #[arg(required = true, value_name = "ID")]
    ids: Vec<gantry_client::JobRef>,
    /// Why, recorded in the jobs' history
    #[arg(long, value_name = "TEXT", default_value = "")]
    reason: String,
}

/// Run `gantry cancel`: every job is tried; the exit status is 1 if any failed.
pub async fn run(ctx: &Ctx, args: CancelArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let mut failed = 0;
    let mut views = Vec::new();
    for reference in args.ids {
        let id = reference;
        let cancelled = match crate::cmd::job_id(&client, reference).await {
            Ok(job_id) => client
                .cancel(job_id, &args.reason)
                .await
                .map_err(anyhow::Error::from),
            Err(e) => Err(e),
        };
        match cancelled {
            Ok(job) if ctx.json => views.push(output::JobView::from(&job)),
            Ok(job) if job.state() == JobState::Cancelled => crate::out!("cancelled job {id}"),
            Ok(job) => crate::out!("job {id} had already ended: {}", state_name(job.state())),
            Err(error) => {
                failed += 1;
                // Name the job once: gantryd's own messages usually do.
                let text = format!("{error:#}");
                if text.contains(&format!("job {id}")) {
                    eprintln!("gantry: error: {text}");
                } else {
                    eprintln!("gantry: error: job {id}: {text}");
                }
            }
        }
    }
    if ctx.json {
        output::print_json(&views)?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
