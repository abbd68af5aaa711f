//! `gantry submit`: send a command or a script to gantryd.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Args;
use gantry_client::{Client, JobSpec, ResourceRequest};

use crate::cmd::Ctx;
use crate::output;
use crate::parse::{self, InputArg};

/// The flags that describe a job; also accepted on `#GANTRY` lines.
#[derive(Args, Debug, Default, Clone, PartialEq, Eq)]
pub struct JobFlags {
    /// A name for people [default: the program's or script's file name]
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Logical CPUs for each task, as sbatch --cpus-per-task [server default: 1]
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Memory on each node, e.g. 512MiB, 4G (binary units), as sbatch --mem
    /// [server default: 256MiB]
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// GPUs on each node [default: 0]
    #[arg(long, value_name = "N")]
    pub gpus: Option<u32>,
    /// Nodes the job spans, as sbatch --nodes (a Slurm site; its node list
    /// is in GANTRY_NODELIST and GANTRY_HOSTFILE) [server default: 1]
    #[arg(long, short = 'N', value_name = "N")]
    pub nodes: Option<u32>,
    /// Tasks (MPI ranks) the job starts with srun or mpirun, as sbatch
    /// --ntasks; in GANTRY_NTASKS [server default: one per node]
    #[arg(long, short = 'n', value_name = "N")]
    pub ntasks: Option<u32>,
    /// At most this many tasks on each node, as sbatch --ntasks-per-node
    /// [default: as the site spreads them]
    #[arg(long, value_name = "N")]
    pub ntasks_per_node: Option<u32>,
    /// Longest run time, e.g. 90s, 1h30m, 01:30:00, 2-00:00:00 [default: the site's limit]
    #[arg(long, value_name = "DURATION")]
    pub walltime: Option<String>,
    /// Send this signal that many seconds before the walltime ends, as
    /// sbatch --signal: USR1@120, SIGINT, 10@30 [default lead: 60 s]. Cancel
    /// and walltime send SIGTERM first, then SIGKILL after the site's grace
    #[arg(long, value_name = "SIG[@SECONDS]")]
    pub signal: Option<String>,
    /// The site (gate) to run on [default: any, the scheduler chooses]
    #[arg(long, value_name = "SITE")]
    pub site: Option<String>,
    /// Upload a local file into the job's working directory, optionally under
    /// another relative path (repeatable)
    #[arg(long = "input", value_name = "PATH[:DEST]", value_parser = parse::input)]
    pub inputs: Vec<InputArg>,
    /// Run the job in this directory of the site (on this machine or a
    /// cluster sharing its file systems; relative: to this directory), as
    /// sbatch --chdir; not with --input/--output [default: a directory
    /// Gantry makes for the job]
    #[arg(long, value_name = "DIR")]
    pub chdir: Option<PathBuf>,
    /// Upload a local file and give it to the job as its standard input
    /// (placed in the working directory under its file name) [default: none]
    #[arg(long, value_name = "FILE")]
    pub stdin: Option<PathBuf>,
    /// Copy files matching this glob (relative to the working directory, e.g.
    /// 'out/*.csv') back after the job ends; fetch them with `gantry outputs` (repeatable)
    #[arg(long = "output", value_name = "GLOB")]
    pub outputs: Vec<String>,
    /// Attach a label, for filtering with `gantry ls --label` (repeatable)
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub labels: Vec<(String, String)>,
    /// Set an environment variable in the job (repeatable)
    #[arg(long = "env", value_name = "KEY=VALUE", value_parser = parse::key_value)]
    pub env: Vec<(String, String)>,
    /// Give the job this variable of this shell as a secret (a token, a
    /// password): its value is never shown by `gantry show`, `ls` or
    /// `--json`, never written into a script or log, and deleted from
    /// gantryd when the job ends. The value is read from the environment, never
    /// from the command line (repeatable)
    #[arg(long = "secret-env", value_name = "NAME")]
    pub secret_env: Vec<String>,
    /// Variables of this shell to give the job, as sbatch --export: ALL,
    /// NONE, or NAME[=VALUE][,...] (ALL,NAME=VALUE adds to all). The job
    /// always starts from the site's login environment; --env wins
    /// [default: NONE; sbatch's is ALL]
    #[arg(long, value_name = "ALL|NONE|NAMES")]
    pub export: Option<String>,
    /// Start only after these jobs COMPLETED (repeatable, or comma-separated)
    #[arg(long, value_name = "ID", value_delimiter = ',')]
    pub after: Vec<u64>,
    /// Run the job again, up to N times, when what ran it is lost (its
    /// machine, node agent or supervisor), as sbatch --requeue; never for
    /// its own failure, a walltime or a cancel, 0..100 [server default: 3]
    #[arg(long, value_name = "N")]
    pub retries: Option<u32>,
    /// Higher runs first, -1000..1000 [default: 0]
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Submit held: not scheduled until `gantry release ID`
    #[arg(long)]
    pub hold: bool,
    /// Submit an array of tasks, one per index: 0-99, 1,3,5 or 0-100:10
    /// (Slurm's --array); each task sees GANTRY_ARRAY_INDEX
    #[arg(long, value_name = "INDICES")]
    pub array: Option<String>,
}

