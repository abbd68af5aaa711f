//! The real `gantry-gate-local` binary, SIGKILLed while a job runs, then
//! started again: the job's end is not lost.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::gate_client::GateClient;
use gantry_proto::v1::*;
use tokio_stream::StreamExt;

fn spawn_gate(pki: &Path, work: &Path, ready: &Path) -> Child {
    let _ = std::fs::remove_file(ready);
    Command::new(env!("CARGO_BIN_EXE_gantry-gate-local"))
        .args(["--name", "local", "--cpus", "4"])
        .arg("--pki-dir")
        .arg(pki)
        .arg("--work-dir")
        .arg(work)
        .arg("--ready-file")
        .arg(ready)
        .arg("--shim")
        .arg(env!("CARGO_BIN_EXE_gantry-shim"))
        .spawn()
        .unwrap()
}

async fn connect(pki: &Path, ready: &Path) -> GateClient<tonic::transport::Channel> {
    for _ in 0..200 {
        if let Ok(addr) = std::fs::read_to_string(ready) {
            let port = addr.rsplit(':').next().unwrap().to_string();
            let endpoint = TlsFiles::in_dir(pki, "core")
                .endpoint(&format!("https://localhost:{port}"))
                .unwrap();
            return GateClient::new(endpoint.connect().await.unwrap());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the gate did not write its ready file");
}

#[tokio::test]
async fn a_sigkilled_gate_loses_nothing() {
    gantry_proto::tls::install_crypto_provider();
    let tmp = tempfile::tempdir().unwrap();
    let (pki_dir, work, ready) = (
        tmp.path().join("pki"),
        tmp.path().join("work"),
        tmp.path().join("ready"),
    );
    let pki = Pki::init(&pki_dir, "test").unwrap();
    pki.issue(&Principal::Core, &[]).unwrap();
    pki.issue(&Principal::Gate("local".into()), &[]).unwrap();

    let mut gate = spawn_gate(&pki_dir, &work, &ready);
    let mut c = connect(&pki_dir, &ready).await;
    c.create_partition(CreatePartitionRequest {
        partition_id: "p1".into(),
        flavor: "host".into(),
        labels: Default::default(),
    })
    .await
    .unwrap();
    let job = c
        .start_job(StartJobRequest {
            attempt_id: "a1".into(),
            partition_id: "p1".into(),
            task: Some(Task {
                job_id: 1,
                script: "sleep 2; exit 4".into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap()
        .into_inner()
        .job
        .unwrap();
    assert_eq!(job.state(), GateJobState::Running);
    gate.kill().unwrap(); // SIGKILL
    gate.wait().unwrap();

    let mut gate = spawn_gate(&pki_dir, &work, &ready);
    let mut c = connect(&pki_dir, &ready).await;
    let mut stream = c
        .watch_jobs(WatchJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(msg) = stream.next().await {
            for job in msg.unwrap().jobs {
                if job.attempt_id == "a1" && gantry_gate::is_final(job.state()) {
                    return job;
                }
            }
        }
        panic!("stream ended");
    })
    .await
    .expect("the job's end was not reported");
    assert_eq!(
        (ended.state(), ended.exit_code),
        (GateJobState::Failed, Some(4))
    );
    gate.kill().unwrap();
    gate.wait().unwrap();
}
