//! Submitting one attempt: what no node could run is refused; the
//! attempt's files are written and the batch job handed to the system.

use crate::error::{GateError, Result};
use crate::ids::AttemptId;
use crate::spec::{Command, JobSpec};

use super::script::{self, SECRETS_FILE};
use super::{AttemptRecord, BatchProvider, BatchSystem, Queue, Submit, owner, write_json};

/// What became of a submission that did not fail.
pub(super) enum Submission {
    /// The system took it: its job id.
    Taken(u64),
    /// Its files could not be written, so it was not handed to the system: why.
    Unrecorded(String),
}

/// Refuse what no node of `queue` (a `kind`, e.g. `Slurm partition`) could
/// ever run. Each node must hold the tasks placed on it: the tasks per
/// node asked, or the tasks spread evenly (rounded up).
pub fn check_fits(kind: &str, queue: &Queue, spec: &JobSpec) -> Result<()> {
    let layout = spec.layout;
    let (cpus, memory, gpus) = queue.largest;
    let name = &queue.name;
    let too_big = |what: String| {
        Err(GateError::invalid(
            "task.resources",
            format!("{what}; ask for less or use another {}", kind_noun(kind)),
        ))
    };
    let nodes = queue.node_count;
    if layout.nodes > nodes {
        return too_big(format!(
            "asks {} nodes, {kind} {name} has {nodes}",
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
            "asks {node_cpus} CPUs{on_a_node}, the largest node of {kind} {name} has {cpus}"
        ));
    }
    if memory > 0 && spec.memory_per_node() > memory {
        return too_big(format!(
            "asks {} MiB{on_a_node}, the largest node of {kind} {name} has {} MiB",
            spec.memory_per_node() >> 20,
            memory >> 20
        ));
    }
    if spec.gpus_per_node() > gpus {
        return too_big(format!(
            "asks {} GPUs{on_a_node}, the largest node of {kind} {name} has {gpus}",
            spec.gpus_per_node()
        ));
    }
    if let Some(w) = spec.walltime
        && queue.max_seconds > 0
        && w.as_secs() > queue.max_seconds
    {
        return Err(GateError::invalid(
            "task.walltime_seconds",
            format!(
                "{} s is over {kind} {name}'s time limit of {}",
                w.as_secs(),
                hms(queue.max_seconds)
            ),
        ));
    }
    Ok(())
}

/// `partition` of `Slurm partition`.
fn kind_noun(kind: &str) -> &str {
    kind.rsplit(' ').next().unwrap_or(kind)
}

/// Seconds as `HH:MM:SS`, as batch systems write time limits.
pub fn hms(seconds: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}",
        seconds / 3600,
        seconds / 60 % 60,
        seconds % 60
    )
}

