//! `gantry hold`: keep a queued job from being scheduled.

use clap::Args;

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry hold`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  gantry hold 42     # later: gantry release 42")]
pub struct HoldArgs {
    /// The job; it must be QUEUED
    id: gantry_client::JobRef,
}

/// Run `gantry hold`.
pub async fn run(ctx: &Ctx, args: HoldArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let job = client
        .hold(crate::cmd::job_id(&client, args.id).await?)
        .await?;
    if ctx.json {
        output::print_json(&output::JobView::from(&job))?;
    } else {
        crate::out!("held job {}", job.id);
    }
    Ok(0)
}
