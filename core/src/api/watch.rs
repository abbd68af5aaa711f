//! WatchEvents: history from the database, then new events straight from the
//! commits as they land (no query per commit); a watcher that falls behind
//! the broadcast catches up from the database again.

use gantry_proto::v1::{JobEvent, WatchEventsRequest, WatchEventsResponse};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use super::{GantryService, ResponseStream};

/// Events per message when catching up.
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
            let wanted = |e: &JobEvent| {
                (req.job_ids.is_empty() || req.job_ids.contains(&e.job_id))
                    && owner.as_deref().is_none_or(|o| o == e.owner)
            };
            // Subscribe before the first read so nothing committed in between is missed.
            let mut commits = store.subscribe();
            let mut after = req.after_seq;
            if req.only_new {
                // Read after subscribing: what commits in between is in the
                // broadcast, and only what is above `after` is sent.
                after = match store.max_seq().await {
                    Ok(seq) => seq,
                    Err(e) => {
                        let _ = tx.send(Err(e.into())).await;
                        return;
                    }
                };
                let start = WatchEventsResponse {
                    events: Vec::new(),
                    through_seq: after,
                };
                if tx.send(Ok(start)).await.is_err() {
                    return;
                }
            }
            'catch_up: loop {
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
                        if tx
                            .send(Ok(WatchEventsResponse {
                                events,
                                through_seq: 0,
                            }))
                            .await
                            .is_err()
                        {
                            return;
                        }
                    }
                    if !full {
                        break;
                    }
                }
                if !req.follow {
                    return;
                }
                loop {
                    let commit = tokio::select! {
                        _ = tx.closed() => return,
                        commit = commits.recv() => commit,
                    };
                    match commit {
                        Ok(commit) => {
                            let events: Vec<JobEvent> = commit
                                .events
                                .iter()
                                .filter(|e| e.seq > after && wanted(e))
                                .cloned()
                                .collect();
                            after = after.max(commit.seq);
                            if !events.is_empty()
                                && tx
                                    .send(Ok(WatchEventsResponse {
                                        events,
                                        through_seq: 0,
                                    }))
                                    .await
                                    .is_err()
                            {
                                return;
                            }
                        }
                        Err(broadcast::error::RecvError::Lagged(_)) => continue 'catch_up,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        });
        Box::pin(ReceiverStream::new(rx))
    }
}
