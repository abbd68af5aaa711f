//! A server for port-forwarding tests: a job that listens on a free port of
//! its machine's loopback, prints the port, and answers each connection
//! with everything it read, upper-cased, once the client half-closed.

use std::time::Duration;

use futures::StreamExt;
use gantry_client::{Client, JobSpec, LogStream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SERVER: &str = r#"
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen()
print(s.getsockname()[1], flush=True)
while True:
    c, _ = s.accept()
    data = b""
    while True:
        piece = c.recv(65536)
        if not piece:
            break
        data += piece
    c.sendall(data.upper())
    c.close()
"#;

/// The job: the upper-casing server, on `site` if given.
pub fn upper_server(site: &str) -> JobSpec {
    JobSpec {
        argv: vec!["python3".into(), "-c".into(), SERVER.into()],
        site: site.into(),
        ..Default::default()
    }
}

/// The port job `id` printed, once it did (within a minute).
pub async fn printed_port(client: &Client, id: u64) -> u16 {
    crate::eventually(
        Duration::from_secs(60),
        &format!("job {id} to print its port"),
        async || {
            let chunks = client
                .read_logs(id, LogStream::Stdout, 0, false)
                .await
                .map_err(|e| e.to_string())?;
            let mut chunks = std::pin::pin!(chunks);
            let mut out = Vec::new();
            while let Some(chunk) = chunks.next().await {
                out.extend(chunk.map_err(|e| e.to_string())?.data);
            }
            let text = String::from_utf8_lossy(&out).to_string();
            text.trim()
                .parse::<u16>()
                .map_err(|_| format!("stdout so far: {text:?}"))
        },
    )
    .await
}

/// Send `payload` through a forwarded connection to the server of job `id`,
/// half-close, and read the answer to its end.
pub async fn through(client: &Client, id: u64, port: u16, payload: &[u8]) -> Vec<u8> {
    let mut conn = client.connect_port(id, port).await.expect("connect_port");
    let (mut reader, mut writer) = tokio::io::split(&mut conn);
    let write = async {
        writer.write_all(payload).await.unwrap();
        writer.shutdown().await.unwrap();
    };
    let mut answer = Vec::new();
    let read = reader.read_to_end(&mut answer);
    let ((), read) =
        tokio::time::timeout(Duration::from_secs(60), async { tokio::join!(write, read) })
            .await
            .expect("the answer within a minute");
    read.unwrap();
    answer
}

/// A payload of `len` lower-case letters.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}
