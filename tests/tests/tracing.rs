//! Traces over OTLP: a real OpenTelemetry collector (Rotel, from PyPI)
//! receives the spans of gantryd, the scheduler and the local gate of a
//! running installation, configured only by the standard `OTEL_*`
//! variables; a job's calls are found by its id in every process, and the
//! gate's StartJob continues the trace of gantryd's work to start it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use gantry_client::{JobSpec, JobState};
use gantry_e2e::{Cluster, Options, services};

/// One span as the collector printed it.
#[derive(Clone, Debug, Default)]
struct Span {
    service: String,
    trace: String,
    parent: String,
    id: String,
    name: String,
    kind: String,
    status: String,
    attributes: HashMap<String, String>,
}

/// A Rotel collector on free loopback ports, printing every span it
/// receives (`--debug-log traces`) to a file, exporting them nowhere.
struct Collector {
    child: Child,
    spans: PathBuf,
    /// Its OTLP/gRPC endpoint, as `OTEL_EXPORTER_OTLP_ENDPOINT` takes it.
    endpoint: String,
}

impl Collector {
    fn start(dir: &Path) -> Self {
        let port = || {
            std::net::TcpListener::bind("127.0.0.1:0")
                .expect("a free port")
                .local_addr()
                .expect("bound")
                .port()
        };
        let (grpc, http) = (port(), port());
        let spans = dir.join("spans.txt");
        let out = std::fs::File::create(&spans).expect("create the span file");
        let child = Command::new(services::rotel())
            .arg("start")
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc}")])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http}")])
            .args(["--exporter", "blackhole"])
            .args(["--debug-log", "traces", "--debug-log-verbosity", "detailed"])
            .arg("--pid-file")
            .arg(dir.join("rotel.pid"))
            .arg("--log-file")
            .arg(dir.join("rotel.log"))
            .stdout(out.try_clone().expect("the span file"))
            .stderr(out)
            .stdin(Stdio::null())
            .spawn()
            .expect("start rotel");
        let endpoint = format!("http://127.0.0.1:{grpc}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", grpc)).is_err() {
            assert!(Instant::now() < deadline, "rotel never listened on {grpc}");
            std::thread::sleep(Duration::from_millis(50));
        }
        Collector {
            child,
            spans,
            endpoint,
        }
    }

    /// Every span received so far.
    fn spans(&self) -> Vec<Span> {
        parse(&std::fs::read_to_string(&self.spans).unwrap_or_default())
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The spans in Rotel's detailed debug output: a `ResourceSpans` block per
/// batch of one process (its `service.name` among the resource's
/// attributes), then `Span #N` blocks with their fields and attributes.
fn parse(text: &str) -> Vec<Span> {
    let mut spans: Vec<Span> = Vec::new();
    let mut service = String::new();
    let mut in_span = false;
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("ResourceSpans #") {
            in_span = false;
            continue;
        }
        if trimmed.starts_with("Span #") {
            in_span = true;
            spans.push(Span {
                service: service.clone(),
                ..Default::default()
            });
            continue;
        }
        if let Some(attribute) = trimmed.strip_prefix("-> ") {
            let Some((key, value)) = attribute.split_once(": ") else {
                continue;
            };
            // `Str(x)`, `Int(5)`: the value inside the type's parentheses.
            let value = value
                .split_once('(')
                .map_or(value, |(_, v)| v.strip_suffix(')').unwrap_or(v));
            match spans.last_mut() {
                Some(span) if in_span => {
                    span.attributes.insert(key.into(), value.into());
                }
                _ if key == "service.name" => service = value.into(),
                _ => {}
            }
            continue;
        }
        let (Some(span), true) = (spans.last_mut(), in_span) else {
            continue;
        };
        let Some((key, value)) = trimmed.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        match key.trim() {
            "Trace ID" => span.trace = value,
            "Parent ID" => span.parent = value,
            "ID" => span.id = value,
            "Name" => span.name = value,
            "Kind" => span.kind = value,
            "Status code" => span.status = value,
            _ => {}
        }
    }
    spans
}

