//! Prometheus metrics: a real Prometheus (`scripts/prometheus`, Debian's
//! `prometheus`) scrapes gantryd, the scheduler and the local gate of a
//! running installation, and the series are read back through its HTTP
//! API, as an operator's dashboards and alerts would read them.

use std::path::Path;
use std::time::Duration;

use gantry_client::{JobSpec, JobState};
use gantry_e2e::{Cluster, MetricsAddrs, Options, services};
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// GET `url`: the status and the body.
async fn get(url: &str) -> (u16, String, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let response = client
        .get(url.parse().expect("a URL"))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = response.into_body().collect().await.expect("a body");
    let body = String::from_utf8_lossy(&body.to_bytes()).into_owned();
    (status, content_type, body)
}

/// Prometheus' answer to the instant query `query`: each series' labels
/// and value.
async fn query(prometheus: &str, query: &str) -> Vec<(serde_json::Value, f64)> {
    let encoded: String = query
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    let (status, _, body) = get(&format!("{prometheus}/api/v1/query?query={encoded}")).await;
    assert_eq!(status, 200, "query {query}: {body}");
    let answer: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    answer["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|series| {
            let value = series["value"][1].as_str().expect("a value");
            (series["metric"].clone(), value.parse().expect("a number"))
        })
        .collect()
}

/// Wait (up to a minute: Prometheus scrapes every second, and takes a few
/// to find new targets) until `query` has one series whose value passes
/// `check`; that value.
async fn until(prometheus: &str, what: &str, check: impl Fn(f64) -> bool) -> f64 {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let found = query(prometheus, what).await;
        if let [(_, value)] = found[..]
            && check(value)
        {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never answered {what} as expected; last: {found:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Add the cluster's three processes to what Prometheus scrapes, labelled
/// `cluster` with `name`.
fn scrape(prometheus_dir: &Path, name: &str, addrs: &MetricsAddrs) -> std::path::PathBuf {
    let targets = serde_json::json!([
        {"targets": [addrs.core], "labels": {"cluster": name, "component": "gantryd"}},
        {"targets": [addrs.sched], "labels": {"cluster": name, "component": "scheduler"}},
        {"targets": [addrs.gate], "labels": {"cluster": name, "component": "gate"}},
    ]);
    let path = prometheus_dir.join("targets").join(format!("{name}.json"));
    let temp = path.with_extension("tmp");
    std::fs::write(&temp, targets.to_string()).expect("write the targets");
    std::fs::rename(&temp, &path).expect("publish the targets");
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_jobs_passes_and_gate_calls_from_a_running_installation() {
    let prometheus_dir = services::prometheus();
    let prometheus = std::fs::read_to_string(prometheus_dir.join("url"))
        .expect("scripts/prometheus writes its URL")
        .trim()
        .to_string();
    let cluster = Cluster::start(Options {
        metrics: true,
        ..Default::default()
    })
    .await
    .unwrap();
    let addrs = cluster.metrics.clone().expect("metrics asked for");

    // The endpoint itself, as a scraper sees it.
    let (status, content_type, body) = get(&format!("http://{}/metrics", addrs.core)).await;
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    assert!(body.contains("# TYPE gantry_jobs gauge"), "{body}");
    let (status, _, body) = get(&format!("http://{}/", addrs.gate)).await;
    assert_eq!(status, 404);
    assert!(body.contains("/metrics"), "{body}");

    let alice = cluster.user("alice").await.unwrap();
    let sh = |script: &str| JobSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
        ..Default::default()
    };
    let mut ids = Vec::new();
    for script in ["sleep 1", "true", "true", "exit 3"] {
        ids.push(alice.submit(sh(script)).await.unwrap().id);
    }
    for id in &ids {
        let done = tokio::time::timeout(Duration::from_secs(60), alice.wait(*id, |_| {}))
            .await
            .expect("the job ends within 60 s")
            .unwrap();
        let want = if *id == ids[3] {
            JobState::Failed
        } else {
            JobState::Completed
        };
        assert_eq!(done.state(), want, "{done:?}");
    }

    let name = cluster
        .dir()
        .file_name()
        .expect("named")
        .to_string_lossy()
        .into_owned();
    let targets = scrape(&prometheus_dir, &name, &addrs);
    let on = format!("cluster=\"{name}\"");
    let each = |series: &str| format!("{series}{{{on}}}");

    for process in ["gantryd", "scheduler", "gate"] {
        until(
            &prometheus,
            &format!("up{{{on},component=\"{process}\"}}"),
            |v| v == 1.0,
        )
        .await;
    }
    until(&prometheus, &each("gantry_job_submit_total"), |v| v == 4.0).await;
    let state = |s: &str| format!("gantry_jobs{{{on},state=\"{s}\"}}");
    until(&prometheus, &state("COMPLETED"), |v| v == 3.0).await;
    until(&prometheus, &state("FAILED"), |v| v == 1.0).await;
    until(&prometheus, &state("QUEUED"), |v| v == 0.0).await;
    until(
        &prometheus,
        &each("gantry_job_queue_wait_seconds_count"),
        |v| v == 4.0,
    )
    .await;
    until(&prometheus, &each("gantry_job_run_seconds_count"), |v| {
        v == 4.0
    })
    .await;
    // One job slept a second: at least that much run time is on record.
    until(&prometheus, &each("gantry_job_run_seconds_sum"), |v| {
        v >= 1.0
    })
    .await;
    until(&prometheus, &each("gantry_store_commit_ops_count"), |v| {
        v > 0.0
    })
    .await;
    until(
        &prometheus,
        &each("gantry_scheduler_pass_seconds_count"),
        |v| v > 0.0,
    )
    .await;
    until(
        &prometheus,
        &format!("gantry_partitions{{{on},site=\"local\",state=\"READY\"}}"),
        |v| v >= 1.0,
    )
    .await;
    // Every job was started: gantryd's calls and the gate's answers (a call
    // retried after a broken stream on a busy machine counts again).
    until(
        &prometheus,
        &format!(
            "gantry_gate_requests_total{{{on},site=\"local\",method=\"gantry.v1.Gate/StartJob\",code=\"OK\"}}"
        ),
        |v| v >= 4.0,
    )
    .await;
    until(
        &prometheus,
        &format!(
            "gantry_grpc_server_handled_total{{{on},component=\"gate\",method=\"gantry.v1.Gate/StartJob\",code=\"OK\"}}"
        ),
        |v| v >= 4.0,
    )
    .await;
    // The client API, by method and code: a refused call counts with its code.
    let refused = alice.get(999_999).await.expect_err("no such job");
    assert_eq!(refused.code(), Some(tonic::Code::NotFound), "{refused:?}");
    until(
        &prometheus,
        &format!(
            "gantry_grpc_server_handled_total{{{on},component=\"gantryd\",method=\"gantry.v1.Gantry/GetJob\",code=\"NOT_FOUND\"}}"
        ),
        |v| v == 1.0,
    )
    .await;
    // A latency quantile, as a dashboard asks for it.
    until(
        &prometheus,
        &format!(
            "histogram_quantile(0.9, sum by (le) (gantry_grpc_server_handling_seconds_bucket{{{on},component=\"gantryd\",method=\"gantry.v1.Gantry/SubmitJob\"}}))"
        ),
        |v| v > 0.0 && v <= 60.0,
    )
    .await;
    let _ = std::fs::remove_file(targets);
}
