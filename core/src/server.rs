//! Start gantryd: open the store, connect the links, serve the client API.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use gantry_proto::Principal;
use gantry_proto::client_tls;
use gantry_proto::metrics::GrpcMetricsLayer;
use gantry_proto::rpc_trace::RpcTraceLayer;
use gantry_proto::v1::gantry_server::GantryServer;
use gantry_proto::v1::gate_client::GateClient;
use tonic::transport::Server;

use crate::api::GantryService;
use crate::config::Config;
use crate::files::Files;
use crate::links::{self, Ctx, MAX_MESSAGE, Sites};
use crate::store::{Store, StoreHealth};

/// Run gantryd until SIGTERM/SIGINT. Writes the bound address to `ready_file` once serving.
pub async fn run(config: Config, ready_file: Option<PathBuf>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.state_dir)?;
    if let Some(listen) = &config.metrics_listen {
        gantry_proto::metrics::serve(listen, "gantryd").await?;
        crate::metrics::describe();
    }
    let store = Store::open(&config.database_url()).await?;
    let files = Files::new(&config.state_dir)?;
    let tls = &config.tls;
    let mut gates = HashMap::new();
    for gate in &config.gates {
        let identity = Principal::Gate(gate.name.clone()).server_name(&config.installation);
        let channel = client_tls::channel(tls, &gate.address, identity.as_deref())?;
        let channel = tower::ServiceBuilder::new()
            .layer(RpcTraceLayer::client())
            .layer(GrpcMetricsLayer::gate(&gate.name))
            .service(channel);
        let client = GateClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE)
            .max_encoding_message_size(MAX_MESSAGE);
        gates.insert(gate.name.clone(), client);
    }
    let sites = Arc::new(Sites::new(
        config
            .gates
            .iter()
            .map(|g| (g.name.clone(), g.idle_timeout_seconds)),
    ));
    let ctx = Ctx {
        config: Arc::new(config.clone()),
        store,
        sites,
        files,
        gates: Arc::new(gates),
    };
    for gate in &config.gates {
        links::gate::spawn(gate.name.clone(), ctx.clone());
    }
    let identity = Principal::Scheduler.server_name(&config.installation);
    let channel = client_tls::channel(tls, &config.scheduler.address, identity.as_deref())?;
    let scheduler_up = links::scheduler::spawn(channel, ctx.clone());

    let (health, health_service) = tonic_health::server::health_reporter();
    tokio::spawn(report_health(ctx.store.health(), scheduler_up, health));
    if config.metrics_listen.is_some() {
        tokio::spawn(crate::metrics::count_partitions(ctx.store.clone()));
    }

    let bound = gantry_proto::serve::bind(&config.listen).await?;
    let service = GantryServer::new(GantryService::new(ctx))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(16 << 20);
    let server_tls = gantry_proto::server_tls::ServerTls::load(tls)?;
    let server = Server::builder()
        .layer(GrpcMetricsLayer::server())
        .layer(RpcTraceLayer::server())
        .add_service(health_service)
        .add_service(service);
    let server = gantry_proto::reflection::add_reflection(server, &[API]);
    if let Some(path) = &ready_file {
        gantry_proto::serve::write_ready_file(path, bound.addr)?;
    }
    tracing::info!(addr = %bound.addr, "gantryd serving the client API");
    let (signal, deadline) =
        gantry_proto::serve::shutdown_with_grace(std::time::Duration::from_secs(3));
    tokio::select! {
        served = server.serve_with_incoming_shutdown(server_tls.incoming(bound.incoming), signal) => served?,
        () = deadline => tracing::warn!("clients still connected after the grace period; exiting"),
    }
    tracing::info!("gantryd stopped");
    Ok(())
}

/// The client API's full gRPC name.
const API: &str = gantry_proto::v1::gantry_server::SERVICE_NAME;

/// Keep the gRPC health service (`grpc.health.v1`) in step with gantryd's
/// readiness: the client API (`gantry.v1.Gantry`) is SERVING while the
/// database takes writes; gantryd as a whole (`""`) is SERVING when, in
/// addition, its session with the scheduler is up (without it, jobs are
/// accepted but none starts).
async fn report_health(
    mut store: tokio::sync::watch::Receiver<StoreHealth>,
    mut scheduler_up: tokio::sync::watch::Receiver<bool>,
    reporter: tonic_health::server::HealthReporter,
) {
    use tonic_health::ServingStatus::{NotServing, Serving};
    loop {
        let writable = matches!(*store.borrow_and_update(), StoreHealth::Serving);
        let scheduled = *scheduler_up.borrow_and_update();
        let status = |up: bool| if up { Serving } else { NotServing };
        reporter.set_service_status(API, status(writable)).await;
        reporter
            .set_service_status("", status(writable && scheduled))
            .await;
        tokio::select! {
            changed = store.changed() => if changed.is_err() { return },
            changed = scheduler_up.changed() => if changed.is_err() { return },
        }
    }
}