fn join<T>(mut first: Vec<T>, second: Vec<T>) -> Vec<T> {
    first.extend(second);
    first
}

impl JobFlags {
    /// These flags (from the command line) over `directives` (from the
    /// script): single values here win, repeatable values add up.
    pub fn overriding(self, directives: JobFlags) -> JobFlags {
        JobFlags {
            name: self.name.or(directives.name),
            cpus: self.cpus.or(directives.cpus),
            mem: self.mem.or(directives.mem),
            gpus: self.gpus.or(directives.gpus),
            nodes: self.nodes.or(directives.nodes),
            ntasks: self.ntasks.or(directives.ntasks),
            ntasks_per_node: self.ntasks_per_node.or(directives.ntasks_per_node),
            walltime: self.walltime.or(directives.walltime),
            signal: self.signal.or(directives.signal),
            site: self.site.or(directives.site),
            inputs: join(directives.inputs, self.inputs),
            stdin: self.stdin.or(directives.stdin),
            chdir: self.chdir.or(directives.chdir),
            outputs: join(directives.outputs, self.outputs),
            labels: join(directives.labels, self.labels),
            env: join(directives.env, self.env),
            secret_env: join(directives.secret_env, self.secret_env),
            export: self.export.or(directives.export),
            after: join(directives.after, self.after),
            retries: self.retries.or(directives.retries),
            priority: self.priority.or(directives.priority),
            hold: self.hold || directives.hold,
            array: self.array.or(directives.array),
        }
    }

    /// The job spec these flags describe, running `program` (inputs not
    /// included: they are uploaded first).
    pub fn spec(&self, program: Program) -> JobSpec {
        let map = |pairs: &[(String, String)]| pairs.iter().cloned().collect::<HashMap<_, _>>();
        let (argv, script) = match program {
            Program::Argv(argv) => (argv, String::new()),
            Program::Script(text) => (Vec::new(), text),
        };
        JobSpec {
            name: self.name.clone().unwrap_or_default(),
            argv,
            script,
            env: map(&self.env),
            // Set by `run` from this process's environment.
            secret_env: HashMap::new(),
            resources: Some(ResourceRequest {
                cpus: self.cpus,
                memory: self.mem.clone().unwrap_or_default(),
                gpus: self.gpus.unwrap_or(0),
                nodes: self.nodes,
                walltime: self.walltime.clone().unwrap_or_default(),
                tasks: self.ntasks,
                tasks_per_node: self.ntasks_per_node.unwrap_or(0),
            }),
            site: self.site.clone().unwrap_or_default(),
            inputs: Vec::new(),
            outputs: self.outputs.clone(),
            labels: map(&self.labels),
            priority: self.priority.unwrap_or(0),
            after: self.after.clone(),
            hold: self.hold,
            array: self.array.clone().unwrap_or_default(),
            signal: self.signal.clone().unwrap_or_default(),
            // Set by `run` once the file is uploaded.
            stdin: String::new(),
            chdir: self
                .chdir
                .as_ref()
                .map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone()))
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_default(),
            retries: self.retries,
        }
    }
}

/// The variables `--export` takes from `shell` (the submitting
/// environment): ALL (but Gantry's own `GANTRY_*` settings and names a job
/// cannot carry), NONE, or names, each with an optional value.
pub fn exported(
    export: &str,
    shell: impl Iterator<Item = (String, String)>,
) -> anyhow::Result<HashMap<String, String>> {
    let shell: HashMap<String, String> = shell.collect();
    let mut env = HashMap::new();
    for item in export.split(',').map(str::trim).filter(|i| !i.is_empty()) {
        match item.split_once('=') {
            _ if item == "NONE" => {}
            _ if item == "ALL" => env.extend(
                shell
                    .iter()
                    .filter(|(k, _)| !k.starts_with("GANTRY_") && gantry_proto::is_env_name(k))
                    .map(|(k, v)| (k.clone(), v.clone())),
            ),
            Some((name, value)) => {
                env.insert(name.to_string(), value.to_string());
            }
            None => match shell.get(item) {
                Some(value) => {
                    env.insert(item.to_string(), value.clone());
                }
                None => bail!("--export {item}: {item} is not set in this shell"),
            },
        }
    }
    Ok(env)
}

