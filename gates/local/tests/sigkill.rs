//! The real `gantry-gate-local` binary, SIGKILLed while a job runs, then
//! started again: the job's end is not lost. Its `gantry-supervisor`
//! SIGKILLed: no recorded end is lost and no job is left running.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::gate_client::GateClient;
use gantry_proto::v1::*;
use tokio_stream::StreamExt;

/// The gate process, SIGKILLed when dropped (also when a test panics).
struct Gate(Child);

impl Drop for Gate {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_gate(pki: &Path, work: &Path, ready: &Path) -> Gate {
    let _ = std::fs::remove_file(ready);
    let child = Command::new(env!("CARGO_BIN_EXE_gantry-gate-local"))
        .args(["--name", "local", "--cpus", "4", "--run-as", "gate"])
        .arg("--pki-dir")
        .arg(pki)
        .arg("--work-dir")
        .arg(work)
        .arg("--ready-file")
        .arg(ready)
        .arg("--supervisor")
        .arg(env!("CARGO_BIN_EXE_gantry-supervisor"))
        .spawn()
        .unwrap();
    Gate(child)
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

/// A PKI and a work directory in a scratch directory, the real gate on
/// them, a client holding the core's certificate, and partition `p1`.
struct Setup {
    tmp: tempfile::TempDir,
    gate: Gate,
    c: GateClient<tonic::transport::Channel>,
}

async fn setup() -> Setup {
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
    let gate = spawn_gate(&pki_dir, &work, &ready);
    let mut c = connect(&pki_dir, &ready).await;
    c.create_partition(CreatePartitionRequest {
        partition_id: "p1".into(),
        flavor: "host".into(),
        labels: Default::default(),
    })
    .await
    .unwrap();
    Setup { tmp, gate, c }
}

#[tokio::test]
async fn a_sigkilled_gate_loses_nothing() {
    let Setup { tmp, gate, mut c } = setup().await;
    let (pki_dir, work, ready) = (
        tmp.path().join("pki"),
        tmp.path().join("work"),
        tmp.path().join("ready"),
    );
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
    assert!(matches!(
        job.state(),
        GateJobState::Pending | GateJobState::Running
    ));
    // Killed once the job runs (an attempt the gate never handed to its
    // supervisor is not listed after a restart, and gantryd starts it again).
    running(&mut c, "a1").await;
    drop(gate); // SIGKILL

    let _gate = spawn_gate(&pki_dir, &work, &ready);
    let mut c = connect(&pki_dir, &ready).await;
    let mut stream = c
        .watch_jobs(WatchJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    let ended = tokio::time::timeout(Duration::from_secs(15), async {
        while let Some(msg) = stream.next().await {
            for job in msg.unwrap().jobs {
                if job.attempt_id == "a1" && job.state().is_final() {
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
}

async fn get(c: &mut GateClient<tonic::transport::Channel>, attempt: &str) -> GateJob {
    c.get_job(GateGetJobRequest {
        attempt_id: attempt.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .job
    .unwrap()
}

/// Poll `attempt` until it is final.
async fn ended(c: &mut GateClient<tonic::transport::Channel>, attempt: &str) -> GateJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let job = get(c, attempt).await;
        if job.state().is_final() {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{attempt} did not end"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Poll `attempt` until it runs.
async fn running(c: &mut GateClient<tonic::transport::Channel>, attempt: &str) -> GateJob {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let job = get(c, attempt).await;
        if job.state() == GateJobState::Running {
            return job;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{attempt} never ran"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn start(c: &mut GateClient<tonic::transport::Channel>, attempt: &str, script: &str) {
    c.start_job(StartJobRequest {
        attempt_id: attempt.into(),
        partition_id: "p1".into(),
        task: Some(Task {
            job_id: 1,
            script: script.into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_sigkilled_supervisor_loses_no_recorded_end_and_leaves_no_job() {
    let Setup {
        tmp,
        gate: _gate,
        mut c,
    } = setup().await;
    let work = tmp.path().join("work");
    start(&mut c, "a-done", "exit 5").await;
    start(&mut c, "a-running", "sleep 30").await;
    assert_eq!(ended(&mut c, "a-done").await.exit_code, Some(5));
    let running = running(&mut c, "a-running").await;

    let pid = std::fs::read_to_string(work.join("supervisor.lock")).unwrap();
    let status = Command::new("kill")
        .args(["-9", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());

    // The gate starts a new supervisor, which ends the orphaned job and
    // says it was lost; the recorded end is kept.
    let lost = ended(&mut c, "a-running").await;
    assert_eq!(
        (lost.state(), lost.reason.as_str()),
        (GateJobState::Failed, gantry_gate_local::LOST_REASON)
    );
    assert!(lost.lost, "a lost attempt says so: {lost:?}");
    // (Whoever adopted it may leave a zombie: that does not run.)
    let stat = Path::new("/proc").join(&running.native_id).join("stat");
    let runs = || {
        std::fs::read_to_string(&stat)
            .is_ok_and(|s| !matches!(s.rsplit_once(") ").map(|(_, r)| &r[..1]), Some("Z" | "X")))
    };
    let gone = tokio::time::Instant::now() + Duration::from_secs(10);
    while runs() && tokio::time::Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!runs(), "the orphaned job still runs");
    assert_eq!(get(&mut c, "a-done").await.exit_code, Some(5));
    // And the gate goes on running jobs.
    start(&mut c, "a-after", "exit 0").await;
    assert_eq!(
        ended(&mut c, "a-after").await.state(),
        GateJobState::Succeeded
    );
}
