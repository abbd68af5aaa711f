//! Port forwarding on the local gate, end to end: `gantry forward` and the
//! SDK's `connect_port` reach a server in a running job through gantryd and
//! the gate; nobody else's job, no port that is not one, nothing once the
//! job ended.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use gantry_client::Client;
use gantry_e2e::echo::{payload, printed_port, through, upper_server};
use gantry_e2e::{Cluster, Options};
use tonic::Code;

async fn code_of(client: &Client, id: u64, port: u16) -> (Code, String) {
    let err = client
        .connect_port(id, port)
        .await
        .expect_err("the connection is refused");
    (err.code().expect("a gRPC status"), err.to_string())
}

/// A local port nothing listens on.
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_in_a_running_job_is_reached_only_by_its_owner_and_only_while_it_runs() {
    let cluster = Cluster::start(Options::default()).await.unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let job = alice.submit(upper_server("")).await.unwrap();
    let port = printed_port(&alice, job.id).await;

    // A megabyte each way, and a second connection after the first.
    let big = payload(1 << 20);
    let answer = through(&alice, job.id, port, &big).await;
    assert!(
        answer == big.to_ascii_uppercase(),
        "{} bytes came back",
        answer.len()
    );
    assert_eq!(through(&alice, job.id, port, b"again").await, b"AGAIN");

    // `gantry forward` on a free local port.
    let mut forward = cluster
        .cli("alice")
        .args(["forward", &job.id.to_string(), &port.to_string()])
        .args(["--local-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut address = String::new();
    BufReader::new(forward.stdout.take().unwrap())
        .read_line(&mut address)
        .unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        let mut conn = std::net::TcpStream::connect(address.trim()).unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        conn.write_all(b"hello through the cli").unwrap();
        conn.shutdown(std::net::Shutdown::Write).unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        answer
    })
    .await
    .unwrap();
    assert_eq!(answer, "HELLO THROUGH THE CLI");

    // Bob cannot tell the job exists; a port that is none and a port
    // nobody listens on are refused with what to do.
    let bob = cluster.user("bob").await.unwrap();
    let (code, said) = code_of(&bob, job.id, port).await;
    assert_eq!(code, Code::NotFound, "{said}");
    let (code, said) = code_of(&alice, job.id, 0).await;
    assert_eq!(code, Code::InvalidArgument, "{said}");
    assert!(said.contains("port: 0 is not a TCP port"), "{said}");
    let (code, said) = code_of(&alice, job.id, closed_port()).await;
    assert_eq!(code, Code::Unavailable, "{said}");
    assert!(said.contains("is its server listening yet?"), "{said}");

    // Once the job ended: no connection, and `gantry forward` stops.
    alice.cancel(job.id, "done").await.unwrap();
    tokio::time::timeout(Duration::from_secs(60), alice.wait(job.id, |_| {}))
        .await
        .unwrap()
        .unwrap();
    let (code, said) = code_of(&alice, job.id, port).await;
    assert_eq!(code, Code::FailedPrecondition, "{said}");
    assert!(said.contains("is CANCELLED"), "{said}");
    let status = tokio::task::spawn_blocking(move || {
        let mut err = String::new();
        forward
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        (forward.wait().unwrap(), err)
    })
    .await
    .unwrap();
    assert!(status.0.success(), "{}", status.1);
    assert!(
        status.1.contains("is CANCELLED; forwarding stopped"),
        "{}",
        status.1
    );
}
