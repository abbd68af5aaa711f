//! Submitting one attempt: what no node could run is refused; the
//! attempt's files are written and the batch job handed to sbatch.

use gantry_gate::{AttemptId, Command, GateError, JobSpec, PartitionId, Result};

use super::SlurmProvider;
use crate::commands::{self, SlurmPartition};
use crate::records::{AttemptRecord, write_json};
use crate::{script, states};

/// What became of a submission that did not fail.
pub(super) enum Submission {
    /// Slurm took it: its Slurm job id.
    Taken(u64),
    /// Its files could not be written, so it was not handed to Slurm: why.
    Unrecorded(String),
}

impl SlurmProvider {
    /// Refuse what no node of `slurm` could ever run.
    pub(super) fn check_fits(slurm: &SlurmPartition, spec: &JobSpec) -> Result<()> {
        let r = spec.resources;
        let (cpus, memory, gpus) = slurm.largest;
        let name = &slurm.name;
        let too_big = |what: String| {
            Err(GateError::invalid(
                "task.resources",
                format!("{what}; ask for less or use another partition"),
            ))
        };
        if r.cpus > cpus {
            return too_big(format!(
                "asks {} CPUs, the largest node of Slurm partition {name} has {cpus}",
                r.cpus
            ));
        }
        if memory > 0 && r.memory_bytes > memory {
            return too_big(format!(
                "asks {} MiB, the largest node of Slurm partition {name} has {} MiB",
                r.memory_bytes >> 20,
                memory >> 20
            ));
        }
        if r.gpus > gpus {
            return too_big(format!(
                "asks {} GPUs, the largest node of Slurm partition {name} has {gpus}",
                r.gpus
            ));
        }
        if let Some(w) = spec.walltime
            && slurm.max_seconds > 0
            && w.as_secs() > slurm.max_seconds
        {
            return Err(GateError::invalid(
                "task.walltime_seconds",
                format!(
                    "{} s is over Slurm partition {name}'s time limit of {}",
                    w.as_secs(),
                    states::hms(slurm.max_seconds)
                ),
            ));
        }
        Ok(())
    }

    /// Write the attempt's files and hand it to sbatch.
    ///
    /// When sbatch fails in a way that leaves it unknown whether Slurm took
    /// the job (the connection to the login node broke, a timeout), the job
    /// is looked for by its comment; if even that cannot be done, the
    /// attempt's record stays (with no Slurm id), the attempt is noted as
    /// unsure and the next try looks first, so a job is never submitted twice.
    pub(super) async fn submit(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        slurm_partition: &str,
        spec: &JobSpec,
    ) -> Result<Submission> {
        let host = self.inner.host();
        let dir = self.dir(attempt);
        let record_path = dir.join("attempt.json");
        if self.inner.state().unsure.contains(attempt.as_str()) {
            let found = self.find_by_comment(attempt).await?;
            self.inner.state().unsure.remove(attempt.as_str());
            if let Some(id) = found {
                tracing::info!(%attempt, slurm_job = id, "found the Slurm job of an earlier try");
                let record = AttemptRecord {
                    attempt_id: attempt.to_string(),
                    partition_id: partition.to_string(),
                    job_id: spec.job_id,
                    slurm_job_id: id,
                };
                write_json(host, &record_path, &record).await?;
                return Ok(Submission::Taken(id));
            }
        }
        let mut record = AttemptRecord {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            job_id: spec.job_id,
            slurm_job_id: 0,
        };
        let text = script::batch_script(&dir, attempt, partition.as_str(), spec);
        // Written before sbatch: a gate that dies in between finds the job by
        // its comment. What cannot be written (a full or failing disk) is
        // never handed to Slurm.
        let written = async {
            host.create_dir_all(&dir.join("work")).await?;
            if let Command::Script(text) = &spec.command {
                host.write(&dir.join("script"), text.as_bytes(), 0o755)
                    .await?;
            }
            write_json(host, &record_path, &record).await?;
            host.write(&dir.join("job.sh"), text.as_bytes(), 0o644)
                .await
        };
        match written.await {
            Ok(()) => {}
            Err(GateError::Io { context, source }) => {
                let _ = host.remove_dir_all(&dir).await;
                return Ok(Submission::Unrecorded(format!(
                    "not started: the Slurm gate cannot record it ({context}): {source}"
                )));
            }
            Err(e) => return Err(e),
        }
        let options = script::sbatch_options(&dir, attempt, slurm_partition, spec);
        let id = match commands::sbatch(host, &options, &text).await {
            Ok(id) => id,
            Err(e @ GateError::InvalidArgument { .. }) => {
                let _ = host.remove_file(&record_path).await;
                return Err(e);
            }
            Err(e) => match self.find_by_comment(attempt).await {
                Ok(Some(id)) => {
                    tracing::warn!(%attempt, slurm_job = id, error = %e, "sbatch failed, but Slurm has the job");
                    id
                }
                Ok(None) => {
                    let _ = host.remove_file(&record_path).await;
                    return Err(e);
                }
                // Unknown: the record stays, and the next try looks first.
                Err(_) => {
                    self.inner.state().unsure.insert(attempt.to_string());
                    return Err(e);
                }
            },
        };
        record.slurm_job_id = id;
        if let Err(e) = write_json(host, &record_path, &record).await {
            // Slurm has the job; a restarted gate finds it by its comment.
            tracing::warn!(%attempt, slurm_job = id, error = %e, "cannot record the Slurm job id");
        }
        Ok(Submission::Taken(id))
    }

    /// The Slurm job carrying `attempt`'s comment, if Slurm has one.
    async fn find_by_comment(&self, attempt: &AttemptId) -> Result<Option<u64>> {
        let jobs = commands::jobs_by_comment(self.inner.host()).await?;
        Ok(jobs.get(&script::comment(attempt.as_str())).copied())
    }
}
