//! A small PKI for an installation: one CA and a certificate per identity,
//! each with exactly one `spiffe://<installation>/...` URI SAN. Used by
//! `gantry pki`, `gantry dev` and the tests (certificates are made at run
//! time, never committed).
//!
//! Layout of a PKI directory:
//! `ca.pem`, `ca.key`, `installation` (the installation name), and for each
//! identity `<kind>-<name>.pem` / `.key` (e.g. `user-alice.pem`, `core.pem`).

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

use std::time::{Duration, SystemTime};

use crate::identity::{AgentName, Principal};

/// Errors of PKI operations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    /// The directory holds no CA.
    #[error("{0} holds no CA (ca.pem, ca.key); run `gantry pki init --dir {0}` first")]
    NoCa(String),
    /// A serial number to revoke is not usable.
    #[error("{0}")]
    BadSerial(String),
    /// A certificate signing request is not usable.
    #[error("the certificate signing request is not usable: {0}")]
    BadCsr(String),
}

/// Result of PKI operations.
pub type Result<T> = std::result::Result<T, PkiError>;

/// The file paths of one identity's certificate and key.
#[derive(Debug, Clone)]
pub struct CertPaths {
    /// The PEM certificate.
    pub cert: PathBuf,
    /// The PEM private key.
    pub key: PathBuf,
}

/// An installation's CA on disk, able to issue certificates.
pub struct Pki {
    dir: PathBuf,
    installation: String,
    issuer: Issuer<'static, KeyPair>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io_err(path))?;
    file.write_all(contents.as_bytes()).map_err(io_err(path))
}

/// The file stem for a principal: `core`, `scheduler`, `gate-local`, `user-alice`.
pub fn file_stem(principal: &Principal) -> String {
    principal.path().replace('/', "-")
}

