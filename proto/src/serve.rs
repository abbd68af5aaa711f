//! Serving pieces every Gantry server shares: bind (port 0 picks a free
//! port), announce readiness through a file, and stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;

use std::pin::Pin;

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

/// Accepted connections.
pub type Incoming = Pin<Box<dyn Stream<Item = std::io::Result<TcpStream>> + Send>>;

/// A bound listener, ready to hand to `Server::serve_with_incoming`.
pub struct Bound {
    /// The address actually bound (with the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The accepted connections, with TCP_NODELAY set: without it, Nagle's
    /// algorithm and delayed ACKs add ~40 ms to small request/response pairs.
    pub incoming: Incoming,
}

/// Bind `listen` (e.g. `127.0.0.1:0`).
pub async fn bind(listen: &str) -> std::io::Result<Bound> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        addr,
        incoming: Box::pin(TcpListenerStream::new(listener).map(|stream| {
            let stream = stream?;
            stream.set_nodelay(true)?;
            Ok(stream)
        })),
    })
}

/// Write `addr` to `path` atomically (temp file + rename), so a reader that
/// sees the file sees the whole address.
pub fn write_ready_file(path: &Path, addr: SocketAddr) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, addr.to_string())?;
    std::fs::rename(&tmp, path)
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("install SIGINT handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// A shutdown pair for a gRPC server: the first future resolves on
/// SIGTERM/SIGINT (give it to `serve_with_incoming_shutdown`), the second
/// `grace` later. Race the server against the second, so that a client
/// holding a stream open cannot keep the process from stopping.
pub fn shutdown_with_grace(
    grace: std::time::Duration,
) -> (
    impl Future<Output = ()> + Send + 'static,
    impl Future<Output = ()> + Send + 'static,
) {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let signal = async move {
        shutdown_signal().await;
        let _ = tx.send(true);
    };
    let deadline = async move {
        if rx.wait_for(|stopping| *stopping).await.is_ok() {
            tokio::time::sleep(grace).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    (signal, deadline)
}
