//! Where the SDK finds gantryd and the caller's certificate: environment
//! variables, a profile file, or the profile `gantry dev` writes.

use std::path::{Path, PathBuf};

use gantry_proto::tls::TlsFiles;
use serde::Deserialize;

use crate::error::{Error, Result};

/// The address of gantryd and the TLS files to reach it with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientConfig {
    /// gantryd's address, e.g. `https://127.0.0.1:7070`.
    pub address: String,
    /// The CA that signed gantryd's certificate, and the caller's own
    /// certificate and key.
    pub tls: TlsFiles,
}

/// A profile file as written on disk.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Profile {
    #[serde(default)]
    address: Option<String>,
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// Environment variables that configure a client without a profile (all four
/// must be set).
pub const ENV_VARS: [&str; 4] = ["GANTRY_ADDR", "GANTRY_CA", "GANTRY_CERT", "GANTRY_KEY"];

/// The environment variable naming a profile file.
pub const PROFILE_ENV: &str = "GANTRY_PROFILE";

/// The file name of the profile inside `gantry dev`'s state directory.
pub const DEV_PROFILE_FILE: &str = "client.toml";

/// `gantry dev`'s default state directory: `$XDG_STATE_HOME/gantry/dev`, or
/// `~/.local/state/gantry/dev` when `XDG_STATE_HOME` is unset.
pub fn default_dev_state_dir() -> PathBuf {
    dev_state_dir_with(&|name| std::env::var(name).ok())
}

fn dev_state_dir_with(env: &dyn Fn(&str) -> Option<String>) -> PathBuf {
    let non_empty = |name| env(name).filter(|v| !v.is_empty());
    let base = match non_empty("XDG_STATE_HOME") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(non_empty("HOME").unwrap_or_else(|| ".".into()))
            .join(".local")
            .join("state"),
    };
    base.join("gantry").join("dev")
}

/// Add `https://` when an address has no scheme, so `127.0.0.1:7070` works.
fn normalize_address(address: &str) -> String {
    let address = address.trim();
    if address.contains("://") {
        address.to_string()
    } else {
        format!("https://{address}")
    }
}

impl ClientConfig {
    /// Load a profile TOML file with the keys `address`, `ca`, `cert` and
    /// `key`. Relative paths are taken from the profile's directory.
    pub fn from_profile(path: &Path) -> Result<Self> {
        let profile_err = |message: String| Error::Profile {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| profile_err(e.to_string()))?;
        let profile: Profile =
            toml::from_str(&text).map_err(|e| profile_err(e.message().to_string()))?;
        let address = profile
            .address
            .filter(|a| !a.trim().is_empty())
            .ok_or_else(|| {
                profile_err(
                    "no `address`: the `gantry dev` that wrote it has stopped; \
                     start `gantry dev` again or set GANTRY_PROFILE to another profile"
                        .into(),
                )
            })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        Ok(Self {
            address: normalize_address(&address),
            tls: TlsFiles {
                ca: dir.join(profile.ca),
                cert: dir.join(profile.cert),
                key: dir.join(profile.key),
            },
        })
    }

    /// Find the configuration, in this order: the environment variables
    /// `GANTRY_ADDR`, `GANTRY_CA`, `GANTRY_CERT` and `GANTRY_KEY` (all four);
    /// else the profile named by `GANTRY_PROFILE`; else the profile
    /// `gantry dev` writes (`client.toml` in [`default_dev_state_dir`]).
    pub fn discover() -> Result<Self> {
        Self::discover_with(&|name| std::env::var(name).ok())
    }

