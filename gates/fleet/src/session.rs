//! One agent's session as its gate holds it: send a command, await the
//! reply of the same request id.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use gantry_gate::{GateError, Result};
use gantry_proto::AgentName;
use gantry_proto::v1::{AgentCommand, AgentReply, agent_command, agent_reply};
use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

/// How long a command may wait for its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The sending half of an agent's session.
pub struct Session {
    /// Who is on the other end.
    pub agent: AgentName,
    /// Unique among this gate's sessions.
    pub serial: u64,
    out: mpsc::Sender<Result<AgentCommand, Status>>,
    pending: Mutex<HashMap<u64, oneshot::Sender<agent_reply::Body>>>,
    next_request: AtomicU64,
}

impl Session {
    /// A session sending its commands into `out`.
    pub fn new(
        agent: AgentName,
        serial: u64,
        out: mpsc::Sender<Result<AgentCommand, Status>>,
    ) -> Self {
        Self {
            agent,
            serial,
            out,
            pending: Mutex::new(HashMap::new()),
            next_request: AtomicU64::new(1),
        }
    }

    fn pending(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<agent_reply::Body>>> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Send `body` and wait for the agent's reply. An error reply becomes the
    /// [`GateError`] the gate API would give; `subject` names the attempt or
    /// partition the command is about, for NOT_FOUND.
    pub async fn call(
        &self,
        body: agent_command::Body,
        subject: &str,
    ) -> Result<agent_reply::Body> {
        let request_id = self.next_request.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending().insert(request_id, tx);
        let gone = || {
            GateError::Unavailable(format!(
                "the agent of partition {} went away; try again when it is back",
                self.agent.partition
            ))
        };
        let command = AgentCommand {
            request_id,
            body: Some(body),
        };
        if self.out.send(Ok(command)).await.is_err() {
            self.pending().remove(&request_id);
            return Err(gone());
        }
        let reply = match tokio::time::timeout(COMMAND_TIMEOUT, rx).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(_)) => return Err(gone()),
            Err(_) => {
                self.pending().remove(&request_id);
                return Err(GateError::Unavailable(format!(
                    "the agent of partition {} did not answer within {}s",
                    self.agent.partition,
                    COMMAND_TIMEOUT.as_secs()
                )));
            }
        };
        match reply {
            agent_reply::Body::Error(e) => Err(error_from(e.code, e.message, subject)),
            other => Ok(other),
        }
    }

    /// Hand a reply to the command waiting for it; a reply nobody waits for
    /// (its command timed out) is dropped.
    pub fn answer(&self, reply: AgentReply) {
        let waiting = self.pending().remove(&reply.request_id);
        if let (Some(tx), Some(body)) = (waiting, reply.body) {
            let _ = tx.send(body);
        }
    }

    /// Tell the agent to power its machine off, without waiting for it.
    pub fn power_off(&self, reason: &str) {
        let command = AgentCommand {
            request_id: self.next_request.fetch_add(1, Ordering::Relaxed),
            body: Some(agent_command::Body::PowerOff(gantry_proto::v1::PowerOff {
                reason: reason.into(),
            })),
        };
        let _ = self.out.try_send(Ok(command));
    }
}

/// The gate API's error for an agent's error reply.
fn error_from(code: i32, message: String, subject: &str) -> GateError {
    match Code::from_i32(code) {
        Code::InvalidArgument => match message.split_once(": ") {
            Some((field, rest)) => GateError::invalid(field, rest),
            None => GateError::invalid("task", message),
        },
        Code::NotFound => GateError::NotFound {
            kind: "attempt",
            id: subject.to_string(),
        },
        Code::ResourceExhausted => GateError::ResourceExhausted(message),
        Code::FailedPrecondition => GateError::FailedPrecondition(message),
        Code::Unavailable => GateError::Unavailable(message),
        Code::Unimplemented => GateError::Unimplemented("that on a node agent"),
        _ => GateError::Internal(format!("the node agent failed: {message}")),
    }
}

/// An agent's answer for a gate error, as the gate API would give it.
pub fn error_reply(request_id: u64, err: GateError) -> AgentReply {
    let status = Status::from(err);
    AgentReply {
        request_id,
        body: Some(agent_reply::Body::Error(gantry_proto::v1::AgentError {
            code: status.code() as i32,
            message: status.message().to_string(),
        })),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_crosses_the_session_with_its_code_and_words() {
        let cases: [fn() -> GateError; 4] = [
            || GateError::invalid("task.argv", "is empty"),
            || GateError::ResourceExhausted("full".into()),
            || GateError::FailedPrecondition("still running".into()),
            || GateError::Unavailable("later".into()),
        ];
        for make in cases {
            let reply = error_reply(7, make());
            let Some(agent_reply::Body::Error(e)) = reply.body else {
                panic!("an error reply")
            };
            let back = error_from(e.code, e.message, "a1");
            assert_eq!(back.to_string(), make().to_string());
            assert_eq!(Status::from(back).code(), Status::from(make()).code());
        }
        let gone = error_from(Code::NotFound as i32, "whatever".into(), "a1");
        assert_eq!(gone.to_string(), GateError::no_attempt("a1").to_string());
    }
}
