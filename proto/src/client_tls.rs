//! The TLS side of gantryd's own connections, to the scheduler and to each
//! gate: mutual TLS with the installation's CA, the revocation list beside
//! it checked against the server's certificate too, and the files re-read
//! when they change, so that a rotated certificate is presented from the
//! next connection on without a restart (a connection already up keeps the
//! one it was made with, and its calls and streams go on).
//!
//! tonic's own client TLS reads its files once, so the channel connects
//! through [`channel`]'s connector, which makes each TCP connection TLS
//! here and hands tonic the finished stream.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};

use crate::tls::{Reloaded, TlsError, TlsFiles, bad, crls, identity, roots};

/// How long connecting (TCP and the TLS handshake) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A lazy channel to `address` (`https://host:port`) over mutual TLS from
/// `files`, checking that the server's certificate names `server_name`
/// (else the address's host), re-reading the files when they change.
pub fn channel(
    files: &TlsFiles,
    address: &str,
    server_name: Option<&str>,
) -> Result<Channel, TlsError> {
    let bad_address = || TlsError::BadAddress(address.to_string());
    let uri: Uri = address.parse().map_err(|_| bad_address())?;
    if uri.scheme_str() != Some("https") {
        return Err(bad_address());
    }
    let host = uri.host().ok_or_else(bad_address)?.to_string();
    let port = uri.port_u16().unwrap_or(443);
    // The host as a socket address or a name takes it, without an IPv6 literal's brackets.
    let bare = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let name = server_name.unwrap_or(&bare);
    let name = ServerName::try_from(name.to_string()).map_err(|_| bad_address())?;
    // The connector below does the TLS: tonic is given the plain form...
    let endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
        .map_err(|_| bad_address())?
        // ...while requests still say https (`:scheme`), as they travel.
        .origin(uri.clone());
    let endpoint = crate::tls::tuned(endpoint);
    let crl = crate::pki::crl_path(&files.ca);
    let news = "new connections out use them";
    let tls = Arc::new(Mutex::new(Reloaded::load(
        files,
        Some(crl),
        connector,
        news,
    )?));
    // tonic asks for the endpoint's own address: connect to the one above.
    let connect = tower::service_fn(move |_: Uri| {
        let tls = Arc::clone(&tls);
        let name = name.clone();
        let host = bare.clone();
        async move {
            let connector = tls.lock().unwrap_or_else(|e| e.into_inner()).current();
            let connecting = async {
                let tcp = TcpStream::connect((host.as_str(), port)).await?;
                tcp.set_nodelay(true)?;
                connector.connect(name, tcp).await
            };
            match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
                Ok(stream) => stream.map(TokioIo::new),
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("connecting to {host}:{port} took more than {CONNECT_TIMEOUT:?}"),
                )),
            }
        }
    });
    Ok(endpoint.connect_with_connector_lazy(connect))
}

/// A rustls client configuration from the files: this process's certificate
/// (checked to be valid now) presented; the server's must chain to the CA
/// and not be on the CRL (when there is one); HTTP/2.
fn connector(files: &TlsFiles, crl: Option<&Path>) -> Result<TlsConnector, TlsError> {
    let (chain, key) = identity(files)?;
    let verifier = WebPkiServerVerifier::builder(roots(files)?)
        .with_crls(crls(crl)?)
        .build()
        .map_err(|e| bad(&files.ca, e))?;
    let mut config = rustls::ClientConfig::builder()
        .with_webpki_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| bad(&files.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsConnector::from(Arc::new(config)))
}
