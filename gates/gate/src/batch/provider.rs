//! [`BatchProvider`]'s gate operations.

use std::collections::BTreeMap;

use gantry_proto::v1::{
    Capabilities, Flavor, GateJob, GateJobState, LogStream, Partition, PartitionState,
    StageInResponse,
};

use super::submit::{Submission, check_fits};
use super::{BatchProvider, BatchSystem, PartitionRecord, no_queue, poll, write_json};
use crate::error::{GateError, Result, attempt_found};
use crate::ids::{AttemptId, PartitionId};
use crate::logs::log_file_name;
use crate::provider::{Description, FileChunks, LogSource, Provider};
use crate::spec::JobSpec;
use crate::{AttemptRecord, GlobSet, JobHub};

#[tonic::async_trait]
impl<B: BatchSystem> Provider for BatchProvider<B> {
    fn hub(&self) -> &JobHub {
        &self.inner.hub
    }

    async fn describe(&self) -> Result<Description> {
        let flavors = self
            .inner
            .queues()
            .await?
            .into_iter()
            .map(|q| Flavor {
                name: q.name,
                capacity: Some(q.capacity),
                price_per_hour: 0.0,
                currency: String::new(),
                // One Gantry partition stands for the whole queue.
                max_partitions: 1,
                max_walltime_seconds: q.max_seconds,
                available: q.unavailable.is_none(),
                unavailable_reason: q.unavailable.unwrap_or_default(),
                is_default: q.default,
                default_walltime_seconds: q.default_seconds,
            })
            .collect();
        Ok(Description {
            provider: self.inner.system.provider().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            capabilities: Capabilities {
                staging: true,
                log_follow: true,
                elastic: false,
                chdir: true,
                secret_env: true,
                port_forward: false,
            },
            flavors,
            images: Vec::new(),
            run_as: Some(self.inner.config.run_as.info()),
        })
    }

    async fn create_partition(
        &self,
        id: &PartitionId,
        flavor: &str,
        _labels: &BTreeMap<String, String>,
    ) -> Result<Partition> {
        let inner = &self.inner;
        let kind = inner.system.queue_kind();
        let queues = inner.queues().await?;
        let queue = queues.iter().find(|q| q.name == flavor);
        let existing = inner.state().partitions.get(id.as_str()).cloned();
        let record = match (existing, queue) {
            (Some(r), _) => r,
            (None, None) => return Err(no_queue(kind, flavor, &queues)),
            (None, Some(_)) => {
                let record = PartitionRecord {
                    partition_id: id.to_string(),
                    flavor: flavor.to_string(),
                };
                {
                    let mut state = inner.state();
                    if let Some(other) = state.partitions.values().find(|r| r.flavor == flavor) {
                        // Describe says max_partitions 1: one Gantry
                        // partition stands for the whole queue.
                        return Err(GateError::ResourceExhausted(format!(
                            "{kind} `{flavor}` already has Gantry partition {}; \
                             a flavor here holds one at a time",
                            other.partition_id
                        )));
                    }
                    // Held before the write, so a racing create finds it.
                    state.partitions.insert(id.to_string(), record.clone());
                }
                let path = inner.partitions_dir.join(format!("{id}.json"));
                if let Err(e) = write_json(inner.host(), &path, &record).await {
                    inner.state().partitions.remove(id.as_str());
                    return Err(e);
                }
                record
            }
        };
        Ok(inner.to_partition(&record, queue))
    }

    async fn get_partition(&self, id: &PartitionId) -> Result<Partition> {
        let record = self
            .inner
            .state()
            .partitions
            .get(id.as_str())
            .cloned()
            .ok_or_else(|| GateError::no_partition(id.as_str()))?;
        let queue = self.inner.queue(&record.flavor).await?;
        Ok(self.inner.to_partition(&record, queue.as_ref()))
    }

    async fn delete_partition(&self, id: &PartitionId) -> Result<Partition> {
        let (record, jobs) = {
            let mut state = self.inner.state();
            let Some(record) = state.partitions.remove(id.as_str()) else {
                return Ok(Partition {
                    partition_id: id.to_string(),
                    state: PartitionState::Deleted as i32,
                    ..Default::default()
                });
            };
            let jobs: Vec<AttemptId> = state
                .attempts
                .values()
                .filter(|a| a.record.partition_id == id.as_str() && !a.job.state().is_final())
                .filter_map(|a| AttemptId::parse("attempt_id", &a.record.attempt_id).ok())
                .collect();
            (record, jobs)
        };
        for attempt in jobs {
            self.cancel_job(&attempt).await?;
        }
        self.inner
            .host()
            .remove_file(&self.inner.partitions_dir.join(format!("{id}.json")))
            .await?;
        let mut p = self.inner.to_partition(&record, None);
        p.state = PartitionState::Deleted as i32;
        p.message = "deleted".into();
        Ok(p)
    }

    async fn list_partitions(&self) -> Result<Vec<Partition>> {
        let records: Vec<PartitionRecord> =
            self.inner.state().partitions.values().cloned().collect();
        let queues = self.inner.queues().await?;
        Ok(records
            .iter()
            .map(|r| {
                let queue = queues.iter().find(|q| q.name == r.flavor);
                self.inner.to_partition(r, queue)
            })
            .collect())
    }

