//! [`Agent`]: the agent's life. Join (or load the saved identity), make the
//! machine's one local partition, then keep a session with the gate open:
//! say hello with every attempt held, forward each change, answer each
//! command, renew the certificate half way through its life, and reconnect
//! whenever the session ends.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result};
use gantry_gate::{
    AttemptId, FileLogReader, GateError, JobSpec, LogReader, LogSource, PartitionId, Provider,
};
use gantry_gate_local::{HOST_FLAVOR, LocalProvider};
use gantry_proto::splice::{SPLICE_BUFFER, splice};
use gantry_proto::v1::agent_client::AgentClient;
use gantry_proto::v1::{
    AgentCommand, AgentError, AgentHello, AgentJobs, AgentMessage, AgentReply, Done, Heartbeat,
    LogStream, OpenTunnel, Partition, TunnelData, agent_command::Body as Command,
    agent_message::Body as Up, agent_reply::Body as Reply,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use crate::cutoff::DeadMansSwitch;
use crate::identity::{AgentIdentity, GateAddress};

/// How often the agent says it is alive.
pub const HEARTBEAT: Duration = Duration::from_secs(5);
/// The longest wait between attempts to reach the gate.
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Messages buffered towards the gate.
const UP_BUFFER: usize = 256;

/// A node agent, ready to run.
pub struct Agent {
    /// Where it keeps its identity and the local runner's work directory.
    pub dir: PathBuf,
    /// Its gate.
    pub gate: GateAddress,
    /// The join token, used only when no identity is saved yet.
    pub token: Option<String>,
    /// The local runner.
    pub local: Arc<LocalProvider>,
    /// Powers the machine off without the gate.
    pub switch: DeadMansSwitch,
    /// Fetches inputs and uploads outputs through the gate's signed URLs.
    pub http: reqwest::Client,
}

/// Why a session ended without an error.
enum Ended {
    /// Renew the certificate and reconnect.
    Renew,
    /// The partition is gone; the machine is powering off.
    PowerOff,
}

impl Agent {
    /// Run until told to power off. Errors reaching the gate are retried
    /// with backoff; the dead-man's switch ends a machine that never gets
    /// through.
    pub async fn run(self) -> Result<()> {
        tokio::spawn(self.switch.clone().watch());
        let mut identity = self.identity().await;
        let partition = PartitionId::parse("partition", &identity.name.partition)
            .context("the certificate names no valid partition")?;
        let labels = [("gantry-partition".to_string(), partition.to_string())].into();
        let local_partition = self
            .local
            .create_partition(&partition, HOST_FLAVOR, &labels)
            .await
            .context("making the machine's local partition")?;
        let mut backoff = Duration::from_secs(1);
        loop {
            if SystemTime::now() >= identity.renew_at && identity.valid() {
                match identity.renew(&self.dir, &self.gate).await {
                    Ok(renewed) => {
                        tracing::info!("renewed the agent certificate");
                        identity = renewed;
                    }
                    Err(err) => tracing::warn!(error = %err, "cannot renew the certificate yet"),
                }
            }
            match self.session(&identity, &local_partition).await {
                Ok(Ended::PowerOff) => return Ok(()),
                Ok(Ended::Renew) => backoff = Duration::from_secs(1),
                Err(err) => {
                    tracing::warn!(error = %format!("{err:#}"), "no session with the gate; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// The saved identity, or a new one for the join token; retried until it works.
    async fn identity(&self) -> AgentIdentity {
        let mut backoff = Duration::from_secs(1);
        loop {
            let result = match AgentIdentity::load(&self.dir) {
                Ok(Some(identity)) => return identity,
                Ok(None) => match &self.token {
                    Some(token) => AgentIdentity::join(&self.dir, &self.gate, token).await,
                    None => Err(anyhow::anyhow!(
                        "no identity in {} and no join token (GANTRY_AGENT_TOKEN)",
                        self.dir.display()
                    )),
                },
                Err(err) => Err(err),
            };
            if let Err(err) = result {
                tracing::warn!(error = %format!("{err:#}"), "cannot join the gate yet");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }

    /// One session, until it breaks, the certificate is due for renewal, or
    /// the gate says power off.
    async fn session(&self, identity: &AgentIdentity, partition: &Partition) -> Result<Ended> {
        let (up, rx) = mpsc::channel(UP_BUFFER);
        let (stop, stop_rx) = watch::channel(false);
        let mut changes = self.local.hub().watch(self.local.clone(), stop_rx);
        let mut jobs = Vec::new();
        loop {
            let batch = changes
                .next()
                .await
                .context("the local runner's listing ended")??;
            jobs.extend(batch.jobs);
            if batch.initial_done {
                break;
            }
        }
        let hello = AgentHello {
            version: env!("CARGO_PKG_VERSION").to_string(),
            resources: partition.capacity,
            jobs,
            hostname: hostname(),
            queue: partition.queue,
        };
        up.send(message(Up::Hello(hello))).await?;
        let mut client = AgentClient::new(self.gate.channel(Some(identity))?);
        let mut commands = client
            .session(ReceiverStream::new(rx))
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", self.gate.address, s.message()))?
            .into_inner();
        self.switch.connected();
        tracing::info!(gate = %self.gate.address, "session open");
        let forward = tokio::spawn(forward_changes(changes, up.clone()));
        let beat = tokio::spawn(heartbeat(up.clone()));
        let renew_in = identity
            .renew_at
            .duration_since(SystemTime::now())
            .unwrap_or_default();
        let renew = tokio::time::sleep(renew_in);
        tokio::pin!(renew);
        let ended = loop {
            let command = tokio::select! {
                command = commands.message() => command,
                () = &mut renew => break Ok(Ended::Renew),
            };
            match command {
                Ok(Some(command)) => {
                    if let Some(ended) = self.command(command, &up, &client).await {
                        break Ok(ended);
                    }
                }
                Ok(None) => break Err(anyhow::anyhow!("the gate ended the session")),
                Err(status) => break Err(anyhow::anyhow!("session: {}", status.message())),
            }
        };
        self.switch.disconnected();
        let _ = stop.send(true);
        forward.abort();
        beat.abort();
        ended
    }

    /// Carry out one command; `Some` when the session must end.
    async fn command(
        &self,
        command: AgentCommand,
        up: &mpsc::Sender<AgentMessage>,
        client: &AgentClient<Channel>,
    ) -> Option<Ended> {
        let id = command.request_id;
        let reply = move |result: Result<Reply, GateError>| AgentReply {
            request_id: id,
            body: Some(match result {
                Ok(body) => body,
                Err(err) => {
                    let status = tonic::Status::from(err);
                    Reply::Error(AgentError {
                        code: status.code() as i32,
                        message: status.message().to_string(),
                    })
                }
            }),
        };
        let result = match command.body {
            // Starts, cancels and releases are carried out in the order they
            // came: the gate relies on that order.
            Some(Command::StartJob(req)) => self.start_job(req).await,
            Some(Command::CancelJob(req)) => {
                match AttemptId::parse("attempt_id", &req.attempt_id) {
                    Ok(attempt) => self.local.cancel_job(&attempt).await.map(Reply::Job),
                    Err(err) => Err(err),
                }
            }
            Some(Command::ReleaseJob(req)) => match AttemptId::parse("attempt_id", &req.attempt_id)
            {
                Ok(attempt) => self
                    .local
                    .release_job(&attempt)
                    .await
                    .map(|()| Reply::Done(Done {})),
                Err(err) => Err(err),
            },
            // Inputs are in place before the start the gate sends next.
            Some(Command::FetchFiles(req)) => crate::files::fetch(&self.local, &self.http, req)
                .await
                .map(|()| Reply::Done(Done {})),
            Some(Command::ListFiles(req)) => {
                crate::files::list(&self.local, req).await.map(Reply::Files)
            }
            Some(Command::PutFiles(req)) => {
                let (local, http, up) = (self.local.clone(), self.http.clone(), up.clone());
                tokio::spawn(async move {
                    let result = crate::files::put(&local, &http, req).await;
                    let _ = up
                        .send(message(Up::Reply(reply(
                            result.map(|()| Reply::Done(Done {})),
                        ))))
                        .await;
                });
                return None;
            }
            // Reads may take a while on a busy disk; they go on beside the rest.
            Some(Command::ReadLog(req)) => {
                let local = self.local.clone();
                let up = up.clone();
                tokio::spawn(async move {
                    let result = read_log(&local, req).await;
                    let _ = up.send(message(Up::Reply(reply(result)))).await;
                });
                return None;
            }
            // Connecting may wait on a busy machine; it goes on beside the rest.
            Some(Command::OpenTunnel(open)) => {
                let (local, client, up) = (self.local.clone(), client.clone(), up.clone());
                tokio::spawn(async move {
                    let result = open_tunnel(&local, client, open).await;
                    let _ = up.send(message(Up::Reply(reply(result)))).await;
                });
                return None;
            }
            Some(Command::PowerOff(off)) => {
                let _ = up
                    .send(message(Up::Reply(reply(Ok(Reply::Done(Done {}))))))
                    .await;
                self.switch
                    .power_off(&format!("the gate says: {}", off.reason))
                    .await;
                return Some(Ended::PowerOff);
            }
            None => Err(GateError::invalid("body", "an empty command")),
        };
        let _ = up.send(message(Up::Reply(reply(result)))).await;
        None
    }

    async fn start_job(&self, req: gantry_proto::v1::StartJobRequest) -> Result<Reply, GateError> {
        let attempt = AttemptId::parse("attempt_id", &req.attempt_id)?;
        let partition = PartitionId::parse("partition_id", &req.partition_id)?;
        let spec = JobSpec::from_task(req.task)?;
        self.local
            .start_job(&attempt, &partition, spec)
            .await
            .map(Reply::Job)
    }
}

fn message(body: Up) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

async fn read_log(
    local: &LocalProvider,
    req: gantry_proto::v1::ReadLogRequest,
) -> Result<Reply, GateError> {
    let attempt = AttemptId::parse("attempt_id", &req.attempt_id)?;
    let stream = LogStream::try_from(req.stream).unwrap_or(LogStream::Stdout);
    let max = (req.max_bytes as usize).clamp(1, gantry_gate::LOG_CHUNK_BYTES);
    let data = match local.log_source(&attempt, stream).await? {
        LogSource::File(path) => FileLogReader::new(path).read_at(req.offset, max).await?,
        LogSource::Reader(mut reader) => reader.read_at(req.offset, max).await?,
    };
    Ok(Reply::Data(data))
}

/// Connect to the port for a running attempt and carry the connection over
/// a Tunnel call of its own; `done` once connected (the call goes on).
async fn open_tunnel(
    local: &LocalProvider,
    mut client: AgentClient<Channel>,
    open: OpenTunnel,
) -> Result<Reply, GateError> {
    let attempt = AttemptId::parse("attempt_id", &open.attempt_id)?;
    let port = gantry_gate::port_number("port", open.port)?;
    let conn = local.forward_port(&attempt, port).await?;
    let (out, rx) = mpsc::channel(SPLICE_BUFFER);
    let first = TunnelData {
        tunnel_id: open.tunnel_id,
        data: Vec::new(),
    };
    out.try_send(Ok(first)).expect("an empty channel has room");
    tokio::spawn(async move {
        // The gate's bytes come back as the answer to the call.
        let sent = ReceiverStream::new(rx).map_while(Result::ok);
        match client.tunnel(sent).await {
            Ok(answer) => {
                let incoming = answer.into_inner().map(|m| m.map(|m| m.data));
                splice(conn, incoming, out, |data| TunnelData {
                    tunnel_id: String::new(),
                    data,
                })
                .await;
            }
            Err(status) => {
                tracing::warn!(attempt = %attempt, error = %status.message(), "the gate refused a tunnel")
            }
        }
    });
    Ok(Reply::Done(Done {}))
}

/// Send each change of the local runner's attempts to the gate.
async fn forward_changes(mut changes: gantry_gate::WatchStream, up: mpsc::Sender<AgentMessage>) {
    while let Some(Ok(batch)) = changes.next().await {
        let jobs = AgentJobs { jobs: batch.jobs };
        if up.send(message(Up::Jobs(jobs))).await.is_err() {
            return;
        }
    }
}

async fn heartbeat(up: mpsc::Sender<AgentMessage>) {
    loop {
        tokio::time::sleep(HEARTBEAT).await;
        if up.send(message(Up::Heartbeat(Heartbeat {}))).await.is_err() {
            return;
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