impl<B: BatchSystem> BatchProvider<B> {
    /// Write the attempt's files (`record`, with no job id yet) and hand it
    /// to the system.
    ///
    /// When submitting fails in a way that leaves it unknown whether the
    /// system took the job (the connection to the login node broke, a
    /// timeout), the job is looked for; if even that cannot be done, the
    /// attempt's record stays (with no job id), the attempt is noted as
    /// unsure and the next try looks first, so a job is never submitted twice.
    pub(super) async fn submit(
        &self,
        attempt: &AttemptId,
        mut record: AttemptRecord,
        queue: &Queue,
        spec: &JobSpec,
        submitter: owner::Submitter,
    ) -> Result<Submission> {
        let owner::Submitter { account, login_env } = submitter;
        let inner = &self.inner;
        let host = inner.host();
        let name = inner.system.name();
        let dir = inner.dir(attempt);
        let record_path = dir.join("attempt.json");
        if inner.state().unsure.contains(attempt.as_str()) {
            let found = self.find(attempt).await?;
            inner.state().unsure.remove(attempt.as_str());
            if let Some(id) = found {
                tracing::info!(%attempt, job = id, "found the {name} job of an earlier try");
                record.native_job_id = id;
                write_json(host, &record_path, &record).await?;
                return Ok(Submission::Taken(id));
            }
        }
        let gate = format!("gantry-gate-{}", inner.system.provider());
        let text = script::batch_script(&gate, &dir, attempt, &record.partition_id, spec, |f| {
            inner.system.nodelist_lines(f)
        });
        // Written before submitting: a gate that dies in between finds the
        // job again. What cannot be written (a full or failing disk) is
        // never handed to the system.
        let written = async {
            host.create_dir_all(&dir.join("work")).await?;
            if let Command::Script(text) = &spec.command {
                host.write(&dir.join("script"), text.as_bytes(), 0o755)
                    .await?;
            }
            write_json(host, &record_path, &record).await?;
            if !spec.secret_env.is_empty() {
                let secrets = script::secrets_text(spec);
                host.write(&dir.join(SECRETS_FILE), secrets.as_bytes(), 0o600)
                    .await?;
            }
            host.write(&dir.join("job.sh"), text.as_bytes(), 0o600)
                .await?;
            match &account {
                Some(account) => owner::hand_over(host, &dir, account).await,
                None => Ok(()),
            }
        };
        match written.await {
            Ok(()) => {}
            Err(GateError::Io { context, source }) => {
                let _ = host.remove_dir_all(&dir).await;
                return Ok(Submission::Unrecorded(format!(
                    "not started: the {name} gate cannot record it ({context}): {source}"
                )));
            }
            Err(e) => return Err(e),
        }
        let cwd = script::job_cwd(&dir, spec);
        let job = Submit {
            dir: &dir,
            cwd: &cwd,
            attempt,
            queue,
            spec,
            script: &text,
            login_env: &login_env,
        };
        let submitted = match account {
            Some(account) => {
                let host = owner::AsAccount {
                    host: inner.config.host.clone(),
                    account,
                };
                inner.system.submit(&host, job).await
            }
            None => inner.system.submit(host, job).await,
        };
        let id = match submitted {
            Ok(id) => id,
            Err(e @ GateError::InvalidArgument { .. }) => {
                // Nothing was submitted: the attempt's files go, its secrets with them.
                let _ = host.remove_dir_all(&dir).await;
                return Err(e);
            }
            Err(e) => match self.find(attempt).await {
                Ok(Some(id)) => {
                    tracing::warn!(%attempt, job = id, error = %e, "submitting failed, but {name} has the job");
                    id
                }
                Ok(None) => {
                    let _ = host.remove_dir_all(&dir).await;
                    return Err(e);
                }
                // Unknown: the record stays, and the next try looks first
                // (the secrets file too: the job, if the system has it, reads it).
                Err(_) => {
                    inner.state().unsure.insert(attempt.to_string());
                    return Err(e);
                }
            },
        };
        record.native_job_id = id;
        if let Err(e) = write_json(host, &record_path, &record).await {
            // The system has the job; a restarted gate finds it.
            tracing::warn!(%attempt, job = id, error = %e, "cannot record the {name} job id");
        }
        Ok(Submission::Taken(id))
    }

    /// The job carrying `attempt`, if the system has one.
    async fn find(&self, attempt: &AttemptId) -> Result<Option<u64>> {
        let jobs = self
            .inner
            .system
            .find(self.inner.host(), &[attempt.as_str()])
            .await?;
        Ok(jobs.get(attempt.as_str()).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Layout, Resources};
    use gantry_proto::v1::Capacity;

    fn two_nodes() -> Queue {
        Queue {
            name: "debug".into(),
            capacity: Capacity {
                cpus: 2,
                memory_bytes: 2 << 30,
                gpus: 0,
                nodes: 1,
            },
            largest: (2, 2 << 30, 0),
            node_count: 2,
            max_seconds: 60,
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
        let q = two_nodes();
        let fits = |s: JobSpec| check_fits("Slurm partition", &q, &s).map_err(|e| e.to_string());
        // A node that is down still counts: it comes back.
        assert!(fits(spec(4, 2, 4, None)).is_ok());
        assert!(fits(spec(4, 2, 4, Some(2))).is_ok());
        let err = fits(spec(3, 1, 3, None)).unwrap_err();
        assert!(err.contains("asks 3 CPUs, the largest node"), "{err}");
        assert!(err.contains("use another partition"), "{err}");
        // Three tasks on two nodes: one node takes two of 2 CPUs each.
        let err = fits(spec(6, 2, 3, None)).unwrap_err();
        assert!(err.contains("asks 4 CPUs on each node"), "{err}");
        let err = fits(spec(3, 3, 3, None)).unwrap_err();
        assert!(
            err.contains("asks 3 nodes, Slurm partition debug has 2"),
            "{err}"
        );
        let mut long = spec(1, 1, 1, None);
        long.walltime = Some(std::time::Duration::from_secs(61));
        let err = fits(long).unwrap_err();
        assert!(err.contains("time limit of 00:01:00"), "{err}");
        assert_eq!(hms(3725), "01:02:05");
    }
}