impl Pki {
    /// Open the CA in `dir`, creating it (for `installation`) if it does not exist.
    pub fn init(dir: &Path, installation: &str) -> Result<Self> {
        if dir.join("ca.key").exists() {
            return Self::open(dir);
        }
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Gantry CA ({installation})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_LIFETIME).into();
        params.serial_number = Some(serial(now));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        fs::write(dir.join("ca.pem"), cert.pem()).map_err(io_err(&dir.join("ca.pem")))?;
        write_private(&dir.join("ca.key"), &key.serialize_pem())?;
        let inst = dir.join("installation");
        fs::write(&inst, installation).map_err(io_err(&inst))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            installation: installation.to_string(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Open an existing CA.
    pub fn open(dir: &Path) -> Result<Self> {
        let read = |name: &str| {
            let path = dir.join(name);
            fs::read_to_string(&path).map_err(|_| PkiError::NoCa(dir.display().to_string()))
        };
        let key = KeyPair::from_pem(&read("ca.key")?)?;
        let issuer = Issuer::from_ca_cert_pem(&read("ca.pem")?, key)?;
        let installation = read("installation")?.trim().to_string();
        Ok(Self {
            dir: dir.to_path_buf(),
            installation,
            issuer,
        })
    }

    /// The installation name (the SPIFFE trust domain).
    pub fn installation(&self) -> &str {
        &self.installation
    }

    /// The CA certificate's path.
    pub fn ca_path(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// Where `principal`'s certificate and key live (whether or not issued yet).
    pub fn paths(&self, principal: &Principal) -> CertPaths {
        let stem = file_stem(principal);
        CertPaths {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// Issue (or re-issue) a certificate for `principal`, valid as a TLS client
    /// and, for processes that serve, as a server for localhost and `extra_hosts`.
    /// It is valid from a minute ago for [`default_lifetime`] of its kind.
    pub fn issue(&self, principal: &Principal, extra_hosts: &[String]) -> Result<CertPaths> {
        self.issue_for(principal, extra_hosts, default_lifetime(principal))
    }

    /// [`Pki::issue`], valid from a minute ago (for clocks a little behind)
    /// for `lifetime` from now.
    pub fn issue_for(
        &self,
        principal: &Principal,
        extra_hosts: &[String],
        lifetime: Duration,
    ) -> Result<CertPaths> {
        let now = SystemTime::now();
        self.issue_valid(principal, extra_hosts, now - CLOCK_SKEW, now + lifetime)
    }

    /// [`Pki::issue`], valid from `not_before` until `not_after`.
    pub fn issue_valid(
        &self,
        principal: &Principal,
        extra_hosts: &[String],
        not_before: SystemTime,
        not_after: SystemTime,
    ) -> Result<CertPaths> {
        let mut params = CertificateParams::default();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(serial(SystemTime::now()));
        params
            .distinguished_name
            .push(DnType::CommonName, principal.path());
        params.subject_alt_names = vec![SanType::URI(
            principal.uri(&self.installation).as_str().try_into()?,
        )];
        let serves = matches!(
            principal,
            Principal::Core | Principal::Scheduler | Principal::Gate(_)
        );
        if serves {
            let mut hosts = vec!["localhost".to_string()];
            hosts.extend(principal.server_name(&self.installation));
            hosts.extend(extra_hosts.iter().cloned());
            for host in hosts {
                params.subject_alt_names.push(match host.parse() {
                    Ok(ip) => SanType::IpAddress(ip),
                    Err(_) => SanType::DnsName(host.as_str().try_into()?),
                });
            }
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ClientAuth);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        let paths = self.paths(principal);
        fs::write(&paths.cert, cert.pem()).map_err(io_err(&paths.cert))?;
        write_private(&paths.key, &key.serialize_pem())?;
        Ok(paths)
    }

    /// Where gate `gate`'s agent issuer lives: `agent-issuer-<gate>.pem/.key`.
    pub fn agent_issuer_paths(&self, gate: &str) -> CertPaths {
        CertPaths {
            cert: self.dir.join(format!("agent-issuer-{gate}.pem")),
            key: self.dir.join(format!("agent-issuer-{gate}.key")),
        }
    }

    /// Make (or make anew) gate `gate`'s agent issuer: a CA of its own,
    /// separate from the installation's, that signs the certificates of the
    /// gate's node agents. Only that gate trusts it, so the certificates it
    /// signs open nothing else, and the gate needs no key of the installation.
    pub fn issue_agent_issuer(&self, gate: &str) -> Result<CertPaths> {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("Gantry agent issuer of gate/{gate} ({})", self.installation),
        );
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = SystemTime::now();
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = (now + CA_LIFETIME).into();
        params.serial_number = Some(serial(now));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        let paths = self.agent_issuer_paths(gate);
        fs::write(&paths.cert, cert.pem()).map_err(io_err(&paths.cert))?;
        write_private(&paths.key, &key.serialize_pem())?;
        Ok(paths)
    }

    /// Issue `principal`'s certificate unless a current one exists: one
    /// with its key, that has less than a third of its kind's
    /// [`default_lifetime`] left (or cannot be read), or that does not
    /// serve every one of `extra_hosts`, is issued anew (with them).
    pub fn ensure(&self, principal: &Principal, extra_hosts: &[String]) -> Result<CertPaths> {
        let paths = self.paths(principal);
        let renew_by = SystemTime::now() + default_lifetime(principal) / 3;
        let current = paths.key.exists()
            && expiry(&paths.cert).is_some_and(|not_after| not_after > renew_by)
            && serves_all(&paths.cert, extra_hosts);
        if current {
            Ok(paths)
        } else {
            self.issue(principal, extra_hosts)
        }
    }
}

/// Whether the certificate in `path` names every one of `hosts` (DNS names,
/// or IP addresses) among its subject alternative names.
fn serves_all(path: &Path, hosts: &[String]) -> bool {
    if hosts.is_empty() {
        return true;
    }
    let Ok(pem) = fs::read(path) else {
        return false;
    };
    let names = read_certificate(&pem, |cert| {
        let mut names: Vec<String> = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => {
                        names.push(dns.to_ascii_lowercase());
                    }
                    x509_parser::extensions::GeneralName::IPAddress(bytes) => {
                        let ip = match bytes.len() {
                            4 => <[u8; 4]>::try_from(*bytes).ok().map(std::net::IpAddr::from),
                            16 => <[u8; 16]>::try_from(*bytes)
                                .ok()
                                .map(std::net::IpAddr::from),
                            _ => None,
                        };
                        names.extend(ip.map(|ip| ip.to_string()));
                    }
                    _ => {}
                }
            }
        }
        names
    })
    .unwrap_or_default();
    hosts.iter().all(|host| {
        let host = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => ip.to_string(),
            Err(_) => host.to_ascii_lowercase(),
        };
        names.contains(&host)
    })
}

