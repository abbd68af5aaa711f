//! The local gate driven as gantryd drives it: real mTLS on port 0, the real
//! `gantry-supervisor`, a `GateClient` holding the core's certificate.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gantry_gate::GateConfig;
use gantry_gate_local::{LocalConfig, LocalProvider};
use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::gate_client::GateClient;
use gantry_proto::v1::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::{Code, Streaming};

const INSTALLATION: &str = "test";
const PARTITION: &str = "p1";

struct Gate {
    addr: std::net::SocketAddr,
    stop: oneshot::Sender<()>,
    server: JoinHandle<()>,
}

fn pki(dir: &Path) -> Pki {
    gantry_proto::tls::install_crypto_provider();
    let pki = Pki::init(dir, INSTALLATION).unwrap();
    pki.issue(&Principal::Core, &[]).unwrap();
    pki.issue(&Principal::Gate("local".into()), &[]).unwrap();
    pki.issue(&Principal::User("alice".into()), &[]).unwrap();
    pki
}

async fn start_gate(pki_dir: &Path, work_dir: &Path) -> Gate {
    start_gate_with(pki_dir, work_dir, 8).await
}

async fn start_gate_with(pki_dir: &Path, work_dir: &Path, cpus: u32) -> Gate {
    let mut config = LocalConfig::new(work_dir);
    config.supervisor = PathBuf::from(env!("CARGO_BIN_EXE_gantry-supervisor"));
    config.cpus = Some(cpus);
    config.kill_grace = Duration::from_secs(1);
    let provider = Arc::new(LocalProvider::open(config).await.unwrap());
    let gate_config = GateConfig {
        name: "local".into(),
        installation: INSTALLATION.into(),
        tls: TlsFiles::in_dir(pki_dir, "gate-local"),
        listen: "127.0.0.1:0".into(),
        ready_file: Some(work_dir.join("ready")),
        metrics_listen: None,
    };
    let bound = gantry_gate::bind(provider, &gate_config).await.unwrap();
    let addr = bound.addr();
    let (stop, rx) = oneshot::channel();
    let server = tokio::spawn(async move {
        bound.run(async { rx.await.unwrap_or(()) }).await.unwrap();
    });
    Gate { addr, stop, server }
}

async fn client(pki_dir: &Path, stem: &str, addr: std::net::SocketAddr) -> GateClient<Channel> {
    let endpoint = TlsFiles::in_dir(pki_dir, stem)
        .endpoint(&format!("https://localhost:{}", addr.port()))
        .unwrap();
    GateClient::new(endpoint.connect().await.unwrap())
}

fn task(argv: &[&str]) -> Task {
    Task {
        job_id: 1,
        argv: argv.iter().map(|s| s.to_string()).collect(),
        resources: Some(Capacity {
            cpus: 1,
            ..Default::default()
        }),
        ..Default::default()
    }
}

async fn start(c: &mut GateClient<Channel>, attempt: &str, task: Task) -> GateJob {
    c.start_job(StartJobRequest {
        attempt_id: attempt.into(),
        partition_id: PARTITION.into(),
        task: Some(task),
    })
    .await
    .unwrap()
    .into_inner()
    .job
    .unwrap()
}

async fn watch(c: &mut GateClient<Channel>) -> (Streaming<WatchJobsResponse>, Vec<GateJob>) {
    let mut stream = c
        .watch_jobs(WatchJobsRequest {})
        .await
        .unwrap()
        .into_inner();
    let mut initial = Vec::new();
    loop {
        let msg = stream.next().await.unwrap().unwrap();
        initial.extend(msg.jobs);
        if msg.initial_done {
            return (stream, initial);
        }
    }
}

/// The states `attempt` goes through on the stream until it ends.
async fn states_until_end(
    stream: &mut Streaming<WatchJobsResponse>,
    attempt: &str,
) -> Vec<GateJob> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let msg = tokio::time::timeout_at(deadline, stream.next())
            .await
            .expect("attempt did not end in time")
            .unwrap()
            .unwrap();
        for job in msg.jobs.into_iter().filter(|j| j.attempt_id == attempt) {
            let done = job.state().is_final();
            seen.push(job);
            if done {
                return seen;
            }
        }
    }
}

