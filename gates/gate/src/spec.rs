//! What a gate runs, parsed from the wire's `Task` once at the edge.

use std::collections::BTreeMap;
use std::time::Duration;

pub use gantry_proto::secrets::Secrets;
use gantry_proto::v1::Task;

use crate::error::{GateError, Result};

/// Most arguments, environment variables or script bytes a task may carry.
const MAX_ARGS: usize = 65_536;
/// Longest script accepted.
const MAX_SCRIPT_BYTES: usize = 4 << 20;

/// How the job's process is started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// A program and its arguments, run without a shell. Never empty.
    Argv(Vec<String>),
    /// A script run by `/bin/sh`, or by its own `#!` line. Never empty.
    Script(String),
}

/// What a job may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Logical CPUs.
    pub cpus: u32,
    /// Memory in bytes.
    pub memory_bytes: u64,
    /// GPUs.
    pub gpus: u32,
}

/// How a job spreads over nodes and tasks (`sbatch --nodes`, `--ntasks`,
/// `--ntasks-per-node`). Most jobs are one task on one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Nodes the job spans, at least 1.
    pub nodes: u32,
    /// Tasks it starts, at least `nodes`.
    pub tasks: u32,
    /// At most this many tasks on a node; `None`: the site's choice.
    pub tasks_per_node: Option<u32>,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            nodes: 1,
            tasks: 1,
            tasks_per_node: None,
        }
    }
}

/// A signal sent a while before the walltime ends (`sbatch --signal`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Its name without "SIG" ("USR1"), as Slurm's options take it.
    pub name: String,
    /// Its number (Linux).
    pub number: i32,
    /// How long before the walltime it is sent.
    pub before: Duration,
}

/// A validated task: what one attempt runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    /// gantryd's job id.
    pub job_id: u64,
    /// A name for people.
    pub name: String,
    /// The process to run.
    pub command: Command,
    /// Environment variables to set on top of the gate's own.
    pub env: BTreeMap<String, String>,
    /// Environment variables whose values are secret: set like `env` (and
    /// winning over it), never written to a file or log the gate keeps.
    pub secret_env: Secrets,
    /// What the job may use in all, over its nodes.
    pub resources: Resources,
    /// Its nodes and tasks.
    pub layout: Layout,
    /// Kill the job after this long; `None` means no limit.
    pub walltime: Option<Duration>,
    /// The job owner's user name (may be empty).
    pub owner: String,
    /// A signal to send before the walltime ends; only with a walltime.
    pub warning: Option<Warning>,
    /// The job's stdin: a path relative to its working directory.
    pub stdin: Option<String>,
    /// An absolute directory of the site to run in, instead of the attempt's.
    pub chdir: Option<String>,
}

/// A task's environment variables (`field` names them in errors).
fn variables(
    field: &str,
    vars: std::collections::HashMap<String, String>,
) -> Result<BTreeMap<String, String>> {
    if vars.len() > MAX_ARGS {
        return Err(GateError::invalid(field, "has too many variables"));
    }
    let mut env = BTreeMap::new();
    for (key, value) in vars {
        let field = format!("{field}[{key}]");
        if key.is_empty() || key.contains('=') || key.contains('\0') {
            return Err(GateError::invalid(
                field,
                "is not a variable name; use e.g. \"OMP_NUM_THREADS\"",
            ));
        }
        no_nul(&field, &value)?;
        env.insert(key, value);
    }
    Ok(env)
}

fn no_nul(field: &str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(GateError::invalid(field, "must not contain NUL bytes"));
    }
    Ok(())
}

/// The task's layout, checked against its resources: at least a task per
/// node, CPUs that divide by tasks, memory and GPUs that divide by nodes.
fn layout_of(task: &Task, nodes: u32, r: &Resources) -> Result<Layout> {
    let tasks = task.tasks.max(1);
    let tasks_per_node = (task.tasks_per_node > 0).then_some(task.tasks_per_node);
    if tasks < nodes {
        return Err(GateError::invalid(
            "task.tasks",
            format!("{tasks} tasks cannot span {nodes} nodes"),
        ));
    }
    if tasks_per_node.is_some_and(|n| u64::from(n) * u64::from(nodes) < u64::from(tasks)) {
        return Err(GateError::invalid(
            "task.tasks_per_node",
            format!("{tasks} tasks do not fit on {nodes} nodes at that many per node"),
        ));
    }
    let even = r.cpus.is_multiple_of(tasks)
        && r.memory_bytes.is_multiple_of(u64::from(nodes))
        && r.gpus.is_multiple_of(nodes);
    if !even {
        return Err(GateError::invalid(
            "task.resources",
            format!(
                "a job's CPUs must divide by its {tasks} tasks, its memory and GPUs by its {nodes} nodes"
            ),
        ));
    }
    Ok(Layout {
        nodes,
        tasks,
        tasks_per_node,
    })
}

impl JobSpec {
    /// CPUs for each task (`--cpus-per-task`).
    pub fn cpus_per_task(&self) -> u32 {
        self.resources.cpus / self.layout.tasks
    }

