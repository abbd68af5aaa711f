//! gantryd on PostgreSQL while the database goes away for 10 s and comes
//! back: calls fail with UNAVAILABLE meanwhile, the SDK's retried submit
//! lands once, and no job accepted before, during or after is lost.

use std::time::Duration;

use gantry_client::{JobSpec, JobState};
use gantry_e2e::{Cluster, Options, Postgres, create_database, free_port};
use gantry_proto::v1::{ListJobsRequest, SubmitJobRequest};

fn short_job() -> JobSpec {
    JobSpec {
        argv: vec!["/bin/sh".into(), "-c".into(), "sleep 0.2; echo done".into()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_outage_costs_availability_never_an_accepted_job() {
    let pg = Postgres::start(free_port()).expect("start PostgreSQL (scripts/postgres)");
    let url = create_database(&pg.admin_url, "gantry_outage").unwrap();
    let cluster = Cluster::start(Options {
        database_url: Some(url),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut accepted = Vec::new();
    for _ in 0..10 {
        accepted.push(alice.submit(short_job()).await.unwrap().id);
    }

    pg.stop().unwrap();
    let once = SubmitJobRequest {
        spec: Some(short_job()),
        client_request_id: "during-the-outage".into(),
        on_behalf_of: String::new(),
    };
    let err = alice.submit_request(once.clone()).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    let err = alice.list(ListJobsRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    // The SDK's submit retries (same request id) until the database is back.
    let retrying = {
        let alice = cluster.user("alice").await.unwrap();
        tokio::spawn(async move { alice.submit(short_job()).await })
    };
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert!(
        !retrying.is_finished(),
        "a submit succeeded with no database"
    );
    pg.restart().unwrap();

    let retried = tokio::time::timeout(Duration::from_secs(30), retrying)
        .await
        .expect("the retried submit never landed")
        .unwrap()
        .expect("the retried submit failed");
    accepted.push(retried.id);
    // The call that was refused can be repeated with its request id: one job.
    let first = alice.submit_request(once.clone()).await.unwrap();
    let again = alice.submit_request(once).await.unwrap();
    assert!(first.created && !again.created);
    assert_eq!(first.job.as_ref().unwrap().id, again.job.unwrap().id);
    accepted.push(first.job.unwrap().id);

    for id in &accepted {
        let job = tokio::time::timeout(Duration::from_secs(60), alice.wait(*id, |_| {}))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "job {id} did not end\n--- gantryd\n{}\n--- gate\n{}",
                    cluster.core.log_tail(),
                    cluster.gate.log_tail()
                )
            })
            .expect("wait");
        assert_eq!(job.state(), JobState::Completed, "job {id}: {job:?}");
    }
    let all = alice
        .list(ListJobsRequest {
            page_size: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        all.jobs.len(),
        accepted.len(),
        "exactly the accepted jobs exist"
    );
}
