//! Dialling the gate as gantryd does (the core's certificate, the gate's
//! name checked in its certificate), and as callers it must refuse.

use std::path::{Path, PathBuf};

use anyhow::Context;
use gantry_proto::identity::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::gate_client::GateClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

/// The most a message may carry (gantryd's own limit).
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

/// Where the gate is and who it must be.
#[derive(Debug, Clone)]
pub struct Target {
    /// `https://host:port`.
    pub address: String,
    /// The gate's site name: its certificate must name `gate/<name>`.
    pub name: String,
    /// The installation (the SPIFFE trust domain).
    pub installation: String,
    /// The PKI directory: `ca.pem`, `core.pem`, `core.key`, `installation`.
    pub pki_dir: PathBuf,
}

impl Target {
    /// Read the installation from `pki_dir` and normalise `address`
    /// (`host:port` gets `https://`).
    pub fn new(address: &str, name: &str, pki_dir: &Path) -> anyhow::Result<Self> {
        let file = pki_dir.join("installation");
        let installation = std::fs::read_to_string(&file)
            .with_context(|| {
                format!(
                    "cannot read {}: --pki-dir must be the installation's PKI directory (`gantry pki init`)",
                    file.display()
                )
            })?
            .trim()
            .to_string();
        for stem in ["ca.pem", "core.pem", "core.key"] {
            anyhow::ensure!(
                pki_dir.join(stem).exists(),
                "{} is missing: the kit calls the gate as gantryd, with the core's certificate",
                pki_dir.join(stem).display()
            );
        }
        let address = if address.contains("://") {
            address.to_string()
        } else {
            format!("https://{address}")
        };
        Ok(Self {
            address,
            name: name.into(),
            installation,
            pki_dir: pki_dir.into(),
        })
    }

    fn server_name(&self) -> anyhow::Result<String> {
        Principal::Gate(self.name.clone())
            .server_name(&self.installation)
            .with_context(|| format!("`{}` is not a site name a certificate can carry", self.name))
    }

    /// A client presenting `tls`'s identity.
    pub fn client_as(&self, tls: &TlsFiles) -> anyhow::Result<GateClient<Channel>> {
        let endpoint = tls.endpoint_verifying(&self.address, Some(&self.server_name()?))?;
        Ok(client(endpoint))
    }

    /// A client presenting the core's certificate, as gantryd does.
    pub fn core_client(&self) -> anyhow::Result<GateClient<Channel>> {
        self.client_as(&TlsFiles::in_dir(&self.pki_dir, "core"))
    }

    /// A client that checks the gate but presents no certificate at all.
    pub fn anonymous_client(&self) -> anyhow::Result<GateClient<Channel>> {
        let ca = std::fs::read(self.pki_dir.join("ca.pem"))?;
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca))
            .domain_name(self.server_name()?);
        let endpoint = Endpoint::from_shared(self.address.clone())?
            .tls_config(tls)?
            .connect_timeout(std::time::Duration::from_secs(5));
        Ok(client(endpoint))
    }

    /// A client presenting a `core` certificate from a CA the gate has
    /// never seen (made in `scratch`), which trusts the real CA for the
    /// server's side.
    pub fn foreign_core_client(&self, scratch: &Path) -> anyhow::Result<GateClient<Channel>> {
        let pki = Pki::init(scratch, &self.installation)?;
        let paths = pki.issue(&Principal::Core, &[])?;
        let tls = TlsFiles {
            ca: self.pki_dir.join("ca.pem"),
            cert: paths.cert,
            key: paths.key,
        };
        self.client_as(&tls)
    }
}

fn client(endpoint: Endpoint) -> GateClient<Channel> {
    GateClient::new(endpoint.connect_lazy())
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}
