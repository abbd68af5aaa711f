//! A Gantry gate that runs jobs on a Slurm cluster through Slurm's own
//! commands (`sinfo`, `sbatch --parsable`, `squeue`, `scontrol show job`,
//! `sacct`, `scancel`), run on the gate's host or on a login node over
//! SSH (one multiplexed connection for the commands and, over SFTP, the
//! files).
//!
//! [`Slurm`] is the [`BatchSystem`]; the harness's [`BatchProvider`] does
//! the rest (records, the poll loop, finding jobs again after a restart).
//! Each Slurm partition is a flavor. The Slurm job carries
//! `--comment=gantry:<attempt>`, so a restarted gate finds every job again
//! and submits nothing twice.

mod commands;
pub mod script;
mod states;

use std::collections::BTreeMap;

use gantry_gate::batch::{JobStatus, Queue, Submit, Watched};
use gantry_gate::{BatchProvider, BatchSystem, Host, Result};
use gantry_proto::v1::Capacity;

use commands::{JobRecords, SlurmPartition};

/// The Slurm gate's provider.
pub type SlurmProvider = BatchProvider<Slurm>;

/// Slurm, as the harness's batch gate talks to it.
#[derive(Default)]
pub struct Slurm {
    /// Where the cluster keeps finished jobs, asked once when first needed.
    job_records: tokio::sync::OnceCell<JobRecords>,
}

impl Slurm {
    async fn job_records(&self, host: &dyn Host) -> Result<JobRecords> {
        self.job_records
            .get_or_try_init(|| commands::job_records(host))
            .await
            .copied()
    }
}

fn queue(p: SlurmPartition) -> Queue {
    Queue {
        capacity: Capacity {
            cpus: p.cpus,
            memory_bytes: p.memory_bytes,
            gpus: p.gpus,
            nodes: p.nodes,
        },
        largest: p.largest,
        node_count: p.node_count(),
        max_seconds: p.max_seconds,
        default_seconds: p.default_seconds,
        default: p.default,
        unavailable: p.unavailable(),
        name: p.name,
    }
}

#[tonic::async_trait]
impl BatchSystem for Slurm {
    fn name(&self) -> &'static str {
        "Slurm"
    }

    fn queue_kind(&self) -> &'static str {
        "Slurm partition"
    }

    fn provider(&self) -> &'static str {
        "slurm"
    }

    async fn queues(&self, host: &dyn Host) -> Result<Vec<Queue>> {
        Ok(commands::partitions(host)
            .await?
            .into_iter()
            .map(queue)
            .collect())
    }

    fn nodelist_lines(&self, hostfile: &str) -> String {
        script::nodelist_lines(hostfile)
    }

    async fn submit(&self, host: &dyn Host, job: Submit<'_>) -> Result<u64> {
        let options = script::sbatch_options(job.dir, job.attempt, &job.queue.name, job.spec);
        commands::sbatch(host, job.login_env, &options, job.script).await
    }

    async fn find(&self, host: &dyn Host, _attempts: &[&str]) -> Result<BTreeMap<String, u64>> {
        Ok(commands::jobs_by_comment(host)
            .await?
            .into_iter()
            .filter_map(|(comment, id)| Some((script::attempt_of(&comment)?.to_string(), id)))
            .collect())
    }

    async fn observe(&self, host: &dyn Host, jobs: &[Watched]) -> Result<BTreeMap<u64, JobStatus>> {
        let ids: Vec<u64> = jobs.iter().map(|j| j.id).collect();
        let mut seen = commands::squeue(host, &ids).await?;
        for id in &ids {
            if seen.get(id).is_some_and(|o| !states::map(o).0.is_final()) {
                continue;
            }
            // Ended (squeue shows no exit code), or gone from squeue:
            // slurmctld may still hold it (scontrol), or only Slurm's
            // records of finished jobs (sacct).
            let found = match commands::scontrol_job(host, *id).await? {
                Some(o) => Some(o),
                None => {
                    let records = self.job_records(host).await?;
                    commands::sacct_job(host, records, *id).await?
                }
            };
            if let Some(o) = found {
                seen.insert(*id, o);
            }
        }
        Ok(seen
            .into_iter()
            .map(|(id, o)| (id, states::status(&o)))
            .collect())
    }

    async fn cancel(&self, host: &dyn Host, id: u64) -> Result<()> {
        commands::scancel(host, id).await
    }
}
