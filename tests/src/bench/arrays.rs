//! Scenario 2: job arrays. One `SubmitJob` with `array = "0-99999"` is one
//! durable request for 100,000 tasks; three such arrays are submitted one
//! after the other and the median rate is reported (one request is a single
//! second on a shared machine: a median of three steadies it). Then the
//! first page of a grouped listing is timed with them in the queue, and one
//! whole array is cancelled.

use std::time::Instant;

use gantry_client::{Client, Job, JobSpec};
use gantry_proto::v1::{ListJobsRequest, SubmitJobRequest};

use super::scenarios::{cores, figure};
use super::{Args, Report};
use crate::{Cluster, Options};

/// Run the array scenario.
pub async fn arrays(args: &Args, report: &mut Report) -> anyhow::Result<()> {
    let tasks = args.size(100_000, 100_000);
    let cluster = Cluster::start(Options {
        cpus: cores(),
        ..Default::default()
    })
    .await?;
    let client = cluster.user("bench").await?;
    let mut rates = Vec::new();
    let mut array = None;
    for _ in 0..3 {
        let (rate, job) = submit_array(&client, tasks).await?;
        rates.push(rate);
        array = Some(job);
    }
    rates.sort_by(f64::total_cmp);
    let array = array.expect("three arrays were submitted");
    report.add(figure(
        "array",
        &format!(
            "tasks accepted/s, one --array 0-{} request (median of 3)",
            tasks - 1
        ),
        rates[1],
        "tasks/s",
        ">= 100000",
    ));

    let start = Instant::now();
    let page = client
        .list(ListJobsRequest {
            group_arrays: true,
            ..Default::default()
        })
        .await?;
    let list_ms = start.elapsed().as_secs_f64() * 1000.0;
    anyhow::ensure!(page.jobs.len() == 3, "the arrays are not one row each");
    report.add(figure(
        "array",
        &format!("ListJobs first page, 3 arrays of {tasks} as one row each"),
        list_ms,
        "ms",
        "< 50",
    ));

    let start = Instant::now();
    client.cancel(array.id, "benchmark").await?;
    report.add(figure(
        "array",
        "tasks cancelled/s, a whole array in one call",
        tasks as f64 / start.elapsed().as_secs_f64(),
        "tasks/s",
        "",
    ));
    Ok(())
}

/// The request for one held array of `tasks` `true` tasks (held, so that
/// accepting them is measured alone).
pub(super) fn held_array(tasks: usize) -> SubmitJobRequest {
    SubmitJobRequest {
        spec: Some(JobSpec {
            argv: vec!["true".into()],
            array: format!("0-{}", tasks - 1),
            hold: true,
            ..Default::default()
        }),
        client_request_id: uuid::Uuid::now_v7().to_string(),
        on_behalf_of: String::new(),
    }
}

/// Submit one held array of `tasks`; its acceptance rate and the array.
async fn submit_array(client: &Client, tasks: usize) -> anyhow::Result<(f64, Job)> {
    let start = Instant::now();
    let response = client.submit_request(held_array(tasks)).await?;
    let accept = start.elapsed().as_secs_f64();
    let array = response
        .job
        .ok_or_else(|| anyhow::anyhow!("SubmitJob answered no array"))?;
    anyhow::ensure!(
        array.array.as_ref().map(|a| a.task_count) == Some(tasks as u64),
        "the array does not have {tasks} tasks: {array:?}"
    );
    Ok((tasks as f64 / accept, array))
}
