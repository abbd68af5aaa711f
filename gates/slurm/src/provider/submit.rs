//! Submitting one attempt: what no node could run is refused; the
//! attempt's files are written and the batch job handed to sbatch.

use gantry_gate::{AttemptId, Command, GateError, JobSpec, PartitionId, Result};

use super::SlurmProvider;
use crate::commands::{self, SlurmPartition};
use crate::records::{AttemptRecord, write_json};
use crate::{script, states};

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

    /// Write the attempt's files and hand it to sbatch; its Slurm job id.
    pub(super) async fn submit(
        &self,
        attempt: &AttemptId,
        partition: &PartitionId,
        slurm_partition: &str,
        spec: &JobSpec,
    ) -> Result<u64> {
        let host = self.inner.host();
        let dir = self.dir(attempt);
        host.create_dir_all(&dir.join("work")).await?;
        if let Command::Script(text) = &spec.command {
            host.write(&dir.join("script"), text.as_bytes(), 0o755)
                .await?;
        }
        let mut record = AttemptRecord {
            attempt_id: attempt.to_string(),
            partition_id: partition.to_string(),
            job_id: spec.job_id,
            slurm_job_id: 0,
        };
        // Written before sbatch: a gate that dies in between finds the job by its comment.
        write_json(host, &dir.join("attempt.json"), &record).await?;
        let text = script::batch_script(&dir, attempt, partition.as_str(), spec);
        host.write(&dir.join("job.sh"), text.as_bytes(), 0o644)
            .await?;
        let options = script::sbatch_options(&dir, attempt, slurm_partition, spec);
        let id = match commands::sbatch(host, &options, &text).await {
            Ok(id) => id,
            Err(e) => {
                let _ = host.remove_file(&dir.join("attempt.json")).await;
                return Err(e);
            }
        };
        record.slurm_job_id = id;
        write_json(host, &dir.join("attempt.json"), &record).await?;
        Ok(id)
    }
}
