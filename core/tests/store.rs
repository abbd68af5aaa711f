//! The store on a real database: group commit, de-duplication, the state
//! table on every write, dependencies, and reopening after the fact. SQLite
//! by default; a fresh database on a real PostgreSQL server when
//! `GANTRY_TEST_POSTGRES` holds its admin URL (`scripts/test` runs both).

use std::sync::Arc;

use gantry_core::job::ValidSpec;
use gantry_core::store::{NewJob, Op, Outcome, PlanOps, Store};
use gantry_proto::v1::{JobSpec, JobState, PartitionState};

/// A fresh, empty database: its URL. The directory holds the SQLite file.
async fn fresh_database(dir: &std::path::Path) -> String {
    let Ok(admin) = std::env::var("GANTRY_TEST_POSTGRES") else {
        return format!("sqlite://{}", dir.join("gantry.db").display());
    };
    use sqlx::{Connection, Executor};
    sqlx::any::install_default_drivers();
    let name = format!("gantry_store_{}", uuid::Uuid::now_v7().simple());
    let mut conn = sqlx::AnyConnection::connect(&admin).await.unwrap();
    conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

/// A store on a fresh database (see [`fresh_database`]).
async fn fresh_store(dir: &std::path::Path) -> Store {
    Store::open(&fresh_database(dir).await).await.unwrap()
}

fn new_job(owner: &str, request_id: Option<&str>, after: Vec<u64>) -> Op {
    let spec = JobSpec {
        argv: vec!["true".into()],
        after,
        ..Default::default()
    };
    submit(spec, owner, request_id)
}

fn submit(spec: JobSpec, owner: &str, request_id: Option<&str>) -> Op {
    Op::Submit(Box::new(NewJob {
        spec: ValidSpec::parse(spec, |_| true).unwrap(),
        owner: owner.into(),
        submitted_by: String::new(),
        request_id: request_id.map(str::to_string),
        is_admin: false,
    }))
}

fn job(outcome: Outcome) -> gantry_core::store::JobRow {
    match outcome {
        Outcome::Job(job, _) => *job,
        other => panic!("not a job: {other:?}"),
    }
}

#[tokio::test]
async fn concurrent_submits_share_commits_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = Arc::new(Store::open(&url).await.unwrap());
    let mut tasks = Vec::new();
    for i in 0..500 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let request = format!("r{}", i % 250);
            job(store
                .apply(new_job("alice", Some(&request), vec![]))
                .await
                .unwrap())
            .id
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 250, "each request id makes exactly one job");
    let again = job(store
        .apply(new_job("alice", Some("r7"), vec![]))
        .await
        .unwrap());
    assert!(
        ids.contains(&again.id),
        "a repeated request id after its commit"
    );
    let bobs = job(store
        .apply(new_job("bob", Some("r7"), vec![]))
        .await
        .unwrap());
    assert!(
        !ids.contains(&bobs.id),
        "a request id is scoped to its owner"
    );
    drop(store);
    let reopened = Store::open(&url).await.unwrap();
    for id in &ids {
        assert_eq!(
            reopened.job(*id).await.unwrap().unwrap().state,
            JobState::Queued
        );
    }
    let events = reopened.events(0, &[], None, 10_000).await.unwrap();
    assert_eq!(events.len(), 251, "alice's 250 jobs and bob's one");
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    let next = job(reopened
        .apply(new_job("alice", None, vec![]))
        .await
        .unwrap());
    assert_eq!(next.id, bobs.id + 1);
}

