//! A Gantry gate that runs jobs on a Grid Engine cluster (Son of Grid
//! Engine, Debian's 8.1.9, and their kin) through its own commands (`qconf`,
//! `qhost`, `qsub -terse`, `qstat -xml`, `qacct`, `qdel`), run on the
//! gate's host or on a login node over SSH.
//!
//! [`GridEngine`] is the [`BatchSystem`]; the harness's [`BatchProvider`]
//! does the rest (records, the poll loop, finding jobs again after a
//! restart). Each cluster queue is a flavor; a job runs on one host, its
//! CPUs as slots of a `$pe_slots` parallel environment. The job is named
//! `gantry-<attempt>`, so a restarted gate finds it again in qstat or in
//! the accounting file and submits nothing twice.

mod commands;
mod states;

use std::collections::{BTreeMap, HashMap};

use gantry_gate::batch::{JobStatus, Queue, Submit, Watched};
use gantry_gate::{BatchProvider, BatchSystem, GateError, Host, JobSpec, Result};

/// The Grid Engine gate's provider.
pub type SgeProvider = BatchProvider<GridEngine>;

/// Grid Engine, as the harness's batch gate talks to it.
pub struct GridEngine {
    /// The parallel environment (allocation rule `$pe_slots`) a job of more
    /// than one CPU asks for its slots.
    pub pe: String,
    /// The complex memory is requested with (`-l NAME=...`), or none.
    pub memory: Option<String>,
    /// Whether that complex counts per slot, asked once when first needed.
    per_slot: tokio::sync::OnceCell<bool>,
}

impl GridEngine {
    /// Grid Engine with slots from `pe` and memory asked as `memory`.
    pub fn new(pe: String, memory: Option<String>) -> Self {
        Self {
            pe,
            memory,
            per_slot: tokio::sync::OnceCell::new(),
        }
    }

    /// qsub's options for `job`.
    async fn options(&self, host: &dyn Host, job: &Submit<'_>) -> Result<Vec<String>> {
        let spec = job.spec;
        let path = |name: &str| job.dir.join(name).to_string_lossy().into_owned();
        let mut o = vec![
            "-N".into(),
            job_name(job.attempt.as_str()),
            "-q".into(),
            job.queue.name.clone(),
            "-S".into(),
            "/bin/sh".into(),
            "-o".into(),
            path("stdout"),
            "-e".into(),
            path("stderr"),
            "-wd".into(),
            job.cwd.to_string_lossy().into_owned(),
            // gantryd decides what runs again.
            "-r".into(),
            "n".into(),
        ];
        let slots = slots(spec);
        if slots > 1 {
            o.extend(["-pe".into(), self.pe.clone(), slots.to_string()]);
        }
        let mut resources = Vec::new();
        if let Some(name) = &self.memory
            && spec.memory_per_node() > 0
        {
            let per_slot = *self
                .per_slot
                .get_or_try_init(|| commands::per_slot(host, name))
                .await?;
            let mut bytes = spec.memory_per_node();
            if per_slot {
                bytes = bytes.div_ceil(u64::from(slots));
            }
            resources.push(format!("{name}={}M", bytes.div_ceil(1 << 20)));
        }
        if let Some(w) = spec.walltime {
            resources.push(format!("h_rt={}", w.as_secs()));
            if let Some(warning) = &spec.warning {
                // At s_rt Grid Engine sends SIGUSR1 (checked in `check`).
                let at = w.as_secs().saturating_sub(warning.before.as_secs()).max(1);
                resources.push(format!("s_rt={at}"));
            }
        }
        for r in resources {
            o.extend(["-l".into(), r]);
        }
        if let Some(stdin) = &spec.stdin {
            o.extend([
                "-i".into(),
                job.cwd.join(stdin).to_string_lossy().into_owned(),
            ]);
        }
        Ok(o)
    }
}

/// The name of the job of `attempt`.
fn job_name(attempt: &str) -> String {
    format!("gantry-{attempt}")
}

/// The slots a job takes on its host: one per CPU.
fn slots(spec: &JobSpec) -> u32 {
    spec.resources.cpus.max(1)
}

/// Queue-instance states in which a host runs no new jobs: disabled (d, D),
/// error (E), unknown (u: its execd is not answering), suspended (s, S, C),
/// orphaned (o), configuration ambiguous (c).
const UNUSABLE: [char; 9] = ['d', 'D', 'E', 'u', 's', 'S', 'C', 'o', 'c'];

/// The cluster queues from their settings and their hosts.
fn queues(confs: Vec<commands::QueueConf>, hosts: &[commands::ExecHost]) -> Vec<Queue> {
    confs
        .into_iter()
        .map(|conf| {
            let mut q = Queue {
                max_seconds: conf.h_rt,
                ..Default::default()
            };
            let mut down = Vec::new();
            for h in hosts {
                for (_, slots, state) in h.queues.iter().filter(|(n, ..)| *n == conf.name) {
                    q.node_count += 1;
                    q.largest = (q.largest.0.max(*slots), q.largest.1.max(h.memory_bytes), 0);
                    if state.contains(UNUSABLE) {
                        down.push(format!("{} is {state}", h.name));
                        continue;
                    }
                    let c = &mut q.capacity;
                    c.cpus += slots;
                    c.memory_bytes += h.memory_bytes;
                    c.nodes += 1;
                }
            }
            q.unavailable = if q.node_count == 0 {
                Some(format!("Grid Engine queue {} has no hosts", conf.name))
            } else if q.capacity.nodes == 0 {
                Some(format!(
                    "every host of Grid Engine queue {} is unavailable ({})",
                    conf.name,
                    down.join(", ")
                ))
            } else {
                None
            };
            q.name = conf.name;
            q
        })
        .collect()
}

