//! Serving an elastic gate: the gate API to gantryd and the agent API to
//! the machines' agents, each on its own listener, until SIGTERM.

use std::sync::Arc;

use gantry_gate::{GateArgs, MAX_MESSAGE_BYTES, ServeError};
use gantry_proto::pki::{AgentIssuer, CertPaths};
use gantry_proto::serve;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::agent_server::AgentServer;
use tonic::transport::Server;

use crate::config::{FleetArgs, FleetConfig};
use crate::fleet::Fleet;
use crate::machines::Machines;
use crate::provider::FleetProvider;
use crate::service::AgentService;

fn read(what: &str, path: &std::path::Path) -> Result<String, ServeError> {
    std::fs::read_to_string(path).map_err(|source| ServeError::Io {
        context: format!("read {what} {}", path.display()),
        source,
    })
}

/// The fleet's settings and its agent issuer, from the flags.
pub fn fleet_config(
    gate: &GateArgs,
    fleet: &FleetArgs,
) -> Result<(FleetConfig, CertPaths), ServeError> {
    let config = gate.config()?;
    let issuer = match (&fleet.agent_issuer, &fleet.agent_issuer_key, &gate.pki_dir) {
        (Some(cert), Some(key), _) => CertPaths {
            cert: cert.clone(),
            key: key.clone(),
        },
        (None, None, Some(dir)) => CertPaths {
            cert: dir.join(format!("agent-issuer-{}.pem", config.name)),
            key: dir.join(format!("agent-issuer-{}.key", config.name)),
        },
        _ => {
            return Err(ServeError::Config(
                "give --agent-issuer and --agent-issuer-key, or --pki-dir holding \
                 agent-issuer-<name>.pem/.key (`gantry pki issue agent-issuer <name>`)"
                    .into(),
            ));
        }
    };
    let boot_prelude = match &fleet.boot_prelude {
        Some(path) => read("the boot prelude", path)?,
        None => String::new(),
    };
    let agent_address = fleet
        .agent_address
        .clone()
        .unwrap_or_else(|| format!("https://{}", fleet.agent_listen));
    let secs = std::time::Duration::from_secs;
    Ok((
        FleetConfig {
            gate: config.name.clone(),
            installation: config.installation.clone(),
            agent_address,
            ca_pem: read("the CA certificate", &config.tls.ca)?,
            state_dir: fleet.state_dir.clone(),
            token_ttl: secs(fleet.token_ttl),
            cert_lifetime: secs(fleet.agent_cert_lifetime),
            provision_timeout: secs(fleet.provision_timeout),
            agent_timeout: secs(fleet.agent_timeout),
            cut_off: secs(fleet.agent_cut_off),
            boot_prelude,
        },
        issuer,
    ))
}

/// Serve an elastic gate over `machines` until SIGTERM or SIGINT.
pub async fn serve<M: Machines>(
    machines: M,
    gate: &GateArgs,
    args: &FleetArgs,
) -> Result<(), ServeError> {
    let gate_config = gate.config()?;
    let (mut config, issuer_paths) = fleet_config(gate, args)?;
    let issuer = AgentIssuer::load(&issuer_paths, &config.installation)
        .map_err(|e| ServeError::Config(format!("the agent issuer: {e}")))?;
    let agents = serve::bind(&args.agent_listen)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("--agent-listen {}", args.agent_listen),
            source,
        })?;
    if args.agent_address.is_none() {
        config.agent_address = format!("https://{}", agents.addr);
    }
    let fleet = Fleet::open(machines, config, issuer)
        .await
        .map_err(|e| ServeError::Config(e.to_string()))?;
    tokio::spawn(fleet.clone().run());
    let provider = Arc::new(FleetProvider::new(fleet.clone()));
    let bound = gantry_gate::bind(provider, &gate_config).await?;
    // Known from the first scrape on, so that its first increase shows.
    metrics::describe_counter!(
        "gantry_machines_reconciled_total",
        "Machines the gate terminated because no partition owned them"
    );
    metrics::counter!("gantry_machines_reconciled_total").increment(0);
    if let Some(path) = &args.agent_ready_file {
        serve::write_ready_file(path, agents.addr).map_err(|source| ServeError::Io {
            context: format!("write the ready file {}", path.display()),
            source,
        })?;
    }
    // Agents present a certificate of the agent issuer once they have
    // joined (with a token, before they have one); the gate's own
    // certificate and the issuer are re-read when they change.
    let tls = gantry_proto::server_tls::ServerTls::load_optional_clients(&TlsFiles {
        ca: issuer_paths.cert.clone(),
        cert: gate_config.tls.cert.clone(),
        key: gate_config.tls.key.clone(),
    })?;
    tracing::info!(name = %gate_config.name, addr = %bound.addr(), agents = %agents.addr, "gate listening");
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_service_status(
            gantry_proto::v1::agent_server::SERVICE_NAME,
            tonic_health::ServingStatus::Serving,
        )
        .await;
    let agent_router = Server::builder()
        .layer(gantry_proto::metrics::GrpcMetricsLayer::server())
        .layer(gantry_proto::rpc_trace::RpcTraceLayer::server())
        .add_service(health_service)
        .add_service(
            AgentServer::new(AgentService::new(fleet))
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        );
    let agent_server = gantry_proto::reflection::add_reflection(
        agent_router,
        &[gantry_proto::v1::agent_server::SERVICE_NAME],
    )
    .serve_with_incoming_shutdown(tls.incoming(agents.incoming), serve::shutdown_signal());
    tokio::select! {
        result = bound.run(serve::shutdown_signal()) => result,
        result = agent_server => result.map_err(ServeError::from),
    }
}
