//! The client API (`gantry.v1.Gantry`): thin handlers that authenticate the
//! caller, convert input, call the store, convert output.

mod files;
mod jobs;
mod watch;

use std::pin::Pin;

use futures::Stream;
use gantry_proto::Principal;
use tonic::{Request, Status};

use crate::auth::Caller;
use crate::error::CoreError;
use crate::links::Ctx;

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

    /// The job, if the caller may see it; NOT_FOUND otherwise (no leak of existence).
    async fn visible_job(&self, caller: &Caller, id: u64) -> Result<crate::store::JobRow, Status> {
        match self.ctx.store.job(id).await.map_err(Status::from)? {
            Some(job) if caller.may_access(&job.owner, &self.ctx.config) => Ok(job),
            _ => Err(CoreError::JobNotFound(id).into()),
        }
    }
}
