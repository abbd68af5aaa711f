//! A full or failing disk never turns an acknowledged change into a lost
//! one: gantryd refuses changes while its database cannot write, says why
//! (the refusal, `ListSites`, the gRPC health service), serves again by
//! itself once the fault clears, and after SIGKILL + restart every job it
//! acknowledged is there. Real faults: a tmpfs filled to the last byte, and
//! syscalls failed by strace. Run as root (as CI does).

use std::time::Duration;

use gantry_client::{Client, JobSpec, SubmitJobRequest};
use gantry_e2e::faults::{Tmpfs, strace_inject};
use gantry_e2e::{Cluster, Options, Postgres, create_database, eventually};
use gantry_proto::Principal;
use tonic::Code;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// One held job, submitted once (no SDK retry): its id, or the refusal.
async fn submit_held(client: &Client) -> Result<u64, (Code, String)> {
    let request = SubmitJobRequest {
        spec: Some(JobSpec {
            argv: vec!["true".into()],
            hold: true,
            ..Default::default()
        }),
        client_request_id: uuid::Uuid::now_v7().to_string(),
        on_behalf_of: String::new(),
    };
    match client.submit_request(request).await {
        Ok(response) => Ok(response.job.expect("a job").id),
        Err(e) => Err((e.code().unwrap_or(Code::Unknown), e.to_string())),
    }
}

