//! A submitted job spec, checked at the edge: [`ValidSpec::parse`] turns the
//! wire's `JobSpec` into a spec whose every field is known to be good, with
//! defaults filled in. After it, nothing re-checks.

use std::collections::{BTreeMap, HashSet};

use gantry_proto::secrets::Secrets;
use gantry_proto::v1::{self, JobSpec, ResourceRequest};

use super::units::{parse_memory, parse_walltime};
use crate::error::FieldError;

/// Default memory when a spec gives none.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// The most dependencies one job may name.
pub const MAX_AFTER: usize = 1000;
/// How often a job runs again after its compute was lost, unless it says (`JobSpec.retries`).
pub const DEFAULT_RETRIES: u32 = 3;
/// The most `JobSpec.retries` may ask.
pub const MAX_RETRIES: u32 = 100;

/// Resources in machine units: what a job takes in all (its request's per
/// task and per node amounts multiplied out), or what a partition offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Resources {
    /// Logical CPUs (≥ 1).
    pub cpus: u32,
    /// Bytes of memory (≥ 1).
    pub memory: u64,
    /// GPUs.
    pub gpus: u32,
    /// Nodes (≥ 1).
    pub nodes: u32,
}

impl From<Resources> for v1::Capacity {
    fn from(r: Resources) -> Self {
        v1::Capacity {
            cpus: r.cpus,
            memory_bytes: r.memory,
            gpus: r.gpus,
            nodes: r.nodes,
        }
    }
}

/// A job spec that passed validation. `spec` is the normalized wire form
/// (defaults filled in) that is stored and shown back to users.
#[derive(Debug, Clone)]
pub struct ValidSpec {
    /// The normalized spec.
    pub spec: JobSpec,
    /// What it takes in all, over its tasks and nodes.
    pub resources: Resources,
    /// Walltime in seconds; 0 when none was asked.
    pub walltime: u64,
    /// The site asked for; `None` for any.
    pub site: Option<String>,
    /// For an array, its indices, ascending; `None` for a single job.
    pub array: Option<Vec<u32>>,
    /// The values of `spec.secret_env`, which keeps only the names (each
    /// with an empty value): stored apart and never answered.
    pub secrets: Secrets,
}

/// The most bytes of names and values `secret_env` may hold.
pub const MAX_SECRET_BYTES: usize = 64 * 1024;

fn field(name: &str, message: impl Into<String>) -> FieldError {
    FieldError::new(name, message)
}

fn check_relative_path(name: &str, path: &str) -> Result<(), FieldError> {
    let bad = path.is_empty()
        || path.starts_with('/')
        || path.contains('\0')
        || path.split('/').any(|part| part == "..");
    if bad {
        Err(field(
            name,
            format!(
                "{path:?} must be a relative path inside the working directory, without \"..\""
            ),
        ))
    } else {
        Ok(())
    }
}

fn is_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 63
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/'))
}

