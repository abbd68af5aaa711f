//! Starting one attempt: its files, then `gantry-shim` as a child.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Stdio;

use gantry_gate::{AttemptId, Command, GateError, JobSpec, PartitionId, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::alloc::Alloc;
use crate::config::LocalConfig;
use crate::host::Host;
use crate::layout::{AttemptDir, AttemptRecord, Pids, RECORD_VERSION};

/// Write the attempt's files (directory, `work/`, `script`, `attempt.json`);
/// after this the attempt exists on disk.
pub fn prepare(
    dir: &AttemptDir,
    attempt: &AttemptId,
    partition: &PartitionId,
    spec: &JobSpec,
    alloc: &Alloc,
) -> Result<AttemptRecord> {
    let work = dir.work();
    std::fs::create_dir_all(&work).map_err(GateError::io(format!("create {}", work.display())))?;
    let argv = match &spec.command {
        Command::Argv(argv) => argv.clone(),
        Command::Script(script) => {
            let path = dir.file("script");
            std::fs::write(&path, script)
                .map_err(GateError::io(format!("write {}", path.display())))?;
            let shown = path.to_string_lossy().into_owned();
            if script.starts_with("#!") {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
                    .map_err(GateError::io(format!("chmod {}", path.display())))?;
                vec![shown]
            } else {
                vec!["/bin/sh".into(), shown]
            }
        }
    };
    let record = AttemptRecord {
        version: RECORD_VERSION,
        attempt_id: attempt.to_string(),
        partition_id: partition.to_string(),
        job_id: spec.job_id,
        name: spec.name.clone(),
        argv,
        env: spec.env.clone(),
        walltime_seconds: spec.walltime.map_or(0, |w| w.as_secs()),
        alloc: alloc.clone(),
    };
    let path = dir.file("attempt.json");
    let tmp = dir.file(".attempt.json.tmp");
    let json = serde_json::to_vec(&record).map_err(|e| GateError::Internal(e.to_string()))?;
    std::fs::write(&tmp, json)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(GateError::io(format!("write {}", path.display())))?;
    Ok(record)
}

/// The host CPU ids of `alloc`'s slots, as `0,3`.
pub fn cpu_list(alloc: &Alloc, host: &Host) -> String {
    let mut ids: Vec<usize> = alloc
        .cpu_slots
        .iter()
        .map(|&slot| host.cpu_ids[slot as usize % host.cpu_ids.len()])
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

/// Start `gantry-shim` for the attempt. It runs in its own process group
/// (a Ctrl-C to the gate does not reach it) and is not killed when the
/// gate drops the handle or dies.
pub fn spawn_shim(
    config: &LocalConfig,
    host: &Host,
    dir: &AttemptDir,
    record: &AttemptRecord,
) -> Result<Child> {
    let mut cmd = tokio::process::Command::new(&config.shim);
    cmd.arg("--dir")
        .arg(&dir.dir)
        .arg("--walltime")
        .arg(record.walltime_seconds.to_string())
        .arg("--grace")
        .arg(config.kill_grace.as_secs().to_string())
        .arg("--cpus")
        .arg(cpu_list(&record.alloc, host))
        .arg("--")
        .args(&record.argv)
        .envs(&record.env)
        .env("GANTRY_JOB_ID", record.job_id.to_string())
        .env("GANTRY_ATTEMPT_ID", &record.attempt_id)
        .env("GANTRY_PARTITION_ID", &record.partition_id)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .kill_on_drop(false);
    if host.gpus > 0 {
        let gpus: Vec<String> = record.alloc.gpus.iter().map(|g| g.to_string()).collect();
        cmd.env("CUDA_VISIBLE_DEVICES", gpus.join(","));
    }
    cmd.spawn().map_err(|e| {
        GateError::Unavailable(format!(
            "cannot start the job supervisor {}: {e}; check --shim",
            display(&config.shim)
        ))
    })
}

fn display(path: &Path) -> String {
    path.display().to_string()
}

/// Read the shim's first line: `started <pids>` once the job runs; `None`
/// when it could not start the job (its `exit.json` says why) or died.
pub async fn announcement(child: &mut Child) -> Option<Pids> {
    let stdout = child.stdout.take()?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).await.ok()?;
    line.strip_prefix("started ").and_then(Pids::parse)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_slots_onto_host_cpus() {
        let host = Host {
            cpu_ids: vec![2, 5],
            memory_bytes: 0,
            gpus: 0,
            hostname: "h".into(),
        };
        let alloc = |slots: Vec<u32>| Alloc {
            cpu_slots: slots,
            ..Default::default()
        };
        assert_eq!(cpu_list(&alloc(vec![0]), &host), "2");
        assert_eq!(cpu_list(&alloc(vec![1, 2, 3]), &host), "2,5");
    }

    #[test]
    fn script_tasks_run_by_sh_or_their_shebang() {
        let dir = tempfile::tempdir().unwrap();
        let attempt = AttemptId::parse("a", "a1").unwrap();
        let partition = PartitionId::parse("p", "p1").unwrap();
        let spec = |script: &str| JobSpec {
            job_id: 1,
            name: String::new(),
            command: Command::Script(script.into()),
            env: Default::default(),
            resources: Default::default(),
            walltime: None,
            owner: String::new(),
        };
        let d = AttemptDir::new(dir.path(), "a1");
        let r = prepare(
            &d,
            &attempt,
            &partition,
            &spec("echo hi"),
            &Alloc::default(),
        )
        .unwrap();
        assert_eq!(r.argv[0], "/bin/sh");
        let r = prepare(
            &d,
            &attempt,
            &partition,
            &spec("#!/bin/bash\necho"),
            &Alloc::default(),
        )
        .unwrap();
        assert_eq!(r.argv.len(), 1);
        assert!(d.work().is_dir() && d.file("attempt.json").is_file());
    }
}