/// Submit held jobs until `refusals` are refused (at most `tries`), 100 ms
/// apart after a refusal; the acknowledged ids go to `acked`. The refusals.
async fn submit_until_refused(
    client: &Client,
    acked: &mut Vec<u64>,
    refusals: usize,
    tries: usize,
) -> Vec<(Code, String)> {
    let mut refused = Vec::new();
    for _ in 0..tries {
        match submit_held(client).await {
            Ok(id) => acked.push(id),
            Err(refusal) => {
                refused.push(refusal);
                if refused.len() == refusals {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    refused
}

/// Wait until a submit is acknowledged again; its id.
async fn accepted_again(client: &Client) -> u64 {
    eventually(
        Duration::from_secs(60),
        "submits accepted again",
        async || {
            submit_held(client)
                .await
                .map_err(|(code, message)| format!("{code:?}: {message}"))
        },
    )
    .await
}

/// Every id in `acked` is a job gantryd knows.
async fn assert_all_present(cluster: &Cluster, acked: &[u64]) {
    let alice = cluster.user("alice").await.expect("connect");
    for id in acked {
        if let Err(e) = alice.get(*id).await {
            panic!(
                "acknowledged job {id} is lost ({e}); {} acknowledged in all\n{}",
                acked.len(),
                cluster.core.log_tail()
            );
        }
    }
}

/// gantryd's health service's answer for its client API.
async fn health(cluster: &Cluster) -> ServingStatus {
    let config = cluster.config_for(&Principal::User("alice".into()));
    let channel = config
        .tls
        .endpoint(&config.address)
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: "gantry.v1.Gantry".into(),
        })
        .await
        .expect("health check");
    answer.into_inner().status()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_database_disk_refuses_changes_then_serves_again_and_loses_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    let mut cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.push(submit_held(&alice).await.expect("the disk has room"));
    }
    assert_eq!(health(&cluster).await, ServingStatus::Serving);

    fs.fill().unwrap();
    // Submits go on until the database meets the full disk (its WAL may
    // still have room); from then on each is refused, saying why and where.
    let refused = submit_until_refused(&alice, &mut acked, 5, 5000).await;
    assert_eq!(refused.len(), 5, "the database never met the full disk");
    for (code, message) in refused {
        assert_eq!(code, Code::ResourceExhausted, "{message}");
        assert!(
            message.contains("the database disk is full")
                && message.contains(&fs.path().display().to_string()),
            "{message}"
        );
    }
    // Every change is refused, not only submits.
    let cancel = alice.cancel(acked[0], "test").await.unwrap_err();
    assert_eq!(cancel.code(), Some(Code::ResourceExhausted), "{cancel}");
    let core = alice.overview().await.unwrap().core.unwrap();
    assert!(!core.accepting_changes);
    assert!(core.message.contains("disk is full"), "{}", core.message);
    assert_eq!(health(&cluster).await, ServingStatus::NotServing);
    let sites = cluster.cli("alice").arg("sites").output().unwrap();
    let text = String::from_utf8_lossy(&sites.stdout);
    assert!(
        text.starts_with("gantryd: NOT ACCEPTING CHANGES") && text.contains("disk is full"),
        "{text}"
    );

    // Space returns: gantryd accepts changes again by itself.
    fs.free().unwrap();
    acked.push(accepted_again(&alice).await);
    let core = alice.overview().await.unwrap().core.unwrap();
    assert!(core.accepting_changes, "{}", core.message);
    assert_eq!(health(&cluster).await, ServingStatus::Serving);
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;

    // Full again, then SIGKILL: a gantryd started on the full disk still
    // has everything, refuses changes, and serves again once space returns.
    fs.fill().unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let refused = submit_until_refused(&alice, &mut acked, 1, 5000).await;
    assert!(
        matches!(refused.as_slice(), [(Code::ResourceExhausted, _)]),
        "the database never met the full disk again: {refused:?}"
    );
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
    let alice = cluster.user("alice").await.unwrap();
    let again = submit_held(&alice).await;
    assert!(
        matches!(again, Err((Code::ResourceExhausted, _))),
        "a submit on the still full disk: {again:?}"
    );
    fs.free().unwrap();
    acked.push(accepted_again(&alice).await);
    for _ in 0..20 {
        acked.push(submit_held(&alice).await.expect("space is back"));
    }
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
}

/// Run gantryd with `syscalls` failing as `inject` says and submit held
/// jobs one after another (`total` tries; after a refusal the next try
/// waits 200 ms, and `max_refused` refusals end it), then SIGKILL it and restart it
/// without the fault: every acknowledged job must be there. Returns the
/// acknowledged ids, how many were refused, and where the first refusal was.
async fn submits_under_injected_fault(
    syscalls: &str,
    inject: &str,
    refusal: Code,
    total: usize,
    max_refused: usize,
) -> (Vec<u64>, usize, Option<usize>, String) {
    let mut cluster = Cluster::start(Options {
        core_wrapper: strace_inject(syscalls, inject),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let (mut acked, mut refused, mut first) = (Vec::new(), 0, None);
    for i in 0..total {
        match submit_held(&alice).await {
            Ok(id) => acked.push(id),
            Err((code, message)) => {
                assert_eq!(code, refusal, "{message}");
                assert!(message.contains("the database"), "{message}");
                refused += 1;
                first.get_or_insert(i);
                if refused == max_refused {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let log = cluster.core.log_tail();
    cluster.core.wrapper.clear();
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
    (acked, refused, first, log)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fsync_failing_loses_no_acknowledged_job() {
    let (acked, refused, _, log) = submits_under_injected_fault(
        "fsync,fdatasync",
        "error=EIO:when=40+",
        Code::Unavailable,
        150,
        10,
    )
    .await;
    assert!(
        refused > 0,
        "no fsync failed: {} acknowledged\n{log}",
        acked.len()
    );
}

// strace counts `when=` per thread and sqlx runs each SQLite connection on
// a thread of its own, so "the 40th fsync" fails once per connection: each
// fresh connection the writer recovers on meets one failure of its own. What
// counts is that gantryd serves again after each.
#[tokio::test(flavor = "multi_thread")]
async fn one_failed_fsync_is_refused_and_then_gantryd_serves_again() {
    let (acked, refused, first, log) = submits_under_injected_fault(
        "fsync,fdatasync",
        "error=EIO:when=40",
        Code::Unavailable,
        150,
        50,
    )
    .await;
    serves_again_after_each_failure(&acked, refused, first, &log);
}

/// After the first refusal, most tries were acknowledged again.
fn serves_again_after_each_failure(acked: &[u64], refused: usize, first: Option<usize>, log: &str) {
    let first = first.unwrap_or_else(|| panic!("the injected failure was never met\n{log}"));
    let after = acked.len() - first.min(acked.len());
    assert!(
        after >= 40 && refused < after,
        "{after} acknowledged and {refused} refused after the first failure\n{log}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_failing_with_enospc_are_refused_as_a_full_disk() {
    let (acked, refused, _, log) = submits_under_injected_fault(
        "pwrite64",
        "error=ENOSPC:when=200+",
        Code::ResourceExhausted,
        100,
        10,
    )
    .await;
    assert!(
        refused > 0,
        "no write failed: {} acknowledged\n{log}",
        acked.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_failing_with_eio_is_refused_and_then_gantryd_serves_again() {
    let (acked, refused, first, log) =
        submits_under_injected_fault("pwrite64", "error=EIO:when=200", Code::Unavailable, 150, 50)
            .await;
    serves_again_after_each_failure(&acked, refused, first, &log);
}

/// A job that appends its id to `runs` (outside any full file system).
fn recorder(runs: &std::path::Path) -> JobSpec {
    JobSpec {
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("echo $GANTRY_JOB_ID >> {}", runs.display()),
        ],
        ..Default::default()
    }
}

/// How often each job id appears in `runs`.
fn run_counts(runs: &std::path::Path) -> std::collections::HashMap<u64, u32> {
    let mut counts = std::collections::HashMap::new();
    for line in std::fs::read_to_string(runs).unwrap_or_default().lines() {
        *counts.entry(line.trim().parse().unwrap()).or_default() += 1;
    }
    counts
}

async fn ended(client: &Client, id: u64) -> gantry_client::Job {
    tokio::time::timeout(Duration::from_secs(60), client.wait(id, |_| {}))
        .await
        .unwrap_or_else(|_| panic!("job {id} did not end"))
        .expect("wait")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_local_gate_work_dir_refuses_starts_and_runs_nothing_twice() {
    use gantry_client::JobState;
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("work"), 4).unwrap();
    let mut cluster = Cluster::start(Options {
        gate_work_dir: Some(fs.path().join("local")),
        ..Default::default()
    })
    .await
    .unwrap();
    let runs = scratch.path().join("runs.txt");
    let alice = cluster.user("alice").await.unwrap();
    let first = alice.submit(recorder(&runs)).await.unwrap().id;
    assert_eq!(ended(&alice, first).await.state(), JobState::Completed);

    // Full: the supervisor's journal has room for a few more lines in its
    // last page, then starts are refused (or, when only the line with its
    // pid does not fit, stopped at once), saying why.
    fs.fill().unwrap();
    let mut refused = Vec::new();
    let mut completed = vec![first];
    for _ in 0..30 {
        let id = alice.submit(recorder(&runs)).await.unwrap().id;
        let job = ended(&alice, id).await;
        match job.state() {
            JobState::Completed => completed.push(id),
            JobState::Failed => {
                assert!(
                    job.reason.contains("No space left on device")
                        && job.reason.contains("supervisor.journal"),
                    "job {id}: {}",
                    job.reason
                );
                refused.push(id);
                if refused.len() == 3 {
                    break;
                }
            }
            other => panic!("job {id} ended {other:?}: {}", job.reason),
        }
    }
    assert_eq!(refused.len(), 3, "no start was refused on the full disk");

    // Space returns; the gate is SIGKILLed and restarted: new jobs run, the
    // refused ones never ran, nothing ran twice.
    fs.free().unwrap();
    cluster.gate.restart().await.unwrap();
    cluster.wait_site_healthy().await.unwrap();
    for _ in 0..3 {
        let id = alice.submit(recorder(&runs)).await.unwrap().id;
        let job = ended(&alice, id).await;
        assert_eq!(job.state(), JobState::Completed, "{}", job.reason);
        completed.push(id);
    }
    let counts = run_counts(&runs);
    for id in &completed {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ran {:?} times",
            counts.get(id)
        );
    }
    for id in &refused {
        // Refused before it started, it never ran; a job whose pid could not
        // be recorded was killed at once (it may have begun, once).
        let job = alice.get(*id).await.unwrap();
        assert_eq!(job.state(), JobState::Failed, "{}", job.reason);
        let limit = if job.reason.starts_with("not started") {
            0
        } else {
            1
        };
        let ran = counts.get(id).copied().unwrap_or(0);
        assert!(ran <= limit, "job {id} ran {ran} times: {}", job.reason);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_ending_while_the_state_disk_is_full_keeps_its_log_and_completes_once_space_returns()
{
    use futures::StreamExt;
    use gantry_client::{JobState, LogStream};
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    // Logs and outputs on the tmpfs, the database beside it: the job's end
    // is recorded, only its log cannot come home.
    let cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        database_url: Some(format!(
            "sqlite://{}",
            scratch.path().join("gantry.db").display()
        )),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    // 2 MiB of stdout, written once the test says go.
    let go = scratch.path().join("go");
    let script = format!(
        "while [ ! -e {go} ]; do sleep 0.05; done; head -c 2097152 /dev/zero | tr '\\0' x",
        go = go.display()
    );
    let id = alice
        .submit(JobSpec {
            argv: vec!["/bin/sh".into(), "-c".into(), script],
            ..Default::default()
        })
        .await
        .unwrap()
        .id;
    eventually(Duration::from_secs(30), "the job running", async || {
        let job = alice.get(id).await.map_err(|e| e.to_string())?;
        (job.state() == JobState::Running)
            .then_some(())
            .ok_or(format!("{:?}", job.state()))
    })
    .await;
    fs.fill().unwrap();
    std::fs::write(&go, "").unwrap();
    // Its log cannot come home: the job waits in STAGING_OUT, saying why in
    // gantryd's log, and is not FAILED for gantryd's own disk.
    eventually(
        Duration::from_secs(30),
        "the job waiting in STAGING_OUT for gantryd's disk",
        async || {
            let job = alice.get(id).await.map_err(|e| e.to_string())?;
            let log = std::fs::read_to_string(cluster.core.log_path()).unwrap_or_default();
            (job.state() == JobState::StagingOut
                && log.contains("cannot bring a job's logs and outputs home"))
            .then_some(())
            .ok_or(format!("{:?}: {}", job.state(), job.reason))
        },
    )
    .await;
    fs.free().unwrap();
    let job = ended(&alice, id).await;
    assert_eq!(job.state(), JobState::Completed, "{}", job.reason);
    let mut log = std::pin::pin!(
        alice
            .read_logs(id, LogStream::Stdout, 0, false)
            .await
            .unwrap()
    );
    let mut bytes = 0;
    while let Some(chunk) = log.next().await {
        bytes += chunk.unwrap().data.len();
    }
    assert_eq!(bytes, 2 << 20);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_postgresql_disk_costs_availability_never_an_acknowledged_job() {
    let mount = std::env::temp_dir().join(format!("gantry-pgfs-{}", uuid::Uuid::now_v7().simple()));
    let fs = Tmpfs::mount(&mount, 128).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let pg = Postgres::start_in(&fs.path().join("pg"), port).expect("start PostgreSQL");
    let url = create_database(&pg.admin_url, "gantry_full").unwrap();
    let mut cluster = Cluster::start(Options {
        database_url: Some(url),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut acked = Vec::new();
    for _ in 0..20 {
        acked.push(submit_held(&alice).await.expect("the disk has room"));
    }

    fs.fill().unwrap();
    let refused = submit_until_refused(&alice, &mut acked, 5, 20000).await;
    assert_eq!(refused.len(), 5, "PostgreSQL never met the full disk");
    for (code, message) in &refused {
        // A full disk, or the server restarting after a PANIC.
        assert!(
            (*code == Code::ResourceExhausted && message.contains("disk is full"))
                || *code == Code::Unavailable,
            "{code:?}: {message}"
        );
    }
    assert!(
        refused.iter().any(|(c, _)| *c == Code::ResourceExhausted),
        "no refusal said the disk is full: {refused:?}"
    );

    // Space returns. A server that PANICked on its full disk and could not
    // come back is started again, as its operator would.
    fs.free().unwrap();
    if !pg.is_up() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !pg.is_up() {
            pg.restart()
                .unwrap_or_else(|e| panic!("{e}\n{}", pg.log_tail()));
        }
    }
    acked.push(accepted_again(&alice).await);
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
}

/// A small seeded generator (xorshift64*), so a failing schedule can be
/// replayed from its seed.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// Random interleavings of submits, SIGKILLs of gantryd and of the gate, a
/// database disk that fills and empties, and fsync failures injected into
/// a restarted gantryd. After the last restart every acknowledged job is
/// there and ends COMPLETED having run exactly once, and no job ran twice.
/// Seeds: `GANTRY_FAULT_SEEDS` (comma-separated), else 1, 2 and 3.
#[tokio::test(flavor = "multi_thread")]
async fn random_interleavings_of_submits_kills_and_faults_lose_nothing_and_run_nothing_twice() {
    let seeds: Vec<u64> = std::env::var("GANTRY_FAULT_SEEDS")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().parse().expect("a seed"))
                .collect()
        })
        .unwrap_or_else(|_| vec![1, 2, 3]);
    for seed in seeds {
        one_schedule(seed).await;
    }
}

async fn one_schedule(seed: u64) {
    use gantry_client::JobState;
    let mut schedule = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    let mut cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        ..Default::default()
    })
    .await
    .unwrap();
    let runs = scratch.path().join("runs.txt");
    let mut acked: Vec<u64> = Vec::new();
    let mut full = false;
    let mut steps = Vec::new();
    for _ in 0..12 {
        let step = match schedule.next(6) {
            0 | 1 => {
                let n = 1 + schedule.next(15) as usize;
                let alice = cluster.user("alice").await.unwrap();
                let mut refused = 0;
                for _ in 0..n {
                    let request = SubmitJobRequest {
                        spec: Some(recorder(&runs)),
                        client_request_id: uuid::Uuid::now_v7().to_string(),
                        on_behalf_of: String::new(),
                    };
                    match alice.submit_request(request).await {
                        Ok(r) => acked.push(r.job.expect("a job").id),
                        Err(_) => refused += 1,
                    }
                }
                format!("submit {n} ({refused} refused)")
            }
            2 => {
                let inject = match schedule.next(3) {
                    0 => Vec::new(),
                    1 => strace_inject(
                        "fsync,fdatasync",
                        &format!("error=EIO:when={}", 5 + schedule.next(40)),
                    ),
                    _ => strace_inject(
                        "fsync,fdatasync",
                        &format!("error=EIO:when={}+", 5 + schedule.next(40)),
                    ),
                };
                let what = if inject.is_empty() {
                    "SIGKILL gantryd".to_string()
                } else {
                    format!("SIGKILL gantryd, restart under {}", inject.last().unwrap())
                };
                cluster.core.wrapper = inject;
                cluster.core.restart().await.unwrap();
                what
            }
            3 => {
                cluster.gate.restart().await.unwrap();
                "SIGKILL the gate".into()
            }
            4 if !full => {
                fs.fill().unwrap();
                full = true;
                "fill the database disk".into()
            }
            _ => {
                if full {
                    fs.free().unwrap();
                    full = false;
                }
                tokio::time::sleep(Duration::from_millis(schedule.next(1500))).await;
                "free the disk, wait".into()
            }
        };
        steps.push(step);
    }
    // The end: space back, no fault injected, one last SIGKILL.
    if full {
        fs.free().unwrap();
    }
    cluster.core.wrapper.clear();
    cluster.core.restart().await.unwrap();
    let context = format!("seed {seed}: {}", steps.join("; "));
    let alice = cluster.user("alice").await.unwrap();
    for id in &acked {
        let job = tokio::time::timeout(Duration::from_secs(120), alice.wait(*id, |_| {}))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "job {id} did not end ({context})\n{}",
                    cluster.core.log_tail()
                )
            })
            .unwrap_or_else(|e| panic!("acknowledged job {id}: {e} ({context})"));
        assert_eq!(
            job.state(),
            JobState::Completed,
            "job {id}: {} ({context})",
            job.reason
        );
    }
    let counts = run_counts(&runs);
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ran {:?} times ({context})",
            counts.get(id)
        );
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?} ({context})");
}
