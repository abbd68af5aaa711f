//! Partitions: made once per id, READY in time, listed, refused when wrong,
//! and deleted with the jobs on them.

use std::time::Instant;

use gantry_proto::v1::{GateJobState, ListPartitionsRequest, Partition, PartitionState};
use tonic::Code;

use crate::report::Outcome;
use crate::run::{POLL, Run, describe_job, expect_code, said};

async fn listed(run: &Run, id: &str) -> Result<usize, String> {
    let all = run
        .gate
        .clone()
        .list_partitions(ListPartitionsRequest {})
        .await
        .map_err(|s| said("ListPartitions", &s))?
        .into_inner()
        .partitions;
    Ok(all.iter().filter(|p| p.partition_id == id).count())
}

fn state(p: &Partition) -> &'static str {
    p.state()
        .as_str_name()
        .trim_start_matches("PARTITION_STATE_")
}

/// CreatePartition answers the partition it made, which becomes READY
/// within the timeout; the job checks run on it.
pub async fn create_ready(run: &Run) -> Outcome {
    let Some(flavor) = &run.flavor else {
        return Outcome::Skip("needs an available flavor".into());
    };
    let id = run.new_id("p");
    let made = match run.create_partition(&id, &flavor.name).await {
        Ok(p) => p,
        Err(s) => return Outcome::fail(said("CreatePartition", &s)),
    };
    if made.partition_id != id || made.flavor != flavor.name {
        return Outcome::fail(format!(
            "asked for {id} of {:?}, answered {} of {:?}",
            flavor.name, made.partition_id, made.flavor
        ));
    }
    let started = Instant::now();
    let mut seen = made;
    while seen.state() != PartitionState::Ready {
        if matches!(
            seen.state(),
            PartitionState::Failed | PartitionState::Deleted
        ) || started.elapsed() > run.timeout
        {
            return Outcome::fail(format!(
                "{} after {:?}: {:?}",
                state(&seen),
                started.elapsed(),
                seen.message
            ));
        }
        tokio::time::sleep(POLL).await;
        seen = match run.get_partition(&id).await {
            Ok(p) => p,
            Err(s) => return Outcome::fail(said("GetPartition", &s)),
        };
    }
    *run.partition.lock().expect("not poisoned") = Some(id);
    Outcome::Pass(format!("READY after {:?}", started.elapsed()))
}

/// A repeated CreatePartition answers the same partition, and it is
/// listed once.
pub async fn idempotent(run: &Run) -> Outcome {
    let id = match run.ready_partition() {
        Ok(id) => id,
        Err(why) => return Outcome::Skip(why),
    };
    let flavor = run
        .flavor
        .as_ref()
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let first = match run.get_partition(&id).await {
        Ok(p) => p,
        Err(s) => return Outcome::fail(said("GetPartition", &s)),
    };
    let again = match run.create_partition(&id, &flavor).await {
        Ok(p) => p,
        Err(s) => return Outcome::fail(format!("the repeat: {}", said("CreatePartition", &s))),
    };
    if again.native_id != first.native_id || again.state() != PartitionState::Ready {
        return Outcome::fail(format!(
            "the repeat answered {} native id {:?}; the first is READY, native id {:?}",
            state(&again),
            again.native_id,
            first.native_id
        ));
    }
    match listed(run, &id).await {
        Ok(1) => Outcome::Pass(format!("native id {:?}", first.native_id)),
        Ok(n) => Outcome::fail(format!("ListPartitions lists it {n} times")),
        Err(e) => Outcome::fail(e),
    }
}

/// An unknown flavor and an id that is not one are INVALID_ARGUMENT; an
/// unknown partition NOT_FOUND.
pub async fn errors(run: &Run) -> Outcome {
    let flavor = run
        .flavor
        .as_ref()
        .map(|f| f.name.clone())
        .unwrap_or_default();
    let checks = [
        expect_code(
            "CreatePartition of flavor \"no-such-flavor\"",
            run.create_partition(&run.new_id("p"), "no-such-flavor")
                .await,
            Code::InvalidArgument,
        ),
        expect_code(
            "CreatePartition of id \"../escape\"",
            run.create_partition("../escape", &flavor).await,
            Code::InvalidArgument,
        ),
        expect_code(
            "GetPartition of an unknown id",
            run.get_partition(&run.new_id("p")).await,
            Code::NotFound,
        ),
    ];
    checks
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(|seen| seen.join("; "))
        .into()
}