impl ValidSpec {
    /// Check and normalize a spec. `site_exists` says whether a site name is configured.
    pub fn parse(
        mut spec: JobSpec,
        site_exists: impl Fn(&str) -> bool,
    ) -> Result<Self, FieldError> {
        match (spec.argv.is_empty(), spec.script.trim().is_empty()) {
            (true, true) => {
                return Err(field(
                    "command",
                    "the job has no command; give argv (e.g. [\"echo\", \"hi\"]) or a script",
                ));
            }
            (false, false) => {
                return Err(field("command", "give either argv or a script, not both"));
            }
            (false, true) if spec.argv[0].is_empty() => {
                return Err(field("argv[0]", "the program name is empty"));
            }
            _ => {}
        }
        if spec
            .argv
            .iter()
            .chain([&spec.script])
            .any(|a| a.contains('\0'))
        {
            return Err(field("command", "arguments may not contain NUL bytes"));
        }
        if spec.name.is_empty() {
            spec.name = match spec.argv.first() {
                Some(program) => program.rsplit('/').next().unwrap_or(program).to_string(),
                None => "script".to_string(),
            };
        }
        if spec.name.len() > 128 {
            return Err(field("name", "at most 128 characters"));
        }
        no_nul("name", &spec.name)?;
        for (key, value) in &spec.env {
            no_nul(&format!("env[{key}]"), value)?;
        }
        let req = spec.resources.take().unwrap_or_default();
        let (normalized, resources, walltime) = parse_resources(&req)?;
        spec.resources = Some(normalized);
        let site = match spec.site.trim() {
            "" | "any" => None,
            name if site_exists(name) => Some(name.to_string()),
            name => {
                return Err(field(
                    "site",
                    format!("no site is named {name:?}; `gantry sites` lists them, or use \"any\""),
                ));
            }
        };
        spec.site = site.clone().unwrap_or_else(|| "any".to_string());
        if !(-1000..=1000).contains(&spec.priority) {
            return Err(field(
                "priority",
                format!("{} is outside -1000..1000", spec.priority),
            ));
        }
        for key in spec.env.keys() {
            env_name(&format!("env[{key}]"), key)?;
        }
        for (key, value) in &spec.labels {
            if !is_label_key(key) {
                return Err(field(
                    &format!("labels[{key}]"),
                    "label keys are 1-63 of letters, digits, '.', '_', '-', '/'",
                ));
            }
            if value.len() > 256 {
                return Err(field(
                    &format!("labels[{key}]"),
                    "values are at most 256 bytes",
                ));
            }
            no_nul(&format!("labels[{key}]"), value)?;
        }
        let mut seen = HashSet::new();
        for (i, input) in spec.inputs.iter_mut().enumerate() {
            let is_digest = input.digest.len() == 64
                && input
                    .digest
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
            if !is_digest {
                return Err(field(
                    &format!("inputs[{i}].digest"),
                    "must be the lower-case sha256 hex digest UploadInput returned",
                ));
            }
            check_relative_path(&format!("inputs[{i}].path"), &input.path)?;
            if !seen.insert(input.path.clone()) {
                return Err(field(
                    &format!("inputs[{i}].path"),
                    format!("{:?} is given twice", input.path),
                ));
            }
            if input.mode == 0 {
                input.mode = 0o644;
            }
        }
        for (i, glob) in spec.outputs.iter().enumerate() {
            check_relative_path(&format!("outputs[{i}]"), glob)?;
        }
        if !spec.chdir.is_empty() {
            let bad = !spec.chdir.starts_with('/')
                || spec.chdir.contains('\0')
                || spec.chdir.len() > 4096;
            if bad {
                return Err(field(
                    "chdir",
                    format!(
                        "{:?} is not an absolute path of the site (e.g. /home/alice/run)",
                        spec.chdir
                    ),
                ));
            }
            if !spec.inputs.is_empty() || !spec.outputs.is_empty() {
                return Err(field(
                    "chdir",
                    "inputs and outputs are staged in a directory Gantry makes for the job; with --chdir the job runs in a directory of the site: give one or the other",
                ));
            }
        }
        spec.stdin = spec.stdin.trim().to_string();
        if !spec.stdin.is_empty() {
            check_relative_path("stdin", &spec.stdin)?;
        }
        if spec.after.len() > MAX_AFTER {
            return Err(field("after", format!("at most {MAX_AFTER} dependencies")));
        }
        if spec.after.contains(&0) {
            return Err(field("after", "job ids start at 1"));
        }
        spec.after.sort_unstable();
        spec.after.dedup();
        if !spec.signal.trim().is_empty() {
            let (name, seconds) = gantry_proto::signal::parse_warning(&spec.signal)
                .map_err(|m| field("signal", m))?;
            if walltime == 0 {
                return Err(field(
                    "signal",
                    "a warning signal is sent that long before the walltime, and this job has none; give one (e.g. --walltime 1h)",
                ));
            }
            spec.signal = format!("{name}@{seconds}");
        } else {
            spec.signal.clear();
        }
        if *spec.retries.get_or_insert(DEFAULT_RETRIES) > MAX_RETRIES {
            return Err(field(
                "retries",
                format!(
                    "at most {MAX_RETRIES}: it counts runs lost with their machine, not failures"
                ),
            ));
        }
        spec.array = spec.array.trim().to_string();
        let array = if spec.array.is_empty() {
            None
        } else {
            Some(super::array::parse_indices(&spec.array)?)
        };
        let secrets = take_secrets(&mut spec)?;
        if !secrets.is_empty() && array.is_some() {
            return Err(field(
                "secret_env",
                "an array cannot carry secrets yet; submit its tasks as jobs of their own",
            ));
        }
        Ok(ValidSpec {
            spec,
            resources,
            walltime,
            site,
            array,
            secrets,
        })
    }
}

/// An environment variable's name, as `name` (the field) gives it.
fn env_name(name: &str, key: &str) -> Result<(), FieldError> {
    if !gantry_proto::is_env_name(key) {
        return Err(field(
            name,
            "variable names are letters, digits and _, not starting with a digit",
        ));
    }
    Ok(())
}

/// Check `spec.secret_env` and take its values out, leaving the names.
fn take_secrets(spec: &mut JobSpec) -> Result<Secrets, FieldError> {
    let mut total = 0;
    for (key, value) in &spec.secret_env {
        let name = format!("secret_env[{key}]");
        env_name(&name, key)?;
        if spec.env.contains_key(key) {
            return Err(field(&name, "is also in env: give each variable once"));
        }
        no_nul(&name, value)?;
        total += key.len() + value.len();
    }
    if total > MAX_SECRET_BYTES {
        return Err(field(
            "secret_env",
            format!("{total} bytes; at most {MAX_SECRET_BYTES} in all"),
        ));
    }
    let secrets: BTreeMap<String, String> =
        std::mem::take(&mut spec.secret_env).into_iter().collect();
    spec.secret_env = secrets.keys().map(|k| (k.clone(), String::new())).collect();
    Ok(Secrets(secrets))
}

