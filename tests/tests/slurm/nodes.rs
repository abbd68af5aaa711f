//! Jobs that span nodes, on the test cluster of two (`SLURM_NODES=2
//! scripts/slurm`: nodes cn01 and cn02, a slurmd each on localhost): Slurm
//! gives the job the nodes and tasks it asked for, the job sees its node
//! list, `srun` starts its tasks across them, and what no partition could
//! place is said at once.

use gantry_e2e::run;
use gantry_e2e::services::slurm_nodes_conf;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_job_spans_two_nodes_and_srun_starts_its_tasks_on_both() {
    spans_nodes(false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_spans_two_nodes_and_srun_starts_its_tasks_on_both_over_ssh() {
    spans_nodes(true).await;
}

async fn spans_nodes(over_ssh: bool) {
    let _serial = SERIAL.lock().await;
    let (cluster, conf) = cluster_on(slurm_nodes_conf(), over_ssh).await;

    // Two nodes, two tasks on each: srun runs every task, each on its node,
    // with the job's own environment.
    let wide = submit(
        &cluster,
        &[
            "--nodes",
            "2",
            "--ntasks-per-node",
            "2",
            "--env",
            "GREETING=hi",
            "--",
            "sh",
            "-c",
            "echo \"nodes=$GANTRY_NODELIST tasks=$GANTRY_NTASKS\"; cat \"$GANTRY_HOSTFILE\"; \
             srun sh -c 'echo \"$GREETING from task $SLURM_PROCID on $SLURMD_NODENAME\"' | sort",
        ],
    );
    let (code, _, err) = run(cluster.cli("alice").args(["wait", &wide]));
    assert_eq!(code, 0, "{err}\n{}", show(&cluster, &wide));
    let (_, log, _) = run(cluster.cli("alice").args(["logs", &wide]));
    assert_eq!(
        log,
        "nodes=cn01,cn02 tasks=4\ncn01\ncn02\n\
         hi from task 0 on cn01\nhi from task 1 on cn01\n\
         hi from task 2 on cn02\nhi from task 3 on cn02\n"
    );
    // Slurm's own record says the same.
    let record = slurm(
        &conf,
        "scontrol",
        &["show", "job", "-o", &slurm_job_of(&cluster, &wide)],
    );
    assert_eq!(field(&record, "NumNodes"), "2", "{record}");
    assert_eq!(field(&record, "NumTasks"), "4", "{record}");
    assert_eq!(field(&record, "NodeList"), "cn[01-02]", "{record}");
    let (_, shown, _) = run(cluster.cli("alice").args(["show", &wide]));
    assert!(
        shown.contains("nodes=2 tasks=4 tasks-per-node=2"),
        "{shown}"
    );

    // More nodes than the site has: refused at once, saying so.
    let err = refused(&cluster, &["--nodes", "3", "--", "true"]);
    assert!(
        err.contains("3 nodes (the most any site offers is 2)"),
        "{err}"
    );

    // Fewer tasks than nodes cannot be: refused at submit.
    let err = refused(&cluster, &["--nodes", "2", "--ntasks", "1", "--", "true"]);
    assert!(err.contains("1 tasks cannot span 2 nodes"), "{err}");
}

/// On a cluster of `short` (the default, 2-minute limit, 1-minute
/// DefaultTime) and `long` (no limit), a job lands where a Slurm user's
/// would: in `short` when it fits, taking its default time when it names
/// none, and in `long` when its walltime is over `short`'s limit; `gantry
/// sites` shows each partition's limits.
#[tokio::test(flavor = "multi_thread")]
async fn jobs_land_in_the_partition_a_slurm_user_would() {
    let _serial = SERIAL.lock().await;
    let (cluster, conf) = cluster_on(slurm_nodes_conf(), false).await;
    let (_, sites, _) = run(cluster.cli("alice").arg("sites"));
    assert!(sites.contains("short (default)"), "{sites}");
    assert!(sites.contains("limit 2m, default 1m"), "{sites}");

    let unset = submit(&cluster, &["--", "true"]);
    let one_minute = submit(&cluster, &["--walltime", "1m", "--", "true"]);
    let five = submit(&cluster, &["--walltime", "5m", "--", "true"]);
    for (id, partition, limit) in [
        (&unset, "short", "00:01:00"),
        (&one_minute, "short", "00:01:00"),
        (&five, "long", "00:05:00"),
    ] {
        let (code, _, err) = run(cluster.cli("alice").args(["wait", id]));
        assert_eq!(code, 0, "{err}\n{}", show(&cluster, id));
        let record = slurm(
            &conf,
            "scontrol",
            &["show", "job", "-o", &slurm_job_of(&cluster, id)],
        );
        assert_eq!(field(&record, "Partition"), partition, "job {id}: {record}");
        assert_eq!(field(&record, "TimeLimit"), limit, "job {id}: {record}");
    }
    let (_, shown, _) = run(cluster.cli("alice").args(["show", &unset]));
    assert!(
        shown.contains("walltime=60s (its partition's default)"),
        "{shown}"
    );
    // `gantry show` names the Slurm partition and the Slurm job.
    let slurm_id = slurm_job_of(&cluster, &unset);
    let line = |key: &str| {
        let found = shown.lines().find(|l| l.starts_with(key));
        found
            .unwrap_or_else(|| panic!("no {key} in {shown}"))
            .to_string()
    };
    assert!(line("partition ").contains(" short ("), "{shown}");
    let id_line = line("id on site");
    assert!(
        id_line.trim_end().ends_with(&format!(" {slurm_id}")),
        "{shown}"
    );
}
