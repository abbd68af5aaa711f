//! Jobs end to end over the real binaries: exit codes, logs, outputs,
//! dependencies, walltime, cancel, idempotent submit.

use std::time::Duration;

use futures::StreamExt;
use gantry_client::{Client, JobSpec, JobState, LogStream};
use gantry_e2e::{Cluster, Options};
use gantry_proto::v1::{InputFile, ResourceRequest, SubmitJobRequest};

fn sh(script: &str) -> JobSpec {
    JobSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    }
}

async fn wait(client: &Client, id: u64) -> gantry_client::Job {
    tokio::time::timeout(Duration::from_secs(60), client.wait(id, |_| {}))
        .await
        .expect("job did not end within 60 s")
        .expect("wait")
}

async fn logs(client: &Client, id: u64, stream: LogStream) -> String {
    let chunks = client.read_logs(id, stream, 0, false).await.expect("logs");
    let mut chunks = std::pin::pin!(chunks);
    let mut out = Vec::new();
    while let Some(chunk) = chunks.next().await {
        out.extend(chunk.expect("chunk").data);
    }
    String::from_utf8(out).expect("utf8")
}

#[tokio::test(flavor = "multi_thread")]
async fn job_completes_with_logs_and_outputs() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let input_path = cluster.dir().join("in.txt");
    std::fs::write(&input_path, "hello input\n").unwrap();
    let input = alice.upload_input(&input_path).await.unwrap();
    let mut spec = sh(
        "cat data/in.txt; echo oops >&2; mkdir -p out; tr a-z A-Z < data/in.txt > out/up.txt; echo $GANTRY_JOB_ID > out/id.txt",
    );
    spec.inputs = vec![InputFile {
        path: "data/in.txt".into(),
        ..input
    }];
    spec.outputs = vec!["out/*.txt".into()];
    let job = alice.submit(spec).await.unwrap();
    let done = wait(&alice, job.id).await;
    assert_eq!(done.state(), JobState::Completed, "{done:?}");
    assert_eq!(done.exit_code, Some(0));
    assert_eq!(
        logs(&alice, job.id, LogStream::Stdout).await,
        "hello input\n"
    );
    assert_eq!(logs(&alice, job.id, LogStream::Stderr).await, "oops\n");
    let dest = cluster.dir().join("outputs");
    let files = alice.download_outputs(job.id, &dest).await.unwrap();
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(
        std::fs::read_to_string(dest.join("out/up.txt")).unwrap(),
        "HELLO INPUT\n"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("out/id.txt"))
            .unwrap()
            .trim(),
        job.id.to_string()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn failing_command_ends_failed_with_its_exit_code() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice.submit(sh("echo bye; exit 3")).await.unwrap();
    let done = wait(&alice, job.id).await;
    assert_eq!(done.state(), JobState::Failed);
    assert_eq!(done.exit_code, Some(3));
    assert_eq!(done.reason, "exit code 3");
    assert_eq!(logs(&alice, job.id, LogStream::Stdout).await, "bye\n");
    assert_eq!(gantry_client::exit_status(&done), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn dependency_chain_runs_in_order_and_failure_propagates() {
    let cluster = Cluster::start(Options {
        cpus: 4,
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let log = cluster.dir().join("order.txt");
    let step = |n: u32| sh(&format!("sleep 0.2; echo {n} >> {}", log.display()));
    let a = alice.submit(step(1)).await.unwrap();
    let mut s2 = step(2);
    s2.after = vec![a.id];
    let b = alice.submit(s2).await.unwrap();
    let mut s3 = step(3);
    s3.after = vec![b.id];
    let c = alice.submit(s3).await.unwrap();
    let mut bad = sh("exit 1");
    bad.after = vec![a.id];
    let bad = alice.submit(bad).await.unwrap();
    let mut never = step(4);
    never.after = vec![bad.id];
    let never = alice.submit(never).await.unwrap();
    assert_eq!(wait(&alice, c.id).await.state(), JobState::Completed);
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "1\n2\n3\n");
    let never = wait(&alice, never.id).await;
    assert_eq!(never.state(), JobState::Failed);
    assert_eq!(
        never.reason,
        format!("dependency job {} ended FAILED", bad.id)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn walltime_is_enforced() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut spec = sh("sleep 60");
    spec.resources = Some(ResourceRequest {
        walltime: "1s".into(),
        ..Default::default()
    });
    let job = alice.submit(spec).await.unwrap();
    let done = wait(&alice, job.id).await;
    assert_eq!(done.state(), JobState::Failed);
    assert_eq!(done.reason, "walltime exceeded");
    assert!(done.end_time_ms - done.start_time_ms < 20_000, "{done:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn cancel_queued_and_running_jobs() {
    let cluster = Cluster::start(Options {
        cpus: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let marker = cluster.dir().join("ran-after-cancel");
    let running = alice
        .submit(sh(&format!("sleep 30; touch {}", marker.display())))
        .await
        .unwrap();
    let queued = alice
        .submit(sh(&format!("touch {}", marker.display())))
        .await
        .unwrap();
    // Wait for the first to run; the second waits in the gate's queue
    // (one CPU), placed but not started.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let waiting = alice.get(queued.id).await.unwrap();
        if alice.get(running.id).await.unwrap().state() == JobState::Running
            && waiting.reason.contains("waiting for a free slot")
        {
            assert_eq!(waiting.state(), JobState::Scheduled, "{waiting:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never ran: {:?}\n{waiting:?}",
            alice.get(running.id).await.unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let q = alice.cancel(queued.id, "not needed").await.unwrap();
    assert_eq!(q.state(), JobState::Cancelled);
    let r = alice.cancel(running.id, "").await.unwrap();
    assert_eq!(r.state(), JobState::Cancelled);
    assert_eq!(r.reason, "cancelled by user/alice");
    // The process is really gone: a fresh job gets the only CPU and completes.
    let next = alice.submit(sh("true")).await.unwrap();
    assert_eq!(wait(&alice, next.id).await.state(), JobState::Completed);
    assert!(!marker.exists(), "a cancelled job ran on");
    // Cancelling again is not an error and changes nothing.
    assert_eq!(
        alice.cancel(running.id, "").await.unwrap().state(),
        JobState::Cancelled
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retried_submit_with_the_same_request_id_returns_the_same_job() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let request = SubmitJobRequest {
        spec: Some(sh("true")),
        client_request_id: "req-1".into(),
        on_behalf_of: String::new(),
    };
    let first = alice.submit_request(request.clone()).await.unwrap();
    let second = alice.submit_request(request).await.unwrap();
    assert!(first.created);
    assert!(!second.created);
    assert_eq!(first.job.unwrap().id, second.job.unwrap().id);
    // Another user's identical id is their own.
    let bob = cluster.user("bob").await.unwrap();
    let theirs = bob
        .submit_request(SubmitJobRequest {
            spec: Some(sh("true")),
            client_request_id: "req-1".into(),
            on_behalf_of: String::new(),
        })
        .await
        .unwrap();
    assert!(theirs.created);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_with_nothing_to_bring_back_skips_staging_out() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let quiet = wait(&alice, alice.submit(sh("exit 0")).await.unwrap().id).await;
    let chatty = wait(&alice, alice.submit(sh("echo hi")).await.unwrap().id).await;
    let states = |id: u64| {
        let alice = alice.clone();
        async move {
            let events: Vec<_> = alice.watch(0, vec![id], false).collect().await;
            events
                .into_iter()
                .map(|e| e.unwrap().to_state)
                .collect::<Vec<i32>>()
        }
    };
    let staging_out = JobState::StagingOut as i32;
    assert!(
        !states(quiet.id).await.contains(&staging_out),
        "empty logs, no outputs: no STAGING_OUT"
    );
    assert!(
        states(chatty.id).await.contains(&staging_out),
        "a log to copy: STAGING_OUT"
    );
    assert_eq!(quiet.state(), JobState::Completed);
    assert_eq!(logs(&alice, quiet.id, LogStream::Stdout).await, "");
    assert_eq!(logs(&alice, chatty.id, LogStream::Stdout).await, "hi\n");
}

/// Poll `id` until `done` holds (60 s at most); the job as it then is.
async fn until(
    client: &Client,
    id: u64,
    done: impl Fn(&gantry_client::Job) -> bool,
) -> gantry_client::Job {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let job = client.get(id).await.unwrap();
        if done(&job) {
            return job;
        }
        assert!(tokio::time::Instant::now() < deadline, "never: {job:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_get_sigterm_then_sigkill_and_a_warning_signal_before_their_walltime() {
    let cluster = Cluster::start(Options {
        cpus: 3,
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let dir = cluster.dir();
    // Saves a checkpoint on SIGTERM and exits 0; notes SIGUSR1; says when
    // its traps are set.
    let trapping = |name: &str| {
        let f = |what: &str| dir.join(format!("{name}.{what}")).display().to_string();
        sh(&format!(
            "trap 'echo saved > {}; exit 0' TERM; trap 'echo warned > {}' USR1; \
             touch {}; while :; do sleep 0.1; done",
            f("checkpoint"),
            f("warned"),
            f("ready")
        ))
    };
    let ready = |name: &str| dir.join(format!("{name}.ready"));
    let cancelled = alice.submit(trapping("cancelled")).await.unwrap();
    let mut timed = trapping("timed");
    timed.resources = Some(ResourceRequest {
        walltime: "3s".into(),
        ..Default::default()
    });
    timed.signal = "USR1@2".into();
    let timed = alice.submit(timed).await.unwrap();
    assert_eq!(timed.spec.as_ref().unwrap().signal, "USR1@2");
    let stubborn = alice
        .submit(sh(&format!(
            "trap '' TERM; touch {}; while :; do sleep 0.1; done",
            ready("stubborn").display()
        )))
        .await
        .unwrap();

    for name in ["cancelled", "stubborn"] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while !ready(name).exists() {
            assert!(tokio::time::Instant::now() < deadline, "{name} never ran");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    alice.cancel(cancelled.id, "").await.unwrap();
    alice.cancel(stubborn.id, "").await.unwrap();

    // Cancel: SIGTERM, the job saves and exits 0, and its exit code and
    // end time are recorded although gantryd had ended it already.
    let c = until(&alice, cancelled.id, |j| j.exit_code.is_some()).await;
    assert_eq!(c.state(), JobState::Cancelled);
    assert_eq!(c.exit_code, Some(0), "{c:?}");
    assert!(
        c.end_time_ms >= c.start_time_ms && c.start_time_ms > 0,
        "{c:?}"
    );
    let saved = std::fs::read_to_string(dir.join("cancelled.checkpoint")).unwrap();
    assert_eq!(saved, "saved\n");
    assert!(!dir.join("cancelled.warned").exists());

    // A job that ignores SIGTERM is killed once the grace (3 s) is over.
    let s = until(&alice, stubborn.id, |j| j.exit_code.is_some()).await;
    assert_eq!(s.exit_code, Some(128 + 9), "{s:?}");
    assert!(s.end_time_ms - s.start_time_ms >= 3_000, "{s:?}");

    // Walltime: the warning signal a second in, SIGTERM at 3 s; the job
    // saved and exited 0 but ran out of time.
    let t = wait(&alice, timed.id).await;
    assert_eq!(t.state(), JobState::Failed, "{t:?}");
    assert_eq!(t.reason, "walltime exceeded");
    assert_eq!(t.exit_code, Some(0));
    assert_eq!(
        std::fs::read_to_string(dir.join("timed.warned")).unwrap(),
        "warned\n"
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("timed.checkpoint")).unwrap(),
        "saved\n"
    );
    let ran = t.end_time_ms - t.start_time_ms;
    assert!((3_000..10_000).contains(&ran), "ran {ran} ms: {t:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warning_signal_needs_a_walltime_and_a_real_signal() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut spec = sh("true");
    spec.signal = "USR1@30".into();
    let e = alice.submit(spec.clone()).await.unwrap_err();
    assert!(e.to_string().contains("walltime"), "{e}");
    spec.resources = Some(ResourceRequest {
        walltime: "1m".into(),
        ..Default::default()
    });
    spec.signal = "NOSUCH".into();
    let e = alice.submit(spec).await.unwrap_err();
    assert!(e.to_string().contains("\"NOSUCH\" is not a signal"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_starts_from_a_login_environment_not_the_gates() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice
        .submit(JobSpec {
            argv: vec!["env".into()],
            env: [("MY_VAR".to_string(), "a b".to_string())].into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(wait(&alice, job.id).await.state(), JobState::Completed);
    let out = logs(&alice, job.id, LogStream::Stdout).await;
    let mut names: Vec<&str> = out
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "GANTRY_ATTEMPT_ID",
            "GANTRY_JOB_ID",
            "GANTRY_NODELIST",
            "GANTRY_NTASKS",
            "GANTRY_PARTITION_ID",
            "HOME",
            "LOGNAME",
            "MY_VAR",
            "PATH",
            "SHELL",
            "USER"
        ],
        "{out}"
    );
    assert!(
        out.contains("\nMY_VAR=a b\n") || out.starts_with("MY_VAR=a b\n"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_reads_an_input_as_its_stdin() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let path = cluster.dir().join("lines.txt");
    std::fs::write(&path, "b\na\n").unwrap();
    let input = alice.upload_input(&path).await.unwrap();
    let mut spec = JobSpec {
        argv: vec!["sort".into()],
        inputs: vec![InputFile {
            path: "in/lines.txt".into(),
            ..input
        }],
        stdin: "in/lines.txt".into(),
        ..Default::default()
    };
    let job = alice.submit(spec.clone()).await.unwrap();
    assert_eq!(wait(&alice, job.id).await.state(), JobState::Completed);
    assert_eq!(logs(&alice, job.id, LogStream::Stdout).await, "a\nb\n");
    // A stdin the job does not have fails it, saying which.
    spec.stdin = "in/missing.txt".into();
    let job = alice.submit(spec.clone()).await.unwrap();
    let done = wait(&alice, job.id).await;
    assert_eq!(done.state(), JobState::Failed);
    assert!(
        done.reason
            .contains("cannot open its stdin `in/missing.txt`"),
        "{done:?}"
    );
    spec.stdin = "../x".into();
    let e = alice.submit(spec).await.unwrap_err();
    assert!(e.to_string().contains("stdin"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_program_not_in_the_jobs_path_fails_with_127_saying_so() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice
        .submit(JobSpec {
            argv: vec!["no-such-program-anywhere".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = wait(&alice, job.id).await;
    assert_eq!(done.state(), JobState::Failed);
    assert_eq!(done.exit_code, Some(127));
    assert!(
        done.reason
            .starts_with("cannot start `no-such-program-anywhere`: not found in PATH /usr"),
        "{done:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_in_a_directory_of_its_choosing() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let dir = cluster.dir().join("run");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("in.txt"), "from the site\n").unwrap();
    let mut spec = sh("pwd; cat; echo made > made.txt");
    spec.chdir = dir.display().to_string();
    spec.stdin = "in.txt".into();
    let job = alice.submit(spec.clone()).await.unwrap();
    assert_eq!(wait(&alice, job.id).await.state(), JobState::Completed);
    assert_eq!(
        logs(&alice, job.id, LogStream::Stdout).await,
        format!("{}\nfrom the site\n", dir.display())
    );
    assert_eq!(
        std::fs::read_to_string(dir.join("made.txt")).unwrap(),
        "made\n"
    );
    // A directory the site does not have fails the job, saying so.
    spec.chdir = dir.join("missing").display().to_string();
    let done = wait(&alice, alice.submit(spec.clone()).await.unwrap().id).await;
    assert_eq!(done.state(), JobState::Failed);
    assert!(done.reason.contains("not a directory here"), "{done:?}");
    // Refused at once: a relative directory, and staging with --chdir.
    spec.chdir = "run".into();
    let e = alice.submit(spec.clone()).await.unwrap_err();
    assert!(e.to_string().contains("absolute path"), "{e}");
    spec.chdir = dir.display().to_string();
    spec.outputs = vec!["made.txt".into()];
    let e = alice.submit(spec).await.unwrap_err();
    assert!(e.to_string().contains("give one or the other"), "{e}");
}
