//! mTLS done once: every Gantry server requires a client certificate from the
//! installation's CA, every client presents one and checks the server's.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

/// Where a process finds its CA, certificate and key (PEM files).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TlsFiles {
    /// The installation's CA certificate: peers must chain to it.
    pub ca: PathBuf,
    /// This process's certificate.
    pub cert: PathBuf,
    /// This process's private key.
    pub key: PathBuf,
}

/// Errors loading TLS material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read.
    #[error("cannot read {what} {path}: {source}")]
    Read {
        /// Which file role.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The endpoint address is not a valid URI.
    #[error("`{0}` is not a valid address; use e.g. https://127.0.0.1:7070")]
    BadAddress(String),
    /// The certificate is outside its validity period, so every peer
    /// would refuse it at the handshake.
    #[error("the certificate {path} {why}; issue a new one (`gantry pki issue`, docs/install.md)")]
    NotValid {
        /// The certificate file.
        path: PathBuf,
        /// "expired at …" or "is not valid until …".
        why: String,
    },
    /// A file's contents cannot be used (not PEM, a key that does not
    /// match, a CRL that does not parse).
    #[error("{path}: {why}")]
    Unusable {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// tonic refused the TLS configuration.
    #[error("TLS setup failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Install ring as the process-wide rustls crypto provider. Call first in
/// every binary and test; calling it again is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })
}

/// This process's certificate (`cert_pem`, read from `path`), checked to
/// be valid now: an expired one or one not valid yet is refused here with
/// its dates, not by the peer with a bare "transport error".
pub(crate) fn current_certificate(path: &Path) -> Result<Vec<u8>, TlsError> {
    let pem = read("certificate", path)?;
    let why = crate::pki::read_certificate(&pem, |cert| {
        let validity = cert.validity();
        let now = x509_parser::time::ASN1Time::now();
        if now > validity.not_after {
            Some(format!("expired at {}", validity.not_after))
        } else if now < validity.not_before {
            Some(format!("is not valid until {}", validity.not_before))
        } else {
            None
        }
    });
    match why.flatten() {
        Some(why) => Err(TlsError::NotValid {
            path: path.to_path_buf(),
            why,
        }),
        None => Ok(pem),
    }
}

/// When each of `files` and the CRL was last changed (`None`: missing):
/// a change of any makes a new TLS configuration.
fn stamps(files: &TlsFiles, crl: Option<&Path>) -> Vec<Option<std::time::SystemTime>> {
    [files.ca.as_path(), &files.cert, &files.key]
        .into_iter()
        .chain(crl)
        .map(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect()
}

/// How often, at most, a [`Reloaded`] configuration looks at its files.
const RECHECK: Duration = Duration::from_secs(1);

/// A TLS configuration made from files (and a revocation list), made anew
/// on its next use after one of them changed (looked at once a second at
/// most); files that cannot be used keep the previous configuration, and
/// the log says why. Servers' acceptors and gantryd's connectors alike.
pub(crate) struct Reloaded<T> {
    files: TlsFiles,
    crl: Option<PathBuf>,
    make: fn(&TlsFiles, Option<&Path>) -> Result<T, TlsError>,
    current: T,
    /// When each file was last changed, as `current` was made.
    stamps: Vec<Option<std::time::SystemTime>>,
    /// When the files were last looked at.
    checked: std::time::Instant,
    /// What a change means, for the log ("new connections use them").
    news: &'static str,
}

impl<T: Clone> Reloaded<T> {
    /// Make the configuration from `files` and `crl` with `make`.
    pub(crate) fn load(
        files: &TlsFiles,
        crl: Option<PathBuf>,
        make: fn(&TlsFiles, Option<&Path>) -> Result<T, TlsError>,
        news: &'static str,
    ) -> Result<Self, TlsError> {
        Ok(Self {
            stamps: stamps(files, crl.as_deref()),
            current: make(files, crl.as_deref())?,
            files: files.clone(),
            crl,
            make,
            checked: std::time::Instant::now(),
            news,
        })
    }

    /// The configuration for a new connection: the current one, or one
    /// made from the files if they changed since.
    pub(crate) fn current(&mut self) -> T {
        if self.checked.elapsed() >= RECHECK {
            self.checked = std::time::Instant::now();
            let now = stamps(&self.files, self.crl.as_deref());
            if now != self.stamps {
                match (self.make)(&self.files, self.crl.as_deref()) {
                    Ok(made) => {
                        tracing::info!(
                            cert = %self.files.cert.display(),
                            crl = ?self.crl,
                            "TLS files changed; {}", self.news
                        );
                        self.current = made;
                        self.stamps = now;
                    }
                    Err(e) => tracing::warn!(
                        error = %e,
                        "TLS files changed but cannot be used; keeping the previous ones"
                    ),
                }
            }
        }
        self.current.clone()
    }
}

/// `path` cannot be used, and why.
pub(crate) fn bad(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::Unusable {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// This process's certificate chain (checked to be valid now) and key.
pub(crate) fn identity(
    files: &TlsFiles,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let cert_pem = current_certificate(&files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(&files.cert, e))?;
    let key = PrivateKeyDer::from_pem_slice(&read("private key", &files.key)?)
        .map_err(|e| bad(&files.key, e))?;
    Ok((chain, key))
}

/// The installation's CA as the only trusted root.
pub(crate) fn roots(files: &TlsFiles) -> Result<Arc<rustls::RootCertStore>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(&read("CA certificate", &files.ca)?) {
        roots
            .add(ca.map_err(|e| bad(&files.ca, e))?)
            .map_err(|e| bad(&files.ca, e))?;
    }
    Ok(Arc::new(roots))
}

/// The revocation lists in `crl`, when it is given and exists; none
/// otherwise (rustls then checks no revocation).
pub(crate) fn crls(
    crl: Option<&Path>,
) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let Some(crl) = crl.filter(|p| p.exists()) else {
        return Ok(Vec::new());
    };
    CertificateRevocationListDer::pem_slice_iter(&read("revocation list", crl)?)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(crl, e))
}

/// `endpoint` with the connection settings every Gantry client uses:
/// no Nagle delay, HTTP/2 keep-alives every 20 s (also while idle).
pub(crate) fn tuned(endpoint: Endpoint) -> Endpoint {
    endpoint
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(20))
        .keep_alive_while_idle(true)
}