    /// [`ClientConfig::discover`] with an explicit environment lookup (for
    /// tests and for programs that keep their settings elsewhere).
    pub fn discover_with(env: &dyn Fn(&str) -> Option<String>) -> Result<Self> {
        let values: Vec<Option<String>> = ENV_VARS
            .iter()
            .map(|name| env(name).filter(|v| !v.is_empty()))
            .collect();
        if values.iter().all(Option::is_some) {
            let [address, ca, cert, key] = [0, 1, 2, 3].map(|i| values[i].clone().unwrap());
            return Ok(Self {
                address: normalize_address(&address),
                tls: TlsFiles {
                    ca: ca.into(),
                    cert: cert.into(),
                    key: key.into(),
                },
            });
        }
        if let Some(set) = values.iter().position(Option::is_some) {
            let missing: Vec<&str> = ENV_VARS
                .iter()
                .zip(&values)
                .filter(|(_, v)| v.is_none())
                .map(|(name, _)| *name)
                .collect();
            return Err(Error::Config(format!(
                "{} is set but {} is not: set all of {} or none",
                ENV_VARS[set],
                missing.join(", "),
                ENV_VARS.join(", ")
            )));
        }
        if let Some(profile) = env(PROFILE_ENV).filter(|v| !v.is_empty()) {
            return Self::from_profile(Path::new(&profile));
        }
        let dev = dev_state_dir_with(env).join(DEV_PROFILE_FILE);
        if dev.exists() {
            return Self::from_profile(&dev);
        }
        Err(Error::Config(
            "no Gantry profile found: start `gantry dev` or set GANTRY_PROFILE \
             (or GANTRY_ADDR, GANTRY_CA, GANTRY_CERT and GANTRY_KEY)"
                .into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn write_profile(dir: &Path, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join("client.toml");
        std::fs::write(&path, body).unwrap();
        path
    }

    const BODY: &str = "address = \"https://127.0.0.1:7070\"\nca = \"pki/ca.pem\"\ncert = \"/abs/u.pem\"\nkey = \"pki/u.key\"\n";

    #[test]
    fn profile_paths_are_relative_to_its_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_profile(dir.path(), BODY);
        let config = ClientConfig::from_profile(&path).unwrap();
        assert_eq!(config.address, "https://127.0.0.1:7070");
        assert_eq!(config.tls.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(config.tls.cert, PathBuf::from("/abs/u.pem"));
        assert_eq!(config.tls.key, dir.path().join("pki/u.key"));
    }

    #[test]
    fn profile_without_address_says_to_start_gantry_dev() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_profile(dir.path(), "ca = \"a\"\ncert = \"b\"\nkey = \"c\"\n");
        let err = ClientConfig::from_profile(&path).unwrap_err().to_string();
        assert!(err.contains("gantry dev"), "{err}");
    }

    #[test]
    fn bad_profile_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_profile(dir.path(), "address = 3\n");
        let err = ClientConfig::from_profile(&path).unwrap_err().to_string();
        assert!(err.contains("client.toml"), "{err}");
    }

    #[test]
    fn env_vars_win_over_profiles() {
        let env = env_of(&[
            ("GANTRY_ADDR", "10.0.0.1:7070"),
            ("GANTRY_CA", "/ca"),
            ("GANTRY_CERT", "/c"),
            ("GANTRY_KEY", "/k"),
            ("GANTRY_PROFILE", "/nonexistent.toml"),
        ]);
        let config = ClientConfig::discover_with(&env).unwrap();
        assert_eq!(config.address, "https://10.0.0.1:7070");
        assert_eq!(config.tls.key, PathBuf::from("/k"));
    }

    #[test]
    fn partial_env_vars_are_an_error_naming_the_missing() {
        let env = env_of(&[("GANTRY_ADDR", "x"), ("GANTRY_CA", "/ca")]);
        let err = ClientConfig::discover_with(&env).unwrap_err().to_string();
        assert!(err.contains("GANTRY_CERT, GANTRY_KEY"), "{err}");
    }

    #[test]
    fn named_profile_wins_over_dev_profile() {
        let dir = tempfile::tempdir().unwrap();
        let named = write_profile(&dir.path().join("named"), BODY);
        write_profile(
            &dir.path().join("state/gantry/dev"),
            &BODY.replace("7070", "9999"),
        );
        let state = dir.path().join("state");
        let env = env_of(&[
            ("GANTRY_PROFILE", named.to_str().unwrap()),
            ("XDG_STATE_HOME", state.to_str().unwrap()),
        ]);
        assert!(
            ClientConfig::discover_with(&env)
                .unwrap()
                .address
                .ends_with(":7070")
        );
    }

    #[test]
    fn dev_profile_is_found_under_xdg_state_home_or_home() {
        let dir = tempfile::tempdir().unwrap();
        write_profile(&dir.path().join(".local/state/gantry/dev"), BODY);
        let home = dir.path().to_str().unwrap();
        let env = env_of(&[("HOME", home)]);
        assert!(ClientConfig::discover_with(&env).is_ok());
        let env = env_of(&[("HOME", home), ("XDG_STATE_HOME", "/nonexistent")]);
        let err = ClientConfig::discover_with(&env).unwrap_err().to_string();
        assert!(
            err.starts_with("no Gantry profile found: start `gantry dev`"),
            "{err}"
        );
    }

    #[test]
    fn default_state_dir_layout() {
        let env = env_of(&[("HOME", "/home/a")]);
        assert_eq!(
            dev_state_dir_with(&env),
            PathBuf::from("/home/a/.local/state/gantry/dev")
        );
        let env = env_of(&[("HOME", "/home/a"), ("XDG_STATE_HOME", "/s")]);
        assert_eq!(dev_state_dir_with(&env), PathBuf::from("/s/gantry/dev"));
    }
}
