//! Task fields a gate serves only with a capability: `secret_env` and
//! `chdir` work when flagged (start.invalid checks that they are refused
//! when not).

use gantry_proto::v1::{Capabilities, GateJobState};

use crate::report::Outcome;
use crate::run::{Run, describe_job};

/// Skips a check whose capability is not flagged.
fn skip(name: &str) -> Outcome {
    Outcome::Skip(format!(
        "Capabilities.{name} is not flagged (start.invalid checks the refusal)"
    ))
}

fn capabilities(run: &Run) -> Capabilities {
    run.describe.capabilities.unwrap_or_default()
}

/// A secret variable reaches the job and wins over `env`.
pub async fn secret_env(run: &Run) -> Outcome {
    if !capabilities(run).secret_env {
        return skip("secret_env");
    }
    async {
        let mut task = run.script_task("printf '%s' \"$GANTRY_KIT_SECRET\"");
        task.env
            .insert("GANTRY_KIT_SECRET".into(), "the plain value".into());
        task.secret_env
            .insert("GANTRY_KIT_SECRET".into(), "s3cret value".into());
        let job = run.start(task).await?;
        let ended = run.wait_final(&job.attempt_id).await?;
        let out = run.stdout(&job.attempt_id).await?;
        if ended.state() != GateJobState::Succeeded || out != "s3cret value" {
            return Err(format!(
                "ended {}, printed {out:?}; expected the secret's value",
                describe_job(&ended)
            ));
        }
        Ok("the secret reached the job, over env's value".into())
    }
    .await
    .into()
}

/// A job with `chdir` runs in that directory.
pub async fn chdir(run: &Run) -> Outcome {
    if !capabilities(run).chdir {
        return skip("chdir");
    }
    async {
        let mut task = run.script_task("pwd -P");
        task.chdir = "/tmp".into();
        let job = run.start(task).await?;
        let ended = run.wait_final(&job.attempt_id).await?;
        let out = run.stdout(&job.attempt_id).await?;
        let want = std::fs::canonicalize("/tmp")
            .map(|p| format!("{}\n", p.display()))
            .unwrap_or_else(|_| "/tmp\n".into());
        if ended.state() != GateJobState::Succeeded || (out != want && out != "/tmp\n") {
            return Err(format!(
                "ended {}, `pwd -P` printed {out:?}; expected /tmp",
                describe_job(&ended)
            ));
        }
        Ok("ran in /tmp".into())
    }
    .await
    .into()
}