/// The file, in a PKI directory, of the certificates revoked so far: one
/// line each, `SERIAL_HEX UNIX_SECONDS WHAT`.
const REVOKED: &str = "revoked";

/// The certificate revocation list every server checks (PEM), written
/// beside the CA certificate: `crl.pem`.
pub fn crl_path(ca: &Path) -> PathBuf {
    ca.with_file_name("crl.pem")
}

/// The serial number of the certificate in PEM file `path` (hex, lower
/// case, no leading zeros), `None` when it cannot be read.
pub fn serial_of(path: &Path) -> Option<String> {
    let pem = fs::read(path).ok()?;
    read_certificate(&pem, |cert| cert.tbs_certificate.serial.to_str_radix(16))
}

/// `f` of the first certificate in `pem`; `None` when there is none that
/// parses.
pub(crate) fn read_certificate<T>(
    pem: &[u8],
    f: impl FnOnce(&x509_parser::certificate::X509Certificate<'_>) -> T,
) -> Option<T> {
    let der: rustls::pki_types::CertificateDer<'static> =
        rustls::pki_types::pem::PemObject::from_pem_slice(pem).ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    Some(f(&cert))
}

impl Pki {
    /// Revoke the certificate with serial number `serial_hex` (`what` says
    /// whose, for people reading the list), and write the CRL anew
    /// ([`crl_path`]): servers refuse it at their next handshake. Revoking
    /// a serial twice changes nothing.
    pub fn revoke(&self, serial_hex: &str, what: &str) -> Result<PathBuf> {
        // As the list and serial_of write it: lower case, no leading zeros.
        let serial = serial_hex.trim().to_ascii_lowercase();
        let serial = serial.trim_start_matches("0x").trim_start_matches('0');
        if hex_bytes(serial).is_none() {
            return Err(PkiError::BadSerial(format!(
                "`{serial_hex}` is not a serial number; give the hexadecimal digits \
                 `openssl x509 -noout -serial` prints (a serial is never zero)"
            )));
        }
        let list = self.dir.join(REVOKED);
        let mut text = fs::read_to_string(&list).unwrap_or_default();
        let known = text
            .lines()
            .any(|l| l.split_whitespace().next() == Some(serial));
        if !known {
            let now = SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            text.push_str(&format!("{serial} {now} {what}\n"));
            fs::write(&list, &text).map_err(io_err(&list))?;
        }
        self.write_crl(&text)
    }

    /// The CRL of every serial in `revoked` (the list file's text), signed
    /// by the CA, written to [`crl_path`].
    fn write_crl(&self, revoked: &str) -> Result<PathBuf> {
        let mut revoked_certs = Vec::new();
        for line in revoked.lines() {
            let mut words = line.split_whitespace();
            let (Some(serial), Some(at)) = (words.next(), words.next()) else {
                continue;
            };
            let (Some(bytes), Ok(at)) = (hex_bytes(serial), at.parse::<u64>()) else {
                continue;
            };
            revoked_certs.push(rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from_slice(&bytes),
                revocation_time: (SystemTime::UNIX_EPOCH + Duration::from_secs(at)).into(),
                reason_code: None,
                invalidity_date: None,
            });
        }
        let now = SystemTime::now();
        let params = rcgen::CertificateRevocationListParams {
            this_update: (now - CLOCK_SKEW).into(),
            next_update: (now + CA_LIFETIME).into(),
            crl_number: serial(now),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: rcgen::KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer)?;
        let path = crl_path(&self.ca_path());
        let tmp = path.with_extension("tmp");
        fs::write(&tmp, crl.pem()?).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(path)
    }
}

/// `hex` (an even or odd number of digits) as big-endian bytes.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let padded = if hex.len() % 2 == 1 {
        format!("0{hex}")
    } else {
        hex.to_string()
    };
    (0..padded.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&padded[i..i + 2], 16).ok())
        .collect()
}

/// A gate's agent issuer, loaded: signs node agents' certificates from
/// their certificate signing requests (see `agent.proto`).
pub struct AgentIssuer {
    installation: String,
    issuer: Issuer<'static, KeyPair>,
}

