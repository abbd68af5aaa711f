//! WatchJobs: every unreleased attempt first, then each change.

use std::collections::HashMap;
use std::time::Instant;

use gantry_proto::v1::{GateJob, GateJobState, WatchJobsRequest, WatchJobsResponse};
use tonic::Streaming;

use crate::report::Outcome;
use crate::run::{Run, describe_job, said};

pub(crate) async fn open(run: &Run) -> Result<Streaming<WatchJobsResponse>, String> {
    Ok(run
        .gate
        .clone()
        .watch_jobs(WatchJobsRequest {})
        .await
        .map_err(|s| said("WatchJobs", &s))?
        .into_inner())
}

async fn next(
    run: &Run,
    stream: &mut Streaming<WatchJobsResponse>,
) -> Result<WatchJobsResponse, String> {
    match tokio::time::timeout(run.timeout, stream.message()).await {
        Err(_) => Err(format!("nothing on the stream for {:?}", run.timeout)),
        Ok(Err(s)) => Err(format!("the stream failed: {}", said("WatchJobs", &s))),
        Ok(Ok(None)) => Err("the stream ended; it must never end by itself".into()),
        Ok(Ok(Some(message))) => Ok(message),
    }
}

/// Read until `initial_done`: the listing.
pub(crate) async fn listing(
    run: &Run,
    stream: &mut Streaming<WatchJobsResponse>,
) -> Result<HashMap<String, GateJob>, String> {
    let mut jobs = HashMap::new();
    loop {
        let message = next(run, stream).await?;
        for job in message.jobs {
            jobs.insert(job.attempt_id.clone(), job);
        }
        if message.initial_done {
            return Ok(jobs);
        }
    }
}

/// The listing holds every unreleased attempt, ended ones with their
/// final state, and no released one.
pub async fn snapshot(run: &Run) -> Outcome {
    async {
        let ended = run.run_script("exit 4").await?;
        let released = run.run_script("true").await?;
        run.release(&released.attempt_id)
            .await
            .map_err(|s| said("ReleaseJob", &s))?;
        let mut stream = open(run).await?;
        let jobs = listing(run, &mut stream).await?;
        match jobs.get(&ended.attempt_id) {
            None => {
                return Err(format!(
                    "the listing lacks ended attempt {}",
                    ended.attempt_id
                ));
            }
            Some(job) if job.state() != GateJobState::Failed || job.exit_code != Some(4) => {
                return Err(format!(
                    "the listing has {}, GetJob said FAILED exit 4",
                    describe_job(job)
                ));
            }
            Some(_) => {}
        }
        if jobs.contains_key(&released.attempt_id) {
            return Err(format!(
                "the listing holds released attempt {}",
                released.attempt_id
            ));
        }
        Ok(format!("listed {} unreleased attempt(s)", jobs.len()))
    }
    .await
    .into()
}

/// A job started with two streams open reaches both, ending in its final
/// state, and its states never go backwards.
pub async fn changes(run: &Run) -> Outcome {
    async {
        let mut streams = [open(run).await?, open(run).await?];
        for stream in &mut streams {
            listing(run, stream).await?;
        }
        let job = run.start(run.script_task("sleep 1; exit 2")).await?;
        for stream in &mut streams {
            let started = Instant::now();
            let mut rank = 0;
            loop {
                if started.elapsed() > run.timeout {
                    return Err(format!(
                        "no final state for {} within {:?}",
                        job.attempt_id, run.timeout
                    ));
                }
                let message = next(run, stream).await?;
                for seen in message
                    .jobs
                    .iter()
                    .filter(|j| j.attempt_id == job.attempt_id)
                {
                    let now = match seen.state() {
                        GateJobState::Pending => 1,
                        GateJobState::Running => 2,
                        _ => 3,
                    };
                    if now < rank {
                        return Err(format!("went back to {}", describe_job(seen)));
                    }
                    rank = now;
                    if seen.state().is_final()
                        && (seen.state() != GateJobState::Failed || seen.exit_code != Some(2))
                    {
                        return Err(format!(
                            "ended {}, expected FAILED exit 2",
                            describe_job(seen)
                        ));
                    }
                }
                if rank == 3 {
                    break;
                }
            }
        }
        Ok("both streams saw it end FAILED exit 2".to_string())
    }
    .await
    .into()
}