/// The attempt as the gate says it is now.
async fn get(c: &mut GateClient<Channel>, id: &str) -> GateJob {
    c.get_job(GateGetJobRequest {
        attempt_id: id.into(),
    })
    .await
    .unwrap()
    .into_inner()
    .job
    .unwrap()
}

async fn wait_end(c: &mut GateClient<Channel>, attempt: &str) -> GateJob {
    for _ in 0..400 {
        let job = get(c, attempt).await;
        if job.state().is_final() {
            return job;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("attempt {attempt} did not end");
}

async fn create_partition(c: &mut GateClient<Channel>) {
    let p = c
        .create_partition(CreatePartitionRequest {
            partition_id: PARTITION.into(),
            flavor: "host".into(),
            labels: Default::default(),
        })
        .await
        .unwrap()
        .into_inner()
        .partition
        .unwrap();
    assert_eq!(p.state(), PartitionState::Ready);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_jobs_as_the_core_asks() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki_dir, work) = (tmp.path().join("pki"), tmp.path().join("work"));
    pki(&pki_dir);
    let gate = start_gate(&pki_dir, &work).await;
    assert!(work.join("ready").is_file());
    let mut c = client(&pki_dir, "core", gate.addr).await;

    let d = c
        .describe(DescribeRequest {
            api_versions: vec!["gantry.v1".into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((d.name.as_str(), d.provider.as_str()), ("local", "local"));
    assert_eq!(d.api_versions, ["gantry.v1"]);
    let caps = d.capabilities.unwrap();
    assert!(caps.staging && caps.log_follow && !caps.elastic);
    assert_eq!(d.flavors.len(), 1);
    assert_eq!(d.flavors[0].capacity.unwrap().cpus, 8);

    create_partition(&mut c).await;
    create_partition(&mut c).await; // idempotent
    let err = c
        .create_partition(CreatePartitionRequest {
            partition_id: "p2".into(),
            flavor: "host".into(),
            labels: Default::default(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);

    // A failing job: RUNNING, then FAILED with its exit code; logs read back.
    let (mut stream, initial) = watch(&mut c).await;
    assert!(initial.is_empty());
    let job = start(
        &mut c,
        "a-fail",
        task(&["sh", "-c", "echo hi; sleep 0.3; exit 3"]),
    )
    .await;
    // PENDING until the supervisor reports it started (RUNNING on the stream).
    assert!(matches!(
        job.state(),
        GateJobState::Pending | GateJobState::Running
    ));
    let states = states_until_end(&mut stream, "a-fail").await;
    let first = states.first().unwrap();
    assert_eq!(first.state(), GateJobState::Running);
    assert!(first.start_time_ms > 0 && !first.native_id.is_empty());
    let last = states.last().unwrap();
    assert_eq!(
        (last.state(), last.exit_code, last.reason.as_str()),
        (GateJobState::Failed, Some(3), "exit code 3")
    );
    let logs: Vec<LogChunk> = c
        .read_logs(GateReadLogsRequest {
            attempt_id: "a-fail".into(),
            stream: LogStream::Stdout as i32,
            offset: 0,
            follow: true,
        })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap().chunk.unwrap())
        .collect()
        .await;
    let text: Vec<u8> = logs.iter().flat_map(|c| c.data.clone()).collect();
    assert_eq!(text, b"hi\n");
    assert!(logs.last().unwrap().eof);

    // StartJob repeated with the same attempt_id runs the job once.
    let count = tmp.path().join("count");
    let script = format!("echo run >> {}; sleep 0.2", count.display());
    start(&mut c, "a-once", task(&["sh", "-c", &script])).await;
    start(&mut c, "a-once", task(&["sh", "-c", &script])).await;
    let ended = wait_end(&mut c, "a-once").await;
    let after = start(&mut c, "a-once", task(&["sh", "-c", &script])).await;
    assert_eq!(after.state(), ended.state());
    assert_eq!(std::fs::read_to_string(&count).unwrap(), "run\n");

    // Walltime.
    let mut t = task(&["sleep", "30"]);
    t.walltime_seconds = 1;
    start(&mut c, "a-wall", t).await;
    let end = wait_end(&mut c, "a-wall").await;
    assert_eq!(
        (end.state(), end.reason.as_str()),
        (GateJobState::Failed, "walltime exceeded")
    );

    // Cancel.
    start(&mut c, "a-cancel", task(&["sleep", "30"])).await;
    let err = c
        .stage_out(StageOutRequest {
            attempt_id: "a-cancel".into(),
            globs: vec!["*".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::FailedPrecondition);
    c.cancel_job(GateCancelJobRequest {
        attempt_id: "a-cancel".into(),
    })
    .await
    .unwrap();
    let end = wait_end(&mut c, "a-cancel").await;
    assert_eq!(end.state(), GateJobState::Cancelled);
    let again = c
        .cancel_job(GateCancelJobRequest {
            attempt_id: "a-cancel".into(),
        })
        .await
        .unwrap();
    assert_eq!(
        again.into_inner().job.unwrap().state(),
        GateJobState::Cancelled
    );

    // Stage in, run, stage out.
    let messages = vec![
        StageInRequest {
            attempt_id: "a-stage".into(),
            partition_id: PARTITION.into(),
            chunk: None,
        },
        StageInRequest {
            chunk: Some(FileChunk {
                path: "in/data.txt".into(),
                mode: 0o600,
                data: b"payload".to_vec(),
            }),
            ..Default::default()
        },
    ];
    let staged = c
        .stage_in(tokio_stream::iter(messages))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((staged.files, staged.bytes), (1, 7));
    start(
        &mut c,
        "a-stage",
        task(&["sh", "-c", "cat in/data.txt > out.txt"]),
    )
    .await;
    assert_eq!(
        wait_end(&mut c, "a-stage").await.state(),
        GateJobState::Succeeded
    );
    let out: Vec<FileChunk> = c
        .stage_out(StageOutRequest {
            attempt_id: "a-stage".into(),
            globs: vec!["*.txt".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .map(|r| r.unwrap().chunk.unwrap())
        .collect()
        .await;
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].path.as_str(), out[0].data.as_slice()),
        ("out.txt", &b"payload"[..])
    );

    // Release forgets the attempt and its files; twice is fine.
    for _ in 0..2 {
        c.release_job(GateReleaseJobRequest {
            attempt_id: "a-stage".into(),
        })
        .await
        .unwrap();
    }
    // The supervisor removes the directory right after.
    let gone = tokio::time::Instant::now() + Duration::from_secs(5);
    while work.join("attempts/a-stage").exists() && tokio::time::Instant::now() < gone {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!work.join("attempts/a-stage").exists());
    let err = c
        .get_job(GateGetJobRequest {
            attempt_id: "a-stage".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);

    // Validation names the field.
    let err = c
        .start_job(StartJobRequest {
            attempt_id: "bad/id".into(),
            partition_id: PARTITION.into(),
            task: Some(task(&["true"])),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("attempt_id"), "{}", err.message());

    // A user is refused.
    let mut user = client(&pki_dir, "user-alice", gate.addr).await;
    let err = user.describe(DescribeRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);

    drop(stream);
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_gate_finds_its_running_jobs() {
    let tmp = tempfile::tempdir().unwrap();
    let (pki_dir, work) = (tmp.path().join("pki"), tmp.path().join("work"));
    pki(&pki_dir);
    let gate = start_gate(&pki_dir, &work).await;
    let mut c = client(&pki_dir, "core", gate.addr).await;
    create_partition(&mut c).await;
    start(&mut c, "a-survive", task(&["sh", "-c", "sleep 2; exit 4"])).await;
    start(&mut c, "a-done", task(&["true"])).await;
    wait_end(&mut c, "a-done").await;
    // The gate goes away; its supervisor, a separate process, does not.
    drop(c);
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();

    let gate = start_gate(&pki_dir, &work).await;
    let mut c = client(&pki_dir, "core", gate.addr).await;
    let (mut stream, initial) = watch(&mut c).await;
    let state_of = |id: &str| {
        initial
            .iter()
            .find(|j| j.attempt_id == id)
            .map(|j| j.state())
    };
    assert_eq!(state_of("a-survive"), Some(GateJobState::Running));
    assert_eq!(state_of("a-done"), Some(GateJobState::Succeeded));
    let states = states_until_end(&mut stream, "a-survive").await;
    let last = states.last().unwrap();
    assert_eq!(
        (last.state(), last.exit_code),
        (GateJobState::Failed, Some(4))
    );
    // Its partition survived too, and its CPU is free again.
    let parts = c
        .list_partitions(ListPartitionsRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(parts.partitions.len(), 1);
    drop(stream);
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();
}

async fn cancel(c: &mut GateClient<Channel>, attempt: &str) {
    c.cancel_job(GateCancelJobRequest {
        attempt_id: attempt.into(),
    })
    .await
    .unwrap();
}

/// A gate of two CPUs with its partition, and the core's client.
async fn two_slot_gate() -> (tempfile::TempDir, Gate, GateClient<Channel>) {
    let tmp = tempfile::tempdir().unwrap();
    let (pki_dir, work) = (tmp.path().join("pki"), tmp.path().join("work"));
    pki(&pki_dir);
    let gate = start_gate_with(&pki_dir, &work, 2).await;
    let mut c = client(&pki_dir, "core", gate.addr).await;
    create_partition(&mut c).await;
    (tmp, gate, c)
}

/// A job that waits on a full gate is handed to a running job of its shape
/// and started by the supervisor the moment that one ends, or, when
/// another slot frees first, moved there; cancelled while it waits so, it
/// never runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_jobs_follow_running_ones_or_take_a_freed_slot() {
    let (tmp, gate, mut c) = two_slot_gate().await;
    start(&mut c, "long-1", task(&["sleep", "30"])).await;
    start(&mut c, "long-2", task(&["sleep", "30"])).await;

    let marker = tmp.path().join("ran");
    let touch = format!("touch {}", marker.display());
    let waiting = start(&mut c, "never", task(&["sh", "-c", &touch])).await;
    assert_eq!(waiting.state(), GateJobState::Pending);
    cancel(&mut c, "never").await;
    let never = wait_end(&mut c, "never").await;
    assert_eq!(never.state(), GateJobState::Cancelled);

    let next = start(&mut c, "next", task(&["sh", "-c", "echo next"])).await;
    assert_eq!(next.state(), GateJobState::Pending);
    cancel(&mut c, "long-2").await;
    let next = wait_end(&mut c, "next").await;
    assert_eq!(next.state(), GateJobState::Succeeded);
    assert!(!marker.exists(), "a job cancelled while it waited ran");
    let long = get(&mut c, "long-1").await;
    assert_eq!(long.state(), GateJobState::Running);
    cancel(&mut c, "long-1").await;
    wait_end(&mut c, "long-1").await;
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn waiting_jobs_start_in_the_order_they_came_whichever_slot_frees_first() {
    let (_tmp, gate, mut c) = two_slot_gate().await;
    start(&mut c, "long", task(&["sleep", "30"])).await;
    start(&mut c, "short", task(&["sleep", "30"])).await;
    let first = start(&mut c, "first", task(&["sleep", "30"])).await;
    let second = start(&mut c, "second", task(&["sleep", "30"])).await;
    assert_eq!(first.state(), GateJobState::Pending);
    assert_eq!(second.state(), GateJobState::Pending);
    // Whichever running job "first" was handed to, the slot that frees
    // goes to "first", never to "second" ahead of it.
    cancel(&mut c, "short").await;
    wait_end(&mut c, "short").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(&mut c, "first").await.state() != GateJobState::Running {
        assert_eq!(get(&mut c, "second").await.state(), GateJobState::Pending);
        assert!(std::time::Instant::now() < deadline, "first never started");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(get(&mut c, "second").await.state(), GateJobState::Pending);
    for id in ["long", "first", "second"] {
        cancel(&mut c, id).await;
        wait_end(&mut c, id).await;
    }
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();
}

/// Wait (up to 20 s) until `attempt` runs.
async fn wait_running(c: &mut GateClient<Channel>, attempt: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while get(c, attempt).await.state() != GateJobState::Running {
        assert!(
            std::time::Instant::now() < deadline,
            "{attempt} never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A job asking the whole host waits at the head of the queue; a narrow job
/// behind it does not take a slot that frees before it (first come, first
/// started: backfill is the scheduler's, not the gate's), and three narrow
/// ones queued behind running ones start in the order they came.
#[tokio::test(flavor = "multi_thread")]
async fn a_wide_waiting_job_is_not_overtaken_by_narrow_ones_behind_it() {
    let (_tmp, gate, mut c) = two_slot_gate().await;
    let sleep = || task(&["sleep", "30"]);
    start(&mut c, "run-1", sleep()).await;
    start(&mut c, "run-2", sleep()).await;
    let mut wide = sleep();
    wide.resources.as_mut().unwrap().cpus = 2;
    for (id, task) in [("wide", wide), ("narrow-1", sleep()), ("narrow-2", sleep())] {
        assert_eq!(start(&mut c, id, task).await.state(), GateJobState::Pending);
    }
    // One slot frees: too small for "wide", and nothing behind it may take it.
    cancel(&mut c, "run-2").await;
    wait_end(&mut c, "run-2").await;
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    for id in ["wide", "narrow-1", "narrow-2"] {
        assert_eq!(get(&mut c, id).await.state(), GateJobState::Pending, "{id}");
    }
    // Both free: "wide" runs; the narrow ones still wait behind it.
    cancel(&mut c, "run-1").await;
    wait_running(&mut c, "wide").await;
    for id in ["narrow-1", "narrow-2"] {
        assert_eq!(get(&mut c, id).await.state(), GateJobState::Pending, "{id}");
    }
    // "wide" ends: both narrow ones start, and a third behind them waits.
    assert_eq!(
        start(&mut c, "narrow-3", sleep()).await.state(),
        GateJobState::Pending
    );
    cancel(&mut c, "wide").await;
    for id in ["narrow-1", "narrow-2"] {
        wait_running(&mut c, id).await;
    }
    assert_eq!(get(&mut c, "narrow-3").await.state(), GateJobState::Pending);
    // "narrow-3" is queued in the supervisor behind two running ones:
    // whichever ends first, it takes over that one's slot.
    cancel(&mut c, "narrow-2").await;
    wait_running(&mut c, "narrow-3").await;
    for id in ["narrow-1", "narrow-3"] {
        cancel(&mut c, id).await;
        wait_end(&mut c, id).await;
    }
    gate.stop.send(()).unwrap();
    gate.server.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standard_health_service_answers_for_the_gate() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    let tmp = tempfile::tempdir().unwrap();
    let (pki_dir, work) = (tmp.path().join("pki"), tmp.path().join("work"));
    pki(&pki_dir);
    let gate = start_gate(&pki_dir, &work).await;
    // A probe needs a certificate of the installation, not the core's.
    let endpoint = TlsFiles::in_dir(&pki_dir, "user-alice")
        .endpoint(&format!("https://localhost:{}", gate.addr.port()))
        .unwrap();
    let mut health = HealthClient::new(endpoint.connect().await.unwrap());
    for service in ["", gantry_gate::health::SERVICE] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status();
        assert_eq!(status, ServingStatus::Serving, "service {service:?}");
    }
    let _ = gate.stop.send(());
    gate.server.await.unwrap();
}