impl AgentIssuer {
    /// Load the issuer from its PEM files (see [`Pki::issue_agent_issuer`]).
    pub fn load(paths: &CertPaths, installation: &str) -> Result<Self> {
        let read = |path: &Path| fs::read_to_string(path).map_err(io_err(path));
        let key = KeyPair::from_pem(&read(&paths.key)?)?;
        let issuer = Issuer::from_ca_cert_pem(&read(&paths.cert)?, key)?;
        Ok(Self {
            installation: installation.to_string(),
            issuer,
        })
    }

    /// A certificate for `agent`, for the key of `csr_pem` (PKCS#10), valid
    /// for `lifetime` from now (and a minute before, for clocks a little
    /// behind). Whatever else the request asks for is ignored: the
    /// certificate names exactly `agent` and serves only as a TLS client.
    pub fn sign(
        &self,
        csr_pem: &str,
        agent: &AgentName,
        lifetime: Duration,
    ) -> Result<(String, SystemTime)> {
        let mut csr = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let principal = Principal::Agent(agent.clone());
        let now = SystemTime::now();
        let not_after = now + lifetime;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, principal.path());
        params.subject_alt_names = vec![SanType::URI(
            principal.uri(&self.installation).as_str().try_into()?,
        )];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.not_before = (now - CLOCK_SKEW).into();
        params.not_after = not_after.into();
        params.serial_number = Some(serial(now));
        csr.params = params;
        let cert = csr.signed_by(&self.issuer)?;
        Ok((cert.pem(), not_after))
    }
}

/// How far back a certificate's validity starts, for clocks a little behind.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

/// How long the installation's CA is valid: ten years.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long a certificate `gantry pki` issues is valid unless told
/// otherwise: short for people (30 days; a stolen key works no longer),
/// longer for the installation's own processes and services (a year).
/// Node agents' certificates are shorter still (an hour, renewed by the
/// agent; see [`AgentIssuer::sign`]).
pub fn default_lifetime(principal: &Principal) -> Duration {
    const DAY: u64 = 24 * 3600;
    match principal {
        Principal::User(_) => Duration::from_secs(30 * DAY),
        Principal::Agent(_) => Duration::from_secs(3600),
        _ => Duration::from_secs(365 * DAY),
    }
}

