//! The gate conformance kit against the AWS gate on moto's EC2, its
//! machines played on this host: the gate alone (no gantryd), killed and
//! restarted mid-work, and no instance left when the kit is done.

use std::time::Duration;

use gantry_e2e::cloud::{
    AWS_ENV, MachinePlayer, TEST_IMAGE, create_bucket, ec2_client, live_instances, moto_endpoint,
};
use gantry_e2e::kit::{RestartableGate, assert_passed, conformance};
use gantry_e2e::{bin_dir, eventually, free_port};
use gantry_proto::identity::Principal;
use gantry_proto::pki::Pki;

#[tokio::test(flavor = "multi_thread")]
async fn the_aws_gate_passes_every_check_of_the_kit() {
    gantry_proto::tls::install_crypto_provider();
    let endpoint = moto_endpoint();
    let dir = tempfile::Builder::new()
        .prefix("gantry-kit-")
        .tempdir()
        .unwrap();
    // Its own installation: moto's instances are told apart by its tag.
    let installation = dir
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_ascii_lowercase();
    let pki = Pki::init(&dir.path().join("pki"), &installation).unwrap();
    for p in [
        Principal::Core,
        Principal::Scheduler,
        Principal::Gate("aws".into()),
    ] {
        pki.issue(&p, &[]).unwrap();
    }
    pki.issue_agent_issuer("aws").unwrap();
    create_bucket(&endpoint, &installation).await;
    let ec2 = ec2_client(&endpoint).await;
    let _player = MachinePlayer::start(ec2.clone(), &installation, dir.path());
    let pki_dir = dir.path().join("pki").display().to_string();
    let state = dir.path().join("state").display().to_string();
    let agent_listen = format!("127.0.0.1:{}", free_port());
    let gate_bin = bin_dir().join("gantry-gate-aws").display().to_string();
    // Through env(1), which gives the gate moto's credentials and execs it
    // (the restart script kills the pid it started).
    let env: Vec<String> = AWS_ENV.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut args: Vec<&str> = env.iter().map(String::as_str).collect();
    args.extend([
        gate_bin.as_str(),
        "--name",
        "aws",
        "--pki-dir",
        &pki_dir,
        "--agent-listen",
        &agent_listen,
        "--state-dir",
        &state,
        "--instance-types",
        "t3.micro",
        "--image",
        TEST_IMAGE,
        "--endpoint-url",
        &endpoint,
        "--bucket",
        &installation,
    ]);
    let gate = RestartableGate::start(dir.path(), "/usr/bin/env".as_ref(), &args);
    let (code, rows, err) = conformance(&[
        &gate.addr,
        "--name",
        "aws",
        "--pki-dir",
        &pki_dir,
        "--timeout",
        "180",
        "--restart-cmd",
        &gate.restart_cmd,
    ]);
    let log = std::fs::read_to_string(dir.path().join("gate.log")).unwrap_or_default();
    // Skipped by design: its machines hold no directory of the user's
    // (chdir is not flagged), and a flavor allows more partitions than
    // the kit makes to reach the quota.
    let skipped = ["job.chdir", "partition.quota"];
    assert_passed(code, &rows, &err, &skipped, &format!("\n--- gate:\n{log}"));
    assert!(rows.len() >= 36, "{rows:?}");
    // The kit deleted its partitions: the gate terminated their machines.
    eventually(Duration::from_secs(60), "no instance left", async || {
        let live = live_instances(&ec2, &installation).await.unwrap();
        if live.is_empty() {
            Ok(())
        } else {
            Err(live.join(", "))
        }
    })
    .await;
}