/// What a job runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Program {
    /// A program and its arguments, run without a shell.
    Argv(Vec<String>),
    /// A script's text, run by `/bin/sh` or its `#!` line.
    Script(String),
}

/// Arguments of `gantry submit`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gantry submit -- echo hello
  gantry submit --cpus 4 --mem 8GiB --walltime 1h -- python train.py --epochs 10
  gantry submit --input data.csv:in/data.csv --output 'out/*' -- ./analyse in/data.csv
  gantry submit --after 41,42 --label project=x -- make report
  gantry submit job.sh            # a script; reads its #GANTRY lines
  gantry submit --array 0-99 -- ./sweep.sh   # 100 tasks; each reads $GANTRY_ARRAY_INDEX

A script may carry its flags on #GANTRY lines before its first command, as
sbatch reads #SBATCH (flags on the command line override them):
  #!/bin/bash
  #GANTRY --name nightly --cpus 8 --mem 16GiB
  #GANTRY --output 'results/*'
  ./run.sh")]
pub struct SubmitArgs {
    #[command(flatten)]
    flags: JobFlags,
    /// A script file to run (its #GANTRY lines are read as flags)
    #[arg(value_name = "SCRIPT", conflicts_with = "command")]
    script: Option<PathBuf>,
    /// The program and its arguments, after `--`
    #[arg(last = true, value_name = "COMMAND")]
    command: Vec<String>,
}

