//! A gate killed and started again (`--restart-cmd`) still reports every
//! attempt with its true state: one that ended before, one that runs on,
//! and one that ends about when the gate goes down.

use std::time::Instant;

use gantry_proto::v1::{DescribeRequest, GateJob, GateJobState};

use crate::checks::watch;
use crate::report::Outcome;
use crate::run::{POLL, Run, describe_job, said};

/// Run `command` under `sh -c`; an error says how it failed.
async fn restart(command: &str) -> Result<(), String> {
    let output = tokio::process::Command::new("sh")
        .arg("-c")
        .arg(command)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("--restart-cmd could not run: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "--restart-cmd {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    Ok(())
}

/// Ask Describe until the gate answers again.
async fn until_back(run: &Run) -> Result<(), String> {
    let started = Instant::now();
    loop {
        let answer = run
            .gate
            .clone()
            .describe(DescribeRequest {
                api_versions: vec![gantry_proto::API_VERSION.into()],
            })
            .await;
        match answer {
            Ok(_) => return Ok(()),
            Err(s) if started.elapsed() > run.timeout => {
                return Err(format!(
                    "not back after {:?}: {}",
                    run.timeout,
                    said("Describe", &s)
                ));
            }
            Err(_) => tokio::time::sleep(POLL).await,
        }
    }
}

fn expect(job: &GateJob, what: &str, ok: bool) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{what}: {}", describe_job(job)))
    }
}

/// Jobs in three states, the gate restarted, then each one's state.
pub async fn keeps_attempts(run: &Run, command: Option<&str>) -> Outcome {
    let Some(command) = command else {
        return Outcome::Skip("no --restart-cmd given".into());
    };
    let mut started = Vec::new();
    let result = async {
        let ended = run.run_script("exit 4").await?;
        let long = run.start(run.script_task("sleep 600")).await?;
        started.push(long.attempt_id.clone());
        let short = run.start(run.script_task("sleep 3; echo done")).await?;
        started.push(short.attempt_id.clone());
        for job in [&long, &short] {
            run.wait_for(&job.attempt_id, "RUNNING", |j| {
                j.state() == GateJobState::Running
            })
            .await?;
        }
        restart(command).await?;
        until_back(run).await?;
        let mut stream = watch::open(run).await?;
        let listed = watch::listing(run, &mut stream).await?;
        for job in [&ended, &long, &short] {
            if !listed.contains_key(&job.attempt_id) {
                return Err(format!(
                    "WatchJobs after the restart does not list {}",
                    job.attempt_id
                ));
            }
        }
        let was = run
            .get(&ended.attempt_id)
            .await
            .map_err(|s| said("GetJob", &s))?;
        expect(
            &was,
            "the job that ended before is now",
            was.state() == GateJobState::Failed && was.exit_code == Some(4) && !was.lost,
        )?;
        let running = run
            .get(&long.attempt_id)
            .await
            .map_err(|s| said("GetJob", &s))?;
        expect(
            &running,
            "the job that runs on is now",
            running.state() == GateJobState::Running,
        )?;
        let done = run.wait_final(&short.attempt_id).await?;
        expect(
            &done,
            "the job that ended during the restart",
            done.state() == GateJobState::Succeeded && done.exit_code == Some(0),
        )?;
        let out = run.stdout(&short.attempt_id).await?;
        if out != "done\n" {
            return Err(format!("its stdout after the restart: {out:?}"));
        }
        Ok("ended, running, and ended while down: all true after the restart".to_string())
    }
    .await;
    for attempt in started {
        let _ = run.cancel(&attempt).await;
        let _ = run.wait_final(&attempt).await;
    }
    result.into()
}
