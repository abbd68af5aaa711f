//! `gantry-gate-sge`: the gate that runs jobs on a Grid Engine cluster.

use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use gantry_gate::GateArgs;
use gantry_gate::batch::BatchArgs;
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
    #[command(flatten)]
    batch: BatchArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-gate-sge", "info");
    let cli: Cli = gantry_gate::parse_gate_cli(gantry_gate::default_listen::SGE);
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
    let config = cli.batch.config(cli.work_dir, env).await?;
    // A cluster the commands cannot reach: say so now, in this gate's own log.
    if let Err(e) = config.host.run("qconf", &["-sql".to_string()], None).await {
        anyhow::bail!("cannot reach Grid Engine (qconf -sql): {e}");
    }
    let memory = Some(cli.memory_request).filter(|m| m != "none");
    let system = GridEngine::new(cli.pe, memory);
    let provider = SgeProvider::open(system, config).await?;
    gantry_gate::serve(Arc::new(provider), &cli.gate).await?;
    Ok(())
}
