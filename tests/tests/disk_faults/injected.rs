//! Syscalls of gantryd failed by strace: fsync and write, once or for good.

use std::time::Duration;

use gantry_e2e::faults::strace_inject;
use gantry_e2e::{Cluster, Options};
use tonic::Code;

use crate::common::{assert_all_present, submit_held};

/// What submitting under an injected fault saw.
struct Injected {
    /// The ids acknowledged.
    acked: Vec<u64>,
    /// How many submits were refused.
    refused: usize,
    /// The try that was refused first.
    first_refusal: Option<usize>,
    /// The end of gantryd's log, for failure messages.
    log: String,
}

impl Injected {
    /// Run gantryd with `syscalls` failing as `inject` says and submit held
    /// jobs one after another (`tries`; after a refusal the next try waits
    /// 200 ms, and `max_refused` refusals end it), each refusal with
    /// `refusal` and naming the database; then SIGKILL it and restart it
    /// without the fault: every acknowledged job must be there.
    async fn run(
        syscalls: &str,
        inject: &str,
        refusal: Code,
        tries: usize,
        max_refused: usize,
    ) -> Self {
        let mut cluster = Cluster::start(Options {
            core_wrapper: strace_inject(syscalls, inject),
            ..Default::default()
        })
        .await
        .unwrap();
        let alice = cluster.user("alice").await.unwrap();
        let (mut acked, mut refused, mut first_refusal) = (Vec::new(), 0, None);
        for i in 0..tries {
            match submit_held(&alice).await {
                Ok(id) => acked.push(id),
                Err((code, message)) => {
                    assert_eq!(code, refusal, "{message}");
                    assert!(message.contains("the database"), "{message}");
                    refused += 1;
                    first_refusal.get_or_insert(i);
                    if refused == max_refused {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        let log = cluster.core.log_tail();
        cluster.core.wrapper.clear();
        cluster.core.restart().await.unwrap();
        assert_all_present(&cluster, &acked).await;
        Self {
            acked,
            refused,
            first_refusal,
            log,
        }
    }

    /// The fault was met: some submit was refused.
    fn assert_met(&self) {
        assert!(
            self.refused > 0,
            "the injected fault was never met: {} acknowledged\n{}",
            self.acked.len(),
            self.log
        );
    }

    /// After the first refusal, gantryd served again: at least 40 submits
    /// were acknowledged after it, more than were refused.
    fn assert_serves_again(&self) {
        let first = self
            .first_refusal
            .unwrap_or_else(|| panic!("the injected failure was never met\n{}", self.log));
        let after = self.acked.len() - first.min(self.acked.len());
        assert!(
            after >= 40 && self.refused < after,
            "{after} acknowledged and {} refused after the first failure\n{}",
            self.refused,
            self.log
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_fsync_failing_loses_no_acknowledged_job() {
    Injected::run(
        "fsync,fdatasync",
        "error=EIO:when=40+",
        Code::Unavailable,
        150,
        10,
    )
    .await
    .assert_met();
}

// strace counts `when=` per thread and sqlx runs each SQLite connection on
// a thread of its own, so "the 40th fsync" fails once per connection: each
// fresh connection the writer recovers on meets one failure of its own. What
// counts is that gantryd serves again after each.
#[tokio::test(flavor = "multi_thread")]
async fn one_failed_fsync_is_refused_and_then_gantryd_serves_again() {
    Injected::run(
        "fsync,fdatasync",
        "error=EIO:when=40",
        Code::Unavailable,
        150,
        50,
    )
    .await
    .assert_serves_again();
}

#[tokio::test(flavor = "multi_thread")]
async fn writes_failing_with_enospc_are_refused_as_a_full_disk() {
    Injected::run(
        "pwrite64",
        "error=ENOSPC:when=200+",
        Code::ResourceExhausted,
        100,
        10,
    )
    .await
    .assert_met();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_write_failing_with_eio_is_refused_and_then_gantryd_serves_again() {
    Injected::run("pwrite64", "error=EIO:when=200", Code::Unavailable, 150, 50)
        .await
        .assert_serves_again();
}
