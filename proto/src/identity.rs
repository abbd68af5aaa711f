//! Who is on the other end of a connection: the one URI SAN of the peer's
//! certificate, `spiffe://<installation>/<kind>/<name>`, parsed into a
//! [`Principal`]. Authorization decisions are made on `Principal`s only.

use std::collections::HashMap;
use std::fmt;
use std::sync::{LazyLock, Mutex};

/// The scheme and prefix of every Gantry identity URI.
pub const SPIFFE_SCHEME: &str = "spiffe://";

/// The identities of the certificates the servers of this process were shown
/// last, so that a connection's certificate is parsed once, not on every call.
static PARSED: LazyLock<ParsedCertificates> = LazyLock::new(ParsedCertificates::default);

/// Certificates (DER) and the identity each names for the installation it
/// was read for; emptied whenever it would outgrow [`Self::MAX`].
#[derive(Default)]
struct ParsedCertificates(Mutex<ByCertificate>);

/// A certificate's DER, and the installation and identity it was read for.
type ByCertificate = HashMap<Box<[u8]>, (String, Principal)>;

impl ParsedCertificates {
    /// More distinct certificates than an installation has connected peers.
    const MAX: usize = 4096;

    /// The identity `der` names, parsed the first time it is seen.
    fn get_or_parse(&self, der: &[u8], installation: &str) -> Result<Principal, IdentityError> {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((read_for, principal)) = map.get(der)
            && read_for == installation
        {
            return Ok(principal.clone());
        }
        let principal = Principal::from_der(der, installation)?;
        if map.len() >= Self::MAX {
            map.clear();
        }
        map.insert(der.into(), (installation.to_string(), principal.clone()));
        Ok(principal)
    }
}

/// A typed identity taken from a verified peer certificate.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// gantryd itself (`/core`).
    Core,
    /// The scheduler process (`/scheduler`).
    Scheduler,
    /// A gate, by its site name (`/gate/<name>`).
    Gate(String),
    /// A person (`/user/<name>`).
    User(String),
    /// A service such as JupyterHub (`/service/<name>`); it may act for users
    /// only where the config says so.
    Service(String),
    /// A node agent on a machine an elastic gate provisioned
    /// (`/agent/<gate>/<partition>/<machine>`). Its certificate comes from
    /// that gate's agent issuer, which only that gate trusts.
    Agent(AgentName),
}

/// Where a node agent runs: its gate, partition and machine.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentName {
    /// The gate that provisioned the machine.
    pub gate: String,
    /// The partition the machine belongs to.
    pub partition: String,
    /// The machine within the partition.
    pub machine: String,
}

/// Why a certificate does not carry a usable identity.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum IdentityError {
    /// No client certificate was presented.
    #[error("no client certificate was presented; connect with mTLS")]
    NoCertificate,
    /// The certificate could not be parsed.
    #[error("the peer certificate cannot be parsed: {0}")]
    BadCertificate(String),
    /// The certificate has no `spiffe://` URI SAN.
    #[error("the peer certificate has no spiffe:// URI SAN naming a Gantry identity")]
    NoIdentity,
    /// The URI is not of a form Gantry knows.
    #[error(
        "`{0}` is not a Gantry identity (want spiffe://<installation>/<user|service|gate>/<name>, /core or /scheduler)"
    )]
    Malformed(String),
    /// The URI names another installation.
    #[error("identity `{uri}` belongs to installation `{found}`, not `{expected}`")]
    WrongInstallation {
        /// The URI found.
        uri: String,
        /// Its installation.
        found: String,
        /// This installation.
        expected: String,
    },
}

