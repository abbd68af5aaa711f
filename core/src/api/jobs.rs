//! Submit, get, list, cancel, hold, release and sites.

use gantry_proto::v1::gantry_server::Gantry;
use gantry_proto::v1::*;
use tonic::{Request, Response, Status, Streaming};

use super::{GantryService, ResponseStream, Visible};
use crate::error::{CoreError, FieldError};
use crate::job::ValidSpec;
use crate::job::spec::no_nul;
use crate::store::{JobFilter, NewJob, Op, Outcome, StoreHealth};

fn job_of(outcome: Outcome) -> Result<(Job, bool), Status> {
    match outcome {
        Outcome::Job(row, created) => Ok((row.to_proto(), created)),
        other => Err(Status::internal(format!("unexpected outcome {other:?}"))),
    }
}

impl GantryService {
    /// Hold or release a job (or an array's tasks) the caller may see.
    async fn set_hold<T>(
        &self,
        request: &Request<T>,
        job_id: u64,
        hold: bool,
    ) -> Result<Job, Status> {
        let caller = self.caller(request)?;
        self.visible(&caller, job_id).await?;
        let op = Op::Hold {
            job_id,
            actor: caller.principal.to_string(),
            hold,
        };
        Ok(self.answer(self.ctx.store.apply(op).await?).await?.0)
    }

    /// The job or array an op answered with, on the wire.
    async fn answer(&self, outcome: Outcome) -> Result<(Job, bool), Status> {
        match outcome {
            Outcome::Array(id, created) => Ok((self.array_job_by_id(id).await?, created)),
            Outcome::NewArray(view) => Ok((view.to_proto(), true)),
            other => job_of(other),
        }
    }
}

