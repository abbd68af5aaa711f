//! The link to one gate: keeps the site's health, follows the gate's job
//! stream, reconciles after every (re)connect, and carries out what commits
//! ask of this site (create or delete partitions, start or cancel attempts).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gantry_proto::v1::{
    self, DescribeRequest, GateJob, GateJobState, JobState, PartitionState, StartJobRequest, Task,
};
use tokio::sync::{Semaphore, broadcast, oneshot};
use tonic::Code;
use tracing::Instrument as _;

use super::Ctx;
use super::gate_files;
use super::in_flight::InFlight;
use super::known_partitions::KnownPartitions;
use crate::job::state;
use crate::store::{Commit, GateVerdict, JobRow, Op, Outcome, PartitionRow};

/// Most gate calls in flight at once per gate.
const MAX_IN_FLIGHT: usize = 256;

/// How long a flavor the gate had no capacity or quota for is held back
/// (its jobs go to the next fitting flavor or site meanwhile).
const CAPACITY_HOLD_SECONDS: u64 = 300;

/// The link to one gate.
pub struct GateLink {
    name: String,
    ctx: Ctx,
    permits: Arc<Semaphore>,
    /// This site's partitions as last committed, so that starting an
    /// attempt needs no read (kept from commits; emptied on reconcile), and
    /// the attempts waiting for one being created.
    partitions: KnownPartitions,
    /// Answered when the last dispatched attempt's StartJob was answered:
    /// StartJob calls go out one after the other, in the order attempts
    /// were dispatched (the scheduler's order), because a gate that queues
    /// starts them in the order they come.
    start_order: Mutex<oneshot::Receiver<()>>,
    /// Attempts whose logs and outputs are being brought home now.
    bringing_home: InFlight,
}

/// An attempt's place in the order of StartJob calls.
struct StartTurn {
    /// Answered (or dropped) once the previous attempt's StartJob was.
    after: oneshot::Receiver<()>,
    /// Dropped once this attempt's StartJob was answered.
    done: oneshot::Sender<()>,
}

/// Start the link to gate `name`; it runs until the process ends.
pub fn spawn(name: String, ctx: Ctx) {
    let link = Arc::new(GateLink {
        name,
        ctx,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        partitions: KnownPartitions::default(),
        start_order: Mutex::new(oneshot::channel().1),
        bringing_home: InFlight::default(),
    });
    tokio::spawn(link.run());
}

/// A capacity as the gate API says it, in gantryd's terms.
fn resources(c: v1::Capacity) -> crate::job::Resources {
    crate::job::Resources {
        cpus: c.cpus,
        memory: c.memory_bytes,
        gpus: c.gpus,
        nodes: c.nodes,
    }
}

fn retryable(code: Code) -> bool {
    matches!(
        code,
        Code::Unavailable
            | Code::Unknown
            | Code::Cancelled
            | Code::DeadlineExceeded
            | Code::Internal
    )
}

impl GateLink {
    fn client(&self) -> super::GateClient {
        self.ctx
            .gate(&self.name)
            .expect("every link has a configured gate")
    }

