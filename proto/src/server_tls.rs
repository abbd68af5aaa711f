//! The TLS side of every Gantry server: mutual TLS with the installation's
//! CA, a certificate revocation list, files re-read when they change, and
//! a refused handshake logged with its reason.
//!
//! tonic's own TLS reads its files once and knows no CRL, so servers accept
//! TCP connections themselves ([`crate::serve::bind`]), make them TLS here,
//! and hand tonic the finished streams (`serve_with_incoming`); tonic still
//! gives each request its peer's certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::{Stream, StreamExt};

use crate::serve::Incoming;
use crate::tls::{TlsError, TlsFiles, bad, crls, identity, roots, stamps};

/// How long a client may take over its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often, at most, the files are looked at for changes.
const RECHECK: Duration = Duration::from_secs(1);

/// A server's TLS: its files, and the configuration made from them,
/// made anew when one of them changes.
pub struct ServerTls {
    files: TlsFiles,
    clients: Clients,
    acceptor: TlsAcceptor,
    /// When each file was last changed, as the acceptor was made.
    stamps: Vec<Option<SystemTime>>,
    /// When the files were last looked at.
    checked: Instant,
}

/// Which clients a server takes.
#[derive(Debug, Clone)]
enum Clients {
    /// Only those with a certificate of the CA that the CRL beside it
    /// (when there is one) does not list.
    Certified {
        /// The revocation list's path.
        crl: PathBuf,
    },
    /// Also those without a certificate; one presented must be valid
    /// (the AWS gate's agent listener, where a machine first joins with
    /// a token and only then has a certificate).
    Optional,
}

impl Clients {
    fn crl(&self) -> Option<&Path> {
        match self {
            Clients::Certified { crl } => Some(crl),
            Clients::Optional => None,
        }
    }
}

impl ServerTls {
    /// Load `files` and the CRL beside the CA certificate (`crl.pem`, when
    /// it exists; see [`crate::pki::crl_path`]); every client must present
    /// a certificate.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let crl = crate::pki::crl_path(&files.ca);
        Self::with(files, Clients::Certified { crl })
    }

    /// Load `files`, whose `ca` is the issuer of the certificates clients
    /// may present; a client without one is let in too (the service then
    /// decides what it may do), with no revocation list.
    pub fn load_optional_clients(files: &TlsFiles) -> Result<Self, TlsError> {
        Self::with(files, Clients::Optional)
    }

    fn with(files: &TlsFiles, clients: Clients) -> Result<Self, TlsError> {
        Ok(Self {
            stamps: stamps(files, clients.crl()),
            acceptor: acceptor(files, &clients)?,
            files: files.clone(),
            clients,
            checked: Instant::now(),
        })
    }

    /// The acceptor for a new connection: the current one, or one made
    /// from the files if they changed since (a file that cannot be used
    /// keeps the previous configuration, and says why in the log).
    fn acceptor(&mut self) -> TlsAcceptor {
        if self.checked.elapsed() >= RECHECK {
            self.checked = Instant::now();
            let now = stamps(&self.files, self.clients.crl());
            if now != self.stamps {
                match acceptor(&self.files, &self.clients) {
                    Ok(acceptor) => {
                        tracing::info!(
                            cert = %self.files.cert.display(),
                            crl = ?self.clients.crl(),
                            "TLS files changed; new connections use them"
                        );
                        self.acceptor = acceptor;
                        self.stamps = now;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS files changed but cannot be used; keeping the previous ones"
                    ),
                }
            }
        }
        self.acceptor.clone()
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
                let acceptor = self.acceptor();
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

/// A rustls configuration from the files: this server's certificate
/// (checked to be valid now); clients present a certificate of the CA that
/// the CRL (when there is one) does not list, or with [`Clients::Optional`]
/// may present none; HTTP/2 only.
fn acceptor(files: &TlsFiles, clients: &Clients) -> Result<TlsAcceptor, TlsError> {
    let (chain, key) = identity(files)?;
    let mut verifier = WebPkiClientVerifier::builder(roots(files)?);
    match clients {
        Clients::Certified { crl } => {
            if let Some(crls) = crls(crl)? {
                verifier = verifier.with_crls(crls);
            }
        }
        Clients::Optional => verifier = verifier.allow_unauthenticated(),
    }
    let verifier = verifier.build().map_err(|e| bad(&files.ca, e))?;
    let mut config = rustls::ServerConfig::builder()
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| bad(&files.cert, e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
