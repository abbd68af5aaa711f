//! The gRPC `Scheduler` service: authorizes the peer (only the core), then
//! hands the stream to a task that drives one [`Session`]. One session at a
//! time: a newer one (gantryd reconnected) ends the older.

use std::sync::Arc;

use futures::{FutureExt, Stream, StreamExt};
use gantry_proto::Principal;
use gantry_proto::identity::IdentityError;
use gantry_proto::v1::scheduler_server::Scheduler;
use gantry_proto::v1::{SessionRequest, SessionResponse};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::domain::Batch;
use crate::error::SessionError;
use crate::policy::PolicyConfig;
use crate::session::Session;

/// Plans buffered for gantryd before the session waits for it to read.
const RESPONSE_BUFFER: usize = 8;
/// At most this many waiting messages are applied before planning once.
const MAX_DRAIN: usize = 1024;
/// How often passes run when time alone can change a plan.
const TICK: std::time::Duration = std::time::Duration::from_secs(1);
/// The generation that means "shutting down".
const STOPPED: u64 = u64::MAX;

/// The built-in scheduler, as a tonic service.
#[derive(Debug, Clone)]
pub struct SchedulerService {
    installation: String,
    config: PolicyConfig,
    generation: Arc<watch::Sender<u64>>,
}

/// Ends every session of a [`SchedulerService`] (for a graceful stop: a
/// long-lived stream would otherwise keep the server waiting).
#[derive(Debug, Clone)]
pub struct SessionStopper(Arc<watch::Sender<u64>>);

impl SessionStopper {
    /// End all sessions now and refuse new ones.
    pub fn stop_all(&self) {
        self.0.send_replace(STOPPED);
    }
}

impl SchedulerService {
    /// A scheduler that accepts the core of `installation` and plans with `config`.
    pub fn new(installation: impl Into<String>, config: PolicyConfig) -> Self {
        Self {
            installation: installation.into(),
            config,
            generation: Arc::new(watch::channel(0).0),
        }
    }

    /// A handle that ends every session (call on shutdown).
    pub fn stopper(&self) -> SessionStopper {
        SessionStopper(self.generation.clone())
    }
}

/// Only the core may call the scheduler.
fn authorize<T>(request: &Request<T>, installation: &str) -> Result<(), Status> {
    match Principal::from_request(request, installation) {
        Ok(Principal::Core) => Ok(()),
        Ok(other) => Err(Status::permission_denied(format!(
            "`{other}` may not call the scheduler; only the core (gantryd) may"
        ))),
        Err(e @ IdentityError::WrongInstallation { .. }) => {
            Err(Status::permission_denied(e.to_string()))
        }
        Err(e) => Err(Status::unauthenticated(e.to_string())),
    }
}

#[tonic::async_trait]
impl Scheduler for SchedulerService {
    type SessionStream = ReceiverStream<Result<SessionResponse, Status>>;

    async fn session(
        &self,
        request: Request<Streaming<SessionRequest>>,
    ) -> Result<Response<Self::SessionStream>, Status> {
        authorize(&request, &self.installation)?;
        let mut me = 0;
        let accepted = self.generation.send_if_modified(|g| {
            if *g == STOPPED {
                return false;
            }
            *g += 1;
            me = *g;
            true
        });
        if !accepted {
            return Err(Status::unavailable("the scheduler is shutting down"));
        }
        let (tx, rx) = mpsc::channel(RESPONSE_BUFFER);
        let stop = self.generation.subscribe();
        let session = Session::new(self.config.clone());
        tokio::spawn(drive(request.into_inner(), tx, session, stop, me));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

type Outbox = mpsc::Sender<Result<SessionResponse, Status>>;

/// Apply one message, or say why the session must end.
fn apply(session: &mut Session, request: SessionRequest) -> Result<(), SessionError> {
    let seq = request.seq;
    let batch = Batch::try_from(request).map_err(|source| SessionError::Invalid { seq, source })?;
    session.apply(batch)
}

/// What reading the inbound stream gave.
enum Inbound {
    /// Go on (a message was applied, or time passed).
    Proceed,
    Ended,
    Failed(SessionError),
}

fn take(session: &mut Session, item: Option<Result<SessionRequest, Status>>) -> Inbound {
    match item {
        Some(Ok(request)) => match apply(session, request) {
            Ok(()) => Inbound::Proceed,
            Err(e) => Inbound::Failed(e),
        },
        Some(Err(status)) => {
            tracing::debug!(%status, "gantryd's stream broke");
            Inbound::Ended
        }
        None => Inbound::Ended,
    }
}

/// Drive one session: wait for messages (or the timer), apply everything
/// already waiting, plan once, send the plan; until gantryd goes away, a
/// newer session starts, or the server stops.
pub(crate) async fn drive<S>(
    mut inbound: S,
    tx: Outbox,
    mut session: Session,
    mut stop: watch::Receiver<u64>,
    me: u64,
) where
    S: Stream<Item = Result<SessionRequest, Status>> + Unpin,
{
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut again = false;
    tracing::info!(session = me, "gantryd connected");
    loop {
        if again {
            // Let other sessions and tasks run between back-to-back passes.
            tokio::task::yield_now().await;
        } else {
            let got = tokio::select! {
                item = inbound.next() => take(&mut session, item),
                _ = tick.tick(), if session.needs_timer() => Inbound::Proceed,
                changed = stop.changed() => {
                    if changed.is_err() || *stop.borrow() != me {
                        let _ = tx.send(Err(Status::unavailable(
                            "this session ended: a newer session started or the scheduler is stopping",
                        ))).await;
                        break;
                    }
                    Inbound::Proceed
                }
                () = tx.closed() => Inbound::Ended,
            };
            match got {
                Inbound::Proceed => {}
                Inbound::Ended => break,
                Inbound::Failed(e) => {
                    tracing::warn!(error = %e, "ending the session");
                    let _ = tx.send(Err(e.into())).await;
                    break;
                }
            }
        }
        let mut ended = false;
        for _ in 0..MAX_DRAIN {
            let Some(item) = inbound.next().now_or_never() else {
                break;
            };
            match take(&mut session, item) {
                Inbound::Proceed => {}
                Inbound::Ended => {
                    ended = true;
                    break;
                }
                Inbound::Failed(e) => {
                    tracing::warn!(error = %e, "ending the session");
                    let _ = tx.send(Err(e.into())).await;
                    ended = true;
                    break;
                }
            }
        }
        if ended {
            break;
        }
        let planned = session.plan();
        again = planned.more;
        if let Some(plan) = planned.plan {
            tracing::debug!(
                seq = plan.based_on_seq,
                starts = plan.start_jobs.len(),
                creates = plan.create_partitions.len(),
                deletes = plan.delete_partitions.len(),
                reasons = plan.pending.len(),
                "plan"
            );
            if tx.send(Ok(plan.into())).await.is_err() {
                break;
            }
        }
    }
    tracing::info!(session = me, "session ended");
}
