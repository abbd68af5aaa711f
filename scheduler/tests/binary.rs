//! The `gantry-sched` binary: flags, ready file, a plan over mTLS, and a
//! graceful stop on SIGTERM while a session is open.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::scheduler_client::SchedulerClient;
use gantry_proto::v1::{Capacity, Flavor, SchedJob, SchedJobState, SchedSite, SessionRequest};
use tokio_stream::wrappers::ReceiverStream;

/// Kills the child if the test fails before it ends it.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_for(path: &std::path::Path, log: &std::path::Path) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(addr) = std::fs::read_to_string(path) {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "no ready file; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test]
async fn serves_from_a_pki_dir_and_stops_on_sigterm() {
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let pki = Pki::init(&pki_dir, "test").unwrap();
    pki.issue(&Principal::Scheduler, &[]).unwrap();
    pki.issue(&Principal::Core, &[]).unwrap();
    let ready = dir.path().join("ready");
    let log = dir.path().join("log");
    let child = Command::new(env!("CARGO_BIN_EXE_gantry-sched"))
        .args(["--listen", "127.0.0.1:0", "--ready-file"])
        .arg(&ready)
        .env("GANTRY_SCHED_PKI_DIR", &pki_dir)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut guard = Guard(child);
    let addr = wait_for(&ready, &log);

    let channel = TlsFiles::in_dir(&pki_dir, "core")
        .endpoint(&format!("https://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = SchedulerClient::new(channel);
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut plans = client
        .session(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let capacity = Capacity {
        cpus: 2,
        memory_bytes: 1 << 30,
        gpus: 0,
        nodes: 1,
    };
    tx.send(SessionRequest {
        seq: 1,
        reset: true,
        snapshot_done: true,
        sites: vec![SchedSite {
            name: "local".into(),
            healthy: true,
            flavors: vec![Flavor {
                name: "host".into(),
                capacity: Some(capacity),
                max_partitions: 1,
                available: true,
                ..Default::default()
            }],
            ..Default::default()
        }],
        jobs: vec![SchedJob {
            job_id: 42,
            state: SchedJobState::Queued as i32,
            resources: Some(Capacity {
                memory_bytes: 512 << 30,
                ..capacity
            }),
            ..Default::default()
        }],
        ..Default::default()
    })
    .await
    .unwrap();
    let plan = plans.message().await.unwrap().expect("a plan");
    assert_eq!(plan.pending_reasons.len(), 1);
    assert!(plan.pending_reasons[0].unsatisfiable);
    assert_eq!(
        plan.pending_reasons[0].reason,
        "no site offers 512 GiB of memory"
    );

    let pid = guard.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let ended = plans.message().await;
    assert!(
        ended.is_err() || ended.unwrap().is_none(),
        "the session ends"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = guard.0.try_wait().unwrap() {
            assert!(status.success(), "exit: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(tx);
}