    async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let error = match self.clone().session().await {
                Ok(()) => return,
                Err(e) => e,
            };
            tracing::warn!(site = %self.name, error = %error, "gate link down");
            self.ctx.sites.update(&self.name, |s| {
                s.healthy = false;
                s.message = error;
            });
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    }

    async fn describe(&self) -> Result<(), String> {
        let desc = self
            .client()
            .describe(DescribeRequest {
                api_versions: vec![gantry_proto::API_VERSION.into()],
            })
            .await
            .map_err(|s| match s.code() {
                Code::Unavailable | Code::DeadlineExceeded | Code::Unknown | Code::Cancelled => {
                    format!("gate does not answer: {}", s.message())
                }
                _ => format!("the gate cannot describe its site: {}", s.message()),
            })?
            .into_inner();
        if desc.name != self.name {
            return Err(format!(
                "the gate at this address says it is {:?}, not {:?}",
                desc.name, self.name
            ));
        }
        if !desc
            .api_versions
            .iter()
            .any(|v| v == gantry_proto::API_VERSION)
        {
            return Err(format!(
                "the gate speaks {:?}, not {}",
                desc.api_versions,
                gantry_proto::API_VERSION
            ));
        }
        let mut flavors_changed = false;
        self.ctx.sites.update(&self.name, |s| {
            let before = s.description.as_ref().map(|d| &d.flavors);
            flavors_changed = before.is_some_and(|f| *f != desc.flavors);
            s.healthy = true;
            s.message.clear();
            s.description = Some(desc);
        });
        if flavors_changed {
            // What a flavor offers changed: so may its partitions.
            self.reread_partitions().await?;
        }
        Ok(())
    }

    async fn session(self: Arc<Self>) -> Result<(), String> {
        self.describe().await?;
        let mut commits = self.ctx.store.subscribe();
        let session_seq = self.ctx.store.max_seq().await.map_err(|e| e.to_string())?;
        let mut stream = self
            .client()
            .watch_jobs(v1::WatchJobsRequest {})
            .await
            .map_err(|s| format!("cannot watch jobs: {}", s.message()))?
            .into_inner();
        tracing::info!(site = %self.name, "gate link up");
        let mut listed: Option<HashSet<String>> = Some(HashSet::new());
        let mut health = tokio::time::interval(Duration::from_secs(5));
        health.tick().await;
        loop {
            tokio::select! {
                msg = stream.message() => {
                    let msg = msg.map_err(|s| format!("job stream broke: {}", s.message()))?
                        .ok_or("the gate closed its job stream")?;
                    if let Some(listed) = listed.as_mut() {
                        listed.extend(msg.jobs.iter().map(|j| j.attempt_id.clone()));
                    }
                    for job in msg.jobs {
                        self.spawn_report(job).await;
                    }
                    if let Some(listed) = listed.take_if(|_| msg.initial_done) {
                        self.clone().reconcile(listed, session_seq).await?;
                    }
                }
                commit = commits.recv() => match commit {
                    Ok(commit) => self.on_commit(&commit).await,
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        self.clone().reconcile(HashSet::new(), 0).await?;
                    }
                    Err(broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = health.tick() => self.describe().await?,
            }
        }
    }

    /// Run `work` on its own task, holding one of the in-flight permits.
    async fn spawn_with_permit<F>(self: &Arc<Self>, work: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("semaphore never closed");
        tokio::spawn(async move {
            work.await;
            drop(permit);
        });
    }

    /// Start an attempt on its own task; its StartJob waits for the turn of
    /// the attempt dispatched before it (staging in runs meanwhile). An
    /// attempt whose partition is being created waits for it instead (see
    /// [`KnownPartitions`]). `stale`: `job` may be out of date (read a while
    /// ago), so it is read again before it is started.
    async fn spawn_dispatch(self: &Arc<Self>, job: JobRow, stale: bool) {
        let link = self.clone();
        if self.partitions.wait_if_creating(&job.partition_id, &job) {
            self.spawn_with_permit(async move { link.wait_for_partition(&job).await })
                .await;
            return;
        }
        let (done, next) = oneshot::channel();
        let after = std::mem::replace(&mut *self.start_order.lock().expect("not poisoned"), next);
        let turn = StartTurn { after, done };
        // Staging in and StartJob, in one trace the gate's spans join.
        let span = gantry_proto::rpc_trace::job_span("start job", job.id, &self.name);
        self.spawn_with_permit(link.dispatch(job, turn, stale).instrument(span))
            .await;
    }

    /// Say that `job` waits for its partition.
    async fn wait_for_partition(&self, job: &JobRow) {
        if job.state == JobState::Scheduled {
            let op = advance(job, JobState::Provisioning, "waiting for its partition");
            let _ = self.ctx.store.apply_durably(op).await;
        }
    }

    async fn spawn_report(self: &Arc<Self>, job: GateJob) {
        let link = self.clone();
        self.spawn_with_permit(async move { link.report(job).await })
            .await;
    }

    /// Record what the gate says of an attempt and do what follows.
    async fn report(self: Arc<Self>, job: GateJob) {
        let attempt = job.attempt_id.clone();
        let op = Op::GateReport {
            site: self.name.clone(),
            job,
        };
        let verdict = match self.ctx.store.apply_durably(op).await {
            Ok(Outcome::Gate(v)) => v,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(site = %self.name, attempt, error = %e, "cannot record gate report");
                return;
            }
        };
        match verdict {
            GateVerdict::Nothing => {}
            GateVerdict::Cancel => {
                let _ = self
                    .client()
                    .cancel_job(v1::GateCancelJobRequest {
                        attempt_id: attempt,
                    })
                    .await;
            }
            GateVerdict::Release => self.release(attempt).await,
            GateVerdict::SaveLogsAndRelease(row) => {
                let Some(_claim) = self.bringing_home.claim(&attempt) else {
                    return;
                };
                let span = gantry_proto::rpc_trace::job_span("save logs", row.id, &self.name);
                async {
                    // Best effort: keep the logs of a job that ended otherwise (cancelled).
                    let _ = gate_files::copy_logs(&self.ctx, &mut self.client(), &row).await;
                    self.release(attempt).await;
                }
                .instrument(span)
                .await;
            }
            GateVerdict::StageOut(row) => {
                let Some(_claim) = self.bringing_home.claim(&attempt) else {
                    return;
                };
                let span = gantry_proto::rpc_trace::job_span("stage out", row.id, &self.name);
                async {
                    let (outputs, error) =
                        gate_files::bring_home(&self.ctx, &mut self.client(), &row).await;
                    let op = Op::FinishStaging {
                        job_id: row.id,
                        attempt_id: attempt.clone(),
                        outputs,
                        error,
                    };
                    if self.ctx.store.apply_durably(op).await.is_ok() {
                        self.release(attempt).await;
                    }
                }
                .instrument(span)
                .await;
            }
        }
    }

    async fn release(&self, attempt_id: String) {
        if let Err(status) = self
            .client()
            .release_job(v1::GateReleaseJobRequest { attempt_id })
            .await
        {
            tracing::debug!(site = %self.name, error = %status.message(), "release failed; the next reconcile repeats it");
        }
    }

    async fn on_commit(self: &Arc<Self>, commit: &Commit) {
        let ours = commit.partitions.iter().filter(|p| p.site == self.name);
        // Before this commit's own attempts: those that waited come first.
        for job in self.partitions.update(ours) {
            self.spawn_dispatch(job, true).await;
        }
        let jobs: HashMap<u64, &JobRow> = commit
            .jobs
            .iter()
            .filter(|j| j.site == self.name)
            .map(|j| (j.id, j))
            .collect();
        for p in commit.partitions.iter().filter(|p| p.site == self.name) {
            let link = self.clone();
            let p = p.clone();
            self.spawn_with_permit(async move { link.partition_changed(p).await })
                .await;
        }
        for event in &commit.events {
            let to = state::from_i32(event.to_state);
            let from = state::from_i32(event.from_state);
            let wanted =
                to == JobState::Scheduled || (to == JobState::Cancelled && state::is_active(from));
            if !wanted {
                continue;
            }
            let Some(&job) = jobs.get(&event.job_id) else {
                continue;
            };
            let link = self.clone();
            let job = job.clone();
            if to == JobState::Scheduled {
                self.spawn_dispatch(job, false).await;
            } else {
                let attempt_id = job.attempt_id.clone();
                let span = gantry_proto::rpc_trace::job_span("cancel job", job.id, &self.name);
                self.spawn_with_permit(
                    async move {
                        let _ = link
                            .client()
                            .cancel_job(v1::GateCancelJobRequest { attempt_id })
                            .await;
                    }
                    .instrument(span),
                )
                .await;
            }
        }
    }

    /// Compare the gate's world with the store's and repair the difference.
    async fn reconcile(
        self: Arc<Self>,
        listed: HashSet<String>,
        session_seq: u64,
    ) -> Result<(), String> {
        self.partitions.clear();
        let store = &self.ctx.store;
        let jobs = store
            .active_jobs(&self.name)
            .await
            .map_err(|e| e.to_string())?;
        for job in jobs {
            if listed.contains(&job.attempt_id) {
                continue;
            }
            match job.state {
                JobState::Scheduled | JobState::Provisioning | JobState::StagingIn => {
                    self.spawn_dispatch(job, false).await;
                }
                _ if job.last_seq <= session_seq => {
                    let reason = format!(
                        "lost by gate: {} no longer knows attempt {}",
                        self.name, job.attempt_id
                    );
                    let op = fail_attempt(&job, "gantryd", reason, true);
                    let _ = store.apply_durably(op).await;
                }
                _ => {}
            }
        }
        let (ours, theirs) = self.both_partitions().await?;
        self.refresh_partitions(&ours, &theirs).await;
        let theirs_ids: HashSet<&str> = theirs.iter().map(|p| p.partition_id.as_str()).collect();
        for p in &ours {
            if p.state == PartitionState::Ready && !theirs_ids.contains(p.id.as_str()) {
                let op = Op::Partition {
                    id: p.id.clone(),
                    state: PartitionState::Failed,
                    capacity: None,
                    queue: None,
                    message: "lost by gate".into(),
                    refused: false,
                };
                let _ = store.apply_durably(op).await;
            } else {
                let link = self.clone();
                let p = p.clone();
                self.spawn_with_permit(async move { link.partition_changed(p).await })
                    .await;
            }
        }
        let ours_ids: HashSet<&str> = ours.iter().map(|p| p.id.as_str()).collect();
        for p in theirs
            .iter()
            .filter(|p| !ours_ids.contains(p.partition_id.as_str()))
        {
            tracing::warn!(site = %self.name, partition = %p.partition_id, "deleting a partition gantryd does not know");
            let _ = self
                .client()
                .delete_partition(v1::DeletePartitionRequest {
                    partition_id: p.partition_id.clone(),
                })
                .await;
        }
        Ok(())
    }

    /// Take what the gate says its READY partitions offer now (`theirs`,
    /// from ListPartitions), where it differs from what gantryd has
    /// (`ours`): capacity, queue room and message. Nodes drain, are added
    /// or resized, and a gate restarts with another queue factor.
    async fn refresh_partitions(&self, ours: &[PartitionRow], theirs: &[v1::Partition]) {
        for gp in theirs {
            let Some(p) = ours.iter().find(|p| p.id == gp.partition_id) else {
                continue;
            };
            if p.state != PartitionState::Ready || gp.state() != PartitionState::Ready {
                continue;
            }
            let capacity = gp.capacity.map(resources);
            let queue = gp.queue.map(resources).unwrap_or_default();
            let same = capacity.is_none_or(|c| c == p.capacity)
                && queue == p.queue
                && gp.message == p.message;
            if same {
                continue;
            }
            tracing::info!(site = %self.name, partition = %p.id, ?capacity, ?queue, message = %gp.message, "the gate says the partition changed");
            let op = Op::Partition {
                id: p.id.clone(),
                state: PartitionState::Ready,
                capacity,
                queue: Some(queue),
                message: gp.message.clone(),
                refused: false,
            };
            if let Err(e) = self.ctx.store.apply_durably(op).await {
                tracing::warn!(partition = %p.id, error = %e, "cannot record partition change");
            }
        }
    }

    /// Read every partition of the gate again (its flavors changed).
    async fn reread_partitions(&self) -> Result<(), String> {
        let (ours, theirs) = self.both_partitions().await?;
        self.refresh_partitions(&ours, &theirs).await;
        Ok(())
    }

    /// This site's partitions as gantryd has them, and as the gate lists them.
    async fn both_partitions(&self) -> Result<(Vec<PartitionRow>, Vec<v1::Partition>), String> {
        let ours = self
            .ctx
            .store
            .partitions(&self.name)
            .await
            .map_err(|e| e.to_string())?;
        let theirs = self
            .client()
            .list_partitions(v1::ListPartitionsRequest {})
            .await
            .map_err(|s| format!("cannot list partitions: {}", s.message()))?
            .into_inner()
            .partitions;
        Ok((ours, theirs))
    }

    /// Carry out a partition's state on the gate, polling while it is in
    /// between: soon at first (a machine whose agent registers in a few
    /// hundred ms is seen READY then), then every second.
    async fn partition_changed(self: Arc<Self>, mut p: PartitionRow) {
        let mut poll = Duration::from_millis(50);
        loop {
            if !self.clone().partition_step(&p).await {
                return;
            }
            tokio::time::sleep(poll).await;
            poll = (poll * 2).min(Duration::from_secs(1));
            match self.ctx.store.partition(&p.id).await {
                Ok(Some(fresh)) => p = fresh,
                _ => return,
            }
        }
    }

    /// One step of [`Self::partition_changed`]; true when it should be polled again.
    async fn partition_step(self: Arc<Self>, p: &PartitionRow) -> bool {
        let mut client = self.client();
        let answer = match p.state {
            PartitionState::Creating => client
                .create_partition(v1::CreatePartitionRequest {
                    partition_id: p.id.clone(),
                    flavor: p.flavor.clone(),
                    labels: [("gantry-partition".to_string(), p.id.clone())].into(),
                })
                .await
                .map(|r| r.into_inner().partition),
            PartitionState::Deleting => client
                .delete_partition(v1::DeletePartitionRequest {
                    partition_id: p.id.clone(),
                })
                .await
                .map(|r| r.into_inner().partition),
            // The attempts that waited for it were started when its READY
            // commit was seen (`KnownPartitions::update`).
            _ => return false,
        };
        let mut refused = false;
        let (state, capacity, queue, message) = match answer {
            Ok(Some(gp)) => (
                PartitionState::try_from(gp.state).unwrap_or(PartitionState::Unspecified),
                gp.capacity.map(resources),
                Some(gp.queue.map(resources).unwrap_or_default()),
                gp.message,
            ),
            Ok(None) => return false,
            Err(status)
                if status.code() == Code::NotFound && p.state == PartitionState::Deleting =>
            {
                (PartitionState::Deleted, None, None, "deleted".to_string())
            }
            Err(status) if retryable(status.code()) => {
                tracing::warn!(site = %self.name, partition = %p.id, error = %status.message(), "partition call failed; retrying");
                return true;
            }
            Err(status) => {
                if status.code() == Code::ResourceExhausted && p.state == PartitionState::Creating {
                    tracing::warn!(site = %self.name, flavor = %p.flavor, error = %status.message(), "out of capacity; holding the flavor back");
                    let hold = Duration::from_secs(CAPACITY_HOLD_SECONDS);
                    let sites = &self.ctx.sites;
                    sites.exhaust(&self.name, &p.flavor, status.message(), hold);
                }
                refused = matches!(
                    status.code(),
                    Code::InvalidArgument | Code::FailedPrecondition
                ) && p.state == PartitionState::Creating;
                (
                    PartitionState::Failed,
                    None,
                    None,
                    status.message().to_string(),
                )
            }
        };
        if state != p.state
            || capacity.is_some_and(|c| c != p.capacity)
            || queue.is_some_and(|q| q != p.queue)
        {
            let op = Op::Partition {
                id: p.id.clone(),
                state,
                capacity,
                queue,
                message,
                refused,
            };
            if let Err(e) = self.ctx.store.apply_durably(op).await {
                tracing::warn!(partition = %p.id, error = %e, "cannot record partition state");
            }
        }
        matches!(state, PartitionState::Creating | PartitionState::Deleting)
    }

    /// The values of `job`'s secret environment variables for its start, or
    /// `None` (having failed the attempt where it cannot run) when they
    /// cannot be sent: this gate does not pass secrets, or they are gone.
    async fn secrets_of(&self, job: &JobRow) -> Option<HashMap<String, String>> {
        let store = &self.ctx.store;
        let passes = self
            .ctx
            .sites
            .get(&self.name)
            .is_some_and(|s| s.can_pass_secrets());
        if !passes {
            let reason = format!(
                "site `{}` cannot pass secret environment variables (its gate does not \
                 offer Capabilities.secret_env); run the job on a site that can",
                self.name
            );
            let _ = store
                .apply_durably(fail_attempt(job, "gantryd", reason, false))
                .await;
            return None;
        }
        match store.secrets(job.id).await {
            Ok(secrets) if secrets.len() == job.spec.secret_env.len() => Some(secrets),
            // Its secrets are deleted in the commit that ends it: if it has
            // not ended, they are gone some other way.
            Ok(_) => {
                if let Ok(Some(now)) = store.job(job.id).await
                    && startable(job, &now)
                {
                    let reason = "its secret environment variables are gone from \
                                  gantryd's database; submit it again"
                        .to_string();
                    let _ = store
                        .apply_durably(fail_attempt(job, "gantryd", reason, false))
                        .await;
                }
                None
            }
            Err(error) => {
                tracing::warn!(job = job.id, %error, "cannot read the job's secrets; not starting it now");
                None
            }
        }
    }

    /// Start an attempt on the gate (idempotent: safe to repeat).
    async fn dispatch(self: Arc<Self>, job: JobRow, turn: StartTurn, stale: bool) {
        let store = &self.ctx.store;
        let job = match stale {
            false => job,
            true => match store.job(job.id).await {
                Ok(Some(now)) if startable(&job, &now) => now,
                _ => return,
            },
        };
        let partition = match self.partitions.get(&job.partition_id) {
            Some(p) => p,
            None => match store.partition(&job.partition_id).await {
                Ok(Some(p)) => {
                    self.partitions.remember(&p);
                    p
                }
                Ok(None) => return,
                Err(e) => return tracing::warn!(error = %e, "cannot read partition"),
            },
        };
        // Read from the store, it may still be being created: the attempt
        // then waits for it, unless its READY commit was seen meanwhile.
        if partition.state == PartitionState::Creating
            && self.partitions.wait_if_creating(&job.partition_id, &job)
        {
            return self.wait_for_partition(&job).await;
        }
        let ready = |p: &PartitionRow| p.state == PartitionState::Ready;
        if !ready(&partition)
            && !self
                .partitions
                .get(&job.partition_id)
                .is_some_and(|p| ready(&p))
        {
            return;
        }
        let mut client = self.client();
        if !job.spec.inputs.is_empty() {
            if job.state != JobState::StagingIn {
                let _ = store
                    .apply_durably(advance(&job, JobState::StagingIn, "copying inputs"))
                    .await;
            }
            if let Err(e) = gate_files::stage_in(&self.ctx, &mut client, &job).await {
                let reason = format!("staging in failed: {e}");
                let _ = store
                    .apply_durably(fail_attempt(&job, "gantryd", reason, false))
                    .await;
                return;
            }
        }
        let mut task = task_of(&job);
        if !job.spec.secret_env.is_empty() {
            let Some(secrets) = self.secrets_of(&job).await else {
                return;
            };
            task.secret_env = secrets;
        }
        let request = StartJobRequest {
            attempt_id: job.attempt_id.clone(),
            partition_id: job.partition_id.clone(),
            task: Some(task),
        };
        let StartTurn { after, done } = turn;
        let _ = after.await;

        let mut delay = Duration::from_millis(100);
        for try_number in 0..5 {
            // A try whose answer was lost may have started it: before trying
            // again, make sure it has not moved on meanwhile (run, ended,
            // been released). The gate refuses a released attempt too; this
            // spares it the call and covers a gate restarted meanwhile.
            if (try_number > 0 || stale)
                && let Ok(Some(now)) = store.job(job.id).await
                && !startable(&job, &now)
            {
                return;
            }
            match client.start_job(request.clone()).await {
                Ok(resp) => {
                    drop(done);
                    // PENDING without a reason says nothing new (the job is
                    // SCHEDULED here); what follows comes on the watch stream.
                    let job = resp
                        .into_inner()
                        .job
                        .filter(|gj| gj.state() != GateJobState::Pending || !gj.reason.is_empty());
                    if let Some(gj) = job {
                        self.report(gj).await;
                    }
                    return;
                }
                Err(status)
                    if status.code() == Code::ResourceExhausted
                        || status.code() == Code::FailedPrecondition =>
                {
                    let reason = format!("the gate could not start it now: {}", status.message());
                    let _ = store
                        .apply_durably(Op::Requeue {
                            job_id: job.id,
                            attempt_id: job.attempt_id.clone(),
                            reason,
                        })
                        .await;
                    return;
                }
                Err(status) if retryable(status.code()) => {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
                Err(status) => {
                    let reason = format!("the gate refused the job: {}", status.message());
                    let op = fail_attempt(&job, &format!("gate/{}", self.name), reason, false);
                    let _ = store.apply_durably(op).await;
                    return;
                }
            }
        }
        tracing::warn!(site = %self.name, job = job.id, "start failed repeatedly; the next reconcile retries");
    }
}

