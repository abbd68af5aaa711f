//! `gantry outputs`: download an ended job's output files.

use std::path::PathBuf;

use clap::Args;

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry outputs`.
#[derive(Args, Debug)]
#[command(after_help = "\
Output files are those matching the job's --output globs when it ended.

Examples:
  gantry outputs 42                  # into ./gantry-42/
  gantry outputs 42 --dest results/")]
pub struct OutputsArgs {
    /// The job id; it must have ended
    id: gantry_client::JobRef,
    /// Where to put the files [default: ./gantry-<ID>/]
    #[arg(long, value_name = "DIR")]
    dest: Option<PathBuf>,
}

/// Run `gantry outputs`: prints each file written.
pub async fn run(ctx: &Ctx, args: OutputsArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let id = crate::cmd::job_id(&client, args.id).await?;
    let dest = args
        .dest
        .unwrap_or_else(|| PathBuf::from(format!("gantry-{}", args.id)));
    let files = client.download_outputs(id, &dest).await?;
    if ctx.json {
        output::print_json(&files)?;
    } else if files.is_empty() {
        eprintln!("job {} has no output files", args.id);
    } else {
        for file in files {
            crate::out!("{}", file.display());
        }
    }
    Ok(0)
}