    /// Memory for each node, bytes (`--mem`).
    pub fn memory_per_node(&self) -> u64 {
        self.resources.memory_bytes / u64::from(self.layout.nodes)
    }

    /// GPUs for each node (`--gres=gpu:N`).
    pub fn gpus_per_node(&self) -> u32 {
        self.resources.gpus / self.layout.nodes
    }

    /// The wire's `Task` for this spec, for a gate that passes attempts on
    /// (to a node agent): [`JobSpec::from_task`] gives this spec back.
    pub fn to_task(&self) -> Task {
        let (argv, script) = match &self.command {
            Command::Argv(argv) => (argv.clone(), String::new()),
            Command::Script(script) => (Vec::new(), script.clone()),
        };
        Task {
            job_id: self.job_id,
            name: self.name.clone(),
            argv,
            script,
            env: self.env.clone().into_iter().collect(),
            secret_env: self.secret_env.0.clone().into_iter().collect(),
            resources: Some(gantry_proto::v1::Capacity {
                cpus: self.resources.cpus,
                memory_bytes: self.resources.memory_bytes,
                gpus: self.resources.gpus,
                nodes: self.layout.nodes,
            }),
            walltime_seconds: self.walltime.map_or(0, |w| w.as_secs()),
            owner: self.owner.clone(),
            warn_signal: self
                .warning
                .as_ref()
                .map(|w| w.name.clone())
                .unwrap_or_default(),
            warn_seconds: self
                .warning
                .as_ref()
                .map_or(0, |w| w.before.as_secs() as u32),
            stdin: self.stdin.clone().unwrap_or_default(),
            chdir: self.chdir.clone().unwrap_or_default(),
            tasks: self.layout.tasks,
            tasks_per_node: self.layout.tasks_per_node.unwrap_or(0),
        }
    }

