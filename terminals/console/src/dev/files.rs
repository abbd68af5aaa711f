//! The files of `gantry dev`'s state directory: layout, gantryd's config,
//! the client profile, log tails.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use gantry_proto::tls::TlsFiles;
use serde::Serialize;

/// Where everything lives under the state directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The state directory itself.
    pub root: PathBuf,
}

impl Layout {
    /// The PKI directory.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    /// Ready files.
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    /// Log files.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    /// The log file of a process.
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    /// gantryd's state.
    pub fn core(&self) -> PathBuf {
        self.root.join("core")
    }
    /// The local gate's work directory.
    pub fn local(&self) -> PathBuf {
        self.root.join("local")
    }
    /// gantryd's config file.
    pub fn gantryd_config(&self) -> PathBuf {
        self.root.join("gantryd.toml")
    }
    /// The client profile.
    pub fn profile(&self) -> PathBuf {
        self.root.join(gantry_client::DEV_PROFILE_FILE)
    }
    /// The lock held while a `gantry dev` runs.
    pub fn lock(&self) -> PathBuf {
        self.root.join("dev.lock")
    }

    /// Delete the state directory, refusing one that does not look like a
    /// `gantry dev` state directory (so `--fresh --state-dir ~` cannot wipe a home).
    pub fn wipe(&self) -> anyhow::Result<()> {
        let Ok(mut entries) = std::fs::read_dir(&self.root) else {
            return Ok(());
        };
        let empty = entries.next().is_none();
        let ours = self.pki().exists() || self.profile().exists() || self.gantryd_config().exists();
        if !empty && !ours {
            bail!(
                "--fresh: {} is not a `gantry dev` state directory (no pki/, client.toml or gantryd.toml); \
                 refusing to delete it",
                self.root.display()
            );
        }
        std::fs::remove_dir_all(&self.root)
            .with_context(|| format!("cannot delete {}", self.root.display()))
    }

    /// Create the directories.
    pub fn create(&self) -> anyhow::Result<()> {
        for dir in [
            self.root.clone(),
            self.run(),
            self.logs(),
            self.core(),
            self.local(),
        ] {
            std::fs::create_dir_all(&dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }
}

/// gantryd's config file as `gantry dev` writes it.
#[derive(Debug, Serialize)]
pub struct GantrydConfig {
    /// The installation (trust domain).
    pub installation: String,
    /// Where gantryd listens.
    pub listen: String,
    /// gantryd's state directory.
    pub state_dir: PathBuf,
    /// Admin users.
    pub admins: Vec<String>,
    /// gantryd's TLS files.
    pub tls: TlsFiles,
    /// The scheduler.
    pub scheduler: Endpoint,
    /// The gates.
    pub gates: Vec<NamedEndpoint>,
}

/// An address to dial.
#[derive(Debug, Serialize)]
pub struct Endpoint {
    /// `https://host:port`.
    pub address: String,
}

/// A gate's name and address.
#[derive(Debug, Serialize)]
pub struct NamedEndpoint {
    /// The gate's name.
    pub name: String,
    /// `https://host:port`.
    pub address: String,
}

/// The URL of a server that wrote `addr` to its ready file.
pub fn https(addr: SocketAddr) -> String {
    format!("https://{addr}")
}

/// The client profile file.
#[derive(Debug, Serialize)]
struct Profile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    address: Option<&'a str>,
    ca: &'a Path,
    cert: &'a Path,
    key: &'a Path,
}

/// Write `contents` to `path` through a temporary file and a rename.
pub fn write_atomic(path: &Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
}

/// The profile's text: with the address while gantryd runs, without after.
pub fn profile_text(address: Option<&str>, tls: &TlsFiles) -> anyhow::Result<String> {
    let header = if address.is_some() {
        "# Written by `gantry dev` while it runs; removed address = it stopped.\n"
    } else {
        "# Written by `gantry dev`, which has stopped: start it again to use this profile.\n"
    };
    let body = toml::to_string(&Profile {
        address,
        ca: &tls.ca,
        cert: &tls.cert,
        key: &tls.key,
    })?;
    Ok(format!("{header}{body}"))
}

/// The last `n` lines of a log file, indented, or a note when it is empty.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return "  (no log)".into();
    };
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().collect();
    if lines.is_empty() {
        return "  (the log is empty)".into();
    }
    lines[lines.len().saturating_sub(n)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(dir: &Path) -> TlsFiles {
        TlsFiles::in_dir(&dir.join("pki"), "core")
    }

    #[test]
    fn gantryd_config_has_the_documented_shape() {
        let dir = Path::new("/s");
        let config = GantrydConfig {
            installation: "gantry".into(),
            listen: "127.0.0.1:0".into(),
            state_dir: dir.join("core"),
            admins: vec![],
            tls: tls(dir),
            scheduler: Endpoint {
                address: "https://127.0.0.1:1".into(),
            },
            gates: vec![NamedEndpoint {
                name: "local".into(),
                address: "https://127.0.0.1:2".into(),
            }],
        };
        let text = toml::to_string(&config).unwrap();
        let value: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(value["installation"].as_str(), Some("gantry"));
        assert_eq!(value["admins"].as_array().map(Vec::len), Some(0));
        assert_eq!(value["tls"]["key"].as_str(), Some("/s/pki/core.key"));
        assert_eq!(
            value["scheduler"]["address"].as_str(),
            Some("https://127.0.0.1:1")
        );
        assert_eq!(value["gates"][0]["name"].as_str(), Some("local"));
    }

    #[test]
    fn profile_round_trips_through_the_sdk_and_loses_its_address_on_stop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("client.toml");
        let files = tls(dir.path());
        write_atomic(
            &path,
            &profile_text(Some("https://127.0.0.1:5"), &files).unwrap(),
        )
        .unwrap();
        let config = gantry_client::ClientConfig::from_profile(&path).unwrap();
        assert_eq!(config.address, "https://127.0.0.1:5");
        assert_eq!(config.tls, files);
        write_atomic(&path, &profile_text(None, &files).unwrap()).unwrap();
        let err = gantry_client::ClientConfig::from_profile(&path).unwrap_err();
        assert!(err.to_string().contains("gantry dev"), "{err}");
    }

    #[test]
    fn wipe_refuses_foreign_directories() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious"), "x").unwrap();
        let layout = Layout {
            root: dir.path().to_path_buf(),
        };
        assert!(layout.wipe().is_err());
        assert!(dir.path().join("precious").exists());
        std::fs::create_dir(layout.pki()).unwrap();
        layout.wipe().unwrap();
        assert!(!dir.path().exists());
    }

    #[test]
    fn log_tail_keeps_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(log_tail(&path, 2), "  b\n  c");
        assert_eq!(log_tail(&dir.path().join("none"), 2), "  (no log)");
    }
}
