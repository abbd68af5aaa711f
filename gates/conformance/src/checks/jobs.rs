//! Jobs: end states and exit codes, the task's command and environment,
//! idempotent starts, refused starts, cancel and walltime.

use gantry_proto::v1::{Capacity, GateJob, GateJobState, Task};
use tonic::Code;

use crate::report::Outcome;
use crate::run::{Run, describe_job, expect_code, said};

fn expect_end(job: &GateJob, state: GateJobState, code: Option<i32>) -> Result<(), String> {
    if job.state() != state || job.exit_code != code || job.lost {
        let want = match code {
            Some(code) => format!("{} exit {code}", state.as_str_name()),
            None => state.as_str_name().to_string(),
        };
        return Err(format!(
            "expected {}, got {}",
            want.trim_start_matches("GATE_JOB_STATE_"),
            describe_job(job)
        ));
    }
    Ok(())
}

/// A script that prints to both streams ends SUCCEEDED, exit 0, with its
/// output, log sizes and times.
pub async fn succeeds(run: &Run) -> Outcome {
    async {
        let job = run.run_script("echo out; echo err >&2").await?;
        expect_end(&job, GateJobState::Succeeded, Some(0))?;
        let out = run.stdout(&job.attempt_id).await?;
        if out != "out\n" {
            return Err(format!("stdout {out:?}, expected \"out\\n\""));
        }
        for (name, bytes) in [
            ("stdout_bytes", job.stdout_bytes),
            ("stderr_bytes", job.stderr_bytes),
        ] {
            if bytes.is_some_and(|b| b != 4) {
                return Err(format!("{name} = {bytes:?}, the log holds 4"));
            }
        }
        if job.start_time_ms <= 0 || job.end_time_ms < job.start_time_ms {
            return Err(format!(
                "start_time_ms {} and end_time_ms {}: both set, the end not before the start",
                job.start_time_ms, job.end_time_ms
            ));
        }
        Ok(format!(
            "{} in {} ms",
            describe_job(&job),
            job.end_time_ms - job.start_time_ms
        ))
    }
    .await
    .into()
}

/// `exit 3` ends FAILED, exit 3, with a reason, not lost.
pub async fn exit_code(run: &Run) -> Outcome {
    async {
        let job = run.run_script("exit 3").await?;
        expect_end(&job, GateJobState::Failed, Some(3))?;
        if job.reason.is_empty() {
            return Err("FAILED with no reason".into());
        }
        Ok(describe_job(&job))
    }
    .await
    .into()
}

/// A job killed by a signal ends FAILED with exit code 128 + its number.
pub async fn signal(run: &Run) -> Outcome {
    async {
        let job = run.run_script("kill -USR1 $$").await?;
        let usr1 = 10;
        expect_end(&job, GateJobState::Failed, Some(128 + usr1))?;
        Ok(describe_job(&job))
    }
    .await
    .into()
}

/// `argv` runs without a shell: nothing in it is expanded.
pub async fn argv(run: &Run) -> Outcome {
    async {
        let mut task = run.script_task("");
        task.argv = ["printf", "%s|", "a b", "$HOME"].map(String::from).to_vec();
        let job = run.start(task).await?;
        let job = run.wait_final(&job.attempt_id).await?;
        expect_end(&job, GateJobState::Succeeded, Some(0))?;
        let out = run.stdout(&job.attempt_id).await?;
        if out != "a b|$HOME|" {
            return Err(format!("stdout {out:?}, expected \"a b|$HOME|\""));
        }
        Ok(out)
    }
    .await
    .into()
}