/// When the certificate in PEM file `path` expires; `None` when it cannot
/// be read.
pub fn expiry(path: &Path) -> Option<SystemTime> {
    let pem = fs::read(path).ok()?;
    let secs = read_certificate(&pem, |cert| cert.validity().not_after.timestamp())?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// A certificate serial number from the time it is made.
fn serial(now: SystemTime) -> rcgen::SerialNumber {
    rcgen::SerialNumber::from_slice(&time_serial(now).to_be_bytes())
}

/// A positive serial number unique enough for short-lived certificates: the
/// time in nanoseconds, top bit clear.
fn time_serial(now: SystemTime) -> u64 {
    let nanos = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or_default();
    nanos & (u64::MAX >> 1)
}

/// A certificate signing request (PEM) for `key`, as a node agent sends it
/// to its gate. The gate decides what the certificate names.
pub fn certificate_request(key: &KeyPair) -> Result<String> {
    Ok(CertificateParams::default().serialize_request(key)?.pem()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_carry_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "test").unwrap();
        let alice = Principal::User("alice".into());
        let paths = pki.issue(&alice, &[]).unwrap();
        let pem = fs::read_to_string(paths.cert).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c)
            .unwrap();
        assert_eq!(Principal::from_der(&der, "test").unwrap(), alice);
        // Reopening finds the same installation.
        assert_eq!(Pki::open(dir.path()).unwrap().installation(), "test");
    }

    #[test]
    fn certificates_expire_by_kind_and_ensure_renews_one_near_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "test").unwrap();
        let day = Duration::from_secs(24 * 3600);
        let left = |path: &Path| {
            expiry(path)
                .unwrap()
                .duration_since(SystemTime::now())
                .unwrap()
        };
        let alice = Principal::User("alice".into());
        let core = pki.issue(&Principal::Core, &[]).unwrap();
        assert!(left(&core.cert) > 364 * day && left(&core.cert) <= 365 * day);
        let paths = pki.issue(&alice, &[]).unwrap();
        assert!(left(&paths.cert) > 29 * day && left(&paths.cert) <= 30 * day);
        assert!(left(&pki.ca_path()) > 3649 * day);
        // Current: kept as it is.
        let before = fs::read(&paths.cert).unwrap();
        pki.ensure(&alice, &[]).unwrap();
        assert_eq!(fs::read(&paths.cert).unwrap(), before);
        // Two days left of thirty: issued anew.
        let now = SystemTime::now();
        pki.issue_valid(&alice, &[], now - day, now + 2 * day)
            .unwrap();
        assert!(left(&paths.cert) < 3 * day);
        pki.ensure(&alice, &[]).unwrap();
        assert!(left(&paths.cert) > 29 * day);
    }

    #[test]
    fn ensure_issues_anew_a_server_certificate_that_lacks_a_host_it_must_serve() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "test").unwrap();
        let paths = pki.ensure(&Principal::Core, &[]).unwrap();
        assert!(serves_all(
            &paths.cert,
            &["localhost".into(), "127.0.0.1".into()]
        ));
        assert!(!serves_all(&paths.cert, &["gantry.example.org".into()]));
        let hosts = ["Gantry.Example.org".to_string(), "10.0.0.7".to_string()];
        pki.ensure(&Principal::Core, &hosts).unwrap();
        assert!(serves_all(&paths.cert, &hosts));
        // Current and serving them: kept as it is.
        let before = fs::read(&paths.cert).unwrap();
        pki.ensure(&Principal::Core, &hosts).unwrap();
        assert_eq!(fs::read(&paths.cert).unwrap(), before);
    }

    #[test]
    fn a_serial_is_revoked_once_however_it_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "test").unwrap();
        let paths = pki.issue(&Principal::User("alice".into()), &[]).unwrap();
        let serial = serial_of(&paths.cert).unwrap();
        let crl = pki.revoke(&serial, "user/alice").unwrap();
        pki.revoke(&format!("0X00{}", serial.to_ascii_uppercase()), "again")
            .unwrap();
        let list = fs::read_to_string(dir.path().join(REVOKED)).unwrap();
        assert_eq!(list.lines().count(), 1, "{list}");
        assert!(list.starts_with(&format!("{serial} ")), "{list}");
        let pem = fs::read(&crl).unwrap();
        let der: rustls::pki_types::CertificateRevocationListDer<'static> =
            rustls::pki_types::pem::PemObject::from_pem_slice(&pem).unwrap();
        let (_, parsed) = x509_parser::parse_x509_crl(&der).unwrap();
        let listed: Vec<String> = parsed
            .iter_revoked_certificates()
            .map(|r| r.user_certificate.to_str_radix(16))
            .collect();
        assert_eq!(listed, [serial]);
        for bad in ["", "0", "0x00", "zz"] {
            assert!(pki.revoke(bad, "bad").is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_agent_issuer_names_only_the_agent_whatever_the_request_asks() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::init(dir.path(), "test").unwrap();
        let paths = pki.issue_agent_issuer("aws").unwrap();
        let issuer = AgentIssuer::load(&paths, "test").unwrap();
        let key = KeyPair::generate().unwrap();
        let mut asks = CertificateParams::new(vec!["core.test".to_string()]).unwrap();
        asks.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let csr = asks.serialize_request(&key).unwrap().pem().unwrap();
        let agent = AgentName {
            gate: "aws".into(),
            partition: "p1".into(),
            machine: "m0".into(),
        };
        let (pem, not_after) = issuer.sign(&csr, &agent, Duration::from_secs(600)).unwrap();
        let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes())
            .map(|c: rustls::pki_types::CertificateDer<'static>| c)
            .unwrap();
        assert_eq!(
            Principal::from_der(&der, "test").unwrap(),
            Principal::Agent(agent)
        );
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert!(!cert.is_ca());
        let sans = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(sans.value.general_names.len(), 1, "only the agent's URI");
        let expires = cert.validity().not_after.timestamp();
        let want = not_after
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        assert!((expires - want).abs() <= 1);
        assert!(
            issuer
                .sign(
                    "not a csr",
                    &AgentName {
                        gate: "aws".into(),
                        partition: "p1".into(),
                        machine: "m0".into(),
                    },
                    Duration::from_secs(1)
                )
                .is_err()
        );
    }
}
