//! `gantry-agent`: the node agent on a machine an elastic gate provisioned.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use gantry_agent::{Agent, DeadMansSwitch, GateAddress};
use gantry_gate_local::{LocalConfig, LocalProvider, default_supervisor};

/// Run the jobs of an elastic gate on this machine. Started by the
/// machine's boot script, which sets the GANTRY_AGENT_* variables; it dials
/// out to its gate and accepts no connection.
#[derive(Debug, Parser)]
#[command(name = "gantry-agent", version)]
struct Cli {
    /// The gate's agent address, https://host:port.
    #[arg(long, env = "GANTRY_AGENT_GATE")]
    gate: String,
    /// The name the gate's certificate must carry (<gate>.gate.<installation>).
    #[arg(long, env = "GANTRY_AGENT_GATE_NAME")]
    gate_name: String,
    /// The installation's CA certificate, as PEM text.
    #[arg(long, env = "GANTRY_AGENT_CA", hide_env_values = true)]
    ca: String,
    /// The one-time join token (used only when DIR holds no identity yet).
    #[arg(long, env = "GANTRY_AGENT_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Power the machine off after this many seconds without the gate.
    #[arg(long, env = "GANTRY_AGENT_CUT_OFF", default_value_t = 600)]
    cut_off: u64,
    /// Where the agent keeps its key, certificate and jobs.
    #[arg(
        long,
        env = "GANTRY_AGENT_DIR",
        default_value = "/var/lib/gantry-agent"
    )]
    dir: PathBuf,
    /// The command that powers the machine off (split on spaces).
    #[arg(long, env = "GANTRY_AGENT_POWEROFF", default_value = "poweroff")]
    poweroff: String,
    /// The gantry-supervisor binary [default: next to this executable].
    #[arg(long, env = "GANTRY_AGENT_SUPERVISOR")]
    supervisor: Option<PathBuf>,
    /// Seconds between SIGTERM and SIGKILL when a job is cancelled or over its walltime.
    #[arg(long, env = "GANTRY_AGENT_KILL_GRACE", default_value_t = 3)]
    kill_grace: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-agent", "info");
    let cli = Cli::parse();
    std::fs::create_dir_all(&cli.dir)
        .map_err(|e| anyhow::anyhow!("--dir {}: {e}", cli.dir.display()))?;
    let mut local = LocalConfig::new(cli.dir.join("local"));
    local.supervisor = cli.supervisor.unwrap_or_else(default_supervisor);
    local.kill_grace = Duration::from_secs(cli.kill_grace);
    if !local.supervisor.is_file() {
        anyhow::bail!(
            "--supervisor: {} does not exist; install gantry-supervisor next to gantry-agent",
            local.supervisor.display()
        );
    }
    let provider = LocalProvider::open(local).await?;
    let agent = Agent {
        dir: cli.dir,
        gate: GateAddress {
            address: cli.gate,
            server_name: cli.gate_name,
            ca_pem: cli.ca,
        },
        token: cli.token,
        local: Arc::new(provider),
        http: reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()?,
        switch: DeadMansSwitch::new(
            Duration::from_secs(cli.cut_off),
            cli.poweroff.split_whitespace().map(String::from).collect(),
        ),
    };
    agent.run().await
}
