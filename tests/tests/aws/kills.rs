//! SIGKILL gantryd and the AWS gate at seeded random moments across
//! provisioning, running and teardown: no job is lost, none runs twice
//! unless its history says it was requeued after a lost machine, and no
//! instance is left that no partition owns.

use std::collections::HashMap;
use std::time::Duration;

use gantry_e2e::{eventually, run};

use crate::{aws_cluster, show, submit, until_all_terminated};

/// A small deterministic generator (xorshift64*), so that a failing
/// schedule can be replayed from its seed.
struct Schedule(u64);

impl Schedule {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_gantryd_and_the_gate_at_twenty_moments_loses_no_job_and_leaks_no_machine() {
    let seed = std::env::var("GANTRY_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_2026_u64);
    let mut schedule = Schedule(seed);
    let mut cluster = aws_cluster(|site| {
        // Idle partitions go at once, so kills land in teardown too.
        site.idle_timeout_seconds = 1;
    })
    .await;
    let runs = cluster.dir().join("runs");
    let script = format!("echo \"$GANTRY_JOB_ID\" >> {}; sleep 0.3", runs.display());
    let mut jobs = Vec::new();
    for moment in 0..20 {
        for _ in 0..=schedule.below(3) {
            jobs.push(submit(
                &cluster,
                &["--site", "aws", "--", "sh", "-c", &script],
            ));
        }
        let wait = Duration::from_millis(50 + schedule.below(1500));
        tokio::time::sleep(wait).await;
        let which = if schedule.below(2) == 0 {
            "gantryd"
        } else {
            "gate"
        };
        eprintln!("moment {moment} (seed {seed:#x}): SIGKILL {which} after {wait:?}");
        match which {
            "gantryd" => cluster.core.restart().await.unwrap(),
            _ => cluster.gate.restart().await.unwrap(),
        }
    }

    // Every job ends COMPLETED.
    for id in &jobs {
        eventually(
            Duration::from_secs(120),
            &format!("job {id} to complete"),
            async || {
                let out = show(&cluster, id);
                if out.replace(' ', "").contains("\"state\":\"COMPLETED\"") {
                    Ok(())
                } else {
                    Err(format!("{out}\n--- gate:\n{}", cluster.gate.log_tail()))
                }
            },
        )
        .await;
    }

    // None ran twice unless it was requeued after a lost machine.
    let text = std::fs::read_to_string(&runs).unwrap();
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for line in text.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    for id in &jobs {
        let ran = counts.get(id.as_str()).copied().unwrap_or(0);
        let (_, shown, _) = run(cluster.cli("alice").args(["show", id, "--json"]));
        let requeues = shown
            .split("\"requeues\":")
            .nth(1)
            .and_then(|rest| {
                rest.trim_start()
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
            })
            .and_then(|n| n.parse::<u32>().ok())
            .unwrap_or(0);
        assert!(ran >= 1, "job {id} never ran:\n{shown}");
        assert!(
            ran <= 1 + requeues,
            "job {id} ran {ran} times with {requeues} requeues:\n{shown}"
        );
    }

    eprintln!(
        "{} jobs on {} machines; runs: {}",
        jobs.len(),
        crate::played(&cluster).len(),
        text.lines().count()
    );

    // Once idle, every instance is terminated: none is left that no
    // partition owns.
    until_all_terminated(&cluster, Duration::from_secs(120)).await;
}
