//! Jobs on EC2 through gantry-gate-aws and gantry-agent, against moto's
//! EC2 (`scripts/moto`; `scripts/test` passes `GANTRY_TEST_MOTO_URL`).
//! moto runs nothing on its instances: the harness's
//! [`MachinePlayer`](gantry_e2e::cloud::MachinePlayer) plays each machine
//! by running its user-data on this host, and turns its power-off into
//! TerminateInstances. It is the only stand-in here; everything else is the
//! real binaries over mTLS.

use std::time::Duration;

use aws_sdk_ec2::types::InstanceAttributeName;
pub(crate) use gantry_e2e::as_alice::{show, submit, until_state};
use gantry_e2e::cloud::{self, PlayedMachine, ec2_client, moto_endpoint};
use gantry_e2e::ec2_faults::CapacityOutage;
use gantry_e2e::echo;
use gantry_e2e::{AwsSite, Cluster, Options, eventually, run};

mod conformance;
mod identity;
mod kills;

/// A cluster whose only site is EC2 (moto), with `site` changes applied.
pub(crate) async fn aws_cluster(change: impl FnOnce(&mut AwsSite)) -> Cluster {
    let mut site = AwsSite::on(moto_endpoint());
    change(&mut site);
    Cluster::start(Options {
        aws: Some(site),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// The machines the player has played so far.
pub(crate) fn played(cluster: &Cluster) -> Vec<PlayedMachine> {
    cluster
        .machines
        .as_ref()
        .expect("an AWS cluster")
        .machines()
}

/// The ids of the installation's instances EC2 does not list as terminated.
pub(crate) async fn live_instances(cluster: &Cluster) -> Vec<String> {
    let client = ec2_client(&moto_endpoint()).await;
    cloud::live_instances(&client, &cluster.installation)
        .await
        .unwrap()
}

/// Wait until EC2 lists none of the installation's instances as live.
pub(crate) async fn until_all_terminated(cluster: &Cluster, within: Duration) {
    eventually(within, "every instance terminated", async || {
        let live = live_instances(cluster).await;
        if live.is_empty() {
            Ok(())
        } else {
            Err(format!("{live:?}\n--- gate:\n{}", cluster.gate.log_tail()))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_job_runs_on_an_ec2_machine_through_its_agent_and_the_idle_machine_is_terminated() {
    let cluster = aws_cluster(|site| site.idle_timeout_seconds = 3).await;
    let go = cluster.dir().join("go");
    let script = format!(
        "echo started on the agent; while [ ! -e {} ]; do sleep 0.05; done; echo finished; echo oops >&2; exit 3",
        go.display()
    );
    let id = submit(&cluster, &["--site", "aws", "--", "sh", "-c", &script]);
    until_state(&cluster, &id, "RUNNING").await;

    // The machine EC2 holds: tagged, booted by a script with no key in it,
    // powering off into termination, in a group that lets nothing in.
    let machines = played(&cluster);
    assert_eq!(machines.len(), 1, "{machines:?}");
    let machine = &machines[0];
    assert_eq!(machine.tags["gantry:installation"], cluster.installation);
    assert_eq!(machine.tags["gantry:gate"], "aws");
    assert!(!machine.partition.is_empty());
    assert!(machine.user_data.starts_with("#!/bin/sh\n"));
    assert!(machine.user_data.contains("GANTRY_AGENT_TOKEN="));
    assert!(
        !machine.user_data.contains("PRIVATE KEY"),
        "the user-data holds no private key:\n{}",
        machine.user_data
    );
    let client = ec2_client(&moto_endpoint()).await;
    let behaviour = client
        .describe_instance_attribute()
        .instance_id(&machine.id)
        .attribute(InstanceAttributeName::InstanceInitiatedShutdownBehavior)
        .send()
        .await
        .unwrap();
    assert_eq!(
        behaviour
            .instance_initiated_shutdown_behavior()
            .and_then(|v| v.value()),
        Some("terminate")
    );
    let groups = client
        .describe_security_groups()
        .set_group_ids(Some(machine.security_groups.clone()))
        .send()
        .await
        .unwrap();
    assert!(!groups.security_groups().is_empty());
    for group in groups.security_groups() {
        assert!(
            group.ip_permissions().is_empty(),
            "no inbound rule: {group:?}"
        );
    }

    // `gantry logs -f` follows it live through the agent.
    let mut follow = cluster
        .cli("alice")
        .args(["logs", "-f", &id])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = follow.stdout.take().unwrap();
    let (first_tx, first_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        let _ = first_tx.send(lines.next().map(|l| l.unwrap()));
        lines.map_while(Result::ok).collect::<Vec<String>>()
    });
    let first = tokio::task::spawn_blocking(move || first_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap();
    assert_eq!(
        first,
        Ok(Some("started on the agent".to_string())),
        "the first line arrives while the job runs"
    );
    std::fs::write(&go, "").unwrap();
    let rest = tokio::task::spawn_blocking(move || reader.join().unwrap())
        .await
        .unwrap();
    assert_eq!(rest, vec!["finished".to_string()]);
    assert!(follow.wait().unwrap().success());

    let shown = until_state(&cluster, &id, "FAILED").await;
    assert!(shown.contains("exit code 3"), "{shown}");
    let (_, logged, _) = run(cluster.cli("alice").args(["logs", "--stderr", &id]));
    assert_eq!(logged, "oops\n", "stderr through the agent");

    // The idle partition goes, and with it every instance.
    until_all_terminated(&cluster, Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_job_of_the_same_shape_reuses_the_idle_machine() {
    let cluster = aws_cluster(|_| {}).await;
    let first = submit(&cluster, &["--site", "aws", "--", "true"]);
    until_state(&cluster, &first, "COMPLETED").await;
    let second = submit(&cluster, &["--site", "aws", "--", "echo", "again"]);
    until_state(&cluster, &second, "COMPLETED").await;
    let (_, out, _) = run(cluster.cli("alice").args(["logs", &second]));
    assert_eq!(out, "again\n");
    assert_eq!(played(&cluster).len(), 1, "one machine for both jobs");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_agent_cut_off_from_its_gate_powers_its_machine_off() {
    let mut cluster = aws_cluster(|site| {
        site.gate_args = vec!["--agent-cut-off".into(), "3".into()];
    })
    .await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    until_state(&cluster, &id, "COMPLETED").await;
    assert_eq!(live_instances(&cluster).await.len(), 1);
    cluster.gate.stop();
    eventually(
        Duration::from_secs(30),
        "the machine to power itself off",
        async || {
            let machines = played(&cluster);
            let live = live_instances(&cluster).await;
            if machines.iter().all(|m| m.powered_off) && live.is_empty() {
                Ok(())
            } else {
                Err(format!("{machines:?}\nlive: {live:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_machine_whose_agent_never_registers_is_terminated_and_says_why() {
    // The operator's boot prelude ends the boot script before the agent starts.
    let prelude = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(prelude.path(), "exit 0\n").unwrap();
    let cluster = aws_cluster(|site| {
        site.gate_args = vec![
            "--provision-timeout".into(),
            "2".into(),
            "--boot-prelude".into(),
            prelude.path().display().to_string(),
        ]
    })
    .await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    let client = ec2_client(&moto_endpoint()).await;
    eventually(
        Duration::from_secs(30),
        "the job's history to say why its machine went",
        async || {
            let shown = show(&cluster, &id);
            let terminated = cloud::instances(&client, &cluster.installation)
                .await
                .unwrap()
                .iter()
                .filter(|i| {
                    i.state().and_then(|s| s.name()).map(|n| n.as_str()) == Some("terminated")
                })
                .count();
            if shown.contains("no agent registered within 2s; its machine was terminated")
                && terminated > 0
            {
                Ok(())
            } else {
                Err(format!("{terminated} terminated\n{shown}"))
            }
        },
    )
    .await;
    // The job waits for a machine that comes up; cancelled, it leaves none.
    let (code, _, err) = run(cluster.cli("alice").args(["cancel", &id]));
    assert_eq!(code, 0, "{err}");
    until_all_terminated(&cluster, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_image_gives_the_job_a_reason_a_person_can_act_on() {
    let cluster = aws_cluster(|site| site.image = "ami-00000bad".into()).await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    let shown = until_state(&cluster, &id, "FAILED").await;
    assert!(
        shown.contains("site aws cannot provision it: the AWS gate's --image: EC2 RunInstances: InvalidAMIID.NotFound"),
        "{shown}"
    );
    assert!(live_instances(&cluster).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_instance_type_gives_the_job_a_reason_a_person_can_act_on() {
    let cluster = aws_cluster(|site| {
        site.instance_types = "t3.micro,t3.bogus".into();
        site.healthy = false;
    })
    .await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    let said = "site `aws` offers no flavors (it is unhealthy: the gate cannot describe its \
                site: the AWS gate's --instance-types: EC2 DescribeInstanceTypes: InvalidInstanceType";
    eventually(Duration::from_secs(30), "the job's reason", async || {
        let shown = show(&cluster, &id);
        if shown.contains(said) {
            Ok(())
        } else {
            Err(shown)
        }
    })
    .await;
    let (code, sites, err) = run(cluster.cli("alice").args(["sites", "--json"]));
    assert_eq!(code, 0, "{err}");
    assert!(sites.contains("do not exist: [t3.bogus]"), "{sites}");
    assert!(live_instances(&cluster).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_image_query_boots_its_newest_match_and_one_matching_nothing_says_so() {
    // moto's stock images: this family has one release, TEST_IMAGE.
    let family = "owner=099720109477,name=ubuntu/images/hvm-ssd/ubuntu-trusty-14.04-amd64-server-*";
    let cluster = aws_cluster(|site| site.image = family.into()).await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    until_state(&cluster, &id, "COMPLETED").await;
    let client = ec2_client(&moto_endpoint()).await;
    let launched = cloud::instances(&client, &cluster.installation).await;
    let images: Vec<String> = launched
        .unwrap()
        .iter()
        .filter_map(|i| i.image_id().map(String::from))
        .collect();
    assert_eq!(images, [cloud::TEST_IMAGE]);

    let nothing = "owner=099720109477,name=no-such-image-*";
    let cluster = aws_cluster(|site| site.image = nothing.into()).await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    let shown = until_state(&cluster, &id, "FAILED").await;
    let said = format!("the AWS gate's --image: no available image matches {nothing}");
    assert!(shown.contains(&said), "{shown}");
    assert!(live_instances(&cluster).await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn inputs_go_in_and_outputs_come_back_through_s3() {
    let cluster = aws_cluster(|_| {}).await;
    let input = cluster.dir().join("data.txt");
    std::fs::write(&input, "to the machine and back\n").unwrap();
    let spec = format!("{}:in/data.txt", input.display());
    let id = submit(
        &cluster,
        &[
            "--site",
            "aws",
            "--input",
            &spec,
            "--output",
            "out/*",
            "--",
            "sh",
            "-c",
            "mkdir -p out && tr a-z A-Z < in/data.txt > out/result.txt && : > out/empty",
        ],
    );
    until_state(&cluster, &id, "COMPLETED").await;
    let fetched = cluster.dir().join("fetched");
    let (code, _, err) =
        run(cluster
            .cli("alice")
            .args(["outputs", &id, "--dest", fetched.to_str().unwrap()]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read_to_string(fetched.join("out/result.txt")).unwrap(),
        "TO THE MACHINE AND BACK\n"
    );
    assert_eq!(std::fs::read(fetched.join("out/empty")).unwrap(), b"");
    // Released attempts leave nothing in the bucket.
    let endpoint = moto_endpoint();
    eventually(
        Duration::from_secs(30),
        "the staged files deleted",
        async || {
            let keys = gantry_e2e::cloud::bucket_keys(&endpoint, &cluster.installation, "").await;
            if keys.is_empty() {
                Ok(())
            } else {
                Err(format!("{keys:?}"))
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flavor_out_of_capacity_sends_the_job_to_the_next_fitting_flavor() {
    // EC2 has no t3.micro left (the cheaper flavor, tried first).
    let outage = CapacityOutage::start(&moto_endpoint(), &["t3.micro"])
        .await
        .unwrap();
    let cluster = aws_cluster(|site| site.endpoint = outage.endpoint().to_string()).await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    let shown = until_state(&cluster, &id, "COMPLETED").await;
    assert!(
        shown.contains("EC2 RunInstances: InsufficientInstanceCapacity: We currently do not have sufficient t3.micro capacity"),
        "the history says why the job waited again:\n{shown}"
    );

    // It ran on a t3.small; no t3.micro was ever launched.
    let client = ec2_client(&moto_endpoint()).await;
    let launched = cloud::instances(&client, &cluster.installation).await;
    let types: Vec<String> = launched
        .unwrap()
        .iter()
        .filter_map(|i| i.instance_type().map(|t| t.as_str().to_string()))
        .collect();
    assert_eq!(types, ["t3.small"]);

    // `gantry sites` tells operators why t3.micro is not used now.
    let (code, sites, err) = run(cluster.cli("alice").arg("sites"));
    assert_eq!(code, 0, "{err}");
    let micro = sites
        .lines()
        .find(|l| l.contains("t3.micro"))
        .unwrap_or_else(|| panic!("no t3.micro in\n{sites}"));
    assert!(
        micro.contains(
            "(unavailable: out of capacity: EC2 RunInstances: InsufficientInstanceCapacity"
        ),
        "{sites}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_server_on_an_ec2_machine_is_reached_through_its_agent_and_no_open_port() {
    let cluster = aws_cluster(|_| {}).await;
    let alice = cluster.user("alice").await.unwrap();
    let job = alice.submit(echo::upper_server("aws")).await.unwrap();
    let port = echo::printed_port(&alice, job.id).await;
    // The machine's security group lets nothing in (checked above); the
    // bytes go gantryd → gate → the agent's own Tunnel call → loopback.
    let big = echo::payload(1 << 20);
    let answer = echo::through(&alice, job.id, port, &big).await;
    assert!(
        answer == big.to_ascii_uppercase(),
        "{} bytes came back",
        answer.len()
    );
    let sites = alice.sites().await.unwrap();
    let aws = sites.iter().find(|s| s.name == "aws").unwrap();
    assert!(aws.port_forward && aws.elastic, "{aws:?}");

    let bob = cluster.user("bob").await.unwrap();
    let err = bob.connect_port(job.id, port).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::NotFound), "{err}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let err = alice.connect_port(job.id, closed).await.unwrap_err();
    assert_eq!(err.code(), Some(tonic::Code::Unavailable), "{err}");
    assert!(
        err.to_string().contains("is its server listening yet?"),
        "{err}"
    );
    alice.cancel(job.id, "done").await.unwrap();
}