#[tokio::test]
async fn placement_is_checked_and_dependencies_release_or_fail() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let a = job(store.apply(new_job("alice", None, vec![])).await.unwrap());
    let b = job(store
        .apply(new_job("alice", None, vec![a.id]))
        .await
        .unwrap());
    assert_eq!(b.deps_pending, 1);
    assert_eq!(b.reason, format!("waiting for job {}", a.id));
    // bob cannot depend on alice's job.
    assert!(store.apply(new_job("bob", None, vec![a.id])).await.is_err());
    let cap = gantry_core::job::Resources {
        cpus: 1,
        memory: 1 << 30,
        gpus: 0,
        nodes: 1,
    };
    let plan = PlanOps {
        creates: vec![("p1".into(), "local".into(), "host".into(), cap)],
        starts: vec![(a.id, "p1".into()), (b.id, "p1".into())],
        ..Default::default()
    };
    let Outcome::Refused(refused) = store.apply(Op::Plan(plan)).await.unwrap() else {
        panic!()
    };
    assert_eq!(refused.len(), 1, "b waits for a: {refused:?}");
    assert_eq!(refused[0].0, b.id);
    let placed = store.job(a.id).await.unwrap().unwrap();
    assert_eq!(placed.state, JobState::Scheduled);
    // A second job does not fit the 1-CPU partition while a holds it.
    let c = job(store.apply(new_job("alice", None, vec![])).await.unwrap());
    let plan = PlanOps {
        starts: vec![(c.id, "p1".into())],
        ..Default::default()
    };
    let Outcome::Refused(refused) = store.apply(Op::Plan(plan)).await.unwrap() else {
        panic!()
    };
    assert_eq!(refused.len(), 1);
    // The partition going away puts a back in the queue.
    let op = Op::Partition {
        id: "p1".into(),
        state: PartitionState::Failed,
        capacity: None,
        queue: None,
        message: "boom".into(),
        refused: false,
    };
    store.apply(op).await.unwrap();
    let requeued = store.job(a.id).await.unwrap().unwrap();
    assert_eq!(requeued.state, JobState::Queued);
    assert!(requeued.attempt_id.is_empty());
    // Cancelling a fails its dependent b with a reason naming a.
    store
        .apply(Op::Cancel {
            job_id: a.id,
            actor: "user/alice".into(),
            reason: String::new(),
        })
        .await
        .unwrap();
    let b = store.job(b.id).await.unwrap().unwrap();
    assert_eq!(b.state, JobState::Failed);
    assert_eq!(b.reason, format!("dependency job {} ended CANCELLED", a.id));
}

/// A dependent submitted in the same batch as its dependency's end is
/// released too (its `job_deps` row is not written until the batch is): the
/// submits race the cancel into the writer, so some share its batch.
#[tokio::test]
async fn a_dependent_submitted_in_the_batch_that_ends_its_dependency_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(fresh_store(dir.path()).await);
    for round in 0..5 {
        let a = job(store.apply(new_job("alice", None, vec![])).await.unwrap());
        let mut tasks = Vec::new();
        for i in 0..60 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                let op = if i == 20 {
                    Op::Cancel {
                        job_id: a.id,
                        actor: "user/alice".into(),
                        reason: String::new(),
                    }
                } else {
                    new_job("alice", None, vec![a.id])
                };
                store.apply(op).await.unwrap()
            }));
        }
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        for outcome in outcomes {
            let Outcome::Job(dependent, _) = outcome else {
                continue;
            };
            if dependent.id == a.id {
                continue;
            }
            let now = store.job(dependent.id).await.unwrap().unwrap();
            assert_eq!(
                (now.state, now.reason.as_str()),
                (
                    JobState::Failed,
                    format!("dependency job {} ended CANCELLED", a.id).as_str()
                ),
                "round {round}: job {} waits for job {}, which was cancelled",
                now.id,
                a.id
            );
        }
    }
}

#[tokio::test]
async fn a_partition_its_gate_refuses_fails_the_jobs_waiting_for_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let a = job(store.apply(new_job("alice", None, vec![])).await.unwrap());
    let cap = gantry_core::job::Resources {
        cpus: 1,
        memory: 1 << 30,
        gpus: 0,
        nodes: 1,
    };
    let plan = PlanOps {
        creates: vec![("p1".into(), "aws".into(), "t3.micro".into(), cap)],
        starts: vec![(a.id, "p1".into())],
        ..Default::default()
    };
    store.apply(Op::Plan(plan)).await.unwrap();
    let op = Op::Partition {
        id: "p1".into(),
        state: PartitionState::Failed,
        capacity: None,
        queue: None,
        message: "the AWS gate's --image: InvalidAMIID.NotFound".into(),
        refused: true,
    };
    store.apply(op).await.unwrap();
    let failed = store.job(a.id).await.unwrap().unwrap();
    assert_eq!(failed.state, JobState::Failed);
    assert_eq!(
        failed.reason,
        "site aws cannot provision it: the AWS gate's --image: InvalidAMIID.NotFound"
    );
}

#[tokio::test]
async fn the_scheduler_snapshot_pages_schedulable_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let mut schedulable = Vec::new();
    for i in 0..12 {
        let held = i % 4 == 3;
        let spec = JobSpec {
            argv: vec!["true".into()],
            hold: held,
            ..Default::default()
        };
        let op = Op::Submit(Box::new(NewJob {
            spec: ValidSpec::parse(spec, |_| true).unwrap(),
            owner: "alice".into(),
            submitted_by: String::new(),
            request_id: None,
            is_admin: false,
        }));
        let id = job(store.apply(op).await.unwrap()).id;
        if !held {
            schedulable.push(id);
        }
    }
    let mut snapshot = store.sched_snapshot().await.unwrap();
    assert_eq!(snapshot.seq, 12);
    let mut seen = Vec::new();
    loop {
        let page = snapshot.next_jobs(4).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 4);
        seen.extend(page.iter().map(|j| j.id));
    }
    assert_eq!(
        seen, schedulable,
        "held jobs are not schedulable; order is by id"
    );
}

