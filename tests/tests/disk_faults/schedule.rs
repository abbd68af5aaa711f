//! Random interleavings of submits, kills and disk faults, from a seed.

use std::time::Duration;

use gantry_client::SubmitJobRequest;
use gantry_e2e::faults::{Tmpfs, strace_inject};
use gantry_e2e::{Cluster, Options};

use crate::common::{recorder, run_counts};

/// A small seeded generator (xorshift64*), so a failing schedule can be
/// replayed from its seed.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % below
    }
}

/// Random interleavings of submits, SIGKILLs of gantryd and of the gate, a
/// database disk that fills and empties, and fsync failures injected into
/// a restarted gantryd. After the last restart every acknowledged job is
/// there and ends COMPLETED having run exactly once, and no job ran twice.
/// Seeds: `GANTRY_FAULT_SEEDS` (comma-separated), else 1, 2 and 3.
#[tokio::test(flavor = "multi_thread")]
async fn random_interleavings_of_submits_kills_and_faults_lose_nothing_and_run_nothing_twice() {
    let seeds: Vec<u64> = std::env::var("GANTRY_FAULT_SEEDS")
        .map(|s| {
            s.split(',')
                .map(|x| x.trim().parse().expect("a seed"))
                .collect()
        })
        .unwrap_or_else(|_| vec![1, 2, 3]);
    for seed in seeds {
        one_schedule(seed).await;
    }
}

async fn one_schedule(seed: u64) {
    use gantry_client::JobState;
    let mut schedule = Schedule(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let scratch = tempfile::tempdir().unwrap();
    let fs = Tmpfs::mount(&scratch.path().join("state"), 8).unwrap();
    let mut cluster = Cluster::start(Options {
        core_state_dir: Some(fs.path().join("core")),
        ..Default::default()
    })
    .await
    .unwrap();
    let runs = scratch.path().join("runs.txt");
    let mut acked: Vec<u64> = Vec::new();
    let mut full = false;
    let mut steps = Vec::new();
    for _ in 0..12 {
        let step = match schedule.next(6) {
            0 | 1 => {
                let n = 1 + schedule.next(15) as usize;
                let alice = cluster.user("alice").await.unwrap();
                let mut refused = 0;
                for _ in 0..n {
                    let request = SubmitJobRequest {
                        spec: Some(recorder(&runs)),
                        client_request_id: uuid::Uuid::now_v7().to_string(),
                        on_behalf_of: String::new(),
                    };
                    match alice.submit_request(request).await {
                        Ok(r) => acked.push(r.job.expect("a job").id),
                        Err(_) => refused += 1,
                    }
                }
                format!("submit {n} ({refused} refused)")
            }
            2 => {
                let inject = match schedule.next(3) {
                    0 => Vec::new(),
                    1 => strace_inject(
                        "fsync,fdatasync",
                        &format!("error=EIO:when={}", 5 + schedule.next(40)),
                    ),
                    _ => strace_inject(
                        "fsync,fdatasync",
                        &format!("error=EIO:when={}+", 5 + schedule.next(40)),
                    ),
                };
                let what = if inject.is_empty() {
                    "SIGKILL gantryd".to_string()
                } else {
                    format!("SIGKILL gantryd, restart under {}", inject.last().unwrap())
                };
                cluster.core.wrapper = inject;
                cluster.core.restart().await.unwrap();
                what
            }
            3 => {
                cluster.gate.restart().await.unwrap();
                "SIGKILL the gate".into()
            }
            4 if !full => {
                fs.fill().unwrap();
                full = true;
                "fill the database disk".into()
            }
            _ => {
                if full {
                    fs.free().unwrap();
                    full = false;
                }
                tokio::time::sleep(Duration::from_millis(schedule.next(1500))).await;
                "free the disk, wait".into()
            }
        };
        steps.push(step);
    }
    // The end: space back, no fault injected, one last SIGKILL.
    if full {
        fs.free().unwrap();
    }
    cluster.core.wrapper.clear();
    cluster.core.restart().await.unwrap();
    let context = format!("seed {seed}: {}", steps.join("; "));
    let alice = cluster.user("alice").await.unwrap();
    for id in &acked {
        let job = tokio::time::timeout(Duration::from_secs(120), alice.wait(*id, |_| {}))
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "job {id} did not end ({context})\n{}",
                    cluster.core.log_tail()
                )
            })
            .unwrap_or_else(|e| panic!("acknowledged job {id}: {e} ({context})"));
        assert_eq!(
            job.state(),
            JobState::Completed,
            "job {id}: {} ({context})",
            job.reason
        );
    }
    let counts = run_counts(&runs);
    for id in &acked {
        assert_eq!(
            counts.get(id),
            Some(&1),
            "job {id} ran {:?} times ({context})",
            counts.get(id)
        );
    }
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "ran twice: {twice:?} ({context})");
}
