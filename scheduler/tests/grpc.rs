//! The Scheduler service over real mTLS on port 0: the core gets plans,
//! anyone else is refused.

use std::time::Duration;

use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::serve;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::scheduler_client::SchedulerClient;
use gantry_proto::v1::scheduler_server::SchedulerServer;
use gantry_proto::v1::{
    Capacity, Flavor, SchedJob, SchedJobState, SchedSite, SessionRequest, SessionResponse,
};
use gantry_sched::{PolicyConfig, SchedulerService};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Streaming};

const WAIT: Duration = Duration::from_secs(10);

struct Harness {
    _dir: tempfile::TempDir,
    pki: Pki,
    addr: std::net::SocketAddr,
}

async fn start() -> Harness {
    gantry_proto::tls::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::init(dir.path(), "test").unwrap();
    pki.issue(&Principal::Scheduler, &[]).unwrap();
    let files = TlsFiles::in_dir(dir.path(), "scheduler");
    let bound = serve::bind("127.0.0.1:0").await.unwrap();
    let addr = bound.addr;
    let service = SchedulerService::new("test", PolicyConfig::default());
    let server = Server::builder()
        .tls_config(files.server_config().unwrap())
        .unwrap()
        .add_service(SchedulerServer::new(service));
    tokio::spawn(server.serve_with_incoming(bound.incoming));
    Harness {
        _dir: dir,
        pki,
        addr,
    }
}

impl Harness {
    async fn client(&self, who: &Principal) -> SchedulerClient<Channel> {
        self.pki.issue(who, &[]).unwrap();
        let stem = gantry_proto::pki::file_stem(who);
        let files = TlsFiles::in_dir(self.pki.ca_path().parent().unwrap(), &stem);
        let channel = files
            .endpoint(&format!("https://127.0.0.1:{}", self.addr.port()))
            .unwrap()
            .connect()
            .await
            .unwrap();
        SchedulerClient::new(channel)
    }
}

fn snapshot(seq: u64) -> SessionRequest {
    SessionRequest {
        seq,
        reset: true,
        snapshot_done: true,
        sites: vec![SchedSite {
            name: "local".into(),
            healthy: true,
            flavors: vec![Flavor {
                name: "host".into(),
                capacity: Some(Capacity {
                    cpus: 4,
                    memory_bytes: 8 << 30,
                    gpus: 0,
                    nodes: 1,
                }),
                max_partitions: 1,
                available: true,
                ..Default::default()
            }],
            elastic: false,
            idle_timeout_seconds: 0,
            health_message: String::new(),
        }],
        partitions: vec![],
        jobs: vec![SchedJob {
            job_id: 1,
            state: SchedJobState::Queued as i32,
            priority: 0,
            resources: Some(Capacity {
                cpus: 1,
                memory_bytes: 1 << 30,
                gpus: 0,
                nodes: 1,
            }),
            ..Default::default()
        }],
        now_ms: 1_700_000_000_000,
    }
}

async fn open(
    client: &mut SchedulerClient<Channel>,
) -> Result<(mpsc::Sender<SessionRequest>, Streaming<SessionResponse>), tonic::Status> {
    let (tx, rx) = mpsc::channel(4);
    let response = client.session(ReceiverStream::new(rx)).await?;
    Ok((tx, response.into_inner()))
}

#[tokio::test]
async fn the_core_gets_a_plan_for_one_job() {
    let h = start().await;
    let mut client = h.client(&Principal::Core).await;
    let (tx, mut plans) = open(&mut client).await.unwrap();
    tx.send(snapshot(7)).await.unwrap();
    let plan = tokio::time::timeout(WAIT, plans.message())
        .await
        .unwrap()
        .unwrap()
        .expect("a plan");
    assert_eq!(plan.based_on_seq, 7);
    assert_eq!(plan.create_partitions.len(), 1);
    assert_eq!(plan.start_jobs.len(), 1);
    assert_eq!(plan.start_jobs[0].job_id, 1);
    assert_eq!(
        plan.start_jobs[0].partition_id,
        plan.create_partitions[0].partition_id
    );

    // A newer session replaces this one.
    let (tx2, mut plans2) = open(&mut client).await.unwrap();
    let ended = tokio::time::timeout(WAIT, plans.message()).await.unwrap();
    assert_eq!(ended.unwrap_err().code(), Code::Unavailable);
    tx2.send(snapshot(9)).await.unwrap();
    let plan = tokio::time::timeout(WAIT, plans2.message())
        .await
        .unwrap()
        .unwrap()
        .expect("a plan");
    assert_eq!(plan.based_on_seq, 9);
    drop(tx);
}

#[tokio::test]
async fn a_session_must_start_with_reset() {
    let h = start().await;
    let mut client = h.client(&Principal::Core).await;
    let (tx, mut plans) = open(&mut client).await.unwrap();
    tx.send(SessionRequest {
        seq: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let error = tokio::time::timeout(WAIT, plans.message())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("reset"), "{}", error.message());
}

#[tokio::test]
async fn others_are_refused() {
    let h = start().await;
    for who in [
        Principal::User("alice".into()),
        Principal::Gate("local".into()),
        Principal::Scheduler,
    ] {
        let mut client = h.client(&who).await;
        let error = open(&mut client).await.expect_err("refused");
        assert_eq!(error.code(), Code::PermissionDenied, "{who}: {error:?}");
    }
}
