//! The gate's side of the supervisor socket: find the running
//! `gantry-supervisor` of the work directory or start one, read its
//! snapshot, then send commands and read events.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Mutex;
use std::time::Duration;

use gantry_gate::{GateError, Result};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UnixStream;
use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;

use crate::protocol::{Command, Event, Known, line};
use crate::supervisor::socket_path;

/// How long a new supervisor may take to say it is ready.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// Events from the supervisor, one per line.
pub type Events = Lines<BufReader<OwnedReadHalf>>;

/// A fresh connection: what the supervisor knows, and its live events.
pub struct Connection {
    /// Every attempt it remembers.
    pub snapshot: Vec<Known>,
    /// What follows the snapshot.
    pub events: Events,
    /// The supervisor's protocol version.
    pub protocol: u32,
    sender: mpsc::UnboundedSender<Vec<u8>>,
}

/// Where commands go: the current connection, if there is one.
#[derive(Default)]
pub struct Link {
    sender: Mutex<Option<mpsc::UnboundedSender<Vec<u8>>>>,
    queues: std::sync::atomic::AtomicBool,
    protocol: std::sync::atomic::AtomicU32,
}

impl Link {
    /// Send commands over `connection` from now on.
    pub fn attach(&self, connection: &Connection) {
        *self.lock() = Some(connection.sender.clone());
        let current = connection.protocol >= 4;
        if !current {
            tracing::warn!(
                protocol = connection.protocol,
                "an older gantry-supervisor runs for this work directory (it outlived an upgrade); \
                 queued jobs wait for a free slot until it exits"
            );
        }
        if connection.protocol < 3 {
            tracing::warn!(
                protocol = connection.protocol,
                "an older gantry-supervisor runs for this work directory; until it exits \
                 it sends no warning signals (--signal) and jobs get the gate's environment"
            );
        }
        if connection.protocol < crate::protocol::ACCOUNTS_PROTOCOL {
            tracing::warn!(
                protocol = connection.protocol,
                "an older gantry-supervisor runs for this work directory; until it exits \
                 it cannot run jobs as their owners, and such jobs wait"
            );
        }
        self.queues
            .store(current, std::sync::atomic::Ordering::Relaxed);
        self.protocol
            .store(connection.protocol, std::sync::atomic::Ordering::Relaxed);
    }

    /// The protocol version of the supervisor attached last.
    pub fn protocol(&self) -> u32 {
        self.protocol.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the supervisor keeps a queue ([`crate::protocol::Start::queued`]).
    pub fn queues(&self) -> bool {
        self.queues.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stop sending (the connection is gone).
    pub fn detach(&self) {
        *self.lock() = None;
    }

    /// Whether commands can be sent now.
    pub fn is_up(&self) -> bool {
        self.lock().as_ref().is_some_and(|s| !s.is_closed())
    }

    /// Queue `command` for the supervisor (in order; never blocks).
    pub fn send(&self, command: &Command) -> Result<()> {
        let sent = self
            .lock()
            .as_ref()
            .is_some_and(|s| s.send(line(command)).is_ok());
        if sent {
            Ok(())
        } else {
            Err(GateError::Unavailable(
                "the gate is reconnecting to its job supervisor; retry".into(),
            ))
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<mpsc::UnboundedSender<Vec<u8>>>> {
        self.sender.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Connect to the supervisor of `work_dir`, starting `binary` when none
/// answers, and read its snapshot.
pub async fn connect(work_dir: &Path, binary: &Path) -> Result<Connection> {
    let socket = socket_path(work_dir);
    let mut last = String::new();
    for _ in 0..3 {
        if let Ok(stream) = UnixStream::connect(&socket).await {
            match handshake(stream).await {
                Ok(connection) => return Ok(connection),
                Err(e) => last = e,
            }
        }
        if let Err(e) = start_supervisor(work_dir, binary).await {
            last = e;
        }
    }
    Err(GateError::Unavailable(format!(
        "cannot reach the job supervisor at {}: {last}",
        socket.display()
    )))
}

/// Start `binary` for `work_dir` in its own process group (a Ctrl-C to the
/// gate does not reach it; it outlives the gate) and wait for its `ready`.
async fn start_supervisor(work_dir: &Path, binary: &Path) -> std::result::Result<(), String> {
    // Its own log: it outlives the gate, whose stderr may be a pipe that
    // closes with it.
    let log_path = work_dir.join("supervisor.log");
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open {}: {e}", log_path.display()))?;
    let mut child = tokio::process::Command::new(binary)
        .arg("--dir")
        .arg(work_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .process_group(0)
        .kill_on_drop(false)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    let stdout = child.stdout.take().expect("piped");
    let mut lines = BufReader::new(stdout).lines();
    match tokio::time::timeout(READY_TIMEOUT, lines.next_line()).await {
        Ok(Ok(Some(line))) if line == "ready" => Ok(()),
        Ok(_) => {
            let status = child
                .wait()
                .await
                .map(|s| s.to_string())
                .unwrap_or_default();
            Err(format!(
                "{} exited ({status}); see {}",
                binary.display(),
                log_path.display()
            ))
        }
        Err(_) => Err(format!(
            "{} did not get ready in {READY_TIMEOUT:?}",
            binary.display()
        )),
    }
}

async fn handshake(stream: UnixStream) -> std::result::Result<Connection, String> {
    let (read, mut write) = stream.into_split();
    let mut events = BufReader::with_capacity(64 * 1024, read).lines();
    let mut snapshot = Vec::new();
    let protocol = loop {
        let next = tokio::time::timeout(READY_TIMEOUT, events.next_line()).await;
        let text = match next {
            Ok(Ok(Some(text))) => text,
            Ok(Ok(None)) => return Err("it closed the connection".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Err(_) => return Err("no snapshot in time".into()),
        };
        match serde_json::from_str::<Event>(&text) {
            Ok(Event::Known(known)) => snapshot.push(known),
            Ok(Event::Synced { protocol }) => break protocol,
            Ok(other) => tracing::debug!(?other, "event before the snapshot ended"),
            Err(e) => return Err(format!("unreadable line from the supervisor: {e}")),
        }
    };
    let (sender, mut commands) = mpsc::unbounded_channel::<Vec<u8>>();
    tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        while let Some(first) = commands.recv().await {
            buf.clear();
            buf.extend_from_slice(&first);
            while let Ok(more) = commands.try_recv() {
                buf.extend_from_slice(&more);
            }
            if write.write_all(&buf).await.is_err() {
                return;
            }
        }
    });
    Ok(Connection {
        snapshot,
        events,
        protocol,
        sender,
    })
}

/// The next event; `None` when the connection is gone.
pub async fn next_event(events: &mut Events) -> Option<Event> {
    loop {
        let text = events.next_line().await.ok()??;
        match serde_json::from_str(&text) {
            Ok(event) => return Some(event),
            Err(e) => tracing::warn!(error = %e, "ignoring an unreadable line from the supervisor"),
        }
    }
}

/// `gantry-supervisor` in the directory of the current executable.
pub fn default_binary() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("gantry-supervisor")))
        .unwrap_or_else(|| PathBuf::from("gantry-supervisor"))
}
