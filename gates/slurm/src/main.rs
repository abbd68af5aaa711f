//! `gantry-gate-slurm`: the gate that runs jobs on a Slurm cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry_gate::GateArgs;
use gantry_gate_slurm::{Runner, SlurmConfig, SlurmProvider};

/// Serve the Gantry gate API for a Slurm cluster: each job is a batch job
/// submitted with sbatch from this host, watched with squeue.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-slurm", version)]
struct Cli {
    #[command(flatten)]
    gate: GateArgs,
    /// Where partitions and attempts (working directories, logs) live; must
    /// be on a file system the compute nodes share.
    #[arg(long, env = "GANTRY_GATE_WORK_DIR", default_value = "./gantry-slurm")]
    work_dir: PathBuf,
    /// The slurm.conf Slurm's commands should read [default: Slurm's own default].
    #[arg(long, env = "SLURM_CONF")]
    slurm_conf: Option<PathBuf>,
    /// Seconds between asking Slurm for the jobs' states.
    #[arg(long, env = "GANTRY_GATE_POLL", default_value_t = 2.0)]
    poll: f64,
    /// How many times a partition's capacity gantryd may hand this gate
    /// beyond it; Slurm queues the rest.
    #[arg(long, env = "GANTRY_GATE_QUEUE_FACTOR", default_value_t = 100)]
    queue_factor: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    gantry_proto::telemetry::init("info");
    let cli = Cli::parse();
    if cli.poll.is_nan() || cli.poll <= 0.0 {
        anyhow::bail!("--poll: must be more than 0 seconds");
    }
    let mut runner = Runner::default();
    if let Some(conf) = &cli.slurm_conf {
        runner
            .env
            .push(("SLURM_CONF".into(), conf.to_string_lossy().into_owned()));
    }
    let config = SlurmConfig {
        work_dir: cli.work_dir,
        runner,
        poll: Duration::from_secs_f64(cli.poll),
        queue_factor: cli.queue_factor,
    };
    let provider = SlurmProvider::open(config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
