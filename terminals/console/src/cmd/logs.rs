//! `gantry logs`: a job's output as raw bytes.

use std::io::Write;

use clap::Args;
use futures::StreamExt;
use gantry_client::LogStream;

use crate::cmd::Ctx;

/// Arguments of `gantry logs`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gantry logs 42                 # stdout so far
  gantry logs -f 42              # and keep following until the job ends
  gantry logs --stderr 42 > err.txt")]
pub struct LogsArgs {
    /// The job id
    id: gantry_client::JobRef,
    /// Keep printing as the job writes, until it ends
    #[arg(short, long)]
    follow: bool,
    /// Print stderr instead of stdout
    #[arg(long)]
    stderr: bool,
    /// Start at this byte offset
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    offset: u64,
}

/// Run `gantry logs`. The bytes go to stdout unchanged (binary-safe); a
/// closed pipe (`| head`) ends the command quietly.
pub async fn run(ctx: &Ctx, args: LogsArgs) -> anyhow::Result<i32> {
    let client = ctx.connect().await?;
    let id = crate::cmd::job_id(&client, args.id).await?;
    let stream = if args.stderr {
        LogStream::Stderr
    } else {
        LogStream::Stdout
    };
    let chunks = client
        .read_logs(id, stream, args.offset, args.follow)
        .await?;
    futures::pin_mut!(chunks);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, stdout.lock());
    // A reader that goes away (`| head`) ends it quietly (see main).
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk?;
        out.write_all(&chunk.data)?;
        if args.follow {
            out.flush()?;
        }
    }
    out.flush()?;
    Ok(0)
}
