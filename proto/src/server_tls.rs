//! The TLS side of every Gantry server: mutual TLS with the installation's
//! CA, a certificate revocation list, files re-read when they change, and
//! a refused handshake logged with its reason.
//!
//! tonic's own TLS reads its files once and knows no CRL, so servers accept
//! TCP connections themselves ([`crate::serve::bind`]), make them TLS here,
//! and hand tonic the finished streams (`serve_with_incoming`); tonic still
//! gives each request its peer's certificate.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::serve::Incoming;
use crate::tls::{Reloaded, TlsError, TlsFiles, bad, crls, identity, roots};

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A server's TLS: its files, and the acceptor made from them, made anew
/// when one of them changes.
pub struct ServerTls {
    acceptor: Reloaded<TlsAcceptor>,
}

/// What a server's log says when its files changed.
const NEWS: &str = "new connections use them";

impl ServerTls {
    /// Load `files` and the CRL beside the CA certificate (`crl.pem`, when
    /// it exists; see [`crate::pki::crl_path`]); every client must present
    /// a certificate of the CA that the CRL does not list.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let crl = crate::pki::crl_path(&files.ca);
        Ok(Self {
            acceptor: Reloaded::load(files, Some(crl), certified, NEWS)?,
        })
    }

    /// Load `files`, whose `ca` is the issuer of the certificates clients
    /// may present; a client without one is let in too (the service then
    /// decides what it may do: the AWS gate's agent listener, where a
    /// machine first joins with a token), with no revocation list.
    pub fn load_optional_clients(files: &TlsFiles) -> Result<Self, TlsError> {
        Ok(Self {
            acceptor: Reloaded::load(files, None, optional, NEWS)?,
        })
    }

    /// `incoming` TCP connections as TLS streams, each handshake on its
    /// own task (a slow client delays no one); refused handshakes are
    /// logged with their reason and dropped.
    pub fn incoming(
        mut self,
        mut incoming: Incoming,
    ) -> impl Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                // Once the server is gone (its stream dropped), stop
                // accepting, which closes the listener.
                let accepted = tokio::select! {
                    accepted = incoming.next() => accepted,
                    () = tx.closed() => return,
                };
                let Some(accepted) = accepted else { return };
                let stream = match accepted {
                    Ok(stream) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "accepting a connection failed");
                        continue;
                    }
                };
                let peer = stream.peer_addr().ok();
                let acceptor = self.acceptor.current();
                let out = tx.clone();
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = out.send(Ok(tls)).await;
                        }
                        Ok(Err(e)) => tracing::warn!(
                            peer = ?peer,
                            error = %e,
                            "TLS handshake refused"
                        ),
                        Err(_) => tracing::warn!(
                            peer = ?peer,
                            "TLS handshake not finished within {HANDSHAKE_TIMEOUT:?}; closed"
                        ),
                    }
                });
            }
        });
        ReceiverStream::new(rx)
    }
}

/// Clients must present a certificate of the CA that `crl` (when there
/// is one) does not list.
fn certified(files: &TlsFiles, crl: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    let verifier = WebPkiClientVerifier::builder(roots(files)?).with_crls(crls(crl)?);
    acceptor(files, verifier)
}

/// Clients may present a certificate of the CA, or none.
fn optional(files: &TlsFiles, _: Option<&Path>) -> Result<TlsAcceptor, TlsError> {
    acceptor(
        files,
        WebPkiClientVerifier::builder(roots(files)?).allow_unauthenticated(),
    )
}

/// A rustls configuration from the files: this server's certificate
/// (checked to be valid now), clients checked by `verifier`; HTTP/2 only.
fn acceptor(
    files: &TlsFiles,
    verifier: rustls::server::ClientCertVerifierBuilder,
) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = identity(files)?;
    let verifier = verifier.build().map_err(|e| bad(&files.ca, e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&files.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
