//! The gate conformance kit against the Grid Engine gate, on the cell's
//! host and over SSH: the gate alone (no gantryd, which would delete the
//! kit's partitions as unknown to it), killed and restarted mid-work.

use gantry_e2e::bin_dir;
use gantry_e2e::kit::{RestartableGate, assert_passed, conformance, pki, work_dir_flags};
use gantry_e2e::services::{sge_env, sge_vars};

use super::SERIAL;

#[tokio::test(flavor = "multi_thread")]
async fn the_grid_engine_gate_passes_every_check_of_the_kit() {
    passes_the_kit(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_grid_engine_gate_passes_every_check_of_the_kit_over_ssh() {
    passes_the_kit(true).await;
}

async fn passes_the_kit(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "sge");
    let location = work_dir_flags(dir.path(), over_ssh);
    // The cell's settings as the gate's flags (the restart script runs it
    // with no environment of this test's).
    let flags: Vec<(String, String)> = sge_vars(&sge_env())
        .into_iter()
        .map(|(k, v)| (format!("--{}", k.to_ascii_lowercase().replace('_', "-")), v))
        .collect();
    let mut args = vec!["--name", "sge", "--pki-dir", &pki, "--poll", "0.25"];
    for (flag, value) in &flags {
        args.extend([flag.as_str(), value.as_str()]);
    }
    args.extend(location.iter().map(String::as_str));
    // The kit's jobs are of no Unix account's owner.
    args.extend(["--run-as", "gate"]);
    let gate = RestartableGate::start(dir.path(), &bin_dir().join("gantry-gate-sge"), &args);
    let (code, rows, err) = conformance(&[
        &gate.addr,
        "--name",
        "sge",
        "--pki-dir",
        &pki,
        "--walltime",
        "3",
        "--timeout",
        "120",
        "--restart-cmd",
        &gate.restart_cmd,
    ]);
    assert_passed(code, &rows, &err, &[], "");
    assert!(rows.len() >= 36, "{rows:?}");
}
