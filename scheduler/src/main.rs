//! `gantry-sched`: the built-in scheduler process. Serves the `Scheduler`
//! service over mTLS to the core (gantryd) only.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use gantry_proto::serve;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::scheduler_server::SchedulerServer;
use gantry_sched::{PolicyConfig, SchedulerService};
use tonic::transport::Server;

/// The largest SessionRequest accepted (a snapshot may be split into several).
const MAX_REQUEST_BYTES: usize = 64 << 20;

/// The built-in Gantry scheduler: priority, FIFO, EASY backfill.
#[derive(Debug, Parser)]
#[command(name = "gantry-sched", version, about)]
struct Args {
    /// Address to listen on (port 0 picks a free port). The defaults do not
    /// clash: gantryd 7070, the scheduler 7071, deploy/gantryd.toml's local
    /// gate 7072.
    #[arg(long, env = "GANTRY_SCHED_LISTEN", default_value = "127.0.0.1:7071")]
    listen: String,
    /// Once listening, write the bound host:port to this file (atomically).
    #[arg(long, env = "GANTRY_SCHED_READY_FILE")]
    ready_file: Option<PathBuf>,
    /// The installation's CA certificate (PEM).
    #[arg(long, env = "GANTRY_SCHED_CA", requires_all = ["cert", "key", "installation"], conflicts_with = "pki_dir")]
    ca: Option<PathBuf>,
    /// This scheduler's certificate (PEM), naming spiffe://<installation>/scheduler.
    #[arg(long, env = "GANTRY_SCHED_CERT", conflicts_with = "pki_dir")]
    cert: Option<PathBuf>,
    /// This scheduler's private key (PEM).
    #[arg(long, env = "GANTRY_SCHED_KEY", conflicts_with = "pki_dir")]
    key: Option<PathBuf>,
    /// The installation name (the SPIFFE trust domain).
    #[arg(long, env = "GANTRY_SCHED_INSTALLATION", conflicts_with = "pki_dir")]
    installation: Option<String>,
    /// A PKI directory: ca.pem, scheduler.pem, scheduler.key and `installation`.
    #[arg(long, env = "GANTRY_SCHED_PKI_DIR")]
    pki_dir: Option<PathBuf>,
    /// Serve Prometheus metrics on `GET /metrics` over plain HTTP at this
    /// address (e.g. 127.0.0.1:9471); off by default.
    #[arg(long, env = "GANTRY_SCHED_METRICS_LISTEN", value_name = "ADDR")]
    metrics_listen: Option<String>,
    /// Queued jobs a pass examines past the first one that cannot start.
    #[arg(long, env = "GANTRY_SCHED_BACKFILL_DEPTH", default_value_t = 1000)]
    backfill_depth: usize,
    /// Seconds after which a plan gantryd did not confirm is reconsidered.
    #[arg(long, env = "GANTRY_SCHED_PLAN_TIMEOUT_SECONDS", default_value_t = 30)]
    plan_timeout_seconds: u64,
    /// At most this many decisions and reasons per plan message.
    #[arg(long, env = "GANTRY_SCHED_MAX_PLAN_ITEMS", default_value_t = 10_000)]
    max_plan_items: usize,
}

impl Args {
    /// The TLS files and installation name, from the flags or the PKI directory.
    fn tls(&self) -> anyhow::Result<(TlsFiles, String)> {
        if let Some(dir) = &self.pki_dir {
            let path = dir.join("installation");
            let installation = std::fs::read_to_string(&path)
                .with_context(|| {
                    format!("cannot read the installation name from {}", path.display())
                })?
                .trim()
                .to_string();
            return Ok((TlsFiles::in_dir(dir, "scheduler"), installation));
        }
        match (&self.ca, &self.cert, &self.key, &self.installation) {
            (Some(ca), Some(cert), Some(key), Some(installation)) => Ok((
                TlsFiles {
                    ca: ca.clone(),
                    cert: cert.clone(),
                    key: key.clone(),
                },
                installation.clone(),
            )),
            _ => bail!("give --ca, --cert, --key and --installation, or --pki-dir DIR"),
        }
    }

    fn policy(&self) -> anyhow::Result<PolicyConfig> {
        if self.max_plan_items < 2 {
            bail!("--max-plan-items must be at least 2 (a create and its start)");
        }
        Ok(PolicyConfig {
            backfill_depth: self.backfill_depth,
            max_plan_items: self.max_plan_items,
            plan_timeout_ms: i64::try_from(self.plan_timeout_seconds.saturating_mul(1000))
                .context("--plan-timeout-seconds is too large")?,
        })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-sched", "info");
    let args = Args::parse();
    let (files, installation) = args.tls()?;
    let service = SchedulerService::new(installation.clone(), args.policy()?);
    let stopper = service.stopper();
    let (health, health_service) = tonic_health::server::health_reporter();
    health
        .set_serving::<SchedulerServer<SchedulerService>>()
        .await;
    let bound = serve::bind(&args.listen).await?;
    let server_tls = gantry_proto::server_tls::ServerTls::load(&files)?;
    if let Some(listen) = &args.metrics_listen {
        gantry_proto::metrics::serve(listen, "gantry-sched").await?;
        gantry_sched::describe_metrics();
    }
    let server = Server::builder()
        .layer(gantry_proto::metrics::GrpcMetricsLayer::server())
        .layer(gantry_proto::rpc_trace::RpcTraceLayer::server())
        .add_service(health_service)
        .add_service(SchedulerServer::new(service).max_decoding_message_size(MAX_REQUEST_BYTES));
    let server = gantry_proto::reflection::add_reflection(
        server,
        &[gantry_proto::v1::scheduler_server::SERVICE_NAME],
    );
    if let Some(path) = &args.ready_file {
        serve::write_ready_file(path, bound.addr)
            .with_context(|| format!("cannot write the ready file {}", path.display()))?;
    }
    tracing::info!(addr = %bound.addr, %installation, "gantry-sched listening");
    let (signal, deadline) = serve::shutdown_with_grace(std::time::Duration::from_secs(3));
    let serving =
        server.serve_with_incoming_shutdown(server_tls.incoming(bound.incoming), async move {
            signal.await;
            tracing::info!("stopping");
            stopper.stop_all();
        });
    tokio::select! {
        served = serving => served.context("serving")?,
        () = deadline => tracing::warn!("connections still open after the grace period; exiting"),
    }
    Ok(())
}
