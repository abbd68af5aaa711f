//! Who the agent is: a key it made itself and a short-lived certificate its
//! gate signed, first for a join token ([`AgentIdentity::join`]), then for
//! the old certificate ([`AgentIdentity::renew`]). Kept in the agent's
//! directory (`agent.key`, `agent.pem`) so that a restarted agent need not
//! join again: its token worked once.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use gantry_proto::v1::agent_client::AgentClient;
use gantry_proto::v1::{JoinRequest, RenewRequest};
use gantry_proto::{AgentName, Principal};
use rcgen::KeyPair;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// How to reach the gate and know it is the gate.
#[derive(Debug, Clone)]
pub struct GateAddress {
    /// `https://host:port` of the gate's agent listener.
    pub address: String,
    /// The name its certificate must carry: `<gate>.gate.<installation>`.
    pub server_name: String,
    /// The installation's CA certificate (PEM).
    pub ca_pem: String,
}

impl GateAddress {
    /// A channel to the gate, presenting `identity` when given.
    pub fn channel(&self, identity: Option<&AgentIdentity>) -> Result<Channel> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca_pem))
            .domain_name(&self.server_name);
        if let Some(id) = identity {
            tls = tls.identity(Identity::from_pem(&id.cert_pem, &id.key_pem));
        }
        Ok(Endpoint::from_shared(self.address.clone())
            .with_context(|| format!("`{}` is not a gate address", self.address))?
            .tls_config(tls)?
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .connect_lazy())
    }
}

/// The agent's key and certificate.
#[derive(Clone)]
pub struct AgentIdentity {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PEM); never leaves the machine.
    pub key_pem: String,
    /// Who the certificate names.
    pub name: AgentName,
    /// When it was issued.
    pub not_before: SystemTime,
    /// When it expires.
    pub not_after: SystemTime,
    /// When to renew it: half way from when it was read to its expiry.
    pub renew_at: SystemTime,
}

fn files(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("agent.pem"), dir.join("agent.key"))
}

impl AgentIdentity {
    fn parse(cert_pem: String, key_pem: String) -> Result<Self> {
        let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow!("the agent certificate is not PEM: {e}"))?;
        let (_, cert) = x509_parser::parse_x509_certificate(&pem.contents)
            .map_err(|e| anyhow!("the agent certificate cannot be parsed: {e}"))?;
        let uri = cert
            .subject_alternative_name()
            .ok()
            .flatten()
            .and_then(|san| {
                san.value.general_names.iter().find_map(|n| match n {
                    x509_parser::extensions::GeneralName::URI(u) => Some(u.to_string()),
                    _ => None,
                })
            })
            .ok_or_else(|| anyhow!("the agent certificate names no identity"))?;
        let domain = uri
            .strip_prefix(gantry_proto::identity::SPIFFE_SCHEME)
            .and_then(|rest| rest.split_once('/'))
            .map(|(domain, _)| domain.to_string())
            .unwrap_or_default();
        let Ok(Principal::Agent(name)) = Principal::from_uri(&uri, &domain) else {
            bail!("the certificate names {uri}, not an agent");
        };
        let at = |secs: i64| UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64);
        let not_after = at(cert.validity().not_after.timestamp());
        let now = SystemTime::now();
        Ok(Self {
            name,
            not_before: at(cert.validity().not_before.timestamp()),
            not_after,
            renew_at: now + not_after.duration_since(now).unwrap_or_default() / 2,
            cert_pem,
            key_pem,
        })
    }

    /// The identity saved in `dir`, if any.
    pub fn load(dir: &Path) -> Result<Option<Self>> {
        let (cert, key) = files(dir);
        if !cert.exists() || !key.exists() {
            return Ok(None);
        }
        let read =
            |p: &Path| std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()));
        Self::parse(read(&cert)?, read(&key)?).map(Some)
    }

    fn save(&self, dir: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let (cert, key) = files(dir);
        let write = |path: &Path, text: &str, mode: u32| -> Result<()> {
            let tmp = path.with_extension("tmp");
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(mode)
                .open(&tmp)
                .with_context(|| format!("write {}", tmp.display()))?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, path).with_context(|| format!("write {}", path.display()))
        };
        write(&key, &self.key_pem, 0o600)?;
        write(&cert, &self.cert_pem, 0o644)
    }

    /// Make a key and trade `token` and a CSR for a certificate; save both.
    pub async fn join(dir: &Path, gate: &GateAddress, token: &str) -> Result<Self> {
        let key = KeyPair::generate()?;
        let csr_pem = gantry_proto::pki::certificate_request(&key)?;
        let mut client = AgentClient::new(gate.channel(None)?);
        let response = client
            .join(JoinRequest {
                token: token.to_string(),
                csr_pem,
            })
            .await
            .map_err(|s| anyhow!("join {}: {}", gate.address, s.message()))?
            .into_inner();
        let identity = Self::parse(response.certificate_pem, key.serialize_pem())?;
        identity.save(dir)?;
        tracing::info!(identity = %response.identity, "joined the gate");
        Ok(identity)
    }

    /// A new key and certificate for the same identity, asked with this one.
    pub async fn renew(&self, dir: &Path, gate: &GateAddress) -> Result<Self> {
        let key = KeyPair::generate()?;
        let csr_pem = gantry_proto::pki::certificate_request(&key)?;
        let mut client = AgentClient::new(gate.channel(Some(self))?);
        let response = client
            .renew(RenewRequest { csr_pem })
            .await
            .map_err(|s| anyhow!("renew at {}: {}", gate.address, s.message()))?
            .into_inner();
        let identity = Self::parse(response.certificate_pem, key.serialize_pem())?;
        identity.save(dir)?;
        Ok(identity)
    }

    /// Whether it is still valid now.
    pub fn valid(&self) -> bool {
        SystemTime::now() < self.not_after
    }
}
