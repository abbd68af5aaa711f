//! Identity and input checks over the real binaries.

use gantry_client::{Client, ClientConfig, JobSpec};
use gantry_e2e::{Cluster, Options};
use gantry_proto::Principal;
use gantry_proto::pki::Pki;
use gantry_proto::tls::TlsFiles;
use gantry_proto::v1::ResourceRequest;
use tonic::Code;

fn sh(script: &str) -> JobSpec {
    JobSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn users_see_and_cancel_only_their_own_jobs() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let bob = cluster.user("bob").await.unwrap();
    let root = cluster.user("root").await.unwrap(); // an admin
    let job = alice.submit(sh("sleep 5")).await.unwrap();
    assert_eq!(
        bob.get(job.id).await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    assert_eq!(
        bob.cancel(job.id, "").await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    let listed = bob.list(Default::default()).await.unwrap();
    assert!(listed.jobs.iter().all(|j| j.owner == "bob"));
    let events: Vec<_> = {
        use futures::StreamExt;
        bob.watch(0, vec![job.id], false).collect().await
    };
    assert!(
        events
            .iter()
            .all(|e| e.as_ref().map(|e| e.owner == "bob").unwrap_or(true))
    );
    assert_eq!(root.get(job.id).await.unwrap().owner, "alice");
    assert_eq!(
        root.cancel(job.id, "admin").await.unwrap().state(),
        gantry_client::JobState::Cancelled
    );
}

/// service/jupyterhub may act for users (the cluster's config says so);
/// service/monitor is configured without that right.
#[tokio::test(flavor = "multi_thread")]
async fn a_service_submits_for_a_user_who_alone_sees_the_job() {
    use futures::StreamExt;
    use gantry_proto::v1::SubmitJobRequest;
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let hub = Client::connect(&cluster.config_for(&Principal::Service("jupyterhub".into())))
        .await
        .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let bob = cluster.user("bob").await.unwrap();
    let submit = |on_behalf_of: &str| SubmitJobRequest {
        spec: Some(sh("sleep 30")),
        client_request_id: format!("spawn-{on_behalf_of}"),
        on_behalf_of: on_behalf_of.into(),
    };

    let job = hub
        .submit_request(submit("alice"))
        .await
        .unwrap()
        .job
        .unwrap();
    assert_eq!(job.owner, "alice");
    assert_eq!(job.submitted_by, "service/jupyterhub");
    // The same request id, retried, is the same job.
    let again = hub.submit_request(submit("alice")).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.job.unwrap().id, job.id);

    // alice sees it as hers, with both identities in its history.
    let seen = alice.get(job.id).await.unwrap();
    assert_eq!(
        (seen.owner.as_str(), seen.submitted_by.as_str()),
        ("alice", "service/jupyterhub")
    );
    let listed = alice.list(Default::default()).await.unwrap();
    assert!(listed.jobs.iter().any(|j| j.id == job.id));
    let first = Box::pin(alice.watch(0, vec![job.id], false))
        .next()
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.actor, "service/jupyterhub");
    assert_eq!(
        first.message,
        "submitted by service/jupyterhub on behalf of user/alice"
    );

    // bob can neither see nor cancel it, nor submit as alice.
    assert_eq!(
        bob.get(job.id).await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    assert_eq!(
        bob.cancel(job.id, "").await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    assert!(
        bob.list(Default::default())
            .await
            .unwrap()
            .jobs
            .iter()
            .all(|j| j.owner == "bob")
    );
    let mut as_alice = submit("alice");
    as_alice.client_request_id.clear();
    assert_eq!(
        bob.submit_request(as_alice).await.unwrap_err().code(),
        Some(Code::PermissionDenied)
    );

    // A service without act_for_users may neither submit for anyone nor see jobs.
    let monitor = Client::connect(&cluster.config_for(&Principal::Service("monitor".into())))
        .await
        .unwrap();
    assert_eq!(
        monitor
            .submit_request(submit("alice"))
            .await
            .unwrap_err()
            .code(),
        Some(Code::PermissionDenied)
    );
    assert_eq!(
        monitor.get(job.id).await.unwrap_err().code(),
        Some(Code::NotFound)
    );
    let refused = monitor.list(Default::default()).await.unwrap_err();
    assert_eq!(refused.code(), Some(Code::PermissionDenied), "{refused}");
    assert!(refused.to_string().contains("act_for_users"), "{refused}");
    let watched = Box::pin(monitor.watch(0, Vec::new(), false))
        .next()
        .await
        .unwrap();
    assert_eq!(watched.unwrap_err().code(), Some(Code::PermissionDenied));

    // The hub stops the server it started: the job ends CANCELLED by it.
    let cancelled = hub.cancel(job.id, "server stopped").await.unwrap();
    assert_eq!(cancelled.state(), gantry_client::JobState::Cancelled);
    let last = alice
        .watch(0, vec![job.id], false)
        .filter_map(|e| async move { e.ok() })
        .collect::<Vec<_>>()
        .await;
    assert!(
        last.iter().any(|e| e.actor == "service/jupyterhub"
            && e.to_state == gantry_client::JobState::Cancelled as i32),
        "{last:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plaintext_wrong_ca_and_non_user_identities_are_refused() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let addr = cluster.core.addr;
    // Plaintext HTTP/2 to a TLS port fails.
    let plain = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await;
    if let Ok(channel) = plain {
        let mut raw = gantry_proto::v1::gantry_client::GantryClient::new(channel);
        assert!(
            raw.list_sites(gantry_proto::v1::ListSitesRequest {})
                .await
                .is_err()
        );
    }
    // A certificate from another CA is refused at the handshake.
    let other = tempfile::tempdir().unwrap();
    let pki = Pki::init(other.path(), "e2e").unwrap();
    let paths = pki.issue(&Principal::User("mallory".into()), &[]).unwrap();
    let foreign = ClientConfig {
        address: format!("https://127.0.0.1:{}", addr.port()),
        tls: TlsFiles {
            ca: cluster.pki().ca_path(),
            cert: paths.cert,
            key: paths.key,
        },
    };
    let refused = match Client::connect(&foreign).await {
        Err(_) => true,
        Ok(client) => client.sites().await.is_err(),
    };
    assert!(refused, "a certificate from another CA was accepted");
    // A gate's or the scheduler's certificate may not use the client API.
    for principal in [Principal::Gate("local".into()), Principal::Scheduler] {
        let client = Client::connect(&cluster.config_for(&principal))
            .await
            .unwrap();
        assert_eq!(
            client.sites().await.unwrap_err().code(),
            Some(Code::PermissionDenied),
            "{principal}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_specs_are_refused_naming_the_field() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let with = |r: ResourceRequest| JobSpec {
        resources: Some(r),
        ..sh("true")
    };
    let cases = [
        (
            with(ResourceRequest {
                cpus: Some(0),
                ..Default::default()
            }),
            "resources.cpus",
        ),
        (
            with(ResourceRequest {
                walltime: "abc".into(),
                ..Default::default()
            }),
            "resources.walltime",
        ),
        (
            with(ResourceRequest {
                memory: "12XB".into(),
                ..Default::default()
            }),
            "resources.memory",
        ),
        (
            JobSpec {
                site: "mars".into(),
                ..sh("true")
            },
            "site",
        ),
        (JobSpec::default(), "command"),
    ];
    for (spec, field) in cases {
        let err = alice
            .submit_request(gantry_proto::v1::SubmitJobRequest {
                spec: Some(spec),
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(Code::InvalidArgument), "{field}: {err}");
        assert!(
            err.to_string().contains(field),
            "{field} not named in: {err}"
        );
    }
    let unknown = alice.get(999_999).await.unwrap_err();
    assert_eq!(unknown.code(), Some(Code::NotFound));
}

/// Every file under `dir` (recursively) whose bytes contain `needle`.
fn files_containing(dir: &std::path::Path, needle: &[u8]) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() && !path.is_symlink() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path)
                && bytes.windows(needle.len()).any(|w| w == needle)
            {
                found.push(path);
            }
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_secret_reaches_the_job_and_no_answer_log_or_file() {
    use sha2::{Digest, Sha256};
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let secret = format!("tok-{}", uuid::Uuid::now_v7().simple());
    let mut spec = sh(r#"printf %s "$HUB_TOKEN" | sha256sum | cut -d" " -f1"#);
    spec.secret_env.insert("HUB_TOKEN".into(), secret.clone());
    let job = alice.submit(spec).await.unwrap();
    assert_eq!(job.spec.as_ref().unwrap().secret_env["HUB_TOKEN"], "");
    let ended = alice.wait(job.id, |_| ()).await.unwrap();
    assert_eq!(
        ended.state(),
        gantry_client::JobState::Completed,
        "{}",
        ended.reason
    );
    // The job had it: its output is the value's digest.
    let digest = format!("{:x}\n", Sha256::digest(secret.as_bytes()));
    let out = cluster
        .cli("alice")
        .args(["logs", &job.id.to_string()])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), digest);
    // No answer carries it: get, list, events, the CLI's --json.
    for answer in [
        format!("{:?}", alice.get(job.id).await.unwrap()),
        format!("{:?}", alice.list(Default::default()).await.unwrap()),
    ] {
        assert!(!answer.contains(&secret), "{answer}");
        assert!(answer.contains("HUB_TOKEN"), "the name is shown: {answer}");
    }
    let shown = cluster
        .cli("alice")
        .args(["show", &job.id.to_string(), "--json"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout).to_string();
    assert!(
        shown.contains("\"secret_env\"") && !shown.contains(&secret),
        "{shown}"
    );
    // Nothing under the whole installation (gantryd's database, its WAL and
    // logs; the gate's work directories and logs) holds it now it ended.
    // (The write-ahead log is emptied beside the writer, a moment after the end.)
    gantry_e2e::eventually(
        std::time::Duration::from_secs(10),
        "the secret to be in no file",
        async || {
            let leaks = files_containing(cluster.dir(), secret.as_bytes());
            if leaks.is_empty() {
                Ok(())
            } else {
                Err(format!("{leaks:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn expired_and_not_yet_valid_certificates_are_refused() {
    use std::time::{Duration, SystemTime};
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let now = SystemTime::now();
    let hour = Duration::from_secs(3600);
    let windows = [
        ("expired", now - 2 * hour, now - hour),
        ("not-yet-valid", now + hour, now + 2 * hour),
    ];
    for (name, not_before, not_after) in windows {
        let principal = Principal::User(name.into());
        let paths = cluster
            .pki()
            .issue_valid(&principal, &[], not_before, not_after)
            .unwrap();
        // The SDK (and so the CLI) says why before it dials.
        let config = ClientConfig {
            address: format!("https://127.0.0.1:{}", cluster.core.addr.port()),
            tls: TlsFiles {
                ca: cluster.pki().ca_path(),
                cert: paths.cert.clone(),
                key: paths.key.clone(),
            },
        };
        let said = match Client::connect(&config).await {
            Err(e) => e.to_string(),
            Ok(_) => panic!("the SDK used a certificate {name}"),
        };
        let why = if name == "expired" {
            "expired at"
        } else {
            "is not valid until"
        };
        assert!(said.contains(why), "{name}: {said}");
        // gantryd itself refuses it at the handshake, to a client that
        // does not check (plain tonic, the same files).
        let tls = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(
                std::fs::read(cluster.pki().ca_path()).unwrap(),
            ))
            .identity(tonic::transport::Identity::from_pem(
                std::fs::read(&paths.cert).unwrap(),
                std::fs::read(&paths.key).unwrap(),
            ));
        let answer = match tonic::transport::Endpoint::from_shared(config.address.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
        {
            Err(e) => Err(e.to_string()),
            Ok(channel) => gantry_proto::v1::gantry_client::GantryClient::new(channel)
                .list_sites(gantry_proto::v1::ListSitesRequest {})
                .await
                .map_err(|s| s.to_string()),
        };
        assert!(answer.is_err(), "gantryd served a certificate {name}");
        let reason = if name == "expired" {
            "expired"
        } else {
            "not valid before"
        };
        refusal_logged(&cluster, reason).await;
    }
    // The same user with a current certificate is served.
    cluster
        .user("expired")
        .await
        .unwrap()
        .sites()
        .await
        .unwrap();
}

/// Wait until gantryd's log says it refused a handshake for `reason` (the
/// client may see the refusal before the server has written its line).
async fn refusal_logged(cluster: &Cluster, reason: &str) {
    gantry_e2e::eventually(
        std::time::Duration::from_secs(20),
        &format!("gantryd's log to say it refused a handshake: {reason}"),
        async || {
            let log = std::fs::read_to_string(cluster.core.log_path()).unwrap_or_default();
            match log
                .lines()
                .any(|l| l.contains("TLS handshake refused") && l.contains(reason))
            {
                true => Ok(()),
                false => Err(cluster.core.log_tail()),
            }
        },
    )
    .await;
}

/// The serial number (hex, lower case) of the certificate the server at
/// `addr` presents to a new connection, as `openssl s_client` sees it.
fn served_serial(cluster: &Cluster, addr: std::net::SocketAddr) -> String {
    let tls = cluster.config_for(&Principal::User("alice".into())).tls;
    let script = format!(
        "openssl s_client -connect {addr} -CAfile '{}' -cert '{}' -key '{}' </dev/null 2>/dev/null \
         | openssl x509 -noout -serial",
        tls.ca.display(),
        tls.cert.display(),
        tls.key.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .trim_start_matches("serial=")
        .trim_start_matches('0')
        .to_ascii_lowercase()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_certificate_is_refused_at_the_handshake_and_the_log_says_why() {
    use std::time::Duration;
    let cluster = Cluster::start(Options::default()).await.unwrap();
    cluster.user("alice").await.unwrap().sites().await.unwrap();
    let pki_dir = cluster.dir().join("pki");
    let (code, out, err) = gantry_e2e::run(
        std::process::Command::new(gantry_e2e::bin_dir().join("gantry"))
            .args(["pki", "revoke", "--dir"])
            .arg(&pki_dir)
            .args(["user", "alice"]),
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("revoked user/alice"), "{out}");
    // Every server reads the list again within a second or so.
    let refused = gantry_e2e::eventually(
        Duration::from_secs(20),
        "gantryd to refuse alice's revoked certificate",
        async || match cluster.user("alice").await {
            Err(e) => Ok(e.to_string()),
            Ok(client) => match client.sites().await {
                Err(e) => Ok(e.to_string()),
                Ok(_) => Err("still served".to_string()),
            },
        },
    )
    .await;
    assert!(!refused.is_empty());
    refusal_logged(&cluster, "Revoked").await;
    // Others are served; alice again with a new certificate.
    cluster.user("bob").await.unwrap().sites().await.unwrap();
    cluster
        .pki()
        .issue(&Principal::User("alice".into()), &[])
        .unwrap();
    cluster.user("alice").await.unwrap().sites().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn rotated_server_certificates_are_served_without_a_restart_and_a_running_job_completes() {
    use std::time::Duration;
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice.submit(sh("sleep 3; echo done")).await.unwrap();
    let servers = [
        (Principal::Core, cluster.core.addr),
        (Principal::Scheduler, cluster.sched.addr),
        (Principal::Gate("local".into()), cluster.gate.addr),
    ];
    for (principal, addr) in &servers {
        let before = served_serial(&cluster, *addr);
        assert!(!before.is_empty(), "{principal}: no certificate served");
        // The file's modification time must differ from the last look.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let paths = cluster.pki().issue(principal, &[]).unwrap();
        let rotated = gantry_proto::pki::serial_of(&paths.cert).unwrap();
        assert_ne!(rotated, before);
        gantry_e2e::eventually(
            Duration::from_secs(20),
            &format!("{principal} to serve its new certificate"),
            async || {
                let served = served_serial(&cluster, *addr);
                if served == rotated {
                    Ok(())
                } else {
                    Err(served)
                }
            },
        )
        .await;
    }
    // The job submitted before the rotations completes, and new clients
    // are served by the rotated servers.
    let ended = tokio::time::timeout(Duration::from_secs(60), alice.wait(job.id, |_| {}))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        ended.state(),
        gantry_client::JobState::Completed,
        "{ended:?}"
    );
    cluster.user("bob").await.unwrap().sites().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn gantryd_presents_its_rotated_certificate_when_it_connects_again_so_the_old_one_can_be_revoked()
 {
    use std::time::Duration;
    let mut cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let ran = |id| {
        let alice = alice.clone();
        async move {
            let ended = tokio::time::timeout(Duration::from_secs(60), alice.wait(id, |_| {}))
                .await
                .expect("the job ends within 60 s")
                .unwrap();
            assert_eq!(
                ended.state(),
                gantry_client::JobState::Completed,
                "{ended:?}"
            );
        }
    };
    ran(alice.submit(sh("true")).await.unwrap().id).await;
    // gantryd's certificate is rotated and the old one revoked, as after a
    // stolen key: the scheduler and the gate then refuse the old one.
    let core_cert = cluster.dir().join("pki").join("core.pem");
    let old = gantry_proto::pki::serial_of(&core_cert).unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    cluster.pki().issue(&Principal::Core, &[]).unwrap();
    let (code, _, err) = gantry_e2e::run(
        std::process::Command::new(gantry_e2e::bin_dir().join("gantry"))
            .args(["pki", "revoke", "--dir"])
            .arg(cluster.dir().join("pki"))
            .args(["--serial", &old]),
    );
    assert_eq!(code, 0, "{err}");
    // Both restart, so gantryd must connect to each again; it does so with
    // the new certificate, without a restart of its own.
    let logged_before =
        |p: &gantry_e2e::Process| std::fs::metadata(p.log_path()).map_or(0, |m| m.len() as usize);
    let before = [logged_before(&cluster.sched), logged_before(&cluster.gate)];
    cluster.sched.restart().await.unwrap();
    cluster.gate.restart().await.unwrap();
    ran(alice.submit(sh("true")).await.unwrap().id).await;
    for (process, from) in [&cluster.sched, &cluster.gate].into_iter().zip(before) {
        let log = std::fs::read(process.log_path()).unwrap();
        let log = String::from_utf8_lossy(&log[from.min(log.len())..]);
        assert!(
            !log.contains("TLS handshake refused"),
            "{} refused gantryd: {}",
            process.name,
            process.log_tail()
        );
    }
    let core_log = std::fs::read_to_string(cluster.core.log_path()).unwrap();
    assert!(
        core_log.contains("TLS files changed; new connections out use them"),
        "{}",
        cluster.core.log_tail()
    );
}