/// A user or service name: 1–64 of `[A-Za-z0-9._-]`, not starting with `.` or `-`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && !name.starts_with(['.', '-'])
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `text` can be part of a DNS name (letters, digits, `-`, `.`).
pub fn is_dns_safe(text: &str) -> bool {
    !text.is_empty()
        && text.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Principal {
    /// The DNS name a serving process's certificate carries and its clients
    /// verify, so that only that identity can serve at an address:
    /// `core.<installation>`, `scheduler.<installation>`,
    /// `<name>.gate.<installation>`. `None` for users and services, and for
    /// names that are not DNS-safe.
    pub fn server_name(&self, installation: &str) -> Option<String> {
        let name = match self {
            Principal::Core => format!("core.{installation}"),
            Principal::Scheduler => format!("scheduler.{installation}"),
            Principal::Gate(n) => format!("{n}.gate.{installation}"),
            Principal::User(_) | Principal::Service(_) | Principal::Agent(_) => return None,
        };
        is_dns_safe(&name).then_some(name)
    }

    /// The URI for this principal in `installation`.
    pub fn uri(&self, installation: &str) -> String {
        format!("{SPIFFE_SCHEME}{installation}/{}", self.path())
    }

    /// The path part: `core`, `scheduler`, `gate/x`, `user/x`, `service/x`.
    pub fn path(&self) -> String {
        match self {
            Principal::Core => "core".into(),
            Principal::Scheduler => "scheduler".into(),
            Principal::Gate(n) => format!("gate/{n}"),
            Principal::User(n) => format!("user/{n}"),
            Principal::Service(n) => format!("service/{n}"),
            Principal::Agent(a) => format!("agent/{}/{}/{}", a.gate, a.partition, a.machine),
        }
    }

    /// Parse a `spiffe://` URI, checking it belongs to `installation`.
    pub fn from_uri(uri: &str, installation: &str) -> Result<Self, IdentityError> {
        let rest = uri
            .strip_prefix(SPIFFE_SCHEME)
            .ok_or_else(|| IdentityError::Malformed(uri.into()))?;
        let (domain, path) = rest
            .split_once('/')
            .ok_or_else(|| IdentityError::Malformed(uri.into()))?;
        if domain != installation {
            return Err(IdentityError::WrongInstallation {
                uri: uri.into(),
                found: domain.into(),
                expected: installation.into(),
            });
        }
        Self::from_path(path).ok_or_else(|| IdentityError::Malformed(uri.into()))
    }

    /// Parse the path part (`user/alice`, `core`, ...).
    pub fn from_path(path: &str) -> Option<Self> {
        let named = |n: &str| is_valid_name(n).then(|| n.to_string());
        match path.split_once('/') {
            None if path == "core" => Some(Principal::Core),
            None if path == "scheduler" => Some(Principal::Scheduler),
            Some(("gate", n)) => named(n).map(Principal::Gate),
            Some(("user", n)) => named(n).map(Principal::User),
            Some(("service", n)) => named(n).map(Principal::Service),
            Some(("agent", rest)) => {
                let mut parts = rest.split('/');
                let (gate, partition, machine) = (parts.next()?, parts.next()?, parts.next()?);
                let all_named = [gate, partition, machine].iter().all(|n| is_valid_name(n));
                (parts.next().is_none() && all_named).then(|| {
                    Principal::Agent(AgentName {
                        gate: gate.into(),
                        partition: partition.into(),
                        machine: machine.into(),
                    })
                })
            }
            _ => None,
        }
    }

    /// The identity of the peer of a tonic request, from its verified certificate.
    pub fn from_request<T>(
        request: &tonic::Request<T>,
        installation: &str,
    ) -> Result<Self, IdentityError> {
        let certs = request.peer_certs().ok_or(IdentityError::NoCertificate)?;
        let leaf = certs.first().ok_or(IdentityError::NoCertificate)?;
        PARSED.get_or_parse(leaf.as_ref(), installation)
    }

    /// The identity in a DER certificate's `spiffe://` URI SAN.
    pub fn from_der(der: &[u8], installation: &str) -> Result<Self, IdentityError> {
        let (_, cert) = x509_parser::parse_x509_certificate(der)
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| IdentityError::BadCertificate(e.to_string()))?
            .ok_or(IdentityError::NoIdentity)?;
        let uri = san
            .value
            .general_names
            .iter()
            .find_map(|name| match name {
                x509_parser::extensions::GeneralName::URI(uri)
                    if uri.starts_with(SPIFFE_SCHEME) =>
                {
                    Some(*uri)
                }
                _ => None,
            })
            .ok_or(IdentityError::NoIdentity)?;
        Self::from_uri(uri, installation)
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_kind() {
        for p in [
            Principal::Core,
            Principal::Scheduler,
            Principal::Gate("local".into()),
            Principal::User("alice".into()),
            Principal::Service("jupyterhub".into()),
            Principal::Agent(AgentName {
                gate: "aws".into(),
                partition: "0190a8e2-5c1b-7d2e-9f00-0123456789ab".into(),
                machine: "m0".into(),
            }),
        ] {
            assert_eq!(Principal::from_uri(&p.uri("gantry"), "gantry"), Ok(p));
        }
    }

    #[test]
    fn servers_have_dns_names() {
        assert_eq!(
            Principal::Gate("local".into())
                .server_name("e2e")
                .as_deref(),
            Some("local.gate.e2e")
        );
        assert_eq!(Principal::Gate("a_b".into()).server_name("e2e"), None);
        assert_eq!(Principal::User("alice".into()).server_name("e2e"), None);
    }

    /// A self-signed certificate whose one URI SAN is `uri`.
    fn certificate(uri: &str) -> Vec<u8> {
        let mut params = rcgen::CertificateParams::default();
        params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        let key = rcgen::KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn a_certificate_seen_again_names_the_same_identity_for_its_installation_only() {
        let parsed = ParsedCertificates::default();
        let alice = certificate("spiffe://gantry/user/alice");
        let bob = certificate("spiffe://gantry/user/bob");
        for _ in 0..2 {
            assert_eq!(
                parsed.get_or_parse(&alice, "gantry"),
                Ok(Principal::User("alice".into()))
            );
            assert_eq!(
                parsed.get_or_parse(&bob, "gantry"),
                Ok(Principal::User("bob".into()))
            );
            assert!(matches!(
                parsed.get_or_parse(&alice, "other"),
                Err(IdentityError::WrongInstallation { .. })
            ));
        }
        let nameless = certificate("https://gantry/user/alice");
        assert_eq!(
            parsed.get_or_parse(&nameless, "gantry"),
            Err(IdentityError::NoIdentity)
        );
    }

    #[test]
    fn refuses_other_installations_and_bad_names() {
        assert!(matches!(
            Principal::from_uri("spiffe://other/user/alice", "gantry"),
            Err(IdentityError::WrongInstallation { .. })
        ));
        assert!(Principal::from_uri("spiffe://gantry/user/../x", "gantry").is_err());
        assert!(Principal::from_uri("spiffe://gantry/admin/x", "gantry").is_err());
        assert!(Principal::from_uri("https://gantry/user/x", "gantry").is_err());
        assert!(Principal::from_uri("spiffe://gantry/agent/aws/p", "gantry").is_err());
        assert!(Principal::from_uri("spiffe://gantry/agent/aws/p/m/x", "gantry").is_err());
    }
}
