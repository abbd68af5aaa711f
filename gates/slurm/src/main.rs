//! `gantry-gate-slurm`: the gate that runs jobs on a Slurm cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry_gate::{BatchConfig, GateArgs, Host, LocalHost, SshHost, SshTarget};
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
    /// Run Slurm's commands and keep the work directory on this login node,
    /// reached with the system's ssh (`[user@]host`, `ssh://[user@]host[:port]`
    /// or a Host of the ssh config): key authentication only (BatchMode), the host key must
    /// already be in known_hosts, one master connection for everything.
    #[arg(long, env = "GANTRY_GATE_SSH", value_name = "DESTINATION")]
    ssh: Option<String>,
    /// The ssh_config file to use with --ssh [default: ~/.ssh/config].
    #[arg(
        long,
        env = "GANTRY_GATE_SSH_CONFIG",
        requires = "ssh",
        value_name = "FILE"
    )]
    ssh_config: Option<PathBuf>,
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
    let env: Vec<(String, String)> = cli
        .slurm_conf
        .iter()
        .map(|conf| ("SLURM_CONF".into(), conf.to_string_lossy().into_owned()))
        .collect();
    let host: Arc<dyn Host> = match cli.ssh {
        None => Arc::new(LocalHost { env }),
        Some(destination) => Arc::new(
            SshHost::connect(SshTarget {
                destination,
                config_file: cli.ssh_config,
                env,
            })
            .await?,
        ),
    };
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
    let config = BatchConfig {
        host,
        work_dir: cli.work_dir,
        poll: Duration::from_secs_f64(cli.poll),
        queue_factor: cli.queue_factor,
    };
    let provider = SlurmProvider::open(Slurm::default(), config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
