//! The WatchJobs hub: providers publish attempt changes, each watcher gets
//! the full listing of unreleased attempts first and then the changes.
//!
//! Messages are level-triggered (each carries an attempt's whole state), so a
//! watcher that falls behind the bounded broadcast buffer loses nothing by
//! skipping the backlog and receiving a fresh full listing instead.

use std::collections::HashMap;
use std::sync::Arc;

use gantry_proto::v1::{GateJob, WatchJobsResponse};
use tokio::sync::{broadcast, mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::provider::Provider;

/// Most attempts in one WatchJobs message.
pub const MAX_JOBS_PER_MESSAGE: usize = 1000;
/// Default number of changes buffered for slow watchers.
pub const DEFAULT_HUB_CAPACITY: usize = 16_384;
/// Messages buffered per watcher before its stream applies back-pressure.
const WATCH_BUFFER: usize = 8;

/// The stream a WatchJobs handler returns.
pub type WatchStream = ReceiverStream<Result<WatchJobsResponse, Status>>;

/// Fan-out of attempt changes to WatchJobs streams. Cheap to publish to with
/// no watcher; memory is bounded by its capacity.
#[derive(Debug, Clone)]
pub struct JobHub {
    tx: broadcast::Sender<GateJob>,
}

impl Default for JobHub {
    fn default() -> Self {
        Self::new(DEFAULT_HUB_CAPACITY)
    }
}

impl JobHub {
    /// A hub buffering up to `capacity` changes for each slow watcher.
    pub fn new(capacity: usize) -> Self {
        let (tx, _) = broadcast::channel(capacity.max(1));
        Self { tx }
    }

    /// Announce an attempt's new state (call after the state is visible to
    /// [`Provider::list_jobs`]).
    pub fn publish(&self, job: GateJob) {
        // No watcher is fine: the next one starts from a full listing.
        let _ = self.tx.send(job);
    }

    /// How many watchers are connected.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }

    /// A WatchJobs stream: the full listing from `provider` (batches of at
    /// most [`MAX_JOBS_PER_MESSAGE`], the last with `initial_done`), then the
    /// changes, coalescing what is available at once into one message. It
    /// ends when the client goes away or `stop` becomes true.
    pub fn watch<P: Provider>(&self, provider: Arc<P>, stop: watch::Receiver<bool>) -> WatchStream {
        let (out, rx) = mpsc::channel(WATCH_BUFFER);
        let tx = self.tx.clone();
        tokio::spawn(async move {
            let mut stop = stop;
            tokio::select! {
                _ = run_watch(provider, tx, &out) => {}
                _ = out.closed() => {}
                Ok(_) = stop.wait_for(|stopped| *stopped) => {}
            }
        });
        ReceiverStream::new(rx)
    }
}

type Out = mpsc::Sender<Result<WatchJobsResponse, Status>>;

/// Runs until the watcher goes away or listing fails.
async fn run_watch<P: Provider>(provider: Arc<P>, tx: broadcast::Sender<GateJob>, out: &Out) {
    loop {
        // Subscribe before listing: a change racing with the listing is then
        // sent after it, so the last word on every attempt is its newest state.
        let mut rx = tx.subscribe();
        let jobs = match provider.list_jobs().await {
            Ok(jobs) => jobs,
            Err(err) => {
                let _ = out.send(Err(err.into())).await;
                return;
            }
        };
        if send_listing(out, jobs).await.is_err() {
            return;
        }
        match forward_changes(&mut rx, out).await {
            Forward::Lagged => {
                tracing::debug!("a WatchJobs stream fell behind; sending a full listing again");
            }
            Forward::Done => return,
        }
    }
}

async fn send_listing(out: &Out, jobs: Vec<GateJob>) -> Result<(), ()> {
    let batches = jobs.len().div_ceil(MAX_JOBS_PER_MESSAGE).max(1);
    let mut jobs = jobs.into_iter();
    for i in 0..batches {
        let batch: Vec<GateJob> = jobs.by_ref().take(MAX_JOBS_PER_MESSAGE).collect();
        let msg = WatchJobsResponse {
            jobs: batch,
            initial_done: i + 1 == batches,
        };
        out.send(Ok(msg)).await.map_err(|_| ())?;
    }
    Ok(())
}

enum Forward {
    Lagged,
    Done,
}

async fn forward_changes(rx: &mut broadcast::Receiver<GateJob>, out: &Out) -> Forward {
    loop {
        let first = match rx.recv().await {
            Ok(job) => job,
            Err(broadcast::error::RecvError::Lagged(_)) => return Forward::Lagged,
            Err(broadcast::error::RecvError::Closed) => return Forward::Done,
        };
        let mut batch = Coalesced::default();
        batch.push(first);
        let mut lagged = false;
        while batch.jobs.len() < MAX_JOBS_PER_MESSAGE {
            match rx.try_recv() {
                Ok(job) => batch.push(job),
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    lagged = true;
                    break;
                }
                Err(_) => break,
            }
        }
        let msg = WatchJobsResponse {
            jobs: batch.jobs,
            initial_done: false,
        };
        if out.send(Ok(msg)).await.is_err() {
            return Forward::Done;
        }
        if lagged {
            return Forward::Lagged;
        }
    }
}

