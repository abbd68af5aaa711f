//! The connection to gantryd and its unary calls.

use gantry_proto::v1::gantry_client::GantryClient;
use gantry_proto::v1::{
    CancelJobRequest, CoreStatus, GetJobRequest, HoldJobRequest, Job, JobSpec, ListJobsRequest,
    ListJobsResponse, ListSitesRequest, ListSitesResponse, ReleaseJobRequest, Site,
    SubmitJobRequest, SubmitJobResponse,
};
use tonic::transport::Channel;

use crate::JobRef;
use crate::config::ClientConfig;
use crate::error::{Error, Result, root_cause};
use crate::retry::{Backoff, RETRY_BUDGET};

/// The largest message the SDK sends or accepts.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;

/// A connection to gantryd. Cheap to clone: clones share one HTTP/2
/// connection, which reconnects by itself after a failure.
#[derive(Debug, Clone)]
pub struct Client {
    inner: GantryClient<Channel>,
    address: String,
}

/// The job inside a response, or a protocol error naming the call.
pub(crate) fn job_of(job: Option<Job>, call: &str) -> Result<Job> {
    job.ok_or_else(|| Error::Protocol(format!("{call} answered without a job")))
}

impl Client {
    /// Connect to gantryd now, so a wrong address or certificate is reported
    /// here, naming the address.
    pub async fn connect(config: &ClientConfig) -> Result<Self> {
        let endpoint = config.tls.endpoint(&config.address)?;
        let channel = endpoint.connect().await.map_err(|source| Error::Connect {
            address: config.address.clone(),
            reason: root_cause(&source),
            source,
        })?;
        Ok(Self::from_channel(channel, &config.address))
    }

    /// Wrap a channel made elsewhere (tests, custom transports).
    pub fn from_channel(channel: Channel, address: &str) -> Self {
        let inner = GantryClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_SIZE)
            .max_encoding_message_size(MAX_MESSAGE_SIZE);
        Self {
            inner,
            address: address.to_string(),
        }
    }

    /// The address this client talks to.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// The generated gRPC client, for calls the SDK does not wrap.
    pub fn raw(&self) -> GantryClient<Channel> {
        self.inner.clone()
    }

    /// Submit a job. A fresh UUID v7 `client_request_id` makes retries safe:
    /// the call is repeated with backoff for up to about 30 s while gantryd is
    /// unavailable or the connection breaks, and a repeat returns the job the
    /// first attempt created.
    pub async fn submit(&self, spec: JobSpec) -> Result<Job> {
        let request = SubmitJobRequest {
            spec: Some(spec),
            client_request_id: uuid::Uuid::now_v7().to_string(),
            on_behalf_of: String::new(),
        };
        let mut backoff = Backoff::new(RETRY_BUDGET);
        loop {
            match self.submit_request(request.clone()).await {
                Ok(response) => return job_of(response.job, "SubmitJob"),
                Err(error) if error.is_retryable() => {
                    tracing::debug!(%error, "submit failed; retrying with the same request id");
                    if !backoff.wait().await {
                        return Err(error);
                    }
                }
                Err(error) => return Err(error),
            }
        }
    }

    /// One `SubmitJob` call exactly as given, without retries.
    pub async fn submit_request(&self, request: SubmitJobRequest) -> Result<SubmitJobResponse> {
        Ok(self.raw().submit_job(request).await?.into_inner())
    }

    /// One job with its current state.
    pub async fn get(&self, job_id: u64) -> Result<Job> {
        let request = GetJobRequest {
            job_id,
            array_index: None,
        };
        let response = self.raw().get_job(request).await?;
        job_of(response.into_inner().job, "GetJob")
    }

    /// The task with `index` of array `array_id`.
    pub async fn get_task(&self, array_id: u64, index: u32) -> Result<Job> {
        let request = GetJobRequest {
            job_id: array_id,
            array_index: Some(index),
        };
        let response = self.raw().get_job(request).await?;
        job_of(response.into_inner().job, "GetJob")
    }

    /// The job a reference names: `42`, or `17_3` for index 3 of array 17.
    pub async fn resolve(&self, reference: JobRef) -> Result<Job> {
        match reference.index {
            None => self.get(reference.id).await,
            Some(index) => self.get_task(reference.id, index).await,
        }
    }

    /// One page of jobs matching a filter, newest first.
    pub async fn list(&self, request: ListJobsRequest) -> Result<ListJobsResponse> {
        Ok(self.raw().list_jobs(request).await?.into_inner())
    }

    /// Cancel a job; the answer shows its state after the cancel (an end
    /// state it already had is not an error).
    pub async fn cancel(&self, job_id: u64, reason: &str) -> Result<Job> {
        let request = CancelJobRequest {
            job_id,
            reason: reason.to_string(),
        };
        job_of(
            self.raw().cancel_job(request).await?.into_inner().job,
            "CancelJob",
        )
    }

    /// Keep a queued job from being scheduled until it is released.
    pub async fn hold(&self, job_id: u64) -> Result<Job> {
        let response = self.raw().hold_job(HoldJobRequest { job_id }).await?;
        job_of(response.into_inner().job, "HoldJob")
    }

    /// Undo a hold.
    pub async fn release(&self, job_id: u64) -> Result<Job> {
        let response = self.raw().release_job(ReleaseJobRequest { job_id }).await?;
        job_of(response.into_inner().job, "ReleaseJob")
    }

    /// The sites jobs can run on, healthy or not.
    pub async fn sites(&self) -> Result<Vec<Site>> {
        Ok(self.overview().await?.sites)
    }

    /// The sites and gantryd's own status (whether it accepts changes now,
    /// and why not) in one call. From a gantryd too old to say, the status
    /// reads as accepting.
    pub async fn overview(&self) -> Result<ListSitesResponse> {
        let mut response = self
            .raw()
            .list_sites(ListSitesRequest {})
            .await?
            .into_inner();
        response.core.get_or_insert(CoreStatus {
            accepting_changes: true,
            message: String::new(),
        });
        Ok(response)
    }
}
