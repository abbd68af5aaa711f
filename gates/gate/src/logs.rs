//! Streaming a log file from an offset, optionally following it as it grows
//! until the attempt has ended and everything was read.

use std::fs::File;
use std::future::Future;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gantry_proto::v1::{GateReadLogsResponse, LogChunk, LogStream};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::{GateError, Result};

/// The file name gates give a log stream in an attempt's directory:
/// `stdout` or `stderr`.
pub fn log_file_name(stream: LogStream) -> &'static str {
    if stream == LogStream::Stderr {
        "stderr"
    } else {
        "stdout"
    }
}

/// Largest piece of a log sent in one message.
pub const LOG_CHUNK_BYTES: usize = 1 << 20;
/// How often a followed log is checked for growth.
pub const FOLLOW_POLL: Duration = Duration::from_millis(25);
/// Messages buffered per reader before back-pressure.
const LOG_BUFFER: usize = 4;

/// The stream a ReadLogs handler returns.
pub type LogResponses = ReceiverStream<Result<GateReadLogsResponse, Status>>;

/// Reads one log from any offset: a local file ([`FileLogReader`]) or one a
/// provider reaches some other way (e.g. on a remote host over SFTP).
#[tonic::async_trait]
pub trait LogReader: Send + 'static {
    /// Up to `max` bytes at `offset`; empty at the end of what is written so
    /// far, or while the log does not exist yet.
    async fn read_at(&mut self, offset: u64, max: usize) -> Result<Vec<u8>>;
}

/// Where and how to read one log.
pub struct LogRead {
    /// The log.
    pub reader: Box<dyn LogReader>,
    /// Which stream it is, echoed in every chunk.
    pub stream: LogStream,
    /// Byte offset to start at.
    pub offset: u64,
    /// Keep reading until the attempt ended, then send `eof`.
    pub follow: bool,
}

/// Stream `read.reader` in chunks of up to [`LOG_CHUNK_BYTES`]. With `follow`,
/// poll for growth every [`FOLLOW_POLL`]; once `ended()` says the attempt
/// ended, send the rest and a last chunk with `eof = true`. The stream also
/// ends when the client goes away or `stop` becomes true.
pub fn read_log_file<F, Fut>(read: LogRead, ended: F, stop: watch::Receiver<bool>) -> LogResponses
where
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Result<bool>> + Send,
{
    let (out, rx) = mpsc::channel(LOG_BUFFER);
    tokio::spawn(async move {
        let mut stop = stop;
        let result = tokio::select! {
            r = pump(read, ended, &out) => r,
            _ = out.closed() => Ok(()),
            Ok(_) = stop.wait_for(|s| *s) => Ok(()),
        };
        if let Err(err) = result {
            let _ = out.send(Err(err.into())).await;
        }
    });
    ReceiverStream::new(rx)
}

type Out = mpsc::Sender<Result<GateReadLogsResponse, Status>>;

