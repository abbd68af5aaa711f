//! Sites: identity of gates, health, and jobs no site can ever run.

use std::time::Duration;

use gantry_client::{JobSpec, JobState};
use gantry_e2e::services::{grpcurl as grpcurl_path, python, repo_file};
use gantry_e2e::{Cluster, Options, eventually, free_port};
use gantry_proto::identity::Principal;
use gantry_proto::v1::ResourceRequest;

#[tokio::test(flavor = "multi_thread")]
async fn a_gate_must_prove_its_name_and_a_down_gate_only_makes_its_site_unhealthy() {
    let options = Options {
        aliases: vec!["impostor".into()],
        ..Default::default()
    };
    let mut cluster = Cluster::start(options).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    // The local gate's certificate says gate/local: it cannot serve as "impostor".
    let sites = alice.sites().await.unwrap();
    let impostor = sites.iter().find(|s| s.name == "impostor").unwrap();
    assert!(!impostor.healthy, "{impostor:?}");
    let spec = JobSpec {
        argv: vec!["true".into()],
        site: "impostor".into(),
        ..Default::default()
    };
    let held_back = alice.submit(spec).await.unwrap();
    // Stop the local gate: its site turns unhealthy, gantryd keeps serving.
    cluster.gate.kill9();
    eventually(
        Duration::from_secs(30),
        "site local to turn unhealthy",
        async || {
            let sites = alice.sites().await.map_err(|e| e.to_string())?;
            sites
                .iter()
                .any(|s| s.name == "local" && !s.healthy)
                .then_some(())
                .ok_or_else(|| format!("{sites:?}"))
        },
    )
    .await;
    let job = alice
        .submit(JobSpec {
            argv: vec!["true".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(alice.get(job.id).await.unwrap().state(), JobState::Queued);
    cluster.gate.restart().await.unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), alice.wait(job.id, |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(done.state(), JobState::Completed);
    assert_eq!(
        alice.get(held_back.id).await.unwrap().state(),
        JobState::Queued
    );
}

/// What no site could ever run is refused at submit, naming what is too
/// big and the most offered; while a site is down, such a job is taken and
/// waits, saying why (the site may offer more once it answers).
#[tokio::test(flavor = "multi_thread")]
async fn a_job_no_site_can_ever_hold_is_refused_saying_why() {
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let spec = || JobSpec {
        argv: vec!["true".into()],
        resources: Some(ResourceRequest {
            memory: "512TiB".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let err = alice.submit(spec()).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::InvalidArgument), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("no site can ever run this job: it asks for 512 TiB of memory (the most any site offers is"),
        "{text}"
    );
    let (code, _, err) = gantry_e2e::run(
        cluster
            .cli("alice")
            .args(["submit", "--mem", "512T", "--", "true"]),
    );
    assert_ne!(code, 0);
    assert!(
        err.contains("512 TiB of memory (the most any site offers is"),
        "{err}"
    );

    cluster.gate.kill9();
    eventually(Duration::from_secs(30), "the site to be down", async || {
        let sites = alice.sites().await.map_err(|e| e.to_string())?;
        if sites.iter().any(|s| s.name == "local" && !s.healthy) {
            Ok(())
        } else {
            Err(format!("{sites:?}"))
        }
    })
    .await;
    let job = alice.submit(spec()).await.unwrap();
    assert_eq!(job.state(), JobState::Queued);
}

/// Describe's api_versions is the version handshake: a gate that speaks no
/// version gantryd speaks is an unhealthy site whose message says which it
/// speaks, and no job goes there. The gate is a Python one of the test's
/// (tests/python/old_api_gate.py), as a third party might have written.
#[tokio::test(flavor = "multi_thread")]
async fn a_gate_speaking_no_version_gantryd_speaks_is_an_unhealthy_site_that_says_so() {
    let port = free_port();
    let options = Options {
        other_gates: vec![("old".into(), port)],
        ..Default::default()
    };
    let cluster = Cluster::start(options).await.unwrap();
    cluster
        .pki()
        .issue(&Principal::Gate("old".into()), &[])
        .unwrap();
    let ca = cluster.pki().ca_path();
    let pki = ca.parent().unwrap().display().to_string();
    let listen = format!("127.0.0.1:{port}");
    let gate = std::process::Command::new(python())
        .arg(repo_file("tests/python/old_api_gate.py"))
        .args(["--name", "old", "--listen", &listen, "--pki-dir", &pki])
        .spawn()
        .expect("start the Python gate");
    let _gate = KillOnDrop(gate);
    let alice = cluster.user("alice").await.unwrap();
    let old = eventually(
        Duration::from_secs(60),
        "site old to say which versions it speaks",
        async || {
            let sites = alice.sites().await.map_err(|e| e.to_string())?;
            sites
                .into_iter()
                .find(|s| s.name == "old" && s.health_message.contains("gantry.v0"))
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    assert!(!old.healthy, "{old:?}");
    assert_eq!(
        old.health_message, r#"the gate speaks ["gantry.v0"], not gantry.v1"#,
        "{old:?}"
    );
    let refused = alice
        .submit(JobSpec {
            argv: vec!["true".into()],
            site: "old".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    let local = alice
        .submit(JobSpec {
            argv: vec!["true".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(30), alice.wait(local.id, |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (done.state(), done.site.as_str()),
        (JobState::Completed, "local")
    );
    assert_eq!(
        alice.get(refused.id).await.unwrap().state(),
        JobState::Queued
    );
}

/// Kills the child when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What a partition offers follows its gate: restarted with more CPUs, the
/// gate's partition holds more, and a job that waited for room starts on
/// it without a new partition (the gate queues nothing here, so only
/// gantryd's view of the partition lets it in).
#[tokio::test(flavor = "multi_thread")]
async fn a_partition_offers_what_its_gate_says_now() {
    let mut cluster = Cluster::start(Options {
        cpus: 2,
        queue_factor: Some(0),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let two_cpus = || JobSpec {
        argv: vec!["sleep".into(), "300".into()],
        resources: Some(ResourceRequest {
            cpus: Some(2),
            ..Default::default()
        }),
        ..Default::default()
    };
    let first = alice.submit(two_cpus()).await.unwrap();
    let running = async |id: u64| {
        let job = alice.get(id).await.map_err(|e| e.to_string())?;
        if job.state() == JobState::Running {
            Ok(job)
        } else {
            Err(format!("{job:?}"))
        }
    };
    let first = eventually(
        Duration::from_secs(30),
        "the first job to run",
        async || running(first.id).await,
    )
    .await;
    let second = alice.submit(two_cpus()).await.unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let waiting = alice.get(second.id).await.unwrap();
    assert_eq!(waiting.state(), JobState::Queued, "{waiting:?}");

    cluster.gate.set_flag("--cpus", "4");
    cluster.gate.restart().await.unwrap();
    let second = eventually(
        Duration::from_secs(30),
        "the second job to run",
        async || running(second.id).await,
    )
    .await;
    assert_eq!(second.partition_id, first.partition_id);
    assert_eq!(
        alice.get(first.id).await.unwrap().state(),
        JobState::Running
    );
}

/// grpcurl, a client the project did not write, with user `monitor`'s
/// certificate: `grpcurl [flags] addr [what]`, its exit code and stdout
/// (stderr appended).
fn grpcurl(
    cluster: &Cluster,
    flags: &[&str],
    addr: std::net::SocketAddr,
    what: &[&str],
) -> (i32, String) {
    let tls = cluster.config_for(&Principal::User("monitor".into())).tls;
    let out = std::process::Command::new(grpcurl_path())
        .arg("-cacert")
        .arg(&tls.ca)
        .arg("-cert")
        .arg(&tls.cert)
        .arg("-key")
        .arg(&tls.key)
        .args(flags)
        .arg(addr.to_string())
        .args(what)
        .output()
        .expect("run grpcurl (scripts/python-env installs it)");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `service`'s status by grpc.health.v1 on `addr` (grpcurl's output).
fn health(cluster: &Cluster, addr: std::net::SocketAddr, service: &str) -> String {
    let request = format!("{{\"service\": \"{service}\"}}");
    grpcurl(
        cluster,
        &["-d", &request],
        addr,
        &["grpc.health.v1.Health/Check"],
    )
    .1
}

#[tokio::test(flavor = "multi_thread")]
async fn every_server_answers_health_and_reflection_to_grpcurl() {
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    cluster.wait_site_healthy().await.unwrap();
    let servers = [
        ("gantryd", cluster.core.addr, "gantry.v1.Gantry"),
        ("gantry-sched", cluster.sched.addr, "gantry.v1.Scheduler"),
        ("the local gate", cluster.gate.addr, "gantry.v1.Gate"),
    ];
    for (name, addr, service) in servers {
        // Reflection: the services are listed and described, no .proto needed.
        let (code, listed) = grpcurl(&cluster, &[], addr, &["list"]);
        assert_eq!(code, 0, "{name}: {listed}");
        let listed: Vec<&str> = listed.lines().collect();
        for expected in [service, "grpc.health.v1.Health"] {
            assert!(listed.contains(&expected), "{name} lists {listed:?}");
        }
        let (code, described) = grpcurl(&cluster, &[], addr, &["describe", service]);
        assert_eq!(code, 0, "{name}: {described}");
        assert!(described.contains("rpc "), "{name}: {described}");
        // Health: the whole server and its API are SERVING.
        for checked in ["", service] {
            let said = health(&cluster, addr, checked);
            assert!(
                said.contains("\"status\": \"SERVING\""),
                "{name} {checked:?}: {said}"
            );
        }
    }
    // A real call through reflection alone.
    let (code, jobs) = grpcurl(
        &cluster,
        &["-d", "{}"],
        cluster.core.addr,
        &["gantry.v1.Gantry/ListJobs"],
    );
    assert_eq!(code, 0, "{jobs}");

    // Without the scheduler no job starts: gantryd as a whole is not
    // ready, while its client API still takes jobs.
    cluster.sched.stop();
    let core = cluster.core.addr;
    until_health(&cluster, core, "NOT_SERVING", "without its scheduler").await;
    let said = health(&cluster, core, "gantry.v1.Gantry");
    assert!(said.contains("\"status\": \"SERVING\""), "{said}");
    cluster.sched.restart().await.unwrap();
    until_health(&cluster, core, "SERVING", "with its scheduler back").await;
}

/// Wait until gantryd at `addr` as a whole (service `""`) says `status`.
async fn until_health(cluster: &Cluster, addr: std::net::SocketAddr, status: &str, when: &str) {
    let wanted = format!("\"status\": \"{status}\"");
    eventually(
        Duration::from_secs(30),
        &format!("gantryd to say {status} {when}"),
        async || {
            let said = health(cluster, addr, "");
            if said.contains(&wanted) {
                Ok(())
            } else {
                Err(said)
            }
        },
    )
    .await;
}
