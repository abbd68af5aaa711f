//! The client API (`gantry.v1.Gantry`): thin handlers that authenticate the
//! caller, convert input, call the store, convert output.

mod files;
mod fits;
mod forward;
mod jobs;
mod watch;

use std::pin::Pin;

use futures::Stream;
use gantry_proto::Principal;
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::error::CoreError;
use crate::links::Ctx;
use crate::store::{ArrayRow, JobRow};
use gantry_proto::v1::Job;

/// A server stream of `T`.
pub type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The service behind the client API.
#[derive(Clone)]
pub struct GantryService {
    ctx: Ctx,
}

impl GantryService {
    /// A service over `ctx`.
    pub fn new(ctx: Ctx) -> Self {
        Self { ctx }
    }

    fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        let principal = Principal::from_request(request, &self.ctx.config.installation)
            .map_err(|e| CoreError::Unauthenticated(e.to_string()))?;
        Ok(Caller::new(principal, &self.ctx.config)?)
    }

    /// The job, if the caller may see it; NOT_FOUND otherwise (no leak of
    /// existence). An array's id is refused with how to name one of its tasks.
    async fn visible_job(&self, caller: &Caller, id: u64) -> Result<JobRow, Status> {
        match self.visible(caller, id).await? {
            Visible::Job(job) => Ok(*job),
            Visible::Array(array) => Err(CoreError::Precondition(format!(
                "job {id} is an array of {} tasks; name one task as {id}_INDEX \
                 (`gantry ls --array {id}` lists them)",
                array.task_count
            ))
            .into()),
        }
    }

    /// The job or array `id`, if the caller may see it; NOT_FOUND otherwise.
    async fn visible(&self, caller: &Caller, id: u64) -> Result<Visible, Status> {
        gantry_proto::rpc_trace::record_job(id);
        let store = &self.ctx.store;
        let config = &self.ctx.config;
        if let Some(job) = store.job(id).await? {
            if caller.may_access(&job.owner, config) {
                return Ok(Visible::Job(Box::new(job)));
            }
        } else if let Some(array) = store.array(id).await?
            && caller.may_access(&array.owner, config)
        {
            return Ok(Visible::Array(Box::new(array)));
        }
        Err(CoreError::JobNotFound(id).into())
    }

    /// An array on the wire, its tasks counted as of now.
    async fn array_job(&self, array: ArrayRow) -> Result<Job, Status> {
        Ok(self.ctx.store.array_view(array).await?.to_proto())
    }

    /// The array `id` (after an op on it) on the wire.
    async fn array_job_by_id(&self, id: u64) -> Result<Job, Status> {
        let array = self
            .ctx
            .store
            .array(id)
            .await?
            .ok_or(CoreError::JobNotFound(id))?;
        self.array_job(array).await
    }
}

/// A job or an array of tasks.
enum Visible {
    Job(Box<JobRow>),
    Array(Box<ArrayRow>),
}

impl Visible {
    /// Its id (jobs and arrays share one id sequence).
    fn id(&self) -> u64 {
        match self {
            Visible::Job(job) => job.id,
            Visible::Array(array) => array.id,
        }
    }
}
