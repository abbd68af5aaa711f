//! PostgreSQL on a tmpfs that fills up.

use std::time::Duration;

use gantry_e2e::faults::Tmpfs;
use gantry_e2e::{Cluster, Options, Postgres, create_database, free_port};
use tonic::Code;

use crate::common::{accepted_again, assert_all_present, submit_accepted, submit_until_refused};

#[tokio::test(flavor = "multi_thread")]
async fn a_full_postgresql_disk_costs_availability_never_an_acknowledged_job() {
    let mount = std::env::temp_dir().join(format!("gantry-pgfs-{}", uuid::Uuid::now_v7().simple()));
    let fs = Tmpfs::mount(&mount, 128).unwrap();
    let pg = Postgres::start_in(&fs.path().join("pg"), free_port()).expect("start PostgreSQL");
    let url = create_database(&pg.admin_url, "gantry_full").unwrap();
    let mut cluster = Cluster::start(Options {
        database_url: Some(url),
        ..Default::default()
    })
    .await
    .unwrap();
    let alice = cluster.user("alice").await.unwrap();
    let mut acked = Vec::new();
    submit_accepted(&alice, 20, "the disk has room", &mut acked).await;

    fs.fill().unwrap();
    let refused = submit_until_refused(&alice, &mut acked, 5, 20000).await;
    assert_eq!(refused.len(), 5, "PostgreSQL never met the full disk");
    for (code, message) in &refused {
        // A full disk, or the server restarting after a PANIC.
        assert!(
            (*code == Code::ResourceExhausted && message.contains("disk is full"))
                || *code == Code::Unavailable,
            "{code:?}: {message}"
        );
    }
    assert!(
        refused.iter().any(|(c, _)| *c == Code::ResourceExhausted),
        "no refusal said the disk is full: {refused:?}"
    );

    // Space returns. A server that PANICked on its full disk and could not
    // come back is started again, as its operator would.
    fs.free().unwrap();
    if !pg.is_up() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        if !pg.is_up() {
            pg.restart()
                .unwrap_or_else(|e| panic!("{e}\n{}", pg.log_tail()));
        }
    }
    acked.push(accepted_again(&alice).await);
    cluster.core.restart().await.unwrap();
    assert_all_present(&cluster, &acked).await;
}
