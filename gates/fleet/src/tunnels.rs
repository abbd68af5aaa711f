//! Forwarded connections on their way through an agent: the gate asks the
//! agent to open one (OpenTunnel) and waits here for the agent's Tunnel
//! call that carries it.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gantry_gate::{GateError, Result};
use gantry_proto::AgentName;
use gantry_proto::v1::TunnelData;
use tokio::sync::{mpsc, oneshot};
use tonic::{Status, Streaming};

/// How long the gate waits for an agent's Tunnel call once the agent said
/// it connected.
pub const TUNNEL_WITHIN: Duration = Duration::from_secs(30);

/// An agent's Tunnel call, as the gate holds it.
pub struct TunnelCall {
    /// The bytes of the agent's first message.
    pub head: Vec<u8>,
    /// The agent's bytes after its first message.
    pub incoming: Streaming<TunnelData>,
    /// The bytes to the agent.
    pub out: mpsc::Sender<Result<TunnelData, Status>>,
}

/// Tunnels the gate waits for, by id.
#[derive(Default)]
pub struct Tunnels {
    waiting: Mutex<HashMap<String, (AgentName, oneshot::Sender<TunnelCall>)>>,
    next: AtomicU64,
}

/// A tunnel the gate waits for; forgotten when dropped.
pub struct Expected<'a> {
    /// Its id, for OpenTunnel.
    pub id: String,
    arrival: Option<oneshot::Receiver<TunnelCall>>,
    tunnels: &'a Tunnels,
}

impl Expected<'_> {
    /// The agent's call, once it comes.
    pub async fn arrival(&mut self) -> Result<TunnelCall> {
        let gone = || GateError::Unavailable("the agent did not open the tunnel".into());
        let arrival = self.arrival.take().ok_or_else(gone)?;
        match tokio::time::timeout(TUNNEL_WITHIN, arrival).await {
            Ok(Ok(call)) => Ok(call),
            _ => Err(GateError::Unavailable(format!(
                "the agent did not open the tunnel within {}s",
                TUNNEL_WITHIN.as_secs()
            ))),
        }
    }
}

impl Drop for Expected<'_> {
    fn drop(&mut self) {
        self.tunnels.waiting().remove(&self.id);
    }
}

impl Tunnels {
    fn waiting(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, (AgentName, oneshot::Sender<TunnelCall>)>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Wait for a tunnel from `agent`.
    pub fn expect(&self, agent: &AgentName) -> Expected<'_> {
        let id = format!("tunnel-{}", self.next.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = oneshot::channel();
        self.waiting().insert(id.clone(), (agent.clone(), tx));
        Expected {
            id,
            arrival: Some(rx),
            tunnels: self,
        }
    }

    /// Hand `agent`'s call for tunnel `id` to whoever waits for it;
    /// NOT_FOUND when nobody does, or for another agent.
    pub fn arrived(&self, id: &str, agent: &AgentName, call: TunnelCall) -> Result<(), Status> {
        let mut waiting = self.waiting();
        match waiting.get(id) {
            Some((expected, _)) if expected == agent => {
                let (_, tx) = waiting.remove(id).expect("just seen");
                tx.send(call)
                    .map_err(|_| Status::not_found(format!("tunnel {id} was given up on")))
            }
            _ => Err(Status::not_found(format!(
                "tunnel {id}: this gate waits for no such tunnel from this agent"
            ))),
        }
    }
}
