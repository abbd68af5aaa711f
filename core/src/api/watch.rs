//! WatchEvents: history from the database, then new commits as they land.

use gantry_proto::v1::{WatchEventsRequest, WatchEventsResponse};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{GantryService, ResponseStream};

/// Events per message.
const PAGE: u32 = 1000;

impl GantryService {
    /// The stream behind WatchEvents; `owner` limits it to one user's jobs.
    pub(super) fn watch(
        &self,
        req: WatchEventsRequest,
        owner: Option<String>,
    ) -> ResponseStream<WatchEventsResponse> {
        let store = self.ctx.store.clone();
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(async move {
            // Subscribe before the first read so nothing committed in between is missed.
            let mut commits = store.subscribe();
            let mut after = req.after_seq;
            loop {
                let events = match store
                    .events(after, &req.job_ids, owner.as_deref(), PAGE)
                    .await
                {
                    Ok(events) => events,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let full = events.len() as u32 == PAGE;
                if let Some(last) = events.last() {
                    after = last.seq;
                    if tx.send(Ok(WatchEventsResponse { events })).await.is_err() {
                        return;
                    }
                }
                if full {
                    continue;
                }
                if !req.follow {
                    return;
                }
                loop {
                    tokio::select! {
                        _ = tx.closed() => return,
                        commit = commits.recv() => match commit {
                            Ok(c) if c.seq > after => break,
                            Ok(_) => {}
                            Err(broadcast::error::RecvError::Lagged(_)) => break,
                            Err(broadcast::error::RecvError::Closed) => return,
                        }
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}
