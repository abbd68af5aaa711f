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
    /// The jobs to cancel
    #[arg(required = true, value_name = "ID")]
    ids: Vec<u64>,
    /// Why, recorded in the jobs' history
    #[arg(long, value_name = "TEXT", default_value = "")]
    reason: String,
}

/// Run `gantry cancel`: every job is tried; the exit status is 1 if any failed.
pub async fn run(ctx: &Ctx, args: CancelArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let mut failed = 0;
    let mut views = Vec::new();
    for id in args.ids {
        match client.cancel(id, &args.reason).await {
            Ok(job) if ctx.json => views.push(output::JobView::from(&job)),
            Ok(job) if job.state() == JobState::Cancelled => println!("cancelled job {id}"),
            Ok(job) => println!("job {id} had already ended: {}", state_name(job.state())),
            Err(error) => {
                failed += 1;
                eprintln!("gantry: error: job {id}: {error}");
            }
        }
    }
    if ctx.json {
        output::print_json(&views)?;
    }
    Ok(if failed > 0 { 1 } else { 0 })
}
