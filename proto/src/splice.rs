//! A TCP connection carried over a bidirectional gRPC stream, as ForwardPort
//! (client and gate API) and Tunnel (agent API) carry one: every message
//! holds bytes of the connection, in order, both ways.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// The most bytes read from a connection into one message.
pub const SPLICE_CHUNK: usize = 64 * 1024;

/// Messages buffered towards the stream: with [`SPLICE_CHUNK`], at most
/// this many chunks are read ahead of a slow reader.
pub const SPLICE_BUFFER: usize = 4;

/// Carry `conn` over a gRPC stream until both directions are done:
/// - every item of `incoming` is written to `conn`; the end of `incoming`
///   shuts `conn`'s write side down (a half-close);
/// - everything read from `conn` is sent to `out` as `wrap(bytes)`; the end
///   of `conn` drops `out`, which ends the stream (a half-close the other
///   way), and a read error is sent as UNAVAILABLE.
///
/// A failure either way (a broken stream, a failed write, nobody reading
/// `out` any more) ends both at once: a connection is never left open with
/// nobody at the other end.
pub async fn splice<C, S, M>(
    conn: C,
    incoming: S,
    out: mpsc::Sender<Result<M, Status>>,
    wrap: fn(Vec<u8>) -> M,
) where
    C: AsyncRead + AsyncWrite + Send + 'static,
    S: Stream<Item = Result<Vec<u8>, Status>> + Send + Unpin + 'static,
    M: Send + 'static,
{
    let (reader, writer) = tokio::io::split(conn);
    let mut reading = tokio::spawn(read_into(reader, out, wrap));
    let writing = write_from(incoming, writer);
    tokio::pin!(writing);
    tokio::select! {
        clean = &mut writing => {
            if clean {
                let _ = (&mut reading).await;
            }
        }
        clean = &mut reading => {
            if clean.unwrap_or(false) {
                writing.await;
            }
        }
    }
    reading.abort();
}

/// Write every item of `incoming` to `writer`; true when `incoming` ended
/// cleanly and the write side was shut down.
async fn write_from<S, W>(mut incoming: S, mut writer: W) -> bool
where
    S: Stream<Item = Result<Vec<u8>, Status>> + Unpin,
    W: AsyncWrite + Unpin,
{
    while let Some(item) = incoming.next().await {
        let Ok(data) = item else { return false };
        if writer.write_all(&data).await.is_err() {
            return false;
        }
    }
    writer.shutdown().await.is_ok()
}

/// Send what `reader` gives to `out` until it ends; true when it ended
/// cleanly (not on an error, nor because nobody reads `out`).
async fn read_into<R, M>(
    mut reader: R,
    out: mpsc::Sender<Result<M, Status>>,
    wrap: fn(Vec<u8>) -> M,
) -> bool
where
    R: AsyncRead + Unpin + Send + 'static,
    M: Send + 'static,
{
    loop {
        let mut data = vec![0; SPLICE_CHUNK];
        match reader.read(&mut data).await {
            Ok(0) => return true,
            Ok(n) => {
                data.truncate(n);
                if out.send(Ok(wrap(data))).await.is_err() {
                    return false;
                }
            }
            Err(e) => {
                let _ = out
                    .send(Err(Status::unavailable(format!(
                        "the connection failed: {e}"
                    ))))
                    .await;
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio_stream::wrappers::ReceiverStream;

    #[tokio::test]
    async fn bytes_cross_both_ways_and_a_half_close_reaches_the_far_side() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (in_tx, in_rx) = mpsc::channel::<Result<Vec<u8>, Status>>(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let spliced = tokio::spawn(splice(near, ReceiverStream::new(in_rx), out_tx, |d| d));
        in_tx.send(Ok(b"ping".to_vec())).await.unwrap();
        drop(in_tx);
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"ping", "the far side reads the bytes, then the end");
        far.write_all(b"pong").await.unwrap();
        drop(far);
        assert_eq!(out_rx.recv().await.unwrap().unwrap(), b"pong");
        assert!(
            out_rx.recv().await.is_none(),
            "the far side's end ends the stream"
        );
        spliced.await.unwrap();
    }

    #[tokio::test]
    async fn the_connection_closing_its_side_first_still_gets_the_answer() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (in_tx, in_rx) = mpsc::channel::<Result<Vec<u8>, Status>>(4);
        let (out_tx, mut out_rx) = mpsc::channel(4);
        let spliced = tokio::spawn(splice(near, ReceiverStream::new(in_rx), out_tx, |d| d));
        far.write_all(b"question").await.unwrap();
        far.shutdown().await.unwrap();
        assert_eq!(out_rx.recv().await.unwrap().unwrap(), b"question");
        assert!(
            out_rx.recv().await.is_none(),
            "the half-close ends the stream"
        );
        in_tx.send(Ok(b"answer".to_vec())).await.unwrap();
        drop(in_tx);
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert_eq!(got, b"answer");
        spliced.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_stream_drops_the_connection() {
        let (near, mut far) = tokio::io::duplex(1024);
        let (in_tx, in_rx) = mpsc::channel::<Result<Vec<u8>, Status>>(4);
        let (out_tx, _out_rx) = mpsc::channel::<Result<Vec<u8>, Status>>(4);
        let spliced = tokio::spawn(splice(near, ReceiverStream::new(in_rx), out_tx, |d| d));
        in_tx.send(Err(Status::cancelled("gone"))).await.unwrap();
        spliced.await.unwrap();
        let mut got = Vec::new();
        far.read_to_end(&mut got).await.unwrap();
        assert!(got.is_empty(), "the far side sees the connection closed");
    }
}
