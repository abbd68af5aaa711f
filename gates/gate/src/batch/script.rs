//! The batch script of an attempt: the task's environment, its secrets
//! (from a file the job deletes as it starts, never in the script the
//! system keeps), the job's hosts, then the program.

use std::path::Path;

use crate::ids::AttemptId;
use crate::spec::{Command, JobSpec};

/// The file in the attempt directory that carries the job's secrets from the
/// gate to the job, which deletes it as it starts.
pub const SECRETS_FILE: &str = "secrets";

/// The secrets file's text: `export NAME='value'` lines.
pub fn secrets_text(spec: &JobSpec) -> String {
    spec.secret_env
        .0
        .iter()
        .map(|(k, v)| format!("export {k}={}\n", quote(v)))
        .collect()
}

/// Single-quote `s` for sh.
pub fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The batch script of `attempt` in `dir`, written by `gate` (its program
/// name): the task's environment, its secrets, `nodelist` (the system's
/// lines that write `hostfile` and export `GANTRY_NODELIST`, from
/// [`BatchSystem::nodelist_lines`](super::BatchSystem::nodelist_lines)),
/// then the program (argv), or the task's own script (`script` in the
/// attempt directory, run by its `#!` line or by sh).
pub fn batch_script(
    gate: &str,
    dir: &Path,
    attempt: &AttemptId,
    partition: &str,
    spec: &JobSpec,
    nodelist: impl FnOnce(&str) -> String,
) -> String {
    let mut s = String::from("#!/bin/sh\n");
    s.push_str(&format!(
        "# Written by {gate} for Gantry job {} (attempt {attempt}).\n",
        spec.job_id
    ));
    let mut env = spec.env.clone();
    env.insert("GANTRY_JOB_ID".into(), spec.job_id.to_string());
    env.insert("GANTRY_ATTEMPT_ID".into(), attempt.to_string());
    env.insert("GANTRY_PARTITION_ID".into(), partition.to_string());
    env.insert("GANTRY_NTASKS".into(), spec.layout.tasks.to_string());
    let hostfile = dir.join("hostfile").to_string_lossy().into_owned();
    env.insert("GANTRY_HOSTFILE".into(), hostfile.clone());
    for (k, v) in &env {
        s.push_str(&format!("export {k}={}\n", quote(v)));
    }
    if !spec.secret_env.is_empty() {
        // The job's secrets are not in this script (the system keeps it):
        // the gate wrote them for this start only, readable by the job's
        // user alone; the job reads them, empties the file and deletes it
        // (a job run as its owner cannot: the directory is the gate's).
        let secrets = quote(&dir.join(SECRETS_FILE).to_string_lossy());
        s.push_str(&format!(
            "if [ ! -s {secrets} ]; then echo 'gantry: this job'\\''s secrets were already used; a job run again by the batch system does not get them' >&2; exit 1; fi\n\
             . {secrets}\n\
             : > {secrets}\n\
             rm -f {secrets} 2>/dev/null\n"
        ));
    }
    s.push_str(&nodelist(&quote(&hostfile)));
    match &spec.command {
        Command::Argv(argv) => {
            let words: Vec<String> = argv.iter().map(|a| quote(a)).collect();
            s.push_str(&format!("exec {}\n", words.join(" ")));
        }
        Command::Script(text) => {
            let path = quote(&dir.join("script").to_string_lossy());
            if text.starts_with("#!") {
                s.push_str(&format!("exec {path}\n"));
            } else {
                s.push_str(&format!("exec /bin/sh {path}\n"));
            }
        }
    }
    s
}

/// Where the job runs: the attempt's `work/`, or the task's own directory.
pub fn job_cwd(dir: &Path, spec: &JobSpec) -> std::path::PathBuf {
    spec.chdir
        .as_ref()
        .map_or_else(|| dir.join("work"), |d| Path::new(d).to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn spec(command: Command) -> JobSpec {
        JobSpec {
            job_id: 7,
            name: String::new(),
            command,
            env: [("A".to_string(), "it's".to_string())].into(),
            secret_env: Default::default(),
            resources: crate::Resources {
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

    fn nodes(hostfile: &str) -> String {
        format!("hostname >{hostfile}\n")
    }

    #[test]
    fn secrets_go_to_their_own_file_never_into_the_script() {
        let attempt = AttemptId::parse("a", "a1").unwrap();
        let dir = Path::new("/w/attempts/a1");
        let mut s = spec(Command::Argv(vec!["true".into()]));
        s.secret_env = gantry_proto::secrets::Secrets(
            [("TOKEN".to_string(), "it's s3cr3t".to_string())].into(),
        );
        let script = batch_script("g", dir, &attempt, "p1", &s, nodes);
        assert!(!script.contains("s3cr3t"), "{script}");
        assert!(
            script.contains(
                ". '/w/attempts/a1/secrets'\n: > '/w/attempts/a1/secrets'\nrm -f '/w/attempts/a1/secrets' 2>/dev/null\n"
            ),
            "{script}"
        );
        assert_eq!(secrets_text(&s), "export TOKEN='it'\\''s s3cr3t'\n");
        // The secrets come after the job's env (they win) and before it runs.
        let env_at = script.find("export A=").unwrap();
        let secrets_at = script.find(". '/w/").unwrap();
        let exec_at = script.find("exec ").unwrap();
        assert!(env_at < secrets_at && secrets_at < exec_at, "{script}");
        let plain = batch_script(
            "g",
            dir,
            &attempt,
            "p1",
            &spec(Command::Argv(vec!["true".into()])),
            nodes,
        );
        assert!(!plain.contains("secrets"), "{plain}");
    }

    #[test]
    fn scripts_quote_and_run_the_command() {
        let attempt = AttemptId::parse("a", "a1").unwrap();
        let dir = Path::new("/w/attempts/a1");
        let argv = spec(Command::Argv(vec!["echo".into(), "a b".into()]));
        let s = batch_script("g", dir, &attempt, "p1", &argv, nodes);
        assert!(s.contains("export A='it'\\''s'\n"), "{s}");
        assert!(s.contains("export GANTRY_JOB_ID='7'\n"));
        assert!(s.contains("hostname >'/w/attempts/a1/hostfile'\n"), "{s}");
        assert!(s.ends_with("exec 'echo' 'a b'\n"));
        let script = spec(Command::Script("echo hi".into()));
        let s = batch_script("g", dir, &attempt, "p1", &script, nodes);
        assert!(s.ends_with("exec /bin/sh '/w/attempts/a1/script'\n"));
        assert_eq!(job_cwd(dir, &script), Path::new("/w/attempts/a1/work"));
    }
}
