//! What one attempt becomes in Slurm: a generated batch script and the
//! `sbatch` options for its resources, name, limits and files.

use std::path::Path;

use gantry_gate::batch::script;
use gantry_gate::{AttemptId, JobSpec};

/// The attempt whose job carries `comment`, if it is one of ours.
pub fn attempt_of(comment: &str) -> Option<&str> {
    comment.strip_prefix("gantry:")
}

/// The `--comment` that marks a Slurm job as this attempt's, so a gate that
/// restarts finds it even if it died between `sbatch` and writing its id down.
pub fn comment(attempt: &str) -> String {
    format!("gantry:{attempt}")
}

/// Lines of the batch script that write the job's nodes to `hostfile`, one
/// per line, and export `GANTRY_NODELIST` (one node's list is its name, so
/// only a job on several runs `scontrol`); srun gives its tasks the job's
/// environment.
pub fn nodelist_lines(hostfile: &str) -> String {
    format!(
        "case \"$SLURM_JOB_NODELIST\" in\n\
         *[[,]*) scontrol show hostnames \"$SLURM_JOB_NODELIST\" >{hostfile}\n\
         \x20   GANTRY_NODELIST=\"$(paste -sd, {hostfile})\" ;;\n\
         *) printf '%s\\n' \"$SLURM_JOB_NODELIST\" >{hostfile}\n\
         \x20   GANTRY_NODELIST=\"$SLURM_JOB_NODELIST\" ;;\n\
         esac\n\
         export GANTRY_NODELIST SLURM_EXPORT_ENV=ALL\n"
    )
}

/// The batch script of the attempt in `dir` (see
/// [`batch_script`](gantry_gate::batch::script::batch_script)); Slurm starts
/// it in `work/` or the task's own directory (`--chdir`).
pub fn batch_script(dir: &Path, attempt: &AttemptId, partition: &str, spec: &JobSpec) -> String {
    script::batch_script(
        "gantry-gate-slurm",
        dir,
        attempt,
        partition,
        spec,
        nodelist_lines,
    )
}