/// A StartJob answer (PENDING, "waiting for a free slot") heard after the
/// watch stream already said the job ran and succeeded: seen on a busy
/// machine, it once became the finished job's reason and failed it.
#[tokio::test]
async fn a_late_pending_report_changes_nothing_once_the_job_ran() {
    use gantry_proto::v1::{GateJob, GateJobState};
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let spec = JobSpec {
        argv: vec!["true".into()],
        ..Default::default()
    };
    let a = job(store.apply(submit(spec, "alice", None)).await.unwrap());
    let cap = gantry_core::job::Resources {
        cpus: 1,
        memory: 1 << 30,
        gpus: 0,
        nodes: 1,
    };
    let plan = PlanOps {
        creates: vec![("p1".into(), "local".into(), "host".into(), cap)],
        starts: vec![(a.id, "p1".into())],
        ..Default::default()
    };
    store.apply(Op::Plan(plan)).await.unwrap();
    let placed = store.job(a.id).await.unwrap().unwrap();
    let report = |state: GateJobState, reason: &str| {
        let mut g = GateJob {
            attempt_id: placed.attempt_id.clone(),
            partition_id: "p1".into(),
            job_id: a.id,
            start_time_ms: 1,
            end_time_ms: 2,
            exit_code: (state == GateJobState::Succeeded).then_some(0),
            stdout_bytes: Some(3),
            reason: reason.into(),
            ..Default::default()
        };
        g.set_state(state);
        Op::GateReport {
            site: "local".into(),
            job: g,
        }
    };
    for (state, reason) in [
        (GateJobState::Running, ""),
        (GateJobState::Succeeded, ""),
        (
            GateJobState::Pending,
            "waiting for a free slot on this host (0 ahead)",
        ),
    ] {
        store.apply(report(state, reason)).await.unwrap();
    }
    let now = store.job(a.id).await.unwrap().unwrap();
    assert_eq!(now.state, JobState::StagingOut, "{now:?}");
    assert_eq!(now.reason, "", "a late PENDING must not become its reason");
}

#[tokio::test]
async fn a_lost_attempt_is_queued_again_while_the_job_has_retries() {
    use gantry_proto::v1::{GateJob, GateJobState};
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let spec = JobSpec {
        argv: vec!["true".into()],
        retries: Some(1),
        ..Default::default()
    };
    let a = job(store.apply(submit(spec, "alice", None)).await.unwrap());
    let cap = gantry_core::job::Resources {
        cpus: 1,
        memory: 1 << 30,
        gpus: 0,
        nodes: 1,
    };
    let mut creates = vec![("p1".into(), "local".into(), "host".into(), cap)];
    // Placed, running, lost: twice (the second time its one retry is used).
    for round in 1..=2 {
        let plan = PlanOps {
            creates: std::mem::take(&mut creates),
            starts: vec![(a.id, "p1".into())],
            ..Default::default()
        };
        // The 1-CPU partition takes it again: the lost attempt freed it.
        let Outcome::Refused(refused) = store.apply(Op::Plan(plan)).await.unwrap() else {
            panic!()
        };
        assert!(refused.is_empty(), "round {round}: {refused:?}");
        let placed = store.job(a.id).await.unwrap().unwrap();
        let report = |state: GateJobState, lost: bool| {
            let mut g = GateJob {
                attempt_id: placed.attempt_id.clone(),
                partition_id: "p1".into(),
                job_id: a.id,
                start_time_ms: 1,
                lost,
                reason: if lost {
                    "lost: its machine went away".into()
                } else {
                    String::new()
                },
                ..Default::default()
            };
            g.set_state(state);
            Op::GateReport {
                site: "local".into(),
                job: g,
            }
        };
        store
            .apply(report(GateJobState::Running, false))
            .await
            .unwrap();
        store
            .apply(report(GateJobState::Failed, true))
            .await
            .unwrap();
        let now = store.job(a.id).await.unwrap().unwrap();
        if round == 1 {
            assert_eq!(now.state, JobState::Queued, "{now:?}");
            assert_eq!(now.requeues, 1);
            assert!(now.attempt_id.is_empty());
            assert_eq!(
                now.reason,
                "requeued (1 of 1 retries): lost: its machine went away"
            );
        } else {
            // No retry left: it ends as a lost job did before (its logs first).
            assert_eq!(now.state, JobState::StagingOut, "{now:?}");
            assert_eq!(now.requeues, 1);
            assert_eq!(
                now.reason,
                "lost: its machine went away; not requeued: 1 retries used"
            );
        }
    }
}

