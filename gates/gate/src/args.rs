//! The command-line flags every gate shares, flattened into each gate's CLI,
//! and the checked configuration they resolve to.

use std::path::{Path, PathBuf};

use gantry_proto::identity::is_valid_name;
use gantry_proto::tls::TlsFiles;

use crate::server::ServeError;

/// Flags every gate binary takes (`#[command(flatten)]` them). Each can
/// also be set through `GANTRY_GATE_<FLAG>`, e.g. `GANTRY_GATE_PKI_DIR`.
#[derive(Debug, Clone, clap::Args)]
pub struct GateArgs {
    /// The gate's site name, as users give it; its certificate must name `gate/<name>`.
    #[arg(long, env = "GANTRY_GATE_NAME")]
    pub name: String,
    /// Address to listen on; port 0 picks a free port. The default is this
    /// gate's port in the installation's set (docs/install.md).
    #[arg(long, env = "GANTRY_GATE_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: String,
    /// Once listening, write the bound `host:port` to this file (atomically).
    #[arg(long, env = "GANTRY_GATE_READY_FILE")]
    pub ready_file: Option<PathBuf>,
    /// Serve Prometheus metrics on `GET /metrics` over plain HTTP at this
    /// address (e.g. 127.0.0.1:9472); off by default.
    #[arg(long, env = "GANTRY_GATE_METRICS_LISTEN", value_name = "ADDR")]
    pub metrics_listen: Option<String>,
    /// The installation's CA certificate (PEM); callers must chain to it.
    #[arg(long, env = "GANTRY_GATE_CA")]
    pub ca: Option<PathBuf>,
    /// The gate's certificate (PEM).
    #[arg(long, env = "GANTRY_GATE_CERT")]
    pub cert: Option<PathBuf>,
    /// The gate's private key (PEM).
    #[arg(long, env = "GANTRY_GATE_KEY")]
    pub key: Option<PathBuf>,
    /// The installation name (the SPIFFE trust domain of every certificate).
    #[arg(long, env = "GANTRY_GATE_INSTALLATION")]
    pub installation: Option<String>,
    /// A PKI directory: takes `ca.pem`, `gate-<name>.pem`, `gate-<name>.key`
    /// and the installation from the file `installation`, instead of the four flags above.
    #[arg(long, env = "GANTRY_GATE_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
}

/// A gate's checked serving configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GateConfig {
    /// The site name.
    pub name: String,
    /// The installation name.
    pub installation: String,
    /// The CA, certificate and key files.
    pub tls: TlsFiles,
    /// The address to listen on.
    pub listen: String,
    /// Where to announce the bound address, if anywhere.
    pub ready_file: Option<PathBuf>,
    /// Where to serve Prometheus metrics, if anywhere.
    pub metrics_listen: Option<String>,
}

fn config_error(message: impl Into<String>) -> ServeError {
    ServeError::Config(message.into())
}

fn read_installation(dir: &Path) -> Result<String, ServeError> {
    let path = dir.join("installation");
    let text = std::fs::read_to_string(&path).map_err(|e| {
        config_error(format!(
            "--pki-dir: cannot read {}: {e}; create the PKI with `gantry pki init`",
            path.display()
        ))
    })?;
    Ok(text.trim().to_string())
}

/// Each gate binary's default `--listen`: its port in the installation's
/// one set (gantryd 7070, gantry-sched 7071, then one per gate; the AWS
/// gate's agents connect to 7444), as docs/install.md lists them.
pub mod default_listen {
    /// gantry-gate-local.
    pub const LOCAL: &str = "127.0.0.1:7072";
    /// gantry-gate-slurm.
    pub const SLURM: &str = "127.0.0.1:7073";
    /// gantry-gate-sge.
    pub const SGE: &str = "127.0.0.1:7074";
    /// gantry-gate-aws.
    pub const AWS: &str = "127.0.0.1:7075";
}

/// Parse a gate binary's command line `C` (which flattens [`GateArgs`]),
/// its `--listen` defaulting to `listen` (one of [`default_listen`]).
pub fn parse_gate_cli<C: clap::Parser>(listen: &'static str) -> C {
    let command = C::command().mut_arg("listen", |arg| arg.default_value(listen));
    C::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

impl GateArgs {
    /// Check the flags and resolve the TLS files.
    pub fn config(&self) -> Result<GateConfig, ServeError> {
        if !is_valid_name(&self.name) {
            return Err(config_error(format!(
                "--name: `{}` is not a site name; use 1-64 of [A-Za-z0-9._-], e.g. \"local\"",
                self.name
            )));
        }
        let explicit = [
            self.ca.is_some(),
            self.cert.is_some(),
            self.key.is_some(),
            self.installation.is_some(),
        ];
        let (tls, installation) = match (&self.pki_dir, explicit) {
            (Some(dir), [false, false, false, false]) => (
                TlsFiles::in_dir(dir, &format!("gate-{}", self.name)),
                read_installation(dir)?,
            ),
            (Some(_), _) => {
                return Err(config_error(
                    "give either --pki-dir or --ca, --cert, --key and --installation, not both",
                ));
            }
            (None, [true, true, true, true]) => (
                TlsFiles {
                    ca: self.ca.clone().expect("checked"),
                    cert: self.cert.clone().expect("checked"),
                    key: self.key.clone().expect("checked"),
                },
                self.installation.clone().expect("checked"),
            ),
            (None, _) => {
                return Err(config_error(
                    "TLS is required: give --pki-dir DIR, or all of --ca, --cert, --key and --installation",
                ));
            }
        };
        if installation.is_empty() {
            return Err(config_error(
                "--installation: must not be empty; use e.g. \"gantry\"",
            ));
        }
        Ok(GateConfig {
            name: self.name.clone(),
            installation,
            tls,
            listen: self.listen.clone(),
            ready_file: self.ready_file.clone(),
            metrics_listen: self.metrics_listen.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        gate: GateArgs,
    }

    fn parse(args: &[&str]) -> GateArgs {
        Cli::try_parse_from(std::iter::once("gate").chain(args.iter().copied()))
            .unwrap()
            .gate
    }

    #[test]
    fn pki_dir_gives_the_gate_files_and_installation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("installation"), "site1\n").unwrap();
        let d = dir.path().to_str().unwrap();
        let config = parse(&["--name", "local", "--pki-dir", d])
            .config()
            .unwrap();
        assert_eq!(config.installation, "site1");
        assert_eq!(config.tls.cert, dir.path().join("gate-local.pem"));
        assert_eq!(config.tls.key, dir.path().join("gate-local.key"));
        assert_eq!(config.tls.ca, dir.path().join("ca.pem"));
        assert_eq!(config.listen, "127.0.0.1:0");
    }

    #[test]
    fn explicit_files_need_all_four() {
        let args = parse(&[
            "--name",
            "x",
            "--ca",
            "c",
            "--cert",
            "a",
            "--key",
            "k",
            "--installation",
            "i",
        ]);
        assert_eq!(args.config().unwrap().installation, "i");
        let args = parse(&["--name", "x", "--ca", "c"]);
        assert!(args.config().is_err());
        let args = parse(&["--name", "x", "--ca", "c", "--pki-dir", "/d"]);
        assert!(args.config().unwrap_err().to_string().contains("not both"));
    }

    #[test]
    fn refuses_a_bad_name() {
        let args = parse(&["--name", "a/b", "--pki-dir", "/d"]);
        assert!(args.config().unwrap_err().to_string().starts_with("--name"));
    }
}
