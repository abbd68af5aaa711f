//! `gantry release`: let a held job be scheduled.

use clap::Args;

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry release`.
#[derive(Args, Debug)]
#[command(after_help = "Example:\n  gantry submit --hold -- ./big-run.sh && gantry release 42")]
pub struct ReleaseArgs {
    /// The held job
    id: gantry_client::JobRef,
}

/// Run `gantry release`.
pub async fn run(ctx: &Ctx, args: ReleaseArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let job = client
        .release(crate::cmd::job_id(&client, args.id).await?)
        .await?;
    if ctx.json {
        output::print_json(&output::JobView::from(&job))?;
    } else {
        crate::out!("released job {}", job.id);
    }
    Ok(0)
}
