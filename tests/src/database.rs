//! The database behind a test cluster's gantryd: its own SQLite file by
//! default, or a fresh database on the PostgreSQL server whose admin URL is
//! in `GANTRY_TEST_POSTGRES` (`scripts/test` runs the suites both ways).
//! [`Postgres`] is a throwaway server of a test's own, for tests that stop
//! and start the database under a running gantryd.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

/// The admin URL of the shared test server, when the suite runs on PostgreSQL.
pub fn shared_postgres() -> Option<String> {
    std::env::var("GANTRY_TEST_POSTGRES")
        .ok()
        .filter(|s| !s.is_empty())
}

/// Create a new, empty database on the server at `admin_url`; its URL.
pub fn create_database(admin_url: &str, prefix: &str) -> anyhow::Result<String> {
    let name = format!("{prefix}_{}", uuid::Uuid::now_v7().simple());
    let out = Command::new("psql")
        .args([admin_url, "-v", "ON_ERROR_STOP=1", "-qc"])
        .arg(format!("CREATE DATABASE {name}"))
        .output()
        .context("run psql (PostgreSQL's client; scripts/postgres installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "CREATE DATABASE {name} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (base, _) = admin_url
        .rsplit_once('/')
        .context("the admin URL has no /database part")?;
    Ok(format!("{base}/{name}"))
}

/// The `database_url` for a new test cluster in `dir`: `None` means the
/// default (SQLite in gantryd's state directory).
pub fn database_for_cluster() -> anyhow::Result<Option<String>> {
    shared_postgres()
        .map(|admin| create_database(&admin, "gantry_e2e"))
        .transpose()
}

/// A PostgreSQL server of a test's own, run by `scripts/postgres`; stopped
/// when dropped.
pub struct Postgres {
    dir: PathBuf,
    /// The admin URL (`postgres://postgres@127.0.0.1:PORT/postgres`).
    pub admin_url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/postgres")
}

fn run_script(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(script())
        .args(args)
        .output()
        .with_context(|| format!("run {}", script().display()))?;
    anyhow::ensure!(
        out.status.success(),
        "scripts/postgres {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

impl Postgres {
    /// Start a new server in a fresh directory under /tmp on `port`.
    pub fn start(port: u16) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("gantry-pg-{}", uuid::Uuid::now_v7().simple()));
        Self::start_in(&dir, port)
    }

    /// Start a new server with its files in `dir` (which the postgres user
    /// must reach, e.g. a tmpfs under /tmp) on `port`.
    pub fn start_in(dir: &Path, port: u16) -> anyhow::Result<Self> {
        let admin_url = run_script(&["start", &dir.display().to_string(), &port.to_string()])?;
        Ok(Self {
            dir: dir.to_path_buf(),
            admin_url,
        })
    }

    /// Whether the server answers now.
    pub fn is_up(&self) -> bool {
        Command::new("psql")
            .args([&self.admin_url, "-qtAc", "SELECT 1"])
            .output()
            .is_ok_and(|o| o.status.success())
    }

    /// The end of the server's log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// Stop the server (fast shutdown: connections are cut).
    pub fn stop(&self) -> anyhow::Result<()> {
        run_script(&["stop", &self.dir.display().to_string()]).map(drop)
    }

    /// Start it again on the same port and data.
    pub fn restart(&self) -> anyhow::Result<()> {
        let port = self
            .admin_url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split('/').next())
            .context("no port in the admin URL")?;
        run_script(&["start", &self.dir.display().to_string(), port]).map(drop)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
