//! `gantry-gate-sge`: the gate that runs jobs on a Grid Engine cluster.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry_gate::{BatchConfig, GateArgs, Host, LocalHost, SshHost, SshTarget};
use gantry_gate_sge::{GridEngine, SgeProvider};

/// Serve the Gantry gate API for a Grid Engine cluster: each job is a batch
/// job submitted with qsub, watched with qstat and qacct — on this host, or
/// with --ssh on a login node over one multiplexed SSH connection. Grid
/// Engine's commands must be on the PATH there.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-sge", version)]
struct Cli {
    #[command(flatten)]
    gate: GateArgs,
    /// Where partitions and attempts (working directories, logs) live, on
    /// the host that runs Grid Engine's commands (with --ssh: the login
    /// node; a relative path is then relative to the login directory); must
    /// be on a file system the execution hosts share.
    #[arg(long, env = "GANTRY_GATE_WORK_DIR", default_value = "gantry-sge")]
    work_dir: PathBuf,
    /// The cluster's SGE_ROOT [default: what the commands find themselves].
    #[arg(long, env = "SGE_ROOT", value_name = "DIR")]
    sge_root: Option<PathBuf>,
    /// The cluster's cell (SGE_CELL) [default: `default`].
    #[arg(long, env = "SGE_CELL", value_name = "NAME")]
    sge_cell: Option<String>,
    /// sge_qmaster's port (SGE_QMASTER_PORT) [default: from /etc/services].
    #[arg(long, env = "SGE_QMASTER_PORT", value_name = "PORT")]
    sge_qmaster_port: Option<u16>,
    /// sge_execd's port (SGE_EXECD_PORT) [default: from /etc/services].
    #[arg(long, env = "SGE_EXECD_PORT", value_name = "PORT")]
    sge_execd_port: Option<u16>,
    /// The parallel environment, with allocation rule `$pe_slots`, that a
    /// job of more than one CPU takes its slots from (`qsub -pe PE N`).
    #[arg(long, env = "GANTRY_GATE_SGE_PE", default_value = "smp")]
    pe: String,
    /// The complex a job's memory is asked with (`qsub -l NAME=...`):
    /// `mem_free` places it on a host with that much free; a consumable
    /// such as `h_vmem` also reserves and limits it (per slot when the
    /// complex is consumable YES: the gate divides); `none` asks nothing.
    #[arg(long, env = "GANTRY_GATE_SGE_MEMORY", default_value = "mem_free")]
    memory_request: String,
    /// Run Grid Engine's commands and keep the work directory on this login
    /// node, reached with the system's ssh (`[user@]host`,
    /// `ssh://[user@]host[:port]` or a Host of the ssh config): key
    /// authentication only (BatchMode), the host key must already be in
    /// known_hosts, one master connection for everything.
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
    /// Seconds between asking Grid Engine for the jobs' states.
    #[arg(long, env = "GANTRY_GATE_POLL", default_value_t = 2.0)]
    poll: f64,
    /// How many times a partition's capacity gantryd may hand this gate
    /// beyond it; Grid Engine queues the rest.
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
    // The times qstat and qacct print are the host's local time: UTC here.
    let mut env = vec![("TZ".to_string(), "UTC".to_string())];
    let settings = [
        (
            "SGE_ROOT",
            cli.sge_root.map(|d| d.to_string_lossy().into_owned()),
        ),
        ("SGE_CELL", cli.sge_cell),
        (
            "SGE_QMASTER_PORT",
            cli.sge_qmaster_port.map(|p| p.to_string()),
        ),
        ("SGE_EXECD_PORT", cli.sge_execd_port.map(|p| p.to_string())),
    ];
    for (name, value) in settings {
        if let Some(value) = value {
            env.push((name.to_string(), value));
        }
    }
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
    // A cluster the commands cannot reach: say so now, in this gate's own log.
    if let Err(e) = host.run("qconf", &["-sql".to_string()], None).await {
        anyhow::bail!("cannot reach Grid Engine (qconf -sql): {e}");
    }
    let memory = Some(cli.memory_request).filter(|m| m != "none");
    let system = GridEngine::new(cli.pe, memory);
    let config = BatchConfig {
        host,
        work_dir: cli.work_dir,
        poll: Duration::from_secs_f64(cli.poll),
        queue_factor: cli.queue_factor,
    };
    let provider = SgeProvider::open(system, config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
