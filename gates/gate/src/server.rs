//! Serving a provider as a gate over mTLS: bind, announce, serve, stop.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use gantry_proto::Principal;
use gantry_proto::serve::{self, Bound};
use gantry_proto::tls::TlsError;
use gantry_proto::v1::gate_server::GateServer;
use tokio::sync::watch;
use tonic::transport::Server;

use crate::args::{GateArgs, GateConfig};
use crate::provider::Provider;
use crate::service::GateService;

/// Largest gRPC message a gate sends or accepts.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// Why a gate could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The flags are inconsistent or incomplete.
    #[error("{0}")]
    Config(String),
    /// The TLS files could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The certificate does not name this gate.
    #[error("{0}")]
    Identity(String),
    /// Binding, or writing the ready file, failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serve `provider` as configured by `args` until SIGTERM or SIGINT.
pub async fn serve<P: Provider>(provider: Arc<P>, args: &GateArgs) -> Result<(), ServeError> {
    let config = args.config()?;
    let gate = bind(provider, &config).await?;
    tracing::info!(name = %config.name, addr = %gate.addr(), "gate listening");
    gate.run(serve::shutdown_signal()).await
}

/// A gate bound to its address (and announced in the ready file), not yet serving.
pub struct BoundGate<P> {
    bound: Bound,
    provider: Arc<P>,
    service: GateService<P>,
    tls: gantry_proto::server_tls::ServerTls,
    stop: watch::Sender<bool>,
}

/// Check the certificate names `gate/<name>`, load TLS, bind `config.listen`
/// and write the ready file.
pub async fn bind<P: Provider>(
    provider: Arc<P>,
    config: &GateConfig,
) -> Result<BoundGate<P>, ServeError> {
    check_identity(config)?;
    let tls = gantry_proto::server_tls::ServerTls::load(&config.tls)?;
    let bound = serve::bind(&config.listen)
        .await
        .map_err(|source| ServeError::Io {
            context: format!("--listen {}", config.listen),
            source,
        })?;
    if let Some(listen) = &config.metrics_listen {
        gantry_proto::metrics::serve(listen, &format!("gate/{}", config.name))
            .await
            .map_err(|source| ServeError::Io {
                context: format!("--metrics-listen {listen}"),
                source,
            })?;
    }
    if let Some(path) = &config.ready_file {
        serve::write_ready_file(path, bound.addr).map_err(|source| ServeError::Io {
            context: format!("write the ready file {}", path.display()),
            source,
        })?;
    }
    let (stop, stop_rx) = watch::channel(false);
    let service =
        GateService::new(provider.clone(), &config.name, &config.installation).with_stop(stop_rx);
    Ok(BoundGate {
        bound,
        provider,
        service,
        tls,
        stop,
    })
}

impl<P: Provider> BoundGate<P> {
    /// The address actually bound.
    pub fn addr(&self) -> SocketAddr {
        self.bound.addr
    }

    /// Serve until `shutdown` resolves, then end open streams and drain.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), ServeError> {
        let stop = self.stop;
        let shutdown = async move {
            shutdown.await;
            let _ = stop.send(true);
        };
        let service = GateServer::new(self.service)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let (reporter, health) = tonic_health::server::health_reporter();
        crate::health::install(reporter).await;
        let provider = self.provider;
        tokio::spawn(async move { crate::health::check_at_start(provider.as_ref()).await });
        let router = Server::builder()
            .layer(gantry_proto::metrics::GrpcMetricsLayer::server())
            .layer(gantry_proto::rpc_trace::RpcTraceLayer::server())
            .add_service(health)
            .add_service(service);
        gantry_proto::reflection::add_reflection(
            router,
            &[gantry_proto::v1::gate_server::SERVICE_NAME],
        )
        .serve_with_incoming_shutdown(self.tls.incoming(self.bound.incoming), shutdown)
        .await?;
        Ok(())
    }
}

/// The gate's own certificate must name `spiffe://<installation>/gate/<name>`.
fn check_identity(config: &GateConfig) -> Result<(), ServeError> {
    let path = &config.tls.cert;
    let pem = std::fs::read(path).map_err(|source| ServeError::Io {
        context: format!("read the certificate {}", path.display()),
        source,
    })?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).map_err(|e| {
        ServeError::Identity(format!("{}: not a PEM certificate: {e}", path.display()))
    })?;
    let want = Principal::Gate(config.name.clone());
    match Principal::from_der(&pem.contents, &config.installation) {
        Ok(found) if found == want => Ok(()),
        Ok(found) => Err(ServeError::Identity(format!(
            "{} names {found}, but this gate is {want}; issue a certificate for it \
             (`gantry pki issue gate/{}`) or fix --name",
            path.display(),
            config.name
        ))),
        Err(e) => Err(ServeError::Identity(format!("{}: {e}", path.display()))),
    }
}
