//! The gate conformance kit against the Slurm gate, on the cluster's host
//! and over SSH: the gate alone (no gantryd, which would delete the kit's
//! partitions as unknown to it).

use gantry_e2e::bin_dir;
use gantry_e2e::kit::{RestartableGate, assert_passed, conformance, pki, work_dir_flags};
use gantry_e2e::services::slurm_conf;

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
    let location = work_dir_flags(dir.path(), over_ssh);
    let mut args = vec![
        "--name",
        "slurm",
        "--pki-dir",
        &pki,
        "--slurm-conf",
        &conf,
        "--poll",
        "0.25",
    ];
    args.extend(location.iter().map(String::as_str));
    // The kit's jobs are of no Unix account's owner.
    args.extend(["--run-as", "gate"]);
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
    assert_passed(code, &rows, &err, &[], "");
    assert!(rows.len() >= 36, "{rows:?}");
}
