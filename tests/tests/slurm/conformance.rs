//! The gate conformance kit against the Slurm gate, on the cluster's host
//! and over SSH: the gate alone (no gantryd, which would delete the kit's
//! partitions as unknown to it).

use gantry_e2e::kit::{RestartableGate, conformance, pki};
use gantry_e2e::services::{slurm_conf, ssh_config};
use gantry_e2e::{SSH_HOST, bin_dir};

use super::common::SERIAL;

#[tokio::test(flavor = "multi_thread")]
async fn the_slurm_gate_passes_every_check_of_the_kit() {
    passes_the_kit(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_slurm_gate_passes_every_check_of_the_kit_over_ssh() {
    passes_the_kit(true).await;
}

async fn passes_the_kit(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "slurm");
    let conf = slurm_conf().display().to_string();
    let name = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let (work, ssh) = if over_ssh {
        let config = ssh_config().display().to_string();
        (format!("gantry-conformance/{name}"), Some(config))
    } else {
        (dir.path().join("work").display().to_string(), None)
    };
    let mut args = vec![
        "--name",
        "slurm",
        "--pki-dir",
        &pki,
        "--work-dir",
        &work,
        "--slurm-conf",
        &conf,
        "--poll",
        "0.25",
    ];
    if let Some(config) = &ssh {
        args.extend(["--ssh", SSH_HOST, "--ssh-config", config]);
    }
    let gate = RestartableGate::start(dir.path(), &bin_dir().join("gantry-gate-slurm"), &args);
    // Slurm counts walltime in whole minutes.
    let (code, rows, err) = conformance(&[
        &gate.addr,
        "--name",
        "slurm",
        "--pki-dir",
        &pki,
        "--walltime",
        "60",
        "--timeout",
        "180",
        "--restart-cmd",
        &gate.restart_cmd,
    ]);
    let failed: Vec<_> = rows.iter().filter(|(_, (r, _))| r != "pass").collect();
    assert!(failed.is_empty(), "not passed: {failed:#?}\n{err}");
    assert_eq!(code, 0, "{err}");
    assert!(rows.len() >= 36, "{rows:?}");
}