#[tonic::async_trait]
impl Gantry for GantryService {
    async fn submit_job(
        &self,
        request: Request<SubmitJobRequest>,
    ) -> Result<Response<SubmitJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let config = &self.ctx.config;
        let owner = caller.owner_for_submit(&req.on_behalf_of, config)?;
        let spec = req.spec.ok_or_else(|| {
            CoreError::from(FieldError::new("spec", "the request has no job spec"))
        })?;
        let spec = ValidSpec::parse(spec, |site| config.has_site(site)).map_err(CoreError::from)?;
        let never = self.ctx.sites.with_all(|sites| {
            super::fits::never_runs(&spec.resources, spec.walltime, spec.site.as_deref(), sites)
        });
        if let Some(e) = never {
            return Err(CoreError::from(e).into());
        }
        for (i, input) in spec.spec.inputs.iter().enumerate() {
            if !self.ctx.files.blob(&input.digest).exists() {
                return Err(CoreError::from(FieldError::new(
                    &format!("inputs[{i}].digest"),
                    "no uploaded file has this digest; upload it with UploadInput first",
                ))
                .into());
            }
        }
        if req.client_request_id.len() > 128 {
            return Err(CoreError::from(FieldError::new(
                "client_request_id",
                "at most 128 characters",
            ))
            .into());
        }
        no_nul("client_request_id", &req.client_request_id).map_err(CoreError::from)?;
        let submitted_by = match &caller.principal {
            p if caller.user.as_deref() == Some(owner.as_str())
                && matches!(p, gantry_proto::Principal::User(_)) =>
            {
                String::new()
            }
            p => p.to_string(),
        };
        let new = NewJob {
            spec,
            owner,
            submitted_by,
            request_id: (!req.client_request_id.is_empty()).then_some(req.client_request_id),
            is_admin: caller.sees_all(config),
        };
        let outcome = self.ctx.store.apply(Op::Submit(Box::new(new))).await?;
        let (job, created) = self.answer(outcome).await?;
        gantry_proto::rpc_trace::record_job(job.id);
        Ok(Response::new(SubmitJobResponse {
            job: Some(job),
            created,
        }))
    }

    async fn get_job(
        &self,
        request: Request<GetJobRequest>,
    ) -> Result<Response<GetJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.get_ref();
        let job = match (self.visible(&caller, req.job_id).await?, req.array_index) {
            (Visible::Job(job), None) => job.to_proto(),
            (Visible::Array(array), None) => self.array_job(*array).await?,
            (Visible::Array(array), Some(index)) => {
                let task = crate::store::Store::task_id(&array, index).ok_or_else(|| {
                    CoreError::from(FieldError::new(
                        "array_index",
                        format!(
                            "array {} has no task with index {index}; its indices are {}",
                            array.id, array.spec.array
                        ),
                    ))
                })?;
                self.visible_job(&caller, task).await?.to_proto()
            }
            (Visible::Job(_), Some(_)) => {
                return Err(CoreError::from(FieldError::new(
                    "array_index",
                    format!("job {} is not an array", req.job_id),
                ))
                .into());
            }
        };
        Ok(Response::new(GetJobResponse { job: Some(job) }))
    }

    async fn list_jobs(
        &self,
        request: Request<ListJobsRequest>,
    ) -> Result<Response<ListJobsResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let config = &self.ctx.config;
        let owner = match (caller.owner_scope(config)?, req.owner.is_empty()) {
            (None, true) => None,
            (None, false) => Some(req.owner.clone()),
            (Some(me), true) => Some(me),
            (Some(me), false) if me == req.owner => Some(me),
            (Some(_), false) => {
                return Err(
                    CoreError::Forbidden("only admins may list other users' jobs".into()).into(),
                );
            }
        };
        let mut states = Vec::new();
        for (i, s) in req.states.iter().enumerate() {
            match JobState::try_from(*s) {
                Ok(state) if state != JobState::Unspecified => states.push(state),
                _ => {
                    return Err(CoreError::from(FieldError::new(
                        &format!("states[{i}]"),
                        format!("{s} is not a job state"),
                    ))
                    .into());
                }
            }
        }
        let before_id = if req.page_token.is_empty() {
            None
        } else {
            Some(req.page_token.parse::<u64>().map_err(|_| {
                CoreError::from(FieldError::new(
                    "page_token",
                    "not a token this server gave; start again without one",
                ))
            })?)
        };
        let limit = match req.page_size {
            0 => 100,
            n => n.min(1000),
        };
        let grouped = req.group_arrays
            && req.array_id == 0
            && states.is_empty()
            && req.site.is_empty()
            && req.labels.is_empty();
        let filter = JobFilter {
            owner,
            states,
            site: (!req.site.is_empty()).then_some(req.site),
            labels: req.labels.into_iter().collect(),
            array_id: (req.array_id != 0).then_some(req.array_id),
            no_tasks: grouped,
            before_id,
            limit,
        };
        let store = &self.ctx.store;
        // Newest first: jobs and (when grouped) arrays merged by id.
        let mut page: Vec<Visible> = store
            .list_jobs(&filter)
            .await?
            .into_iter()
            .map(|r| Visible::Job(Box::new(r)))
            .collect();
        if grouped {
            let arrays = store
                .list_arrays(filter.owner.as_deref(), before_id, limit)
                .await?;
            page.extend(arrays.into_iter().map(|a| Visible::Array(Box::new(a))));
            page.sort_by_key(|entry| std::cmp::Reverse(entry.id()));
            page.truncate(limit as usize);
        }
        let next_page_token = match page.last() {
            Some(last) if page.len() as u32 == limit => last.id().to_string(),
            _ => String::new(),
        };
        let mut jobs = Vec::with_capacity(page.len());
        for entry in page {
            jobs.push(match entry {
                Visible::Job(job) => job.to_proto(),
                Visible::Array(array) => self.array_job(*array).await?,
            });
        }
        Ok(Response::new(ListJobsResponse {
            jobs,
            next_page_token,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<CancelJobRequest>,
    ) -> Result<Response<CancelJobResponse>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        no_nul("reason", &req.reason).map_err(CoreError::from)?;
        self.visible(&caller, req.job_id).await?;
        let op = Op::Cancel {
            job_id: req.job_id,
            actor: caller.principal.to_string(),
            reason: req.reason,
        };
        let (job, _) = self.answer(self.ctx.store.apply(op).await?).await?;
        Ok(Response::new(CancelJobResponse { job: Some(job) }))
    }

    async fn hold_job(
        &self,
        request: Request<HoldJobRequest>,
    ) -> Result<Response<HoldJobResponse>, Status> {
        let job = self
            .set_hold(&request, request.get_ref().job_id, true)
            .await?;
        Ok(Response::new(HoldJobResponse { job: Some(job) }))
    }

    async fn release_job(
        &self,
        request: Request<ReleaseJobRequest>,
    ) -> Result<Response<ReleaseJobResponse>, Status> {
        let job = self
            .set_hold(&request, request.get_ref().job_id, false)
            .await?;
        Ok(Response::new(ReleaseJobResponse { job: Some(job) }))
    }

    type WatchEventsStream = ResponseStream<WatchEventsResponse>;

    async fn watch_events(
        &self,
        request: Request<WatchEventsRequest>,
    ) -> Result<Response<Self::WatchEventsStream>, Status> {
        let caller = self.caller(&request)?;
        let owner = caller.owner_scope(&self.ctx.config)?;
        Ok(Response::new(self.watch(request.into_inner(), owner)))
    }

    type ReadLogsStream = ResponseStream<ReadLogsResponse>;

    async fn read_logs(
        &self,
        request: Request<ReadLogsRequest>,
    ) -> Result<Response<Self::ReadLogsStream>, Status> {
        let caller = self.caller(&request)?;
        let req = request.into_inner();
        let job = self.visible_job(&caller, req.job_id).await?;
        Ok(Response::new(self.logs(job, req).await?))
    }

    type DownloadOutputsStream = ResponseStream<DownloadOutputsResponse>;

    async fn download_outputs(
        &self,
        request: Request<DownloadOutputsRequest>,
    ) -> Result<Response<Self::DownloadOutputsStream>, Status> {
        let caller = self.caller(&request)?;
        let job = self.visible_job(&caller, request.get_ref().job_id).await?;
        Ok(Response::new(self.outputs(job)?))
    }

    async fn upload_input(
        &self,
        request: Request<Streaming<UploadInputRequest>>,
    ) -> Result<Response<UploadInputResponse>, Status> {
        self.caller(&request)?;
        self.upload(request.into_inner()).await.map(Response::new)
    }

    type ForwardPortStream = ResponseStream<ForwardPortResponse>;

    async fn forward_port(
        &self,
        request: Request<Streaming<ForwardPortRequest>>,
    ) -> Result<Response<Self::ForwardPortStream>, Status> {
        let caller = self.caller(&request)?;
        let stream = self.forward(&caller, request.into_inner()).await?;
        Ok(Response::new(stream))
    }

    async fn list_sites(
        &self,
        request: Request<ListSitesRequest>,
    ) -> Result<Response<ListSitesResponse>, Status> {
        self.caller(&request)?;
        let mut sites = Vec::new();
        for (name, info) in self.ctx.sites.all() {
            let partitions = self.ctx.store.partitions(&name).await?;
            let active = self.ctx.store.active_jobs(&name).await?;
            let flavors = info.flavors();
            let desc = info.description.clone().unwrap_or_default();
            let (port_forward, elastic) = (info.can_forward_ports(), info.is_elastic());
            let run_as = desc.run_as;
            sites.push(Site {
                name,
                provider: desc.provider,
                version: desc.version,
                healthy: info.healthy,
                health_message: info.message,
                flavors,
                partitions: partitions.len() as u32,
                active_jobs: active.len() as u32,
                port_forward,
                elastic,
                run_as,
            });
        }
        let core = match &*self.ctx.store.health().borrow() {
            StoreHealth::Serving => CoreStatus {
                accepting_changes: true,
                message: String::new(),
            },
            StoreHealth::Faulted(fault) => CoreStatus {
                accepting_changes: false,
                message: fault.message.clone(),
            },
        };
        Ok(Response::new(ListSitesResponse {
            sites,
            core: Some(core),
        }))
    }
}