/// DeletePartition with a job running on it: the job ends CANCELLED, a
/// repeated delete succeeds and comes to DELETED, the partition is then
/// gone from the list, and a CreatePartition of the deleted id answers
/// DELETED. Runs last, on the
/// run's partition (a gate may hold only one).
pub async fn delete_running(run: &Run) -> Outcome {
    let id = match run.ready_partition() {
        Ok(id) => id,
        Err(why) => return Outcome::Skip(why),
    };
    let result = async {
        let job = run.start(run.script_task("sleep 600")).await?;
        run.wait_for(&job.attempt_id, "RUNNING", |j| {
            j.state() == GateJobState::Running
        })
        .await?;
        *run.partition.lock().expect("not poisoned") = None;
        let deleting = run
            .delete_partition(&id)
            .await
            .map_err(|s| said("DeletePartition", &s))?;
        if !matches!(
            deleting.state(),
            PartitionState::Deleting | PartitionState::Deleted
        ) {
            return Err(format!("DeletePartition answered {}", state(&deleting)));
        }
        let ended = run.wait_final(&job.attempt_id).await?;
        if ended.state() != GateJobState::Cancelled {
            return Err(format!("its job ended {}", describe_job(&ended)));
        }
        // Repeated, as gantryd repeats it, until DELETED (a gate whose
        // teardown takes time answers DELETING meanwhile); then unlisted.
        let started = Instant::now();
        loop {
            let again = run
                .delete_partition(&id)
                .await
                .map_err(|s| format!("the repeat: {}", said("DeletePartition", &s)))?;
            if again.state() == PartitionState::Deleted {
                break;
            }
            if started.elapsed() > run.timeout {
                return Err(format!("DeletePartition still answers {}", state(&again)));
            }
            tokio::time::sleep(POLL).await;
        }
        if listed(run, &id).await? > 0 {
            return Err("listed after DeletePartition answered DELETED".into());
        }
        // A late CreatePartition of the deleted id must not provision again.
        let flavor = run.flavor.as_ref().map(|f| f.name.clone()).unwrap_or_default();
        let remade = run
            .create_partition(&id, &flavor)
            .await
            .map_err(|s| format!("of the deleted id: {}", said("CreatePartition", &s)))?;
        if remade.state() != PartitionState::Deleted {
            return Err(format!(
                "CreatePartition of the deleted id answered {}: a deleted partition is never made again",
                state(&remade)
            ));
        }
        Ok(format!(
            "its job ended {}; made again: DELETED",
            describe_job(&ended)
        ))
    }
    .await;
    result.into()
}

/// The flavor's `max_partitions` is a quota: with that many of the flavor
/// listed, one more CreatePartition is RESOURCE_EXHAUSTED. Makes at most
/// two more partitions to get there, and deletes them.
pub async fn quota(run: &Run) -> Outcome {
    let (Some(flavor), Ok(_)) = (&run.flavor, run.ready_partition()) else {
        return Outcome::Skip("needs a READY partition (partition.create failed)".into());
    };
    let all = match run
        .gate
        .clone()
        .list_partitions(ListPartitionsRequest {})
        .await
    {
        Ok(answer) => answer.into_inner().partitions,
        Err(s) => return Outcome::fail(said("ListPartitions", &s)),
    };
    let held = all.iter().filter(|p| p.flavor == flavor.name).count() as u32;
    let room = flavor.max_partitions.saturating_sub(held);
    if room > 2 {
        return Outcome::Skip(format!(
            "flavor {:?} allows {} partitions, {held} exist; the kit makes at most 2 more",
            flavor.name, flavor.max_partitions
        ));
    }
    let mut made = Vec::new();
    let result = async {
        for _ in 0..room {
            let id = run.new_id("p");
            run.create_partition(&id, &flavor.name)
                .await
                .map_err(|s| format!("within the quota: {}", said("CreatePartition", &s)))?;
            made.push(id);
        }
        expect_code(
            &format!(
                "CreatePartition beyond max_partitions {} of {:?}",
                flavor.max_partitions, flavor.name
            ),
            run.create_partition(&run.new_id("p"), &flavor.name).await,
            Code::ResourceExhausted,
        )
    }
    .await;
    for id in made {
        let _ = run.delete_partition(&id).await;
    }
    result.into()
}
