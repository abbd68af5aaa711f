//! What the supervisor is asked to start for one attempt.

use gantry_gate::{Account, AttemptId, Command, JobSpec, PartitionId};

use crate::alloc::Alloc;
use crate::config::LocalConfig;
use crate::host::Host;
use crate::layout::{AttemptDir, AttemptMeta};
use crate::protocol::{Script, Start, WarnAt};

/// The environment variable that carries a job's attempt id; the supervisor
/// also finds by it the processes of an attempt whose pid it did not record.
pub const ATTEMPT_ENV: &str = "GANTRY_ATTEMPT_ID";

/// The [`Start`] command of an attempt: its program (a script task runs
/// through its `#!` line or `/bin/sh`), its whole environment (a login's
/// minimum, the job's own variables and the `GANTRY_*` ones), what it holds
/// (CPUs, GPUs), its walltime and warning signal, and the account it runs
/// as (`None`: the supervisor's own).
#[allow(clippy::too_many_arguments)]
pub fn start_command(
    config: &LocalConfig,
    host: &Host,
    dir: &AttemptDir,
    attempt: &AttemptId,
    partition: &PartitionId,
    spec: &JobSpec,
    alloc: &Alloc,
    account: Option<&Account>,
) -> Start {
    let (argv, script) = match &spec.command {
        Command::Argv(argv) => (argv.clone(), None),
        Command::Script(text) => {
            let path = dir.file("script").to_string_lossy().into_owned();
            let executable = text.starts_with("#!");
            let argv = if executable {
                vec![path]
            } else {
                vec!["/bin/sh".into(), path]
            };
            let script = Script {
                text: text.clone(),
                executable,
            };
            (argv, Some(script))
        }
    };
    let mut env = match account {
        Some(a) => a.login_env(),
        None => host.login_env.clone(),
    };
    env.extend(spec.env.clone());
    // Secrets go to the supervisor over its socket and into the process's
    // environment only; the supervisor writes no environment to disk.
    env.extend(spec.secret_env.0.clone());
    env.insert("GANTRY_JOB_ID".into(), spec.job_id.to_string());
    env.insert(ATTEMPT_ENV.into(), attempt.to_string());
    env.insert("GANTRY_PARTITION_ID".into(), partition.to_string());
    // One node, this one; its tasks are the job's to start (mpirun -np).
    env.insert("GANTRY_NODELIST".into(), host.hostname.clone());
    env.insert("GANTRY_NTASKS".into(), spec.layout.tasks.to_string());
    let mut slot_env = std::collections::BTreeMap::new();
    if host.gpus > 0 {
        let gpus: Vec<String> = alloc.gpus.iter().map(|g| g.to_string()).collect();
        slot_env.insert("CUDA_VISIBLE_DEVICES".to_string(), gpus.join(","));
    }
    env.extend(slot_env.clone());
    let meta = AttemptMeta {
        partition_id: partition.to_string(),
        job_id: spec.job_id,
        alloc: alloc.clone(),
    };
    Start {
        attempt: attempt.to_string(),
        argv,
        env,
        script,
        cpus: cpus(alloc, host),
        walltime_seconds: spec.walltime.map_or(0, |w| w.as_secs()),
        grace_seconds: config.kill_grace.as_secs(),
        env_complete: true,
        stdin: spec.stdin.clone(),
        chdir: spec.chdir.clone(),
        warning: spec.warning.as_ref().map(|w| WarnAt {
            signal: w.number,
            seconds: w.before.as_secs(),
        }),
        meta: serde_json::to_value(meta).expect("meta serializes"),
        queued: false,
        shape: alloc.shape(),
        slot_env,
        held: serde_json::to_value(alloc).expect("an allocation serializes"),
        account: account.cloned(),
    }
}

/// The host CPU ids of `alloc`'s slots, sorted.
pub fn cpus(alloc: &Alloc, host: &Host) -> Vec<usize> {
    let mut ids: Vec<usize> = alloc
        .cpu_slots
        .iter()
        .map(|&slot| host.cpu_ids[slot as usize % host.cpu_ids.len()])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> Host {
        Host {
            cpu_ids: vec![2, 5],
            memory_bytes: 0,
            gpus: 0,
            hostname: "h".into(),
            login_env: [("PATH".to_string(), "/bin".to_string())].into(),
        }
    }

    #[test]
    fn maps_slots_onto_host_cpus() {
        let alloc = |slots: Vec<u32>| Alloc {
            cpu_slots: slots,
            ..Default::default()
        };
        assert_eq!(cpus(&alloc(vec![0]), &host()), [2]);
        assert_eq!(cpus(&alloc(vec![1, 2, 3]), &host()), [2, 5]);
    }

    #[test]
    fn script_tasks_run_by_sh_or_their_shebang() {
        let attempt = AttemptId::parse("a", "a1").unwrap();
        let partition = PartitionId::parse("p", "p1").unwrap();
        let spec = |script: &str| JobSpec {
            job_id: 1,
            name: String::new(),
            command: Command::Script(script.into()),
            env: Default::default(),
            secret_env: Default::default(),
            resources: Default::default(),
            layout: Default::default(),
            walltime: None,
            owner: String::new(),
            warning: None,
            stdin: None,
            chdir: None,
        };
        let d = AttemptDir::new(std::path::Path::new("/w/attempts"), "a1");
        let config = LocalConfig::new("/w");
        let start = |text: &str| {
            start_command(
                &config,
                &host(),
                &d,
                &attempt,
                &partition,
                &spec(text),
                &Alloc::default(),
                None,
            )
        };
        let s = start("echo hi");
        assert_eq!(s.argv, ["/bin/sh", "/w/attempts/a1/script"]);
        assert!(!s.script.unwrap().executable);
        assert_eq!(s.env["GANTRY_JOB_ID"], "1");
        assert_eq!(
            (
                s.env["GANTRY_NODELIST"].as_str(),
                s.env["GANTRY_NTASKS"].as_str()
            ),
            ("h", "1")
        );
        assert_eq!(s.env["PATH"], "/bin");
        assert!(s.env_complete);
        let s = start("#!/bin/bash\necho");
        assert_eq!(s.argv, ["/w/attempts/a1/script"]);
        assert!(s.script.unwrap().executable);
        assert_eq!(s.meta["partition_id"], "p1");
    }
}
