//! gantryd's configuration: defaults, then a TOML file, then `GANTRY_*`
//! environment variables (`GANTRY_LISTEN`, `GANTRY_TLS__CERT`, ...), then
//! command-line flags; checked by [`Config::validate`].

use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use gantry_proto::identity::{is_dns_safe, is_valid_name};
use gantry_proto::tls::TlsFiles;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    /// The installation name: the SPIFFE trust domain of every certificate.
    pub installation: String,
    /// Address to serve the client API on (`127.0.0.1:0` picks a free port).
    pub listen: String,
    /// Serve Prometheus metrics on `GET /metrics` over plain HTTP at this
    /// address (e.g. `127.0.0.1:9470`); off when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_listen: Option<String>,
    /// Directory for the database (by default), inputs and outputs.
    pub state_dir: PathBuf,
    /// `sqlite://...`; default `sqlite://<state_dir>/gantry.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// User names with admin rights (see and change every job).
    #[serde(default)]
    pub admins: Vec<String>,
    /// gantryd's own certificate, key and the CA.
    pub tls: TlsFiles,
    /// The scheduler to ask for plans.
    pub scheduler: SchedulerConfig,
    /// The gates (sites).
    #[serde(default)]
    pub gates: Vec<GateConfig>,
    /// Services (e.g. JupyterHub) and what they may do.
    #[serde(default)]
    pub services: Vec<ServiceConfig>,
}

/// Where the scheduler is.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SchedulerConfig {
    /// `https://host:port`.
    pub address: String,
}

/// One gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GateConfig {
    /// The site name; the gate's certificate must be `gate/<name>`.
    pub name: String,
    /// `https://host:port`.
    pub address: String,
    /// Delete partitions idle this long (elastic gates), in seconds; 0
    /// deletes a partition as soon as no job is on it or waiting for it.
    #[serde(default = "default_idle")]
    pub idle_timeout_seconds: u64,
}

fn default_idle() -> u64 {
    300
}

/// A service identity.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceConfig {
    /// The name in its certificate (`service/<name>`).
    pub name: String,
    /// Whether it may submit and act on behalf of users.
    #[serde(default)]
    pub act_for_users: bool,
}

/// A configuration that cannot work.
#[derive(Debug, thiserror::Error)]
#[error("configuration: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Load from `path` (if any) and the environment, then validate.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut figment = Figment::from(Serialized::default("listen", "127.0.0.1:7070"))
            .merge(Serialized::default("installation", "gantry"));
        if let Some(path) = path {
            readable("the configuration file", path)?;
            figment = figment.merge(Toml::file(path));
        }
        figment = figment.merge(
            Env::prefixed("GANTRY_")
                .split("__")
                .ignore(&["profile", "addr", "ca", "cert", "key"]),
        );
        let config: Config = figment.extract().map_err(|e| ConfigError(e.to_string()))?;
        config.validate()?;
        Ok(config)
    }

    /// Check what can be checked before starting.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !is_dns_safe(&self.installation) {
            return Err(ConfigError(format!(
                "installation {:?} must be a DNS-safe name (letters, digits, '-', '.')",
                self.installation
            )));
        }
        let mut names = std::collections::HashSet::new();
        for gate in &self.gates {
            if !is_valid_name(&gate.name) || !is_dns_safe(&gate.name) {
                return Err(ConfigError(format!(
                    "gate name {:?} must be letters, digits, '-' and '.'",
                    gate.name
                )));
            }
            if !names.insert(&gate.name) {
                return Err(ConfigError(format!(
                    "gate {:?} is configured twice",
                    gate.name
                )));
            }
            if !gate.address.starts_with("https://") {
                return Err(ConfigError(format!(
                    "gate {:?}: address must start with https://",
                    gate.name
                )));
            }
        }
        if !self.scheduler.address.starts_with("https://") {
            return Err(ConfigError(
                "scheduler.address must start with https://".into(),
            ));
        }
        for (what, path) in [
            ("tls.ca", &self.tls.ca),
            ("tls.cert", &self.tls.cert),
            ("tls.key", &self.tls.key),
        ] {
            readable(what, path)?;
        }
        Ok(())
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.state_dir.join("gantry.db").display()))
    }

    /// Whether a site of this name is configured.
    pub fn has_site(&self, name: &str) -> bool {
        self.gates.iter().any(|g| g.name == name)
    }
}

/// Whether this process can read `path` (named `what` in the error): one
/// that exists but is out of reach says so, rather than "does not exist".
fn readable(what: &str, path: &Path) -> Result<(), ConfigError> {
    match std::fs::File::open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(ConfigError(format!(
            "{what}: {} does not exist",
            path.display()
        ))),
        Err(e) => Err(ConfigError(format!(
            "{what}: cannot read {}: {e} (the account gantryd runs as must be able to \
             enter every directory above it and read the file)",
            path.display()
        ))),
    }
}