#[tonic::async_trait]
impl BatchSystem for GridEngine {
    fn name(&self) -> &'static str {
        "Grid Engine"
    }

    fn queue_kind(&self) -> &'static str {
        "Grid Engine queue"
    }

    fn provider(&self) -> &'static str {
        "sge"
    }

    async fn queues(&self, host: &dyn Host) -> Result<Vec<Queue>> {
        let names = commands::queue_names(host).await?;
        let confs = commands::queue_confs(host, &names).await?;
        let hosts = commands::exec_hosts(host).await?;
        Ok(queues(confs, &hosts))
    }

    fn check(&self, _queue: &Queue, spec: &JobSpec) -> Result<()> {
        if spec.layout.nodes > 1 {
            return Err(GateError::invalid(
                "task.nodes",
                "the Grid Engine gate runs a job on one host; ask for 1 node",
            ));
        }
        if let Some(w) = &spec.warning
            && w.name != "USR1"
        {
            return Err(GateError::invalid(
                "task.warn_signal",
                format!(
                    "Grid Engine warns a job only with SIGUSR1 (at its s_rt), not SIG{}",
                    w.name
                ),
            ));
        }
        Ok(())
    }

    fn nodelist_lines(&self, hostfile: &str) -> String {
        format!("hostname >{hostfile}\nexport GANTRY_NODELIST=\"$(hostname)\"\n")
    }

    async fn submit(&self, host: &dyn Host, job: Submit<'_>) -> Result<u64> {
        let options = self.options(host, &job).await?;
        commands::qsub(host, &options, job.script).await
    }

    async fn find(&self, host: &dyn Host, attempts: &[&str]) -> Result<BTreeMap<String, u64>> {
        let listed: HashMap<String, u64> = commands::qstat(host)
            .await?
            .into_iter()
            .map(|j| (j.name, j.id))
            .collect();
        let mut found = BTreeMap::new();
        for attempt in attempts {
            let name = job_name(attempt);
            let id = match listed.get(&name) {
                Some(&id) => Some(id),
                // It may have ended already.
                None => commands::qacct(host, &name)
                    .await?
                    .and_then(|out| commands::qacct_job_number(&out)),
            };
            if let Some(id) = id {
                found.insert(attempt.to_string(), id);
            }
        }
        Ok(found)
    }

    async fn observe(&self, host: &dyn Host, jobs: &[Watched]) -> Result<BTreeMap<u64, JobStatus>> {
        let listed: HashMap<u64, commands::Listed> = commands::qstat(host)
            .await?
            .into_iter()
            .map(|j| (j.id, j))
            .collect();
        let waiting: Vec<u64> = jobs
            .iter()
            .filter_map(|j| listed.get(&j.id))
            .filter(|l| !l.state.contains(['r', 't']))
            .map(|l| l.id)
            .collect();
        let why = commands::why(host, &waiting).await?;
        let mut seen = BTreeMap::new();
        for job in jobs {
            let status = match listed.get(&job.id) {
                Some(l) => {
                    let status = states::listed(l, why.get(&job.id).map(String::as_str));
                    if status.state.is_final() {
                        // In error it stays in qstat for ever: delete it.
                        if let Err(e) = commands::qdel(host, job.id).await {
                            tracing::warn!(job = job.id, error = %e, "cannot delete a job in error");
                        }
                    }
                    status
                }
                None => match commands::qacct(host, &job.id.to_string()).await? {
                    Some(out) => match commands::parse_qacct(&out) {
                        Some(a) => states::accounted(&a, job.cancelled),
                        None => continue,
                    },
                    None => continue,
                },
            };
            seen.insert(job.id, status);
        }
        Ok(seen)
    }

    async fn cancel(&self, host: &dyn Host, id: u64) -> Result<()> {
        commands::qdel(host, id).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use commands::{ExecHost, QueueConf};

    #[test]
    fn queues_sum_their_usable_hosts() {
        let host = |name: &str, state: &str| ExecHost {
            name: name.into(),
            memory_bytes: 4 << 30,
            queues: vec![("all.q".into(), 2, state.into())],
        };
        let conf = || QueueConf {
            name: "all.q".into(),
            h_rt: 60,
        };
        let q = &queues(vec![conf()], &[host("a", ""), host("b", "d")])[0];
        assert_eq!((q.capacity.cpus, q.capacity.nodes, q.node_count), (2, 1, 2));
        assert_eq!((q.largest, q.max_seconds), ((2, 4 << 30, 0), 60));
        assert_eq!(q.unavailable, None);
        let q = &queues(vec![conf()], &[host("a", "au")])[0];
        assert_eq!(
            q.unavailable.as_deref(),
            Some("every host of Grid Engine queue all.q is unavailable (a is au)")
        );
        let q = &queues(vec![conf()], &[])[0];
        assert!(q.unavailable.as_deref().unwrap().contains("has no hosts"));
    }
}