    async fn start_job(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        spec: JobSpec,
    ) -> Result<GateJob> {
        let inner = &self.inner;
        let (kind, name) = (inner.system.queue_kind(), inner.system.name());
        let flavor = {
            let state = inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str()) {
                return Ok(a.job.clone());
            }
            state
                .partitions
                .get(partition.as_str())
                .map(|p| p.flavor.clone())
                .ok_or_else(|| GateError::no_partition(partition.as_str()))?
        };
        let queue = inner.queue(&flavor).await?.ok_or_else(|| {
            GateError::FailedPrecondition(format!("{kind} {flavor} no longer exists"))
        })?;
        check_fits(kind, &queue, &spec)?;
        inner.system.check(&queue, &spec)?;
        let submitter = inner.submitter(&spec.owner).await?;
        let record = AttemptRecord {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            job_id: spec.job_id,
            native_job_id: 0,
            cancelled: false,
        };
        {
            // Claimed before submitting, so a concurrent repeat submits nothing.
            let mut state = inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str()) {
                return Ok(a.job.clone());
            }
            state.attempts.insert(
                attempt.to_string(),
                super::attempt(record.clone(), inner.dir(attempt)),
            );
        }
        let submitted = self.submit(attempt, record, &queue, &spec, submitter).await;
        let (job, cancel) = {
            let mut state = inner.state();
            let submitted = match submitted {
                Err(e) => {
                    state.attempts.remove(attempt.as_str());
                    return Err(e);
                }
                Ok(submitted) => submitted,
            };
            let a = state
                .attempts
                .get_mut(attempt.as_str())
                .expect("claimed above");
            match submitted {
                Submission::Taken(id) => {
                    a.record.native_job_id = id;
                    a.job.native_id = id.to_string();
                    a.job.reason = format!("{name}: submitted");
                }
                Submission::Unrecorded(reason) => {
                    tracing::error!(%attempt, %reason, "refusing a start");
                    a.job.set_state(GateJobState::Failed);
                    a.job.reason = reason;
                    a.job.end_time_ms = poll::now_ms();
                }
            }
            let id = a.record.native_job_id;
            // CancelJob came while it was being submitted.
            (a.job.clone(), a.record.cancelled && id != 0)
        };
        if cancel {
            self.cancel_job(attempt).await?;
        }
        inner.hub.publish(job.clone());
        inner.wake.notify_one();
        Ok(job)
    }

    async fn get_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let state = self.inner.state();
        attempt_found(
            state.attempts.get(attempt.as_str()).map(|a| a.job.clone()),
            attempt,
        )
    }

    async fn cancel_job(&self, attempt: &AttemptId) -> Result<GateJob> {
        let (job, record, path) = {
            let mut state = self.inner.state();
            let a = attempt_found(state.attempts.get_mut(attempt.as_str()), attempt)?;
            if a.job.state().is_final() {
                return Ok(a.job.clone());
            }
            a.record.cancelled = true;
            (a.job.clone(), a.record.clone(), a.dir.join("attempt.json"))
        };
        let id = record.native_job_id;
        if id != 0 {
            // Written first: a pending job the system drops without a
            // record is then known to have been cancelled, also by a
            // restarted gate.
            if let Err(e) = write_json(self.inner.host(), &path, &record).await {
                tracing::warn!(%attempt, error = %e, "cannot record the cancel");
            }
            self.inner.system.cancel(self.inner.host(), id).await?;
            self.inner.wake.notify_one();
        }
        Ok(job)
    }

    async fn release_job(&self, attempt: &AttemptId) -> Result<()> {
        {
            let mut state = self.inner.state();
            if let Some(a) = state.attempts.get(attempt.as_str())
                && !a.job.state().is_final()
            {
                return Err(GateError::release_running(attempt));
            }
            state.attempts.remove(attempt.as_str());
            state.unsure.remove(attempt.as_str());
        }
        self.inner
            .host()
            .remove_dir_all(&self.inner.dir(attempt))
            .await
    }

    async fn list_jobs(&self) -> Result<Vec<GateJob>> {
        Ok(self
            .inner
            .state()
            .attempts
            .values()
            .map(|a| a.job.clone())
            .collect())
    }

    async fn log_source(&self, attempt: &AttemptId, stream: LogStream) -> Result<LogSource> {
        let state = self.inner.state();
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        Ok(self.inner.host().log(a.dir.join(log_file_name(stream))))
    }

    async fn stage_in(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        files: FileChunks,
    ) -> Result<StageInResponse> {
        {
            let state = self.inner.state();
            if !state.partitions.contains_key(partition.as_str()) {
                return Err(GateError::no_partition(partition.as_str()));
            }
            if state.attempts.contains_key(attempt.as_str()) {
                return Err(GateError::stage_in_started(attempt));
            }
        }
        let work = self.inner.dir(attempt).join("work");
        self.inner.host().stage_in(&work, files).await
    }

    async fn stage_out(&self, attempt: &AttemptId, globs: GlobSet) -> Result<FileChunks> {
        let state = self.inner.state();
        let a = attempt_found(state.attempts.get(attempt.as_str()), attempt)?;
        if !a.job.state().is_final() {
            return Err(GateError::stage_out_running(attempt));
        }
        Ok(self.inner.host().stage_out(a.dir.join("work"), globs))
    }
}