/// `sbatch` options for the attempt on Slurm partition `slurm_partition`.
pub fn sbatch_options(
    dir: &Path,
    attempt: &AttemptId,
    slurm_partition: &str,
    spec: &JobSpec,
) -> Vec<String> {
    let name = if spec.name.is_empty() {
        format!("gantry-{}", spec.job_id)
    } else {
        spec.name.clone()
    };
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let cwd = script::job_cwd(dir, spec);
    let mut o = vec![
        format!("--job-name={name}"),
        format!("--comment={}", comment(attempt.as_str())),
        format!("--partition={slurm_partition}"),
        format!("--nodes={}", spec.layout.nodes),
        format!("--ntasks={}", spec.layout.tasks),
        format!("--cpus-per-task={}", spec.cpus_per_task().max(1)),
        format!("--chdir={}", cwd.display()),
        format!("--output={}", path("stdout")),
        format!("--error={}", path("stderr")),
        // The environment sbatch runs in, which the gate makes the job
        // account's login environment and nothing of its own; the task's
        // comes from job.sh. (--export=NONE would have slurmd build a login
        // environment with `su -` as each job starts, holding its CPUs for
        // up to a second: a burst of short jobs ran at half speed.)
        "--export=ALL".into(),
    ];
    if let Some(n) = spec.layout.tasks_per_node {
        o.push(format!("--ntasks-per-node={n}"));
    }
    // Slurm's --mem and --gres are per node.
    if spec.memory_per_node() > 0 {
        let mb = spec.memory_per_node().div_ceil(1024 * 1024);
        o.push(format!("--mem={mb}M"));
    }
    if spec.gpus_per_node() > 0 {
        o.push(format!("--gres=gpu:{}", spec.gpus_per_node()));
    }
    if let Some(w) = spec.walltime {
        // Slurm counts in minutes; a limit is never shortened.
        o.push(format!("--time={}", w.as_secs().div_ceil(60).max(1)));
    }
    if let Some(stdin) = &spec.stdin {
        o.push(format!("--input={}", cwd.join(stdin).display()));
    }
    if let Some(w) = &spec.warning {
        // B: the batch shell, which is the job (exec'd by the batch script);
        // without it Slurm signals only job steps.
        o.push(format!("--signal=B:{}@{}", w.name, w.before.as_secs()));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use gantry_gate::Command;
    use std::time::Duration;

    fn spec(command: Command) -> JobSpec {
        JobSpec {
            job_id: 7,
            name: String::new(),
            command,
            env: [("A".to_string(), "it's".to_string())].into(),
            secret_env: Default::default(),
            resources: gantry_gate::Resources {
                cpus: 2,
                memory_bytes: 1536 * 1024 * 1024,
                gpus: 1,
            },
            layout: Default::default(),
            walltime: Some(Duration::from_secs(61)),
            owner: String::new(),
            warning: None,
            stdin: None,
            chdir: None,
        }
    }

    #[test]
    fn scripts_quote_and_options_carry_the_resources() {
        let attempt = AttemptId::parse("a", "a1").unwrap();
        let dir = Path::new("/w/attempts/a1");
        let s = batch_script(
            dir,
            &attempt,
            "p1",
            &spec(Command::Argv(vec!["echo".into(), "a b".into()])),
        );
        assert!(s.contains("export A='it'\\''s'\n"), "{s}");
        assert!(s.contains("export GANTRY_JOB_ID='7'\n"));
        assert!(s.ends_with("exec 'echo' 'a b'\n"));
        let s = batch_script(
            dir,
            &attempt,
            "p1",
            &spec(Command::Script("echo hi".into())),
        );
        assert!(s.ends_with("exec /bin/sh '/w/attempts/a1/script'\n"));
        let o = sbatch_options(
            dir,
            &attempt,
            "debug",
            &spec(Command::Argv(vec!["true".into()])),
        );
        for want in [
            "--job-name=gantry-7",
            "--comment=gantry:a1",
            "--partition=debug",
            "--cpus-per-task=2",
            "--mem=1536M",
            "--gres=gpu:1",
            "--time=2",
            "--chdir=/w/attempts/a1/work",
            "--output=/w/attempts/a1/stdout",
            "--export=ALL",
            "--nodes=1",
            "--ntasks=1",
        ] {
            assert!(o.iter().any(|x| x == want), "{want} in {o:?}");
        }
        assert!(!o.iter().any(|x| x.starts_with("--signal")), "{o:?}");
        // Two nodes of two tasks: CPUs per task, memory and GPUs per node.
        let mut wide = spec(Command::Argv(vec!["true".into()]));
        wide.resources.cpus = 8;
        wide.resources.memory_bytes *= 2;
        wide.resources.gpus = 2;
        wide.layout = gantry_gate::Layout {
            nodes: 2,
            tasks: 4,
            tasks_per_node: Some(2),
        };
        let o = sbatch_options(dir, &attempt, "debug", &wide);
        for want in [
            "--nodes=2",
            "--ntasks=4",
            "--ntasks-per-node=2",
            "--cpus-per-task=2",
            "--mem=1536M",
            "--gres=gpu:1",
        ] {
            assert!(o.iter().any(|x| x == want), "{want} in {o:?}");
        }
        let s = batch_script(dir, &attempt, "p1", &wide);
        assert!(s.contains("export GANTRY_NTASKS='4'\n"), "{s}");
        assert!(
            s.contains(
                "scontrol show hostnames \"$SLURM_JOB_NODELIST\" >'/w/attempts/a1/hostfile'\n"
            ),
            "{s}"
        );
        let mut warned = spec(Command::Argv(vec!["true".into()]));
        warned.warning = Some(gantry_gate::Warning {
            name: "USR1".into(),
            number: 10,
            before: Duration::from_secs(30),
        });
        let o = sbatch_options(dir, &attempt, "debug", &warned);
        assert!(o.iter().any(|x| x == "--signal=B:USR1@30"), "{o:?}");
        assert!(!o.iter().any(|x| x.starts_with("--input")), "{o:?}");
        warned.stdin = Some("data/in.txt".into());
        let o = sbatch_options(dir, &attempt, "debug", &warned);
        assert!(
            o.iter()
                .any(|x| x == "--input=/w/attempts/a1/work/data/in.txt"),
            "{o:?}"
        );
        warned.chdir = Some("/home/a/run".into());
        let o = sbatch_options(dir, &attempt, "debug", &warned);
        assert!(o.iter().any(|x| x == "--chdir=/home/a/run"), "{o:?}");
        assert!(
            o.iter().any(|x| x == "--input=/home/a/run/data/in.txt"),
            "{o:?}"
        );
    }

    #[test]
    fn one_node_is_listed_without_scontrol() {
        let dir = tempfile::tempdir().unwrap();
        let hostfile = dir.path().join("hostfile");
        let lines = nodelist_lines(&script::quote(&hostfile.to_string_lossy()));
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", &format!("{lines}echo \"$GANTRY_NODELIST\"")])
            .env("SLURM_JOB_NODELIST", "cn01")
            // No scontrol to be found: the one-node case must not need it.
            .env("PATH", "/nonexistent")
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "cn01\n");
        assert_eq!(std::fs::read_to_string(&hostfile).unwrap(), "cn01\n");
    }
}
