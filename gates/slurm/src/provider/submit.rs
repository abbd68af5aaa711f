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
    /// Each node must hold the tasks placed on it: `--ntasks-per-node`, or
    /// the tasks spread evenly (rounded up).
    pub(super) fn check_fits(slurm: &SlurmPartition, spec: &JobSpec) -> Result<()> {
        let layout = spec.layout;
        let (cpus, memory, gpus) = slurm.largest;
        let name = &slurm.name;
        let too_big = |what: String| {
            Err(GateError::invalid(
                "task.resources",
                format!("{what}; ask for less or use another partition"),
            ))
        };
        let nodes = slurm.node_count();
        if layout.nodes > nodes {
            return too_big(format!(
                "asks {} nodes, Slurm partition {name} has {nodes}",
                layout.nodes
            ));
        }
        let tasks_on_a_node = layout
            .tasks_per_node
            .unwrap_or_else(|| layout.tasks.div_ceil(layout.nodes))
            .min(layout.tasks);
        let node_cpus = spec.cpus_per_task().saturating_mul(tasks_on_a_node);
        let on_a_node = if layout.nodes > 1 {
            " on each node"
        } else {
            ""
        };
        if node_cpus > cpus {
            return too_big(format!(
                "asks {node_cpus} CPUs{on_a_node}, the largest node of Slurm partition {name} has {cpus}"
            ));
        }
        if memory > 0 && spec.memory_per_node() > memory {
            return too_big(format!(
                "asks {} MiB{on_a_node}, the largest node of Slurm partition {name} has {} MiB",
                spec.memory_per_node() >> 20,
                memory >> 20
            ));
        }
        if spec.gpus_per_node() > gpus {
            return too_big(format!(
                "asks {} GPUs{on_a_node}, the largest node of Slurm partition {name} has {gpus}",
                spec.gpus_per_node()
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
            if !spec.secret_env.is_empty() {
                let secrets = script::secrets_text(spec);
                host.write(&dir.join(script::SECRETS_FILE), secrets.as_bytes(), 0o600)
                    .await?;
            }
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
                // Nothing was submitted: the attempt's files go, its secrets with them.
                let _ = host.remove_dir_all(&dir).await;
                return Err(e);
            }
            Err(e) => match self.find_by_comment(attempt).await {
                Ok(Some(id)) => {
                    tracing::warn!(%attempt, slurm_job = id, error = %e, "sbatch failed, but Slurm has the job");
                    id
                }
                Ok(None) => {
                    let _ = host.remove_dir_all(&dir).await;
                    return Err(e);
                }
                // Unknown: the record stays, and the next try looks first
                // (the secrets file too: the job, if Slurm has it, reads it).
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

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_gate::{Layout, Resources};

    fn two_nodes() -> SlurmPartition {
        SlurmPartition {
            name: "debug".into(),
            avail: "up".into(),
            cpus: 4,
            memory_bytes: 4 << 30,
            nodes: 2,
            largest: (2, 2 << 30, 0),
            node_states: [("idle".to_string(), 1), ("drained".to_string(), 1)].into(),
            ..Default::default()
        }
    }

    fn spec(cpus: u32, nodes: u32, tasks: u32, tasks_per_node: Option<u32>) -> JobSpec {
        JobSpec {
            job_id: 1,
            name: String::new(),
            command: Command::Argv(vec!["true".into()]),
            env: Default::default(),
            secret_env: Default::default(),
            resources: Resources {
                cpus,
                memory_bytes: u64::from(nodes) << 30,
                gpus: 0,
            },
            layout: Layout {
                nodes,
                tasks,
                tasks_per_node,
            },
            walltime: None,
            owner: String::new(),
            warning: None,
            stdin: None,
            chdir: None,
        }
    }

    #[test]
    fn each_node_must_hold_its_share_of_the_tasks() {
        let p = two_nodes();
        let fits = |s: JobSpec| SlurmProvider::check_fits(&p, &s).map_err(|e| e.to_string());
        // A drained node still counts: it comes back.
        assert!(fits(spec(4, 2, 4, None)).is_ok());
        assert!(fits(spec(4, 2, 4, Some(2))).is_ok());
        let err = fits(spec(3, 1, 3, None)).unwrap_err();
        assert!(err.contains("asks 3 CPUs, the largest node"), "{err}");
        // Three tasks on two nodes: one node takes two of 2 CPUs each.
        let err = fits(spec(6, 2, 3, None)).unwrap_err();
        assert!(err.contains("asks 4 CPUs on each node"), "{err}");
        let err = fits(spec(3, 3, 3, None)).unwrap_err();
        assert!(
            err.contains("asks 3 nodes, Slurm partition debug has 2"),
            "{err}"
        );
    }
}
