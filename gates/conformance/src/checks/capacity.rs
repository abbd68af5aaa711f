//! What a partition holds: a job that does not fit now is refused
//! (RESOURCE_EXHAUSTED) when the partition's `queue` is zero, and waits
//! PENDING, then runs once room frees, when it is not.

use gantry_proto::v1::{Capacity, GateJobState};
use tonic::Code;

use crate::report::Outcome;
use crate::run::{Run, describe_job, expect_code, said};

/// Fill the partition's CPUs with one job, then start a one-CPU job.
pub async fn start_capacity(run: &Run) -> Outcome {
    let partition = match run.ready_partition() {
        Ok(id) => id,
        Err(why) => return Outcome::Skip(why),
    };
    let holds = match run.get_partition(&partition).await {
        Ok(p) => p,
        Err(s) => return Outcome::fail(said("GetPartition", &s)),
    };
    let capacity = holds.capacity.unwrap_or_default();
    if capacity.nodes > 1 || capacity.cpus == 0 {
        return Outcome::Skip(format!(
            "the partition has {} nodes and {} CPUs; the check fills one node",
            capacity.nodes, capacity.cpus
        ));
    }
    let queued = holds.queue.is_some_and(|q| q.cpus > 0);
    let mut filler = run.script_task("sleep 600");
    filler.resources = Some(Capacity {
        cpus: capacity.cpus,
        nodes: 1,
        ..Default::default()
    });
    let filler = match run.start(filler).await {
        Ok(job) => job.attempt_id,
        Err(e) => return Outcome::fail(format!("a job of all {} CPUs: {e}", capacity.cpus)),
    };
    let result = async {
        run.wait_for(&filler, "RUNNING", |j| j.state() == GateJobState::Running)
            .await
            .map_err(|e| format!("a job of all {} CPUs: {e}", capacity.cpus))?;
        let attempt = run.new_id("a");
        let second = run
            .start_as(&attempt, &partition, run.script_task("echo second"))
            .await;
        if !queued {
            return expect_code(
                "StartJob of one more CPU, queue zero",
                second,
                Code::ResourceExhausted,
            );
        }
        let second = second.map_err(|s| said("StartJob of one more CPU", &s))?;
        if second.state() != GateJobState::Pending {
            return Err(format!(
                "one more CPU with all {} taken answered {}; expected PENDING",
                capacity.cpus,
                describe_job(&second)
            ));
        }
        run.cancel(&filler)
            .await
            .map_err(|s| said("CancelJob", &s))?;
        let ended = run.wait_final(&attempt).await?;
        if ended.state() != GateJobState::Succeeded {
            return Err(format!(
                "the waiting job ended {} once room freed",
                describe_job(&ended)
            ));
        }
        Ok(format!(
            "queue of {} CPUs: PENDING, then ran once room freed",
            holds.queue.unwrap_or_default().cpus
        ))
    }
    .await;
    let _ = run.cancel(&filler).await;
    let _ = run.wait_final(&filler).await;
    result.into()
}