/// The job sees the login-like minimum, the task's environment and
/// Gantry's own variables.
pub async fn env(run: &Run) -> Outcome {
    async {
        let mut task = run.script_task("env");
        task.env.insert("CONFORMANCE_VALUE".into(), "a b=c".into());
        let job_id = task.job_id;
        let job = run.start(task).await?;
        let job = run.wait_final(&job.attempt_id).await?;
        expect_end(&job, GateJobState::Succeeded, Some(0))?;
        let out = run.stdout(&job.attempt_id).await?;
        let vars: std::collections::HashMap<&str, &str> =
            out.lines().filter_map(|l| l.split_once('=')).collect();
        let partition = run.ready_partition()?;
        let want = [
            ("CONFORMANCE_VALUE", Some("a b=c".to_string())),
            ("GANTRY_JOB_ID", Some(job_id.to_string())),
            ("GANTRY_ATTEMPT_ID", Some(job.attempt_id.clone())),
            ("GANTRY_PARTITION_ID", Some(partition)),
            ("GANTRY_NTASKS", None),
            ("GANTRY_NODELIST", None),
            ("HOME", None),
            ("USER", None),
            ("LOGNAME", None),
            ("SHELL", None),
            ("PATH", None),
        ];
        for (name, value) in want {
            match (vars.get(name), value) {
                (None, _) => return Err(format!("{name} is not set")),
                (Some(seen), Some(value)) if *seen != value => {
                    return Err(format!("{name}={seen:?}, expected {value:?}"));
                }
                _ => {}
            }
        }
        Ok(format!("{} variables", vars.len()))
    }
    .await
    .into()
}

/// StartJob repeated, in turn and at once, answers the same attempt and
/// runs it once.
pub async fn start_idempotent(run: &Run) -> Outcome {
    async {
        let partition = run.ready_partition()?;
        let attempt = run.new_id("a");
        let task = run.script_task("echo once; sleep 1");
        let first = run
            .start_as(&attempt, &partition, task.clone())
            .await
            .map_err(|s| said("StartJob", &s))?;
        let repeats = futures::future::join_all(
            (0..3).map(|_| run.start_as(&attempt, &partition, task.clone())),
        )
        .await;
        let mut answers = vec![first];
        for repeat in repeats {
            answers.push(repeat.map_err(|s| format!("a repeat: {}", said("StartJob", &s)))?);
        }
        let job = run.wait_final(&attempt).await?;
        expect_end(&job, GateJobState::Succeeded, Some(0))?;
        // A native id may come later (a process id once it starts), but
        // never a second one.
        for answer in &answers {
            if answer.attempt_id != attempt
                || !(answer.native_id.is_empty() || answer.native_id == job.native_id)
            {
                return Err(format!(
                    "a StartJob answered attempt {:?} native id {:?}; the attempt's is {:?}",
                    answer.attempt_id, answer.native_id, job.native_id
                ));
            }
        }
        let after = run
            .start_as(&attempt, &partition, task)
            .await
            .map_err(|s| format!("a repeat after the end: {}", said("StartJob", &s)))?;
        if after.state() != GateJobState::Succeeded {
            return Err(format!(
                "a repeat after the end answered {}",
                describe_job(&after)
            ));
        }
        let out = run.stdout(&attempt).await?;
        if out != "once\n" {
            return Err(format!("stdout {out:?}: it ran more than once"));
        }
        Ok(format!("native id {:?}, ran once", job.native_id))
    }
    .await
    .into()
}

/// A released attempt is never started again: FAILED_PRECONDITION.
pub async fn start_released(run: &Run) -> Outcome {
    async {
        let partition = run.ready_partition()?;
        let job = run.run_script("true").await?;
        run.release(&job.attempt_id)
            .await
            .map_err(|s| said("ReleaseJob", &s))?;
        let again = run
            .start_as(&job.attempt_id, &partition, run.script_task("true"))
            .await;
        expect_code(
            "StartJob of a released attempt",
            again,
            Code::FailedPrecondition,
        )
    }
    .await
    .into()
}