impl TlsFiles {
    /// The three files of `stem` (e.g. `core`, `user-alice`) in a PKI directory.
    pub fn in_dir(dir: &Path, stem: &str) -> Self {
        Self {
            ca: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key")),
        }
    }

    /// A server config that requires clients to present a certificate of this CA.
    pub fn server_config(&self) -> Result<ServerTlsConfig, TlsError> {
        let identity = Identity::from_pem(
            current_certificate(&self.cert)?,
            read("private key", &self.key)?,
        );
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(Certificate::from_pem(read("CA certificate", &self.ca)?)))
    }

    /// A client config presenting this identity and trusting only this CA.
    pub fn client_config(&self) -> Result<ClientTlsConfig, TlsError> {
        let identity = Identity::from_pem(
            current_certificate(&self.cert)?,
            read("private key", &self.key)?,
        );
        Ok(ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read("CA certificate", &self.ca)?))
            .identity(identity))
    }

    /// An endpoint to `address` (`https://host:port`) over mTLS, with sane
    /// timeouts and keep-alives. Connecting is lazy.
    pub fn endpoint(&self, address: &str) -> Result<Endpoint, TlsError> {
        self.endpoint_verifying(address, None)
    }

    /// Like [`Self::endpoint`], but the server's certificate must carry
    /// `server_name` (see [`crate::Principal::server_name`]) rather than the
    /// address's host: only that identity can serve there.
    pub fn endpoint_verifying(
        &self,
        address: &str,
        server_name: Option<&str>,
    ) -> Result<Endpoint, TlsError> {
        let endpoint = Endpoint::from_shared(address.to_string())
            .map_err(|_| TlsError::BadAddress(address.to_string()))?;
        let mut tls = self.client_config()?;
        if let Some(name) = server_name {
            tls = tls.domain_name(name);
        }
        Ok(tuned(endpoint.tls_config(tls)?).connect_timeout(Duration::from_secs(5)))
    }
}
