//! `gantry-gate-local`: the gate that runs jobs as processes on this machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry_gate::{GateArgs, RunAs, RunAsArgs};
use gantry_gate_local::{DEFAULT_QUEUE_FACTOR, LocalConfig, LocalProvider, default_supervisor};

/// Serve the Gantry gate API for this machine: jobs run as local processes.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-local", version)]
struct Cli {
    #[command(flatten)]
    gate: GateArgs,
    /// Where partitions and attempts (working directories, logs) live.
    #[arg(long, env = "GANTRY_GATE_WORK_DIR", default_value = "./gantry-local")]
    work_dir: PathBuf,
    /// CPUs to offer [default: the host's available parallelism].
    #[arg(long, env = "GANTRY_GATE_CPUS")]
    cpus: Option<u32>,
    /// Memory to offer, in bytes [default: the host's MemTotal].
    #[arg(long, env = "GANTRY_GATE_MEMORY")]
    memory: Option<u64>,
    /// The gantry-supervisor binary, started when none runs for the work
    /// directory [default: gantry-supervisor next to this executable].
    #[arg(long, env = "GANTRY_GATE_SUPERVISOR")]
    supervisor: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when a job is cancelled or over its walltime.
    #[arg(long, env = "GANTRY_GATE_KILL_GRACE", default_value_t = 3)]
    kill_grace: u64,
    /// Queue up to this many times the offered CPUs and memory in jobs that
    /// wait on the gate and start first come first served as slots free
    /// (0: refuse what does not fit now).
    #[arg(long, env = "GANTRY_GATE_QUEUE_FACTOR", default_value_t = DEFAULT_QUEUE_FACTOR)]
    queue_factor: u32,
    #[command(flatten)]
    run_as: RunAsArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-gate-local", "info");
    let cli: Cli = gantry_gate::parse_gate_cli(gantry_gate::default_listen::LOCAL);
    if cli.cpus == Some(0) {
        anyhow::bail!("--cpus: must be at least 1");
    }
    let run_as = RunAs::from_args_here(&cli.run_as)?;
    let config = LocalConfig {
        work_dir: cli.work_dir,
        cpus: cli.cpus,
        memory_bytes: cli.memory,
        supervisor: cli.supervisor.unwrap_or_else(default_supervisor),
        kill_grace: Duration::from_secs(cli.kill_grace),
        queue_factor: cli.queue_factor,
        run_as,
    };
    if !config.supervisor.is_file() {
        anyhow::bail!(
            "--supervisor: {} does not exist; install gantry-supervisor next to gantry-gate-local or pass --supervisor",
            config.supervisor.display()
        );
    }
    let provider = LocalProvider::open(config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
