//! ReleaseJob: the gate forgets an ended attempt; a running one is not
//! released.

use gantry_proto::v1::{GateJobState, LogStream};
use tonic::Code;

use crate::report::Outcome;
use crate::run::{Run, expect_code, said};

/// After ReleaseJob an attempt is NOT_FOUND to GetJob and ReadLogs, a
/// repeated release succeeds, StageIn for it is FAILED_PRECONDITION (with
/// staging), and releasing a running attempt is FAILED_PRECONDITION.
pub async fn forgets(run: &Run) -> Outcome {
    async {
        let job = run.run_script("echo kept").await?;
        run.release(&job.attempt_id)
            .await
            .map_err(|s| said("ReleaseJob", &s))?;
        expect_code(
            "GetJob of a released attempt",
            run.get(&job.attempt_id).await,
            Code::NotFound,
        )?;
        expect_code(
            "ReadLogs of a released attempt",
            run.read_log(&job.attempt_id, LogStream::Stdout, 0).await,
            Code::NotFound,
        )?;
        run.release(&job.attempt_id)
            .await
            .map_err(|s| format!("a repeat: {}", said("ReleaseJob", &s)))?;
        if run.describe.capabilities.is_some_and(|c| c.staging) {
            let partition = run.ready_partition()?;
            expect_code(
                "StageIn for a released attempt",
                run.stage_in(&job.attempt_id, &partition, &[("late", 0o644, b"x")])
                    .await,
                Code::FailedPrecondition,
            )?;
        }
        let running = run.start(run.script_task("sleep 600")).await?;
        run.wait_for(&running.attempt_id, "RUNNING", |j| {
            j.state() == GateJobState::Running
        })
        .await?;
        let refused = expect_code(
            "ReleaseJob of a running attempt",
            run.release(&running.attempt_id).await,
            Code::FailedPrecondition,
        );
        let _ = run.cancel(&running.attempt_id).await;
        run.wait_final(&running.attempt_id).await?;
        refused
    }
    .await
    .into()
}
