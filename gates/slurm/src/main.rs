//! `gantry-gate-slurm`: the gate that runs jobs on a Slurm cluster.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use gantry_gate::GateArgs;
use gantry_gate::batch::BatchArgs;
use gantry_gate_slurm::{Slurm, SlurmProvider};

/// Serve the Gantry gate API for a Slurm cluster: each job is a batch job
/// submitted with sbatch, watched with squeue — on this host, or with --ssh
/// on a login node over one multiplexed SSH connection.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-slurm", version)]
struct Cli {
    #[command(flatten)]
    gate: GateArgs,
    /// Where partitions and attempts (working directories, logs) live, on
    /// the host that runs Slurm's commands (with --ssh: the login node; a
    /// relative path is then relative to the login directory); must be on a
    /// file system the compute nodes share.
    #[arg(long, env = "GANTRY_GATE_WORK_DIR", default_value = "gantry-slurm")]
    work_dir: PathBuf,
    /// The slurm.conf Slurm's commands should read [default: Slurm's own default].
    #[arg(long, env = "SLURM_CONF")]
    slurm_conf: Option<PathBuf>,
    #[command(flatten)]
    batch: BatchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-gate-slurm", "info");
    let cli: Cli = gantry_gate::parse_gate_cli(gantry_gate::default_listen::SLURM);
    let env: Vec<(String, String)> = cli
        .slurm_conf
        .iter()
        .map(|conf| ("SLURM_CONF".into(), conf.to_string_lossy().into_owned()))
        .collect();
    let config = cli.batch.config(cli.work_dir, env).await?;
    let host = config.host.clone();
    // A slurm.conf Slurm cannot read makes each of its commands retry for a
    // minute and then fail: say so now, in this gate's own log.
    if let Some(conf) = &cli.slurm_conf {
        match host.read(conf).await {
            Ok(Some(_)) => {}
            Ok(None) => anyhow::bail!(
                "--slurm-conf {}: no such file on the host that runs Slurm's commands",
                conf.display()
            ),
            Err(e) => anyhow::bail!("--slurm-conf {}: cannot read it: {e}", conf.display()),
        }
    }
    let provider = SlurmProvider::open(Slurm::default(), config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
