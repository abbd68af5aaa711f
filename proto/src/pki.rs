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

use crate::identity::Principal;

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
    pub fn issue(&self, principal: &Principal, extra_hosts: &[String]) -> Result<CertPaths> {
        let mut params = CertificateParams::default();
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

    /// Issue `principal`'s certificate unless it already exists.
    pub fn ensure(&self, principal: &Principal) -> Result<CertPaths> {
        let paths = self.paths(principal);
        if paths.cert.exists() && paths.key.exists() {
            Ok(paths)
        } else {
            self.issue(principal, &[])
        }
    }
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
}