    /// Parse the `task` field of a request.
    pub fn from_task(task: Option<Task>) -> Result<Self> {
        let task = task
            .ok_or_else(|| GateError::invalid("task", "is required: give argv or script to run"))?;
        let capacity = task.resources.unwrap_or_default();
        let resources = Resources {
            cpus: capacity.cpus,
            memory_bytes: capacity.memory_bytes,
            gpus: capacity.gpus,
        };
        let layout = layout_of(&task, capacity.nodes.max(1), &resources)?;
        let command = match (task.argv.is_empty(), task.script.is_empty()) {
            (false, true) => {
                if task.argv.len() > MAX_ARGS {
                    return Err(GateError::invalid("task.argv", "has too many arguments"));
                }
                if task.argv[0].is_empty() {
                    return Err(GateError::invalid(
                        "task.argv[0]",
                        "must name a program, e.g. \"python3\"",
                    ));
                }
                for (i, arg) in task.argv.iter().enumerate() {
                    no_nul(&format!("task.argv[{i}]"), arg)?;
                }
                Command::Argv(task.argv)
            }
            (true, false) => {
                if task.script.len() > MAX_SCRIPT_BYTES {
                    return Err(GateError::invalid(
                        "task.script",
                        format!("is larger than {MAX_SCRIPT_BYTES} bytes; stage it in as a file"),
                    ));
                }
                Command::Script(task.script)
            }
            (true, true) => {
                return Err(GateError::invalid(
                    "task.argv",
                    "argv or script must be set, e.g. argv [\"echo\", \"hi\"]",
                ));
            }
            (false, false) => {
                return Err(GateError::invalid(
                    "task.script",
                    "set either argv or script, not both",
                ));
            }
        };
        let env = variables("task.env", task.env)?;
        let secret_env = Secrets(variables("task.secret_env", task.secret_env)?);
        no_nul("task.name", &task.name)?;
        no_nul("task.owner", &task.owner)?;
        let walltime =
            (task.walltime_seconds > 0).then(|| Duration::from_secs(task.walltime_seconds));
        let warning = if task.warn_signal.is_empty() {
            None
        } else {
            let number = gantry_proto::signal::number(&task.warn_signal).ok_or_else(|| {
                GateError::invalid(
                    "task.warn_signal",
                    format!("{:?} is not a signal name such as USR1", task.warn_signal),
                )
            })?;
            if task.warn_seconds == 0 || walltime.is_none() {
                return Err(GateError::invalid(
                    "task.warn_seconds",
                    "a warning signal needs warn_seconds > 0 and a walltime",
                ));
            }
            Some(Warning {
                name: task.warn_signal,
                number,
                before: Duration::from_secs(task.warn_seconds.into()),
            })
        };
        let stdin = if task.stdin.is_empty() {
            None
        } else {
            crate::paths::safe_relative_path("task.stdin", &task.stdin)?;
            Some(task.stdin)
        };
        let chdir = if task.chdir.is_empty() {
            None
        } else if !task.chdir.starts_with('/') || task.chdir.contains('\0') {
            return Err(GateError::invalid(
                "task.chdir",
                format!("{:?} is not an absolute path", task.chdir),
            ));
        } else {
            Some(task.chdir)
        };
        Ok(Self {
            job_id: task.job_id,
            name: task.name,
            command,
            env,
            secret_env,
            resources,
            layout,
            walltime,
            owner: task.owner,
            warning,
            stdin,
            chdir,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_proto::v1::Capacity;

    fn task() -> Task {
        Task {
            job_id: 7,
            argv: vec!["echo".into(), "hi".into()],
            ..Default::default()
        }
    }

    #[test]
    fn a_spec_passed_on_as_a_task_parses_back_the_same() {
        let mut t = task();
        t.walltime_seconds = 60;
        t.warn_signal = "USR1".into();
        t.warn_seconds = 10;
        t.stdin = "in.txt".into();
        t.tasks = 4;
        t.tasks_per_node = 2;
        t.resources = Some(Capacity {
            cpus: 8,
            memory_bytes: 2 << 30,
            gpus: 2,
            nodes: 2,
        });
        t.env.insert("A".into(), "1".into());
        let spec = JobSpec::from_task(Some(t)).unwrap();
        assert_eq!(JobSpec::from_task(Some(spec.to_task())).unwrap(), spec);
        let mut s = task();
        s.argv.clear();
        s.script = "echo hi".into();
        let spec = JobSpec::from_task(Some(s)).unwrap();
        assert_eq!(JobSpec::from_task(Some(spec.to_task())).unwrap(), spec);
    }

    #[test]
    fn parses_argv_tasks() {
        let mut t = task();
        t.walltime_seconds = 5;
        t.resources = Some(Capacity {
            cpus: 2,
            memory_bytes: 1 << 30,
            gpus: 0,
            nodes: 1,
        });
        t.env.insert("A".into(), "1".into());
        let spec = JobSpec::from_task(Some(t)).unwrap();
        assert_eq!(
            spec.command,
            Command::Argv(vec!["echo".into(), "hi".into()])
        );
        assert_eq!(spec.walltime, Some(Duration::from_secs(5)));
        assert_eq!(spec.resources.cpus, 2);
        assert_eq!(spec.env["A"], "1");
        assert_eq!(spec.warning, None);
    }

    #[test]
    fn a_layout_spreads_resources_over_tasks_and_nodes() {
        let mut t = task();
        t.resources = Some(Capacity {
            cpus: 8,
            memory_bytes: 2 << 30,
            gpus: 2,
            nodes: 2,
        });
        t.tasks = 4;
        t.tasks_per_node = 2;
        let spec = JobSpec::from_task(Some(t.clone())).unwrap();
        assert_eq!(
            spec.layout,
            Layout {
                nodes: 2,
                tasks: 4,
                tasks_per_node: Some(2)
            }
        );
        assert_eq!(
            (
                spec.cpus_per_task(),
                spec.memory_per_node(),
                spec.gpus_per_node()
            ),
            (2, 1 << 30, 1)
        );
        t.tasks = 1;
        assert!(
            JobSpec::from_task(Some(t.clone())).is_err(),
            "fewer tasks than nodes"
        );
        t.tasks = 6;
        assert!(
            JobSpec::from_task(Some(t.clone())).is_err(),
            "6 tasks, 2 per node on 2"
        );
        t.tasks_per_node = 0;
        assert!(JobSpec::from_task(Some(t)).is_err(), "8 CPUs over 6 tasks");
        assert_eq!(
            JobSpec::from_task(Some(task())).unwrap().layout,
            Layout::default()
        );
    }

    #[test]
    fn a_warning_signal_needs_a_name_and_a_walltime() {
        let mut t = task();
        t.warn_signal = "USR1".into();
        t.warn_seconds = 30;
        assert!(JobSpec::from_task(Some(t.clone())).is_err());
        t.walltime_seconds = 60;
        let w = JobSpec::from_task(Some(t.clone()))
            .unwrap()
            .warning
            .unwrap();
        assert_eq!((w.name.as_str(), w.before.as_secs()), ("USR1", 30));
        t.warn_signal = "SIGUSR1".into();
        assert!(JobSpec::from_task(Some(t)).is_err());
    }

    #[test]
    fn needs_exactly_one_of_argv_and_script() {
        let mut t = task();
        t.script = "echo".into();
        assert!(
            JobSpec::from_task(Some(t))
                .unwrap_err()
                .to_string()
                .contains("not both")
        );
        let t = Task::default();
        assert!(
            JobSpec::from_task(Some(t))
                .unwrap_err()
                .to_string()
                .starts_with("task.argv")
        );
        assert!(JobSpec::from_task(None).is_err());
        let t = Task {
            script: "echo hi".into(),
            ..Default::default()
        };
        assert_eq!(
            JobSpec::from_task(Some(t)).unwrap().command,
            Command::Script("echo hi".into())
        );
    }

    #[test]
    fn refuses_bad_env_and_empty_program() {
        let mut t = task();
        t.env.insert("A=B".into(), "1".into());
        assert!(
            JobSpec::from_task(Some(t))
                .unwrap_err()
                .to_string()
                .starts_with("task.env[A=B]")
        );
        let mut t = task();
        t.argv[0] = String::new();
        assert!(JobSpec::from_task(Some(t)).is_err());
        let mut t = task();
        t.argv[1] = "a\0b".into();
        assert!(JobSpec::from_task(Some(t)).is_err());
    }
}