async fn pump<F, Fut>(read: LogRead, mut ended: F, out: &Out) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<bool>>,
{
    let mut reader = read.reader;
    let mut offset = read.offset;
    let send = |offset: u64, data: Vec<u8>, eof: bool| {
        let chunk = LogChunk {
            stream: read.stream as i32,
            offset,
            data,
            eof,
        };
        out.send(Ok(GateReadLogsResponse { chunk: Some(chunk) }))
    };
    loop {
        let data = reader.read_at(offset, LOG_CHUNK_BYTES).await?;
        if !data.is_empty() {
            let len = data.len() as u64;
            send(offset, data, false).await.map_err(closed)?;
            offset += len;
            continue;
        }
        if !read.follow {
            return Ok(());
        }
        if ended().await? {
            // Everything written before the end is in the file now.
            loop {
                let data = reader.read_at(offset, LOG_CHUNK_BYTES).await?;
                if data.is_empty() {
                    break;
                }
                let len = data.len() as u64;
                send(offset, data, false).await.map_err(closed)?;
                offset += len;
            }
            send(offset, Vec::new(), true).await.map_err(closed)?;
            return Ok(());
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn closed<T>(_: mpsc::error::SendError<T>) -> GateError {
    GateError::Unavailable("the log reader went away".into())
}

/// A log in a file this process can open (opened lazily: a missing file
/// reads as empty), read with `pread` on the blocking pool.
pub struct FileLogReader {
    path: PathBuf,
    file: Option<Arc<File>>,
}

impl FileLogReader {
    /// A reader of `path`.
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }
}

#[tonic::async_trait]
impl LogReader for FileLogReader {
    async fn read_at(&mut self, offset: u64, max: usize) -> Result<Vec<u8>> {
        if self.file.is_none() {
            match File::open(&self.path) {
                Ok(file) => self.file = Some(Arc::new(file)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => {
                    return Err(GateError::io(format!("open {}", self.path.display()))(e));
                }
            }
        }
        let file = self.file.clone().expect("opened above");
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = vec![0; max];
            let mut filled = 0;
            while filled < buf.len() {
                match file.read_at(&mut buf[filled..], offset + filled as u64) {
                    Ok(0) => break,
                    Ok(n) => filled += n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(GateError::io(format!("read {}", path.display()))(e)),
                }
            }
            buf.truncate(filled);
            Ok(buf)
        })
        .await
        .map_err(|e| GateError::Internal(format!("log read task failed: {e}")))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio_stream::StreamExt;

    fn request(path: PathBuf, offset: u64, follow: bool) -> LogRead {
        LogRead {
            reader: Box::new(FileLogReader::new(path)),
            stream: LogStream::Stdout,
            offset,
            follow,
        }
    }

    async fn collect(stream: LogResponses) -> Vec<LogChunk> {
        stream.map(|r| r.unwrap().chunk.unwrap()).collect().await
    }

    #[tokio::test]
    async fn reads_from_an_offset_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let big = vec![b'x'; LOG_CHUNK_BYTES + 10];
        std::fs::write(&path, &big).unwrap();
        let (_tx, stop) = watch::channel(false);
        let chunks = collect(read_log_file(
            request(path, 5, false),
            || async { Ok(true) },
            stop,
        ))
        .await;
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].offset, 5);
        assert_eq!(chunks[0].data.len(), LOG_CHUNK_BYTES);
        assert_eq!(chunks[1].offset, 5 + LOG_CHUNK_BYTES as u64);
        assert_eq!(chunks[1].data.len(), 5);
        assert!(chunks.iter().all(|c| !c.eof));
    }

    #[tokio::test]
    async fn follows_growth_until_ended_then_sends_eof() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let ended = Arc::new(AtomicBool::new(false));
        let (_tx, stop) = watch::channel(false);
        let flag = ended.clone();
        let stream = read_log_file(
            request(path.clone(), 0, true),
            move || {
                let flag = flag.clone();
                async move { Ok(flag.load(Ordering::SeqCst)) }
            },
            stop,
        );
        let writer = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(60)).await;
            let mut f = std::fs::File::create(&path).unwrap();
            f.write_all(b"hello ").unwrap();
            tokio::time::sleep(Duration::from_millis(60)).await;
            f.write_all(b"world").unwrap();
            ended.store(true, Ordering::SeqCst);
        });
        let chunks = collect(stream).await;
        writer.await.unwrap();
        let text: Vec<u8> = chunks.iter().flat_map(|c| c.data.clone()).collect();
        assert_eq!(text, b"hello world");
        let last = chunks.last().unwrap();
        assert!(last.eof && last.data.is_empty() && last.offset == 11);
    }

    #[tokio::test]
    async fn stops_following_on_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, stop) = watch::channel(false);
        let stream = read_log_file(
            request(dir.path().join("none"), 0, true),
            || async { Ok(false) },
            stop,
        );
        tx.send(true).unwrap();
        assert!(collect(stream).await.is_empty());
    }
}
