//! The gate conformance kit (`gantry-gate-conformance`), run against our
//! own gates as a third party runs it against theirs: the real binaries,
//! over mTLS, with a PKI made by the installation's tools.

use std::path::Path;

use gantry_e2e::Process;
use gantry_e2e::bin_dir;
use gantry_e2e::kit::{RestartableGate, assert_passed, conformance, pki};
use gantry_e2e::services::{python, repo_file};

async fn local_gate(dir: &Path, pki: &str, name: &str) -> Process {
    let work = dir.join("work").display().to_string();
    let args = [
        "--name",
        name,
        "--listen",
        "127.0.0.1:0",
        "--pki-dir",
        pki,
        "--work-dir",
        &work,
        "--cpus",
        "2",
        "--run-as",
        "gate",
    ];
    Process::start("gantry-gate-local", dir, &args)
        .await
        .expect("the local gate starts")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_gate_passes_every_check_of_the_kit() {
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "local");
    let work = dir.path().join("work").display().to_string();
    let gate = RestartableGate::start(
        dir.path(),
        &bin_dir().join("gantry-gate-local"),
        &[
            "--name",
            "local",
            "--pki-dir",
            &pki,
            "--work-dir",
            &work,
            "--cpus",
            "2",
            "--run-as",
            "gate",
        ],
    );
    let address = gate.addr.clone();
    let (code, rows, err) = conformance(&[
        &address,
        "--name",
        "local",
        "--pki-dir",
        &pki,
        "--restart-cmd",
        &gate.restart_cmd,
    ]);
    assert_passed(code, &rows, &err, &[], "");
    for check in [
        "auth.core_only",
        "start.idempotent",
        "start.capacity",
        "job.walltime",
        "watch.snapshot",
        "logs.follow",
        "stage.round_trip",
        "stage.escape",
        "restart.keeps_attempts",
        "partition.delete_running",
    ] {
        assert!(rows.contains_key(check), "{check} did not run: {rows:?}");
    }
    // The kit cleaned up after itself: nothing left to list.
    let (code, rows, _) = conformance(&[
        &address,
        "--name",
        "local",
        "--pki-dir",
        &pki,
        "--only",
        "partition.create",
        "--only",
        "watch.snapshot",
    ]);
    assert_eq!(code, 0);
    assert_eq!(
        rows["watch.snapshot"].1, "listed 1 unreleased attempt(s)",
        "{rows:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gate_serving_another_sites_certificate_cannot_be_checked() {
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "other");
    let gate = local_gate(dir.path(), &pki, "other").await;
    let (code, rows, err) =
        conformance(&[&gate.addr.to_string(), "--name", "local", "--pki-dir", &pki]);
    assert_eq!(code, 2, "{rows:?} {err}");
    assert!(err.contains("Describe of the gate at"), "{err}");
}

/// The Python reference gate (gates/examples/python), a third party's gate
/// in another language, passes the kit too, a restart included.
#[tokio::test(flavor = "multi_thread")]
async fn the_python_reference_gate_passes_every_check_of_the_kit() {
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = pki(dir.path(), "py");
    let work = dir.path().join("work").display().to_string();
    let script = repo_file("gates/examples/python/gate.py")
        .display()
        .to_string();
    let gate = RestartableGate::start(
        dir.path(),
        &python(),
        &[
            &script,
            "--name",
            "py",
            "--pki-dir",
            &pki,
            "--work-dir",
            &work,
        ],
    );
    let (code, rows, err) = conformance(&[
        &gate.addr,
        "--name",
        "py",
        "--pki-dir",
        &pki,
        "--restart-cmd",
        &gate.restart_cmd,
    ]);
    let not_passed: Vec<_> = rows.iter().filter(|(_, (r, _))| r != "pass").collect();
    // Its capabilities leave out chdir (and port forwarding, which the kit
    // does not check yet).
    let expected: Vec<&str> = not_passed.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(
        expected,
        ["job.chdir"],
        "not passed: {not_passed:#?}\n{err}"
    );
    assert_eq!(rows["job.chdir"].0, "skip");
    assert_eq!(code, 0, "{err}");
    assert!(rows.len() >= 36, "{rows:?}");
}
