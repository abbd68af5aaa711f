//! An elastic gate's fleet settings, and the flags every elastic gate takes.

use std::path::PathBuf;
use std::time::Duration;

/// How a fleet runs.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The gate's name (`gate/<name>`).
    pub gate: String,
    /// The installation (SPIFFE trust domain).
    pub installation: String,
    /// The address machines dial to reach the gate's agent listener.
    pub agent_address: String,
    /// The installation's CA certificate (PEM), given to agents.
    pub ca_pem: String,
    /// Where the gate keeps its join tokens.
    pub state_dir: PathBuf,
    /// How long a join token works.
    pub token_ttl: Duration,
    /// How long an agent's certificate is valid.
    pub cert_lifetime: Duration,
    /// A partition whose agent has not registered by then fails.
    pub provision_timeout: Duration,
    /// A partition whose agent is silent this long fails and its machine is
    /// terminated; also how long a restarted gate waits for adopted agents.
    pub agent_timeout: Duration,
    /// An agent without its gate this long powers its machine off.
    pub cut_off: Duration,
    /// Shell lines run at boot before the agent starts.
    pub boot_prelude: String,
}

/// The flags every elastic gate takes for its fleet.
#[derive(Debug, Clone, clap::Args)]
pub struct FleetArgs {
    /// Where node agents connect: host:port to listen on (port 0 picks one).
    #[arg(long, env = "GANTRY_GATE_AGENT_LISTEN", default_value = "0.0.0.0:7444")]
    pub agent_listen: String,
    /// The address machines dial to reach --agent-listen, as they see it
    /// (e.g. https://gate.example.org:7444) [default: https://<agent-listen>].
    #[arg(long, env = "GANTRY_GATE_AGENT_ADDRESS")]
    pub agent_address: Option<String>,
    /// Write the agent listener's bound host:port here once it listens.
    #[arg(long, env = "GANTRY_GATE_AGENT_READY_FILE")]
    pub agent_ready_file: Option<PathBuf>,
    /// The gate's agent issuer certificate [default: agent-issuer-<name>.pem in --pki-dir];
    /// make it with `gantry pki issue agent-issuer <name>`.
    #[arg(long, env = "GANTRY_GATE_AGENT_ISSUER")]
    pub agent_issuer: Option<PathBuf>,
    /// The agent issuer's private key [default: agent-issuer-<name>.key in --pki-dir].
    #[arg(long, env = "GANTRY_GATE_AGENT_ISSUER_KEY")]
    pub agent_issuer_key: Option<PathBuf>,
    /// Where the gate keeps its join tokens (hashed).
    #[arg(
        long,
        env = "GANTRY_GATE_STATE_DIR",
        default_value = "./gantry-gate-state"
    )]
    pub state_dir: PathBuf,
    /// Seconds a join token works.
    #[arg(long, env = "GANTRY_GATE_TOKEN_TTL", default_value_t = 900)]
    pub token_ttl: u64,
    /// Seconds an agent's certificate is valid; agents renew at half.
    #[arg(long, env = "GANTRY_GATE_AGENT_CERT_LIFETIME", default_value_t = 3600)]
    pub agent_cert_lifetime: u64,
    /// Seconds a machine may take to boot and register its agent.
    #[arg(long, env = "GANTRY_GATE_PROVISION_TIMEOUT", default_value_t = 600)]
    pub provision_timeout: u64,
    /// Seconds an agent may be silent before its machine is terminated and
    /// its jobs requeued; also how long a restarted gate waits for agents.
    #[arg(long, env = "GANTRY_GATE_AGENT_TIMEOUT", default_value_t = 120)]
    pub agent_timeout: u64,
    /// Seconds an agent may be without its gate before it powers its machine off.
    #[arg(long, env = "GANTRY_GATE_AGENT_CUT_OFF", default_value_t = 600)]
    pub agent_cut_off: u64,
    /// A file of shell lines the boot script runs before it starts
    /// gantry-agent (e.g. to install it on a stock image).
    #[arg(long, env = "GANTRY_GATE_BOOT_PRELUDE")]
    pub boot_prelude: Option<PathBuf>,
}