/// Text that is stored must not hold NUL bytes (PostgreSQL refuses them).
pub fn no_nul(name: &str, value: &str) -> Result<(), FieldError> {
    if value.contains('\0') {
        return Err(field(name, "may not contain NUL bytes"));
    }
    Ok(())
}

/// The most tasks one job may start.
pub const MAX_TASKS: u32 = 1_000_000;

/// The request with its defaults filled in (the normalized wire form), what
/// the job takes in all (per task and per node amounts multiplied out), and
/// its walltime in seconds.
fn parse_resources(req: &ResourceRequest) -> Result<(ResourceRequest, Resources, u64), FieldError> {
    let cpus = req.cpus.unwrap_or(1);
    if cpus == 0 || cpus > 65_536 {
        return Err(field(
            "resources.cpus",
            format!("{cpus} is not a CPU count; ask for at least 1 (e.g. --cpus 2)"),
        ));
    }
    let nodes = req.nodes.unwrap_or(1);
    if nodes == 0 || nodes > 100_000 {
        return Err(field(
            "resources.nodes",
            format!("{nodes} is not a node count; ask for at least 1"),
        ));
    }
    let per_node = req.tasks_per_node;
    let tasks = match req.tasks {
        Some(tasks) => tasks,
        None if per_node > 0 => nodes.saturating_mul(per_node),
        None => nodes,
    };
    if tasks == 0 || tasks > MAX_TASKS {
        return Err(field(
            "resources.tasks",
            format!("{tasks} is not a task count; ask for 1 to {MAX_TASKS}"),
        ));
    }
    if tasks < nodes {
        return Err(field(
            "resources.tasks",
            format!(
                "{tasks} tasks cannot span {nodes} nodes; ask for at least one task per node (e.g. --ntasks {nodes})"
            ),
        ));
    }
    if per_node > 0 && u64::from(per_node) * u64::from(nodes) < u64::from(tasks) {
        return Err(field(
            "resources.tasks_per_node",
            format!("{tasks} tasks do not fit on {nodes} nodes of at most {per_node} tasks each"),
        ));
    }
    let memory = if req.memory.is_empty() {
        DEFAULT_MEMORY
    } else {
        parse_memory(&req.memory).map_err(|m| field("resources.memory", m))?
    };
    let walltime = if req.walltime.is_empty() {
        0
    } else {
        parse_walltime(&req.walltime).map_err(|m| field("resources.walltime", m))?
    };
    let total = Resources {
        cpus: cpus.checked_mul(tasks).ok_or_else(|| {
            field(
                "resources.cpus",
                format!("{cpus} CPUs for each of {tasks} tasks is more than any site has"),
            )
        })?,
        memory: memory.checked_mul(u64::from(nodes)).ok_or_else(|| {
            field(
                "resources.memory",
                format!(
                    "{} on each of {nodes} nodes is more than any site has",
                    req.memory
                ),
            )
        })?,
        gpus: req.gpus.checked_mul(nodes).ok_or_else(|| {
            field(
                "resources.gpus",
                format!(
                    "{} GPUs on each of {nodes} nodes is more than any site has",
                    req.gpus
                ),
            )
        })?,
        nodes,
    };
    let normalized = ResourceRequest {
        cpus: Some(cpus),
        memory: if req.memory.is_empty() {
            "256MiB".to_string()
        } else {
            req.memory.clone()
        },
        gpus: req.gpus,
        nodes: Some(nodes),
        walltime: req.walltime.clone(),
        tasks: Some(tasks),
        tasks_per_node: per_node,
    };
    Ok((normalized, total, walltime))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str]) -> JobSpec {
        JobSpec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn err(s: JobSpec) -> FieldError {
        ValidSpec::parse(s, |name| name == "local").unwrap_err()
    }

    fn with_secrets(pairs: &[(&str, &str)]) -> JobSpec {
        let mut s = spec(&["true"]);
        s.secret_env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        s
    }

    #[test]
    fn secrets_are_taken_out_of_the_spec_leaving_their_names() {
        let valid = ValidSpec::parse(with_secrets(&[("TOKEN", "s3cr3t")]), |_| true).unwrap();
        assert_eq!(valid.secrets.0["TOKEN"], "s3cr3t");
        assert_eq!(valid.spec.secret_env["TOKEN"], "");
        assert!(!format!("{valid:?}").contains("s3cr3t"), "{valid:?}");
        let none = ValidSpec::parse(spec(&["true"]), |_| true).unwrap();
        assert!(none.secrets.is_empty() && none.spec.secret_env.is_empty());
    }

    #[test]
    fn bad_secrets_are_refused_naming_the_field() {
        assert_eq!(err(with_secrets(&[("1X", "v")])).field, "secret_env[1X]");
        assert_eq!(err(with_secrets(&[("X", "a\0b")])).field, "secret_env[X]");
        let mut both = with_secrets(&[("X", "v")]);
        both.env.insert("X".into(), "w".into());
        let e = err(both);
        assert_eq!(e.field, "secret_env[X]");
        assert!(e.message.contains("also in env"), "{e}");
        let big = "x".repeat(MAX_SECRET_BYTES);
        assert_eq!(err(with_secrets(&[("X", &big)])).field, "secret_env");
        let mut array = with_secrets(&[("X", "v")]);
        array.array = "0-3".into();
        assert_eq!(err(array).field, "secret_env");
    }

    #[test]
    fn tasks_and_nodes_multiply_out() {
        let with = |cpus, nodes, tasks, tasks_per_node| {
            let mut s = spec(&["mpi"]);
            s.resources = Some(ResourceRequest {
                cpus: Some(cpus),
                memory: "1GiB".into(),
                gpus: 1,
                nodes: Some(nodes),
                tasks,
                tasks_per_node,
                ..Default::default()
            });
            ValidSpec::parse(s, |_| true)
        };
        let v = with(2, 2, None, 3).unwrap();
        let r = v.spec.resources.unwrap();
        assert_eq!((r.tasks, r.tasks_per_node), (Some(6), 3));
        assert_eq!(
            v.resources,
            Resources {
                cpus: 12,
                memory: 2 << 30,
                gpus: 2,
                nodes: 2
            }
        );
        assert_eq!(
            with(1, 2, None, 0).unwrap().spec.resources.unwrap().tasks,
            Some(2)
        );
        assert_eq!(with(1, 1, None, 0).unwrap().resources.cpus, 1);
        assert_eq!(with(1, 2, Some(1), 0).unwrap_err().field, "resources.tasks");
        assert_eq!(
            with(1, 2, Some(5), 2).unwrap_err().field,
            "resources.tasks_per_node"
        );
        assert_eq!(
            with(65_536, 1, Some(1_000_000), 0).unwrap_err().field,
            "resources.cpus"
        );
    }

    #[test]
    fn defaults_are_filled() {
        let v = ValidSpec::parse(spec(&["/bin/echo", "hi"]), |_| true).unwrap();
        assert_eq!(v.spec.name, "echo");
        assert_eq!(
            v.resources,
            Resources {
                cpus: 1,
                memory: DEFAULT_MEMORY,
                gpus: 0,
                nodes: 1
            }
        );
        assert_eq!(v.site, None);
        assert_eq!(v.spec.site, "any");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut s = spec(&["true"]);
        s.resources = Some(ResourceRequest {
            cpus: Some(0),
            ..Default::default()
        });
        assert_eq!(err(s).field, "resources.cpus");
        let mut s = spec(&["true"]);
        s.resources = Some(ResourceRequest {
            walltime: "abc".into(),
            ..Default::default()
        });
        let e = err(s);
        assert_eq!(e.field, "resources.walltime");
        assert!(e.to_string().contains("\"abc\""), "{e}");
        assert_eq!(err(spec(&[])).field, "command");
        let mut s = spec(&["true"]);
        s.site = "mars".into();
        assert_eq!(err(s).field, "site");
        let mut s = spec(&["true"]);
        s.outputs = vec!["../etc/passwd".into()];
        assert_eq!(err(s).field, "outputs[0]");
    }

    #[test]
    fn a_warning_signal_is_normalized_and_needs_a_walltime() {
        let mut s = spec(&["true"]);
        s.signal = "sigusr1@30".into();
        assert!(err(s.clone()).to_string().contains("walltime"));
        s.resources = Some(ResourceRequest {
            walltime: "5m".into(),
            ..Default::default()
        });
        let v = ValidSpec::parse(s.clone(), |_| true).unwrap();
        assert_eq!(v.spec.signal, "USR1@30");
        s.signal = "USR1@-1".into();
        assert_eq!(err(s).field, "signal");
    }

    #[test]
    fn retries_default_to_three_and_are_bounded() {
        let v = ValidSpec::parse(spec(&["true"]), |_| true).unwrap();
        assert_eq!(v.spec.retries, Some(DEFAULT_RETRIES));
        let mut s = spec(&["true"]);
        s.retries = Some(0);
        assert_eq!(
            ValidSpec::parse(s.clone(), |_| true).unwrap().spec.retries,
            Some(0)
        );
        s.retries = Some(MAX_RETRIES + 1);
        assert_eq!(err(s).field, "retries");
    }
}
