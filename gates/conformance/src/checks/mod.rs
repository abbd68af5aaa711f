//! The named checks, in the order they run. Each takes the run and says
//! what it saw; those that need a READY partition skip without one.

mod auth;
mod capabilities;
mod capacity;
mod describe;
mod jobs;
mod logs;
mod partitions;
mod release;
mod restart;
mod staging;
mod watch;

use crate::Config;
use crate::report::Report;
use crate::run::Run;

/// Run every check against the gate of `run`, recording each in `report`;
/// `config` gives the walltime check's walltime and the restart command.
pub async fn all(run: &Run, report: &mut Report, config: &Config) {
    report.check("auth.core_only", auth::core_only(run)).await;
    report
        .check("auth.no_certificate", auth::no_certificate(run))
        .await;
    report.check("auth.foreign_ca", auth::foreign_ca(run)).await;
    report
        .check("describe.identity", describe::identity(run))
        .await;
    report
        .check("describe.api_versions", describe::api_versions(run))
        .await;
    report
        .check("describe.flavors", describe::flavors(run))
        .await;
    report
        .prerequisite("partition.create", partitions::create_ready(run))
        .await;
    report
        .check("partition.idempotent", partitions::idempotent(run))
        .await;
    report
        .check("partition.errors", partitions::errors(run))
        .await;
    report
        .check("partition.quota", partitions::quota(run))
        .await;
    report.check("job.succeeds", jobs::succeeds(run)).await;
    report.check("job.exit_code", jobs::exit_code(run)).await;
    report.check("job.signal", jobs::signal(run)).await;
    report.check("job.argv", jobs::argv(run)).await;
    report.check("job.env", jobs::env(run)).await;
    report
        .check("job.secret_env", capabilities::secret_env(run))
        .await;
    report.check("job.chdir", capabilities::chdir(run)).await;
    report
        .check("start.idempotent", jobs::start_idempotent(run))
        .await;
    report
        .check("start.released", jobs::start_released(run))
        .await;
    report
        .check("start.invalid", jobs::start_invalid(run))
        .await;
    report.check("job.cancel", jobs::cancel_running(run)).await;
    report
        .check("job.walltime", jobs::walltime(run, config.walltime))
        .await;
    report
        .check("start.capacity", capacity::start_capacity(run))
        .await;
    report.check("watch.snapshot", watch::snapshot(run)).await;
    report.check("watch.changes", watch::changes(run)).await;
    report.check("logs.offsets", logs::offsets(run)).await;
    report.check("logs.follow", logs::follow(run)).await;
    report.check("logs.errors", logs::errors(run)).await;
    report
        .check("stage.round_trip", staging::round_trip(run))
        .await;
    report.check("stage.globs", staging::globs(run)).await;
    report.check("stage.escape", staging::escape(run)).await;
    report.check("stage.order", staging::order(run)).await;
    report.check("job.stdin", staging::stdin(run)).await;
    report.check("release.forgets", release::forgets(run)).await;
    let restart = config.restart_cmd.as_deref();
    report
        .check(
            "restart.keeps_attempts",
            restart::keeps_attempts(run, restart),
        )
        .await;
    report
        .check("partition.delete_running", partitions::delete_running(run))
        .await;
}
