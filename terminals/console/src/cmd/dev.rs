//! `gantry dev`: a whole Gantry on this machine, for development.

use std::path::PathBuf;

use clap::Args;

use crate::cmd::Ctx;
use crate::dev::{self, DevOptions};

/// Arguments of `gantry dev`.
#[derive(Args, Debug)]
#[command(after_help = "\
Starts gantry-sched, gantry-gate-local and gantryd (found next to this gantry
executable) as separate processes, each logging to <state>/logs/<name>.log, makes
a PKI under <state>/pki and writes the profile <state>/client.toml that other
gantry commands find by themselves. A process that dies (try `kill -9` on
gantryd or the gate while jobs run) is started again on its address and
recovers from its state; Ctrl-C stops everything in order. Jobs, history and
certificates stay in the state directory for the next start. It is one
person's installation: every job runs as the account running `gantry dev`
(the local gate's `--run-as gate`).

Examples:
  gantry dev                    # then, in another terminal: gantry submit -- echo hello
  gantry dev --fresh --cpus 2   # start over with an empty queue, offer 2 CPUs
  gantry dev --state-dir /tmp/g && GANTRY_PROFILE=/tmp/g/client.toml gantry ls")]
pub struct DevArgs {
    /// Where state, certificates and logs live [default: $XDG_STATE_HOME/gantry/dev or ~/.local/state/gantry/dev]
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Delete the state directory first (jobs, history, certificates, logs)
    #[arg(long)]
    fresh: bool,
    /// CPUs the local gate offers [default: all of this machine's]
    #[arg(long, value_name = "N")]
    cpus: Option<u32>,
    /// Where gantryd, gantry-sched and gantry-gate-local are [default: this executable's directory]
    #[arg(long, value_name = "DIR")]
    bin_dir: Option<PathBuf>,
}

/// Run `gantry dev` until Ctrl-C or SIGTERM.
pub async fn run(_ctx: &Ctx, args: DevArgs) -> anyhow::Result<i32> {
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(".")),
    };
    dev::run(DevOptions {
        state_dir: args
            .state_dir
            .unwrap_or_else(gantry_client::default_dev_state_dir),
        fresh: args.fresh,
        cpus: args.cpus,
        bin_dir,
    })
    .await?;
    Ok(0)
}