/// Wait (up to a minute) until the collector holds spans that `found`
/// accepts; what it returns.
fn until<T>(collector: &Collector, what: &str, found: impl Fn(&[Span]) -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let spans = collector.spans();
        if let Some(answer) = found(&spans) {
            return answer;
        }
        assert!(
            Instant::now() < deadline,
            "the collector never received {what}; it holds:\n{spans:#?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_jobs_calls_reach_an_otlp_collector_as_one_trace_across_gantryd_and_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    let collector = Collector::start(dir.path());
    let cluster = Cluster::start(Options {
        env: vec![
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT".into(),
                collector.endpoint.clone(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()),
        ],
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice
        .submit(JobSpec {
            argv: vec!["echo".into(), "traced".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    let done = tokio::time::timeout(Duration::from_secs(60), alice.wait(job.id, |_| {}))
        .await
        .expect("the job ends within 60 s")
        .unwrap();
    assert_eq!(done.state(), JobState::Completed);
    let missing = alice.get(job.id + 1000).await.unwrap_err();
    assert_eq!(missing.code(), Some(tonic::Code::NotFound), "{missing}");

    let id = job.id.to_string();
    let about_job = |s: &Span| s.attributes.get("job_id") == Some(&id);
    // The submission, in gantryd's span of the call, named by its job id.
    until(&collector, "gantryd's SubmitJob span", |spans| {
        spans
            .iter()
            .find(|s| {
                s.service == "gantryd"
                    && s.name == "gantry.v1.Gantry/SubmitJob"
                    && s.kind == "SPAN_KIND_SERVER"
                    && about_job(s)
            })
            .cloned()
    });
    // gantryd's work to start it, its client call to the gate, and the
    // gate's span of that call: one trace, each the parent of the next.
    // Every check inside the wait: a span may be read half written.
    let (start, client, gate) = until(&collector, "the start of the job in one trace", |spans| {
        let start = spans.iter().find(|s| {
            s.service == "gantryd"
                && s.name == "start job"
                && about_job(s)
                && s.attributes.get("site").map(String::as_str) == Some("local")
        })?;
        let client = spans.iter().find(|s| {
            s.service == "gantryd"
                && s.name == "gantry.v1.Gate/StartJob"
                && s.kind == "SPAN_KIND_CLIENT"
                && s.parent == start.id
        })?;
        let gate = spans.iter().find(|s| {
            s.service == "gantry-gate-local"
                && s.name == "gantry.v1.Gate/StartJob"
                && s.kind == "SPAN_KIND_SERVER"
                && s.parent == client.id
                && about_job(s)
                && s.attributes.contains_key("attempt_id")
                && s.attributes.get("rpc.system").map(String::as_str) == Some("grpc")
        })?;
        Some((start.clone(), client.clone(), gate.clone()))
    });
    assert_eq!(client.trace, start.trace);
    assert_eq!(
        gate.trace, start.trace,
        "the gate continues gantryd's trace"
    );
    // A refused call carries its gRPC code (NOT_FOUND = 5); the server
    // answered it as it should, so it is no error span (OpenTelemetry's
    // gRPC conventions).
    let missing_id = (job.id + 1000).to_string();
    let refused = until(&collector, "the refused GetJob with its code", |spans| {
        spans
            .iter()
            .find(|s| {
                s.name == "gantry.v1.Gantry/GetJob"
                    && s.attributes.get("job_id") == Some(&missing_id)
                    && s.attributes.get("rpc.grpc.status_code").map(String::as_str) == Some("5")
            })
            .cloned()
    });
    assert_ne!(refused.status, "STATUS_CODE_ERROR", "{refused:?}");
    // The scheduler exports too: its session with gantryd.
    until(&collector, "the scheduler's session span", |spans| {
        spans
            .iter()
            .find(|s| s.service == "gantry-sched" && s.name == "gantry.v1.Scheduler/Session")
            .cloned()
    });
}