/// Starts that can never succeed are INVALID_ARGUMENT; an unknown
/// partition NOT_FOUND.
pub async fn start_invalid(run: &Run) -> Outcome {
    async {
        let partition = run.ready_partition()?;
        let caps = run.describe.capabilities.unwrap_or_default();
        let largest = run
            .describe
            .flavors
            .iter()
            .filter_map(|f| f.capacity.map(|c| c.cpus * c.nodes.max(1)))
            .max()
            .unwrap_or(1);
        let mut cases: Vec<(&str, Task, &str, Code)> = Vec::new();
        let mut both = run.script_task("true");
        both.argv = vec!["true".into()];
        cases.push((
            "argv and script both set",
            both,
            &partition,
            Code::InvalidArgument,
        ));
        cases.push((
            "neither argv nor script",
            run.script_task(""),
            &partition,
            Code::InvalidArgument,
        ));
        let mut huge = run.script_task("true");
        huge.resources = Some(Capacity {
            cpus: largest.saturating_mul(10).max(1024),
            nodes: 1,
            ..Default::default()
        });
        cases.push((
            "more CPUs than any flavor has",
            huge,
            &partition,
            Code::InvalidArgument,
        ));
        if !caps.chdir {
            let mut task = run.script_task("true");
            task.chdir = "/tmp".into();
            cases.push((
                "chdir, not flagged",
                task,
                &partition,
                Code::InvalidArgument,
            ));
        }
        if !caps.secret_env {
            let mut task = run.script_task("true");
            task.secret_env.insert("S".into(), "v".into());
            cases.push((
                "secret_env, not flagged",
                task,
                &partition,
                Code::InvalidArgument,
            ));
        }
        let unknown = run.new_id("p");
        cases.push((
            "an unknown partition",
            run.script_task("true"),
            &unknown,
            Code::NotFound,
        ));
        let mut seen = Vec::new();
        for (what, task, partition, code) in cases {
            let answer = run.start_as(&run.new_id("a"), partition, task).await;
            seen.push(
                expect_code(&format!("StartJob with {what}"), answer, code)
                    .map_err(|e| format!("{what}: {e}"))?,
            );
        }
        Ok(format!("{} refused", seen.len()))
    }
    .await
    .into()
}

/// A running job cancelled ends CANCELLED, not lost; cancelling it again,
/// or cancelling one that ended, changes nothing.
pub async fn cancel_running(run: &Run) -> Outcome {
    async {
        let job = run.start(run.script_task("sleep 600")).await?;
        run.wait_for(&job.attempt_id, "RUNNING", |j| {
            j.state() == GateJobState::Running
        })
        .await?;
        run.cancel(&job.attempt_id)
            .await
            .map_err(|s| said("CancelJob", &s))?;
        let ended = run.wait_final(&job.attempt_id).await?;
        if ended.state() != GateJobState::Cancelled || ended.lost {
            return Err(format!("expected CANCELLED, got {}", describe_job(&ended)));
        }
        let again = run
            .cancel(&job.attempt_id)
            .await
            .map_err(|s| format!("a repeat: {}", said("CancelJob", &s)))?;
        if again.state() != GateJobState::Cancelled {
            return Err(format!(
                "a repeated cancel answered {}",
                describe_job(&again)
            ));
        }
        let done = run.run_script("true").await?;
        let late = run
            .cancel(&done.attempt_id)
            .await
            .map_err(|s| format!("of an ended job: {}", said("CancelJob", &s)))?;
        if late.state() != GateJobState::Succeeded {
            return Err(format!(
                "cancelling an ended job answered {}",
                describe_job(&late)
            ));
        }
        Ok(describe_job(&ended))
    }
    .await
    .into()
}

/// A job past its walltime ends FAILED, its reason starting with
/// "walltime exceeded", not lost.
pub async fn walltime(run: &Run, seconds: u64) -> Outcome {
    async {
        let mut task = run.script_task("sleep 600");
        task.walltime_seconds = seconds;
        let job = run.start(task).await?;
        let ended = run.wait_final(&job.attempt_id).await?;
        if ended.state() != GateJobState::Failed
            || ended.lost
            || !ended.reason.starts_with("walltime exceeded")
        {
            return Err(format!(
                "expected FAILED \"walltime exceeded…\", got {}",
                describe_job(&ended)
            ));
        }
        Ok(describe_job(&ended))
    }
    .await
    .into()
}
