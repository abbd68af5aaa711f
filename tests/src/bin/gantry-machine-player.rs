//! `gantry-machine-player`: the tests' stand-in for EC2's machines as a
//! process of its own, for tests that are not written in Rust (the
//! JupyterHub spawner's). It plays the instances moto holds for one
//! installation on this host, exactly as the Rust tests' [`MachinePlayer`]
//! does, until SIGTERM or SIGINT; then it ends every machine it played.

use std::path::PathBuf;

use clap::Parser;
use gantry_e2e::cloud::{MachinePlayer, ec2_client};

/// Play moto's instances of one installation on this host.
#[derive(Parser, Debug)]
struct Args {
    /// moto's endpoint (EC2's API)
    #[arg(long)]
    endpoint: String,
    /// The installation whose instances (tag gantry:installation) to play
    #[arg(long)]
    installation: String,
    /// Where the machines' directories go
    #[arg(long)]
    dir: PathBuf,
    /// Written (with "playing") once the player runs
    #[arg(long)]
    ready_file: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let player = MachinePlayer::start(
        ec2_client(&args.endpoint).await,
        &args.installation,
        &args.dir,
    );
    if let Some(ready) = &args.ready_file {
        std::fs::write(ready, "playing")?;
    }
    gantry_proto::serve::shutdown_signal().await;
    drop(player);
    Ok(())
}