/// Changes in arrival order, keeping only the newest state of each attempt.
#[derive(Default)]
struct Coalesced {
    jobs: Vec<GateJob>,
    index: HashMap<String, usize>,
}

impl Coalesced {
    fn push(&mut self, job: GateJob) {
        match self.index.get(&job.attempt_id) {
            Some(&i) => self.jobs[i] = job,
            None => {
                self.index.insert(job.attempt_id.clone(), self.jobs.len());
                self.jobs.push(job);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_proto::v1::GateJobState;

    fn job(id: &str, state: GateJobState) -> GateJob {
        GateJob {
            attempt_id: id.into(),
            state: state as i32,
            ..Default::default()
        }
    }

    #[test]
    fn coalesces_by_attempt_keeping_the_newest() {
        let mut c = Coalesced::default();
        c.push(job("a", GateJobState::Running));
        c.push(job("b", GateJobState::Running));
        c.push(job("a", GateJobState::Failed));
        assert_eq!(c.jobs.len(), 2);
        assert_eq!(c.jobs[0].state, GateJobState::Failed as i32);
    }

    #[tokio::test]
    async fn listing_is_batched_and_ends_with_initial_done() {
        let (out, mut rx) = mpsc::channel(16);
        let jobs = (0..2500)
            .map(|i| job(&i.to_string(), GateJobState::Running))
            .collect();
        send_listing(&out, jobs).await.unwrap();
        let sizes: Vec<_> = (0..3)
            .map(|_| rx.try_recv().unwrap().unwrap())
            .map(|m| (m.jobs.len(), m.initial_done))
            .collect();
        assert_eq!(sizes, [(1000, false), (1000, false), (500, true)]);

        send_listing(&out, vec![]).await.unwrap();
        let m = rx.try_recv().unwrap().unwrap();
        assert!(m.jobs.is_empty() && m.initial_done);
    }

    #[tokio::test]
    async fn forwards_available_changes_in_one_message() {
        let hub = JobHub::new(16);
        let mut sub = hub.tx.subscribe();
        for id in ["a", "b", "a"] {
            hub.publish(job(id, GateJobState::Running));
        }
        drop(hub);
        let (out, mut rx) = mpsc::channel(16);
        assert!(matches!(
            forward_changes(&mut sub, &out).await,
            Forward::Done
        ));
        let m = rx.try_recv().unwrap().unwrap();
        assert_eq!(m.jobs.len(), 2);
        assert!(!m.initial_done);
    }

    #[tokio::test]
    async fn a_lagging_watcher_is_told_to_relist() {
        let hub = JobHub::new(2);
        let mut sub = hub.tx.subscribe();
        for i in 0..5 {
            hub.publish(job(&i.to_string(), GateJobState::Running));
        }
        let (out, _rx) = mpsc::channel(16);
        assert!(matches!(
            forward_changes(&mut sub, &out).await,
            Forward::Lagged
        ));
    }
}
