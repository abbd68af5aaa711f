//! gantryd's own metrics (the recorder and `/metrics` are
//! `gantry_proto::metrics`): their help texts, and the partition gauges,
//! counted from the database every few seconds. Jobs per state, queue and
//! run times, submissions and the commits are counted by the store's
//! writer (`store/tally.rs`).

use std::collections::HashSet;
use std::time::Duration;

use gantry_proto::v1::PartitionState;

use crate::store::Store;

/// How often the partition gauges are counted again.
const PARTITIONS_EVERY: Duration = Duration::from_secs(5);

/// Describe every metric gantryd records (their help text on `/metrics`).
pub fn describe() {
    use metrics::Unit::Seconds;
    metrics::describe_gauge!("gantry_jobs", "Jobs in the database, by state");
    metrics::describe_counter!(
        "gantry_job_submit_total",
        "Jobs submitted, counted as their submission commits (an array counts its tasks; a repeated request once)"
    );
    metrics::describe_histogram!(
        "gantry_job_queue_wait_seconds",
        Seconds,
        "Time from a job's submission to its first start, observed as it starts"
    );
    metrics::describe_histogram!(
        "gantry_job_run_seconds",
        Seconds,
        "Time from a job's start to its end, observed as it ends"
    );
    metrics::describe_histogram!(
        "gantry_store_commit_ops",
        "Operations committed in one transaction of the store's writer"
    );
    metrics::describe_histogram!(
        "gantry_store_commit_seconds",
        Seconds,
        "Time of one batch of the store's writer, from its first statement to its commit"
    );
    metrics::describe_gauge!(
        "gantry_partitions",
        "Partitions not yet deleted, by site and state"
    );
    // Known from the first scrape on, so that its first increase shows.
    metrics::counter!("gantry_job_submit_total").increment(0);
}

/// Keep `gantry_partitions{site,state}` in step with the database, counting
/// again every [`PARTITIONS_EVERY`]; a pair that is gone drops to 0.
pub async fn count_partitions(store: Store) {
    let mut seen: HashSet<(String, i32)> = HashSet::new();
    let mut tick = tokio::time::interval(PARTITIONS_EVERY);
    loop {
        tick.tick().await;
        let counts = match store.partition_counts().await {
            Ok(counts) => counts,
            Err(err) => {
                tracing::debug!(error = %err, "cannot count partitions for the metrics");
                continue;
            }
        };
        let mut now = HashSet::new();
        for (site, state, partitions) in counts {
            gauge(&site, state).set(partitions as f64);
            now.insert((site, state));
        }
        for (site, state) in seen.difference(&now) {
            gauge(site, *state).set(0.0);
        }
        seen = now;
    }
}

fn gauge(site: &str, state: i32) -> metrics::Gauge {
    let state = PartitionState::try_from(state).unwrap_or(PartitionState::Unspecified);
    let name = state
        .as_str_name()
        .strip_prefix("PARTITION_STATE_")
        .unwrap_or("UNSPECIFIED");
    metrics::gauge!("gantry_partitions", "site" => site.to_string(), "state" => name)
}
