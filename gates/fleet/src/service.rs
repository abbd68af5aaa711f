//! The agent API (`agent.proto`) as an elastic gate serves it: Join trades a
//! token for a certificate, Renew a certificate for a new one, Session is an
//! agent's stream of commands and reports.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use gantry_gate::PartitionId;
use gantry_proto::splice::SPLICE_BUFFER;
use gantry_proto::v1::agent_server::Agent;
use gantry_proto::v1::{
    AgentCommand, AgentMessage, JoinRequest, JoinResponse, RenewRequest, RenewResponse, TunnelData,
    agent_message::Body,
};
use gantry_proto::{AgentName, Principal};
use tokio::sync::mpsc;
use tokio_stream::Stream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::fleet::{Fleet, agent_label};
use crate::machines::Machines;
use crate::session::Session;
use crate::tunnels::TunnelCall;

/// An agent that sends nothing for this long is taken for gone (agents
/// send a heartbeat every few seconds).
pub const SILENCE: Duration = Duration::from_secs(30);
/// How long an agent may take to say hello after opening a session.
const HELLO_WITHIN: Duration = Duration::from_secs(30);
/// Commands buffered per session.
const COMMAND_BUFFER: usize = 256;

/// The agent API over a [`Fleet`].
pub struct AgentService<M> {
    fleet: Arc<Fleet<M>>,
}

impl<M> AgentService<M> {
    /// Serve `fleet`'s agents.
    pub fn new(fleet: Arc<Fleet<M>>) -> Self {
        Self { fleet }
    }
}

fn unix_ms(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or_default()
}

impl<M: Machines> AgentService<M> {
    /// The calling agent, which must be one of this gate's.
    fn caller<T>(&self, request: &Request<T>) -> Result<(AgentName, SystemTime), Status> {
        let certs = request.peer_certs().ok_or_else(|| {
            Status::unauthenticated("present the agent's certificate (from Join)")
        })?;
        let leaf = certs.first().ok_or_else(|| {
            Status::unauthenticated("present the agent's certificate (from Join)")
        })?;
        let principal = Principal::from_der(leaf.as_ref(), &self.fleet.config.installation)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let not_after = x509_parser::parse_x509_certificate(leaf.as_ref())
            .map(|(_, c)| c.validity().not_after.timestamp())
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        match principal {
            Principal::Agent(agent)
                if agent.gate == self.fleet.config.gate
                    && PartitionId::parse("partition", &agent.partition).is_ok() =>
            {
                let expires = UNIX_EPOCH + Duration::from_secs(not_after.max(0) as u64);
                Ok((agent, expires))
            }
            other => Err(Status::permission_denied(format!(
                "{other} is not an agent of gate/{}",
                self.fleet.config.gate
            ))),
        }
    }

    fn sign(&self, csr_pem: &str, agent: &AgentName) -> Result<(String, SystemTime), Status> {
        self.fleet
            .issuer
            .sign(csr_pem, agent, self.fleet.config.cert_lifetime)
            .map_err(|e| Status::invalid_argument(format!("csr_pem: {e}")))
    }
}

/// The stream Session answers with.
pub type CommandStream = Pin<Box<dyn Stream<Item = Result<AgentCommand, Status>> + Send>>;

#[tonic::async_trait]
impl<M: Machines> Agent for AgentService<M> {
    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        let req = request.into_inner();
        let grant = self
            .fleet
            .tokens
            .redeem(&req.token)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        let agent = AgentName {
            gate: self.fleet.config.gate.clone(),
            partition: grant.partition,
            machine: grant.machine,
        };
        let (certificate_pem, expires) = self.sign(&req.csr_pem, &agent)?;
        let identity = Principal::Agent(agent.clone()).uri(&self.fleet.config.installation);
        tracing::info!(agent = %agent_label(&agent), "agent joined");
        Ok(Response::new(JoinResponse {
            certificate_pem,
            identity,
            expires_ms: unix_ms(expires),
        }))
    }

    async fn renew(
        &self,
        request: Request<RenewRequest>,
    ) -> Result<Response<RenewResponse>, Status> {
        let (agent, _) = self.caller(&request)?;
        let (certificate_pem, expires) = self.sign(&request.get_ref().csr_pem, &agent)?;
        Ok(Response::new(RenewResponse {
            certificate_pem,
            expires_ms: unix_ms(expires),
        }))
    }

    type SessionStream = CommandStream;

    async fn session(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        let (agent, expires) = self.caller(&request)?;
        let mut incoming = request.into_inner();
        let hello = match tokio::time::timeout(HELLO_WITHIN, incoming.message()).await {
            Ok(Ok(Some(AgentMessage {
                body: Some(Body::Hello(hello)),
            }))) => hello,
            Ok(Err(status)) => return Err(status),
            _ => {
                return Err(Status::invalid_argument(
                    "a session starts with the agent's hello",
                ));
            }
        };
        let (tx, rx) = mpsc::channel(COMMAND_BUFFER);
        let serial = self.fleet.next_serial();
        let session = Arc::new(Session::new(agent.clone(), serial, tx.clone()));
        self.fleet
            .hello(session.clone(), hello)
            .map_err(Status::from)?;
        let fleet = self.fleet.clone();
        tokio::spawn(async move {
            let expiry = expires
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            let expired = tokio::time::sleep(expiry);
            tokio::pin!(expired);
            loop {
                let next = tokio::select! {
                    next = tokio::time::timeout(SILENCE, incoming.message()) => next,
                    () = &mut expired => {
                        let _ = tx
                            .send(Err(Status::unauthenticated(
                                "the agent's certificate expired; renew it and reconnect",
                            )))
                            .await;
                        break;
                    }
                };
                match next {
                    Ok(Ok(Some(message))) => match message.body {
                        Some(Body::Reply(reply)) => session.answer(reply),
                        Some(Body::Jobs(jobs)) => {
                            let mut state = fleet.state();
                            for job in jobs.jobs {
                                fleet.agent_job(&mut state, &agent, job);
                            }
                        }
                        Some(Body::Heartbeat(_)) | Some(Body::Hello(_)) | None => {}
                    },
                    Ok(Ok(None)) | Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::warn!(agent = %agent_label(&agent), "agent silent; ending its session");
                        break;
                    }
                }
            }
            fleet.disconnected(&agent, serial);
        });
        let stream: CommandStream = Box::pin(ReceiverStream::new(rx));
        Ok(Response::new(stream))
    }

    type TunnelStream = Pin<Box<dyn Stream<Item = Result<TunnelData, Status>> + Send>>;

    async fn tunnel(
        &self,
        request: Request<Streaming<TunnelData>>,
    ) -> Result<Response<Self::TunnelStream>, Status> {
        let (agent, _) = self.caller(&request)?;
        let mut incoming = request.into_inner();
        let first = incoming.message().await?.ok_or_else(|| {
            Status::invalid_argument("tunnel_id: the first message must name the tunnel")
        })?;
        let (out, rx) = mpsc::channel(SPLICE_BUFFER);
        let call = TunnelCall {
            head: first.data,
            incoming,
            out,
        };
        self.fleet.tunnels.arrived(&first.tunnel_id, &agent, call)?;
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