#[tokio::test]
async fn reasons_reach_queued_jobs_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(job(store.apply(new_job("alice", None, vec![])).await.unwrap()).id);
    }
    let held = Op::Hold {
        job_id: ids[2],
        actor: "user/alice".into(),
        hold: true,
    };
    store.apply(held).await.unwrap();
    let reasons = vec![
        (ids[0], "waiting for resources".to_string()),
        (ids[1], "waiting for resources".to_string()),
        (ids[2], "waiting for resources".to_string()),
    ];
    store.apply(Op::Reasons(reasons)).await.unwrap();
    store
        .apply(Op::Reasons(vec![(ids[1], "priority".to_string())]))
        .await
        .unwrap();
    let reason = |id| {
        let store = &store;
        async move { store.job(id).await.unwrap().unwrap().reason }
    };
    assert_eq!(reason(ids[0]).await, "waiting for resources");
    assert_eq!(reason(ids[1]).await, "priority");
    assert_ne!(
        reason(ids[2]).await,
        "waiting for resources",
        "a held job keeps its own reason"
    );
}

/// A job that asked for no walltime gets its flavor's default when placed,
/// as a batch system gives its partition's DefaultTime; one that asked
/// keeps its own.
#[tokio::test]
async fn a_job_without_a_walltime_gets_its_flavors_default_when_placed() {
    let dir = tempfile::tempdir().unwrap();
    let store = fresh_store(dir.path()).await;
    let unset = job(store.apply(new_job("alice", None, vec![])).await.unwrap());
    let own = JobSpec {
        argv: vec!["true".into()],
        resources: Some(gantry_proto::v1::ResourceRequest {
            walltime: "30s".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    let own = job(store.apply(submit(own, "alice", None)).await.unwrap());
    assert_eq!((unset.walltime, own.walltime), (0, 30));
    let cap = gantry_core::job::Resources {
        cpus: 4,
        memory: 4 << 30,
        gpus: 0,
        nodes: 1,
    };
    let plan = PlanOps {
        creates: vec![("p1".into(), "hpc".into(), "short".into(), cap)],
        starts: vec![(unset.id, "p1".into()), (own.id, "p1".into())],
        default_walltimes: [("hpc".to_string(), [("short".to_string(), 120)].into())].into(),
        ..Default::default()
    };
    store.apply(Op::Plan(plan)).await.unwrap();
    let unset = store.job(unset.id).await.unwrap().unwrap();
    let own = store.job(own.id).await.unwrap().unwrap();
    assert_eq!((unset.walltime, own.walltime), (120, 30));
    assert_eq!(unset.to_proto().walltime_seconds, 120);
}

/// PostgreSQL only (SQLite plans without statistics): a fresh `jobs` table
/// that takes its first thousand jobs is analyzed by gantryd itself, long
/// before autovacuum would, so that the planner no longer takes it for an
/// empty table (see `store::statistics`).
#[tokio::test]
async fn a_young_jobs_table_is_analyzed_once_it_holds_a_thousand_jobs() {
    if std::env::var("GANTRY_TEST_POSTGRES").is_err() {
        eprintln!("PostgreSQL only (GANTRY_TEST_POSTGRES is not set): nothing to check on SQLite");
        return;
    }
    use sqlx::Connection;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database(dir.path()).await;
    let store = Arc::new(Store::open(&url).await.unwrap());
    let mut conn = sqlx::AnyConnection::connect(&url).await.unwrap();
    let seen = async |conn: &mut sqlx::AnyConnection| -> (bool, f64) {
        sqlx::query_as(
            "SELECT last_analyze IS NOT NULL, CAST(c.reltuples AS DOUBLE PRECISION) \
             FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid WHERE s.relname = 'jobs'",
        )
        .fetch_one(conn)
        .await
        .unwrap()
    };
    let mut tasks = Vec::new();
    for i in 0..999 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let request = format!("r{i}");
            store
                .apply(new_job("alice", Some(&request), vec![]))
                .await
                .unwrap()
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Statistics reach pg_stat_user_tables a little after the fact.
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert!(!seen(&mut conn).await.0, "analyzed before 1,000 jobs");
    store
        .apply(new_job("alice", Some("r999"), vec![]))
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let (analyzed, rows) = seen(&mut conn).await;
        if analyzed && rows >= 1000.0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "jobs was not analyzed with its 1,000 rows within 30 s (analyzed: {analyzed}, rows: {rows})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