/// Whether `now` (`job` as read again) is still at `job`'s attempt and yet
/// to start.
fn startable(job: &JobRow, now: &JobRow) -> bool {
    now.attempt_id == job.attempt_id
        && matches!(
            now.state,
            JobState::Scheduled | JobState::Provisioning | JobState::StagingIn
        )
}

/// `actor` failing `job`'s current attempt, saying why; `lost` when what
/// ran it went away (the job may be run again).
fn fail_attempt(job: &JobRow, actor: &str, reason: String, lost: bool) -> Op {
    Op::FailAttempt {
        job_id: job.id,
        attempt_id: job.attempt_id.clone(),
        actor: actor.to_string(),
        reason,
        lost,
    }
}

/// gantryd moving `job`'s current attempt on to `to`, saying why.
fn advance(job: &JobRow, to: JobState, message: &str) -> Op {
    Op::Advance {
        job_id: job.id,
        attempt_id: job.attempt_id.clone(),
        to,
        actor: "gantryd".into(),
        message: message.to_string(),
    }
}

/// What the gate runs for `job`.
fn task_of(job: &JobRow) -> Task {
    // Stored normalized ("USR1@60", see `ValidSpec`); empty: none.
    let (warn_signal, warn_seconds) =
        gantry_proto::signal::parse_warning(&job.spec.signal).unwrap_or_default();
    Task {
        job_id: job.id,
        name: job.spec.name.clone(),
        argv: job.spec.argv.clone(),
        script: job.spec.script.clone(),
        env: job.spec.env.clone(),
        // Read from the store when the task is sent (see `start`).
        secret_env: Default::default(),
        resources: Some(job.resources.into()),
        walltime_seconds: job.walltime,
        owner: job.owner.clone(),
        warn_signal,
        warn_seconds,
        stdin: job.spec.stdin.clone(),
        chdir: job.spec.chdir.clone(),
        tasks: job
            .spec
            .resources
            .as_ref()
            .and_then(|r| r.tasks)
            .unwrap_or(1),
        tasks_per_node: job.spec.resources.as_ref().map_or(0, |r| r.tasks_per_node),
    }
}
