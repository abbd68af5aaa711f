//! Scenario `spawner` (issue 22): a JupyterHub server's start -> ready
//! through GantrySpawner and the local gate, beside JupyterHub's own
//! LocalProcessSpawner running the same single-user command (JupyterHub's
//! `mocksu`), median of 10 each; and the Python SDK's durable submits with 64
//! asyncio tasks on one connection beside the Rust SDK's with 64 tasks on one
//! connection, against the same gantryd in the same run. The Python half is
//! `terminals/jupyterhub/bench/spawn.py`, run with the project's Python
//! (`scripts/python-env`).

use std::path::{Path, PathBuf};

use gantry_client::ClientConfig;
use gantry_proto::Principal;

use super::scenarios::{figure, median_figure, submit_many, with_peer};
use super::{Args, Report};
use crate::{Cluster, Options};

/// Run the scenario; its figures are n/a (with the reason on stderr) when
/// the project's Python environment is missing.
pub async fn spawner(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let runs = args.size(10, 3);
    let submits = args.size(10_000, 2_000);
    let cluster = Cluster::start(Options::default()).await?;
    let dir = cluster.dir().to_path_buf();
    let user = profile(
        &dir,
        "bench",
        &cluster.config_for(&Principal::User("bench".into())),
    )?;
    let service = profile(
        &dir,
        "jupyterhub",
        &cluster.config_for(&Principal::Service("jupyterhub".into())),
    )?;

    let client = cluster.user("bench").await?;
    client.submit(super::scenarios::trivial(true)).await?;
    let rust = submit_many(vec![client; 64], submits, true).await?;

    let python = python(&args.repo);
    let script = args.repo.join("terminals/jupyterhub/bench/spawn.py");
    let out = std::process::Command::new(&python)
        .arg(&script)
        .args(["--user-profile", &user.display().to_string()])
        .args(["--service-profile", &service.display().to_string()])
        .args([
            "--runs",
            &runs.to_string(),
            "--submits",
            &submits.to_string(),
        ])
        .output();
    let answer: Option<serde_json::Value> = match out {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .find_map(|l| serde_json::from_str(l).ok()),
        Ok(out) => {
            eprintln!(
                "spawner: {} failed: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            None
        }
        Err(e) => {
            eprintln!(
                "spawner: cannot run {} ({e}); run scripts/python-env",
                python.display()
            );
            None
        }
    };
    let list = |key: &str| -> Vec<f64> {
        answer
            .as_ref()
            .and_then(|a| a[key].as_array().cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(serde_json::Value::as_f64)
            .collect()
    };
    let local = list("local_ready_ms");
    let local_median = super::Spread::median_of(&local).map(|(m, _)| m);
    report.add(with_peer(
        median_figure(
            "spawner",
            "server start -> ready, GantrySpawner on the local gate",
            &list("gantry_ready_ms"),
            "ms",
            "<= 1.2x LocalProcessSpawner",
        ),
        "JupyterHub LocalProcessSpawner, same command",
        local_median,
    ));
    let py = answer
        .as_ref()
        .and_then(|a| a["py_submits_per_s"].as_f64())
        .unwrap_or(f64::NAN);
    report.add(with_peer(
        figure(
            "spawner",
            "Python SDK durable submits, 64 asyncio tasks, one connection",
            py,
            "jobs/s",
            "beside the Rust SDK",
        ),
        "Rust SDK, 64 tasks, one connection",
        Some(rust),
    ));
    Ok(())
}

/// A profile file for `config`, as `GANTRY_PROFILE` names one.
fn profile(dir: &Path, name: &str, config: &ClientConfig) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("profile-{name}.toml"));
    std::fs::write(
        &path,
        format!(
            "address = {:?}\nca = {:?}\ncert = {:?}\nkey = {:?}\n",
            config.address, config.tls.ca, config.tls.cert, config.tls.key
        ),
    )?;
    Ok(path)
}

/// The project's Python (`scripts/python-env`), or `GANTRY_PYTHON`.
fn python(repo: &Path) -> PathBuf {
    std::env::var_os("GANTRY_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target/python/bin/python"))
}
