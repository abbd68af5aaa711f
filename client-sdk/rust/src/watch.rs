//! Following job events: the resuming event stream and waiting for an end.

use futures::{Stream, StreamExt};
use gantry_proto::v1::{Job, JobEvent, WatchEventsRequest};

use crate::client::Client;
use crate::error::{Error, Result};
use crate::is_end_state;
use crate::retry::{Backoff, RETRY_BUDGET};

impl Client {
    /// Job events with a sequence number above `after_seq`, in order; only
    /// those of `job_ids` unless it is empty. With `follow`, the stream stays
    /// open for new events. When the connection breaks (or gantryd goes away
    /// for less than about 30 s) the stream reconnects from the last sequence
    /// number it delivered, so no event is lost or repeated.
    pub fn watch(
        &self,
        after_seq: u64,
        job_ids: Vec<u64>,
        follow: bool,
    ) -> impl Stream<Item = Result<JobEvent>> + Send + 'static {
        self.events(Some(after_seq), job_ids, follow)
    }

    /// Job events from now on (no history), in order; only those of
    /// `job_ids` unless it is empty. The stream stays open and resumes as
    /// [`Self::watch`] does.
    pub fn watch_new(
        &self,
        job_ids: Vec<u64>,
    ) -> impl Stream<Item = Result<JobEvent>> + Send + 'static {
        self.events(None, job_ids, true)
    }

    /// The stream behind [`Self::watch`] (`Some(after_seq)`) and
    /// [`Self::watch_new`] (`None`: from where gantryd says it starts).
    fn events(
        &self,
        after_seq: Option<u64>,
        job_ids: Vec<u64>,
        follow: bool,
    ) -> impl Stream<Item = Result<JobEvent>> + Send + 'static {
        let mut client = self.raw();
        async_stream::stream! {
            // The last sequence number delivered (or where an only_new
            // stream began); `None` until gantryd has said where that is.
            let mut last = after_seq;
            let mut backoff = Backoff::new(RETRY_BUDGET);
            loop {
                let request = WatchEventsRequest {
                    after_seq: last.unwrap_or(0),
                    job_ids: job_ids.clone(),
                    follow,
                    only_new: last.is_none(),
                };
                let opened = client.watch_events(request).await;
                let mut events = match opened {
                    Ok(response) => {
                        backoff.reset(RETRY_BUDGET);
                        response.into_inner()
                    }
                    Err(status) => {
                        let error = Error::Status(status);
                        if error.is_retryable() && backoff.wait().await {
                            continue;
                        }
                        yield Err(error);
                        return;
                    }
                };
                loop {
                    match events.message().await {
                        Ok(Some(batch)) => {
                            let mut seen = *last.get_or_insert(batch.through_seq);
                            for event in batch.events {
                                if event.seq > seen {
                                    seen = event.seq;
                                    last = Some(seen);
                                    yield Ok(event);
                                }
                            }
                        }
                        Ok(None) if !follow => return,
                        Ok(None) => {
                            // A follow only ends when gantryd goes away: resume.
                            if !backoff.wait().await {
                                yield Err(Error::Protocol("gantryd keeps closing the event stream".into()));
                                return;
                            }
                            break;
                        }
                        Err(status) => {
                            let error = Error::Status(status);
                            if error.is_retryable() && backoff.wait().await {
                                break;
                            }
                            yield Err(error);
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Wait until the job reaches an end state (COMPLETED, FAILED or
    /// CANCELLED) and return it as it ended. `on_event` sees every change
    /// of the job from the moment of the call.
    /// For an array, its summary is read twice a second until every task
    /// has ended (`on_event` is not called).
    pub async fn wait(&self, job_id: u64, mut on_event: impl FnMut(&JobEvent)) -> Result<Job> {
        let job = self.get_retrying(job_id).await?;
        if is_end_state(job.state()) {
            return Ok(job);
        }
        if job.array.is_some() {
            loop {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                let job = self.get_retrying(job_id).await?;
                if is_end_state(job.state()) {
                    return Ok(job);
                }
            }
        }
        let events = self.watch(job.last_event_seq, vec![job_id], true);
        futures::pin_mut!(events);
        while let Some(event) = events.next().await {
            let event = event?;
            if event.job_id != job_id {
                continue;
            }
            on_event(&event);
            if is_end_state(event.to_state()) {
                return self.get_retrying(job_id).await;
            }
        }
        Err(Error::Protocol(format!(
            "the event stream ended before job {job_id} did"
        )))
    }

    /// `get`, repeated while gantryd is briefly unavailable.
    async fn get_retrying(&self, job_id: u64) -> Result<Job> {
        let mut backoff = Backoff::new(RETRY_BUDGET);
        loop {
            match self.get(job_id).await {
                Err(error) if error.is_retryable() && backoff.wait().await => continue,
                other => return other,
            }
        }
    }
}