/// Read a script and its directives, with the command line's flags over them.
fn script_job(path: &Path, flags: JobFlags) -> anyhow::Result<(JobFlags, Program)> {
    if !path.is_file() {
        bail!(
            "`{}` is not a script file; to run a command, put it after `--`: gantry submit -- {}",
            path.display(),
            path.display()
        );
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read script {}", path.display()))?;
    let directives = crate::directives::read(&text)
        .with_context(|| format!("{}: bad #GANTRY directive", path.display()))?;
    let mut flags = flags.overriding(directives);
    if flags.name.is_none() {
        flags.name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    }
    Ok((flags, Program::Script(text)))
}

impl SubmitArgs {
    /// The effective flags and the program.
    pub fn resolve(self) -> anyhow::Result<(JobFlags, Program)> {
        match (self.script, self.command.is_empty()) {
            (Some(path), _) => script_job(&path, self.flags),
            (None, false) => Ok((self.flags, Program::Argv(self.command))),
            (None, true) => bail!(
                "nothing to run: give a command after `--` (gantry submit -- echo hello) or a script file (gantry submit job.sh)"
            ),
        }
    }
}

/// Run `gantry submit`.
pub async fn run(ctx: &Ctx, args: SubmitArgs) -> anyhow::Result<i32> {
    let (flags, program) = args.resolve()?;
    let mut spec = flags.spec(program);
    if let Some(export) = &flags.export {
        for (name, value) in exported(export, std::env::vars())? {
            // A secret goes as a secret only, never also as plain environment.
            if !flags.secret_env.contains(&name) {
                spec.env.entry(name).or_insert(value);
            }
        }
    }
    for name in &flags.secret_env {
        let value = std::env::var(name).map_err(|_| {
            anyhow::anyhow!(
                "--secret-env {name}: {name} is not set in this environment; \
                 export it first (its value is read from there, never from the command line)"
            )
        })?;
        spec.secret_env.insert(name.clone(), value);
    }
    let client: Client = ctx.connect().await?;
    for input in &flags.inputs {
        let mut file = client
            .upload_input(&input.local)
            .await
            .with_context(|| format!("cannot upload input {}", input.local.display()))?;
        if let Some(dest) = &input.dest {
            file.path = dest.clone();
        }
        spec.inputs.push(file);
    }
    if let Some(local) = &flags.stdin {
        let name = local
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .with_context(|| format!("--stdin {}: not a file", local.display()))?;
        if !spec.inputs.iter().any(|i| i.path == name) {
            let file = client
                .upload_input(local)
                .await
                .with_context(|| format!("cannot upload --stdin {}", local.display()))?;
            spec.inputs.push(gantry_client::InputFile {
                path: name.clone(),
                ..file
            });
        }
        spec.stdin = name;
    }
    let job = client.submit(spec).await?;
    if ctx.json {
        output::print_json(&output::JobView::from(&job))?;
    } else if let Some(array) = &job.array {
        crate::out!(
            "submitted array {} of {} tasks (jobs {}-{}); `gantry ls --array {}` lists them",
            job.id,
            array.task_count,
            array.first_task_id,
            array.first_task_id + array.task_count.saturating_sub(1),
            job.id
        );
    } else {
        crate::out!("submitted job {}", job.id);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrap {
        #[command(flatten)]
        args: SubmitArgs,
    }

    fn parse(args: &[&str]) -> Result<SubmitArgs, clap::Error> {
        Wrap::try_parse_from(std::iter::once("submit").chain(args.iter().copied())).map(|w| w.args)
    }

    #[test]
    fn export_takes_all_none_or_names_from_the_shell() {
        let shell = || {
            [
                ("A", "1"),
                ("B", "2"),
                ("GANTRY_ADDR", "x"),
                ("BASH_FUNC_f%%", "()"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
        };
        let keys = |m: HashMap<String, String>| {
            let mut k: Vec<String> = m.into_iter().map(|(k, v)| format!("{k}={v}")).collect();
            k.sort();
            k
        };
        assert_eq!(keys(exported("ALL", shell()).unwrap()), ["A=1", "B=2"]);
        assert!(exported("NONE", shell()).unwrap().is_empty());
        assert_eq!(keys(exported("B,C=3", shell()).unwrap()), ["B=2", "C=3"]);
        assert_eq!(keys(exported("ALL,A=9", shell()).unwrap()), ["A=9", "B=2"]);
        let e = exported("NOPE", shell()).unwrap_err().to_string();
        assert!(e.contains("NOPE is not set"), "{e}");
    }

    #[test]
    fn argv_after_double_dash() {
        let args = parse(&["--cpus", "0", "--priority", "-5", "--", "echo", "--hi"]).unwrap();
        let (flags, program) = args.resolve().unwrap();
        assert_eq!(program, Program::Argv(vec!["echo".into(), "--hi".into()]));
        let spec = flags.spec(program);
        assert_eq!(spec.resources.unwrap().cpus, Some(0));
        assert_eq!(spec.priority, -5);
    }

    #[test]
    fn repeated_flags_and_lists() {
        let args = parse(&[
            "--label",
            "a=1",
            "--label",
            "b=2",
            "--after",
            "1,2",
            "--after",
            "3",
            "--input",
            "x.csv:in/x.csv",
            "--env",
            "K=V",
            "--",
            "true",
        ])
        .unwrap();
        let (flags, program) = args.resolve().unwrap();
        assert_eq!(flags.after, vec![1, 2, 3]);
        assert_eq!(flags.inputs[0].dest.as_deref(), Some("in/x.csv"));
        let spec = flags.spec(program);
        assert_eq!(spec.labels.len(), 2);
        assert_eq!(spec.env.get("K").map(String::as_str), Some("V"));
    }

    #[test]
    fn script_directives_are_overridden_by_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("job.sh");
        std::fs::write(
            &path,
            "#!/bin/sh\n#GANTRY --cpus 2 --mem 1GiB --label a=1\necho hi\n",
        )
        .unwrap();
        let args = parse(&["--cpus", "8", "--label", "a=2", path.to_str().unwrap()]).unwrap();
        let (flags, program) = args.resolve().unwrap();
        assert!(matches!(program, Program::Script(ref s) if s.contains("echo hi")));
        assert_eq!(flags.name.as_deref(), Some("job.sh"));
        let spec = flags.spec(program);
        let resources = spec.resources.unwrap();
        assert_eq!(
            (resources.cpus, resources.memory.as_str()),
            (Some(8), "1GiB")
        );
        assert_eq!(spec.labels["a"], "2", "the command line's label wins");
    }

    #[test]
    fn a_word_that_is_not_a_file_says_to_use_double_dash() {
        let err = parse(&["/no/such/prog"]).unwrap().resolve().unwrap_err();
        assert!(err.to_string().contains("after `--`"), "{err}");
        assert!(parse(&["echo", "hi"]).is_err());
        assert!(parse(&[]).unwrap().resolve().is_err());
    }
}
