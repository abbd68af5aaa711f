//! The link to the scheduler: one long-lived Session stream. gantryd sends
//! the whole picture once (after every connect), then each commit's changes;
//! it checks every plan it gets back and commits the valid decisions.

use std::collections::HashMap;
use std::time::Duration;

use gantry_proto::v1::scheduler_client::SchedulerClient;
use gantry_proto::v1::{self, SchedSite, SessionRequest, SessionResponse};
use tokio::sync::{broadcast, mpsc, watch};
use tonic::transport::Channel;

use super::Ctx;
use crate::job::Resources;
use crate::store::{Op, Outcome, PlanOps, now_ms};

/// Jobs per snapshot message.
const SNAPSHOT_CHUNK: usize = 5000;

/// Start the scheduler link; it runs until the process ends. The receiver
/// says whether a session is up (its snapshot sent).
pub fn spawn(channel: Channel, ctx: Ctx) -> watch::Receiver<bool> {
    let client = SchedulerClient::new(channel)
        .max_decoding_message_size(super::MAX_MESSAGE)
        .max_encoding_message_size(super::MAX_MESSAGE);
    let (up, up_rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let ended = session(client.clone(), &ctx, &up).await;
            up.send_replace(false);
            match ended {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler link down; jobs wait until it is back")
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
    up_rx
}

fn sched_sites(ctx: &Ctx) -> Vec<SchedSite> {
    ctx.sites
        .all()
        .into_iter()
        .map(|(name, info)| SchedSite {
            healthy: info.healthy,
            flavors: info.flavors(),
            elastic: info
                .description
                .as_ref()
                .and_then(|d| d.capabilities.as_ref())
                .is_some_and(|c| c.elastic),
            idle_timeout_seconds: info.idle_timeout_seconds,
            health_message: info.message,
            name,
        })
        .collect()
}

async fn session(
    mut client: SchedulerClient<Channel>,
    ctx: &Ctx,
    up: &watch::Sender<bool>,
) -> Result<(), String> {
    let (tx, rx) = mpsc::channel::<SessionRequest>(64);
    let mut commits = ctx.store.subscribe();
    let mut sites = ctx.sites.watch();
    let mut snapshot = ctx
        .store
        .sched_snapshot()
        .await
        .map_err(|e| e.to_string())?;
    let mut plans = client
        .session(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .map_err(|s| format!("cannot open a session: {}", s.message()))?
        .into_inner();
    let send = |req: SessionRequest| {
        let tx = tx.clone();
        async move {
            tx.send(req)
                .await
                .map_err(|_| "the session closed".to_string())
        }
    };
    // The whole picture: sites and partitions first, then jobs a page at a
    // time; the last message says the snapshot is done.
    let mut msg = SessionRequest {
        seq: snapshot.seq,
        reset: true,
        sites: sched_sites(ctx),
        partitions: snapshot.partitions.iter().map(|p| p.to_sched()).collect(),
        now_ms: now_ms(),
        ..Default::default()
    };
    let mut total = 0usize;
    let mut page = snapshot
        .next_jobs(SNAPSHOT_CHUNK)
        .await
        .map_err(|e| e.to_string())?;
    loop {
        let next = if page.is_empty() {
            Vec::new()
        } else {
            snapshot
                .next_jobs(SNAPSHOT_CHUNK)
                .await
                .map_err(|e| e.to_string())?
        };
        total += page.len();
        msg.jobs = page.iter().map(|j| j.to_sched()).collect();
        msg.snapshot_done = next.is_empty();
        let done = msg.snapshot_done;
        send(std::mem::take(&mut msg)).await?;
        if done {
            break;
        }
        msg.seq = snapshot.seq;
        msg.now_ms = now_ms();
        page = next;
    }
    tracing::info!(jobs = total, seq = snapshot.seq, "scheduler session up");
    up.send_replace(true);
    let mut last_seq = snapshot.seq;
    snapshot.finish().await.map_err(|e| e.to_string())?;
    loop {
        tokio::select! {
            commit = commits.recv() => match commit {
                Ok(commit) if commit.seq > last_seq || !commit.partitions.is_empty() => {
                    last_seq = last_seq.max(commit.seq);
                    let req = SessionRequest {
                        seq: last_seq,
                        jobs: commit.jobs.iter().map(|j| j.to_sched()).collect(),
                        partitions: commit.partitions.iter().map(|p| p.to_sched()).collect(),
                        now_ms: now_ms(),
                        ..Default::default()
                    };
                    send(req).await?;
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    return Err(format!("fell {n} commits behind; resending the whole picture"));
                }
                Err(broadcast::error::RecvError::Closed) => return Ok(()),
            },
            changed = sites.changed() => {
                if changed.is_err() { return Ok(()); }
                send(SessionRequest { seq: last_seq, sites: sched_sites(ctx), now_ms: now_ms(), ..Default::default() }).await?;
            }
            plan = plans.message() => {
                let plan = plan.map_err(|s| format!("session broke: {}", s.message()))?.ok_or("the scheduler ended the session")?;
                apply_plan(ctx, plan, &send, last_seq).await?;
            }
        }
    }
}

/// Check a plan against what gantryd knows and commit the valid part.
async fn apply_plan<F, Fut>(
    ctx: &Ctx,
    plan: SessionResponse,
    send: &F,
    seq: u64,
) -> Result<(), String>
where
    F: Fn(SessionRequest) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let sites = ctx.sites.all();
    let mut ops = PlanOps::default();
    let mut new_partitions: HashMap<String, String> = HashMap::new();
    for create in plan.create_partitions {
        let flavor = sites.get(&create.site).filter(|s| s.healthy).and_then(|s| {
            s.flavors()
                .into_iter()
                .find(|f| f.name == create.flavor && f.available)
        });
        let valid_id = uuid::Uuid::parse_str(&create.partition_id).is_ok();
        match flavor {
            Some(f) if valid_id => {
                let c = f.capacity.unwrap_or_default();
                let capacity = Resources {
                    cpus: c.cpus,
                    memory: c.memory_bytes,
                    gpus: c.gpus,
                    nodes: c.nodes.max(1),
                };
                new_partitions.insert(create.partition_id.clone(), create.site.clone());
                ops.creates
                    .push((create.partition_id, create.site, create.flavor, capacity));
            }
            _ => {
                tracing::warn!(site = %create.site, flavor = %create.flavor, "scheduler asked for a partition that cannot be made; ignored")
            }
        }
    }
    for (name, site) in &sites {
        let defaults: HashMap<String, u64> = site
            .flavors()
            .into_iter()
            .filter_map(|f| {
                let w = match f.default_walltime_seconds {
                    0 => f.max_walltime_seconds,
                    w => w,
                };
                (w > 0).then_some((f.name, w))
            })
            .collect();
        if !defaults.is_empty() {
            ops.default_walltimes.insert(name.clone(), defaults);
        }
    }
    ops.starts = plan
        .start_jobs
        .into_iter()
        .map(|s| (s.job_id, s.partition_id))
        .collect();
    ops.deletes = plan
        .delete_partitions
        .into_iter()
        .map(|d| d.partition_id)
        .collect();
    let reasons: Vec<(u64, String)> = plan
        .pending_reasons
        .into_iter()
        .map(|r| (r.job_id, r.reason))
        .collect();
    if !reasons.is_empty() {
        let store = ctx.store.clone();
        tokio::spawn(async move {
            let _ = store.apply_durably(Op::Reasons(reasons)).await;
        });
    }
    if ops.creates.is_empty() && ops.starts.is_empty() && ops.deletes.is_empty() {
        return Ok(());
    }
    let refused = match ctx.store.apply_durably(Op::Plan(ops)).await {
        Ok(Outcome::Refused(refused)) => refused,
        Ok(_) => Vec::new(),
        Err(e) => return Err(format!("cannot commit a plan: {e}")),
    };
    if refused.is_empty() {
        return Ok(());
    }
    // Tell the scheduler the truth about every refused job so its view converges.
    let mut jobs = Vec::with_capacity(refused.len());
    for (id, why) in refused {
        tracing::debug!(job = id, why, "plan decision refused");
        match ctx.store.job(id).await {
            Ok(Some(job)) => jobs.push(job.to_sched()),
            _ => jobs.push(v1::SchedJob {
                job_id: id,
                state: v1::SchedJobState::Gone as i32,
                ..Default::default()
            }),
        }
    }
    send(SessionRequest {
        seq,
        jobs,
        now_ms: now_ms(),
        ..Default::default()
    })
    .await
}
