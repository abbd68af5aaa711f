//! Serving pieces every Gantry server shares: bind (port 0 picks a free
//! port), announce readiness through a file, and stop on SIGTERM/SIGINT.

use std::net::SocketAddr;
use std::path::Path;

use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

/// A bound listener, ready to hand to `Server::serve_with_incoming`.
pub struct Bound {
    /// The address actually bound (with the real port when 0 was asked).
    pub addr: SocketAddr,
    /// The accepted connections, with TCP_NODELAY set.
    pub incoming: TcpListenerStream,
}

/// Bind `listen` (e.g. `127.0.0.1:0`).
pub async fn bind(listen: &str) -> std::io::Result<Bound> {
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {listen}: {e}")))?;
    let addr = listener.local_addr()?;
    Ok(Bound {
        addr,
        incoming: TcpListenerStream::new(listener),
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
