//! The agents' identity: a join token works once, an agent's certificate
//! opens nothing but its own gate's agent API and lapses when it expires,
//! and agents renew theirs before then.

use std::path::Path;
use std::time::Duration;

use gantry_e2e::{Cluster, eventually, run};
use gantry_proto::v1::agent_client::AgentClient;
use gantry_proto::v1::{JoinRequest, RenewRequest};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::{aws_cluster, played, submit, until_state};

/// A channel to the gate's agent listener (the address in the boot
/// script), presenting `identity` when given.
async fn agent_listener(cluster: &Cluster, identity: Option<Identity>) -> Result<Channel, String> {
    let machine = &played(cluster)[0];
    let address = setting(&machine.user_data, "GANTRY_AGENT_GATE");
    let ca = std::fs::read(cluster.pki().ca_path()).unwrap();
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name(format!("aws.gate.{}", cluster.installation));
    if let Some(identity) = identity {
        tls = tls.identity(identity);
    }
    Endpoint::from_shared(address)
        .unwrap()
        .tls_config(tls)
        .unwrap()
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// A setting of the boot script: `export NAME='value'`.
fn setting(script: &str, name: &str) -> String {
    let prefix = format!("export {name}='");
    script
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.strip_suffix('\''))
        .unwrap_or_else(|| panic!("no {name} in the boot script:\n{script}"))
        .to_string()
}

fn agent_identity(dir: &Path) -> Identity {
    Identity::from_pem(
        std::fs::read(dir.join("agent/agent.pem")).unwrap(),
        std::fs::read(dir.join("agent/agent.key")).unwrap(),
    )
}

fn csr() -> String {
    let key = rcgen::KeyPair::generate().unwrap();
    gantry_proto::pki::certificate_request(&key).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_join_token_works_once_and_an_agent_certificate_opens_nothing_else() {
    let cluster = aws_cluster(|_| {}).await;
    let id = submit(&cluster, &["--site", "aws", "--", "true"]);
    until_state(&cluster, &id, "COMPLETED").await;
    let machine = played(&cluster).remove(0);

    // The token in the boot script was traded already: a second Join fails.
    let token = setting(&machine.user_data, "GANTRY_AGENT_TOKEN");
    let channel = agent_listener(&cluster, None).await.unwrap();
    let refused = AgentClient::new(channel)
        .join(JoinRequest {
            token,
            csr_pem: csr(),
        })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    assert!(refused.message().contains("already used"), "{refused:?}");

    // Without a certificate, or with a user's, no call but Join works.
    let channel = agent_listener(&cluster, None).await.unwrap();
    let refused = AgentClient::new(channel)
        .renew(RenewRequest { csr_pem: csr() })
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    let alice = cluster.config_for(&gantry_proto::Principal::User("alice".into()));
    let alice = Identity::from_pem(
        std::fs::read(&alice.tls.cert).unwrap(),
        std::fs::read(&alice.tls.key).unwrap(),
    );
    let user = match agent_listener(&cluster, Some(alice)).await {
        Err(e) => e,
        Ok(channel) => format!(
            "{:?}",
            AgentClient::new(channel)
                .renew(RenewRequest { csr_pem: csr() })
                .await
                .unwrap_err()
        ),
    };
    assert!(!user.is_empty(), "a user's certificate is not an agent's");

    // The agent's certificate opens neither gantryd nor the gate API.
    let pem = machine.dir.join("agent/agent.pem");
    let key = machine.dir.join("agent/agent.key");
    let (code, _, err) = run(cluster
        .cli("alice")
        .env("GANTRY_CERT", &pem)
        .env("GANTRY_KEY", &key)
        .arg("ls"));
    assert_ne!(code, 0, "gantryd refused the agent: {err}");
    let gate = format!("https://127.0.0.1:{}", cluster.gate.addr.port());
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(cluster.pki().ca_path()).unwrap(),
        ))
        .domain_name(format!("aws.gate.{}", cluster.installation))
        .identity(agent_identity(&machine.dir));
    let described = async {
        let channel = Endpoint::from_shared(gate)?
            .tls_config(tls)?
            .connect()
            .await?;
        gantry_proto::v1::gate_client::GateClient::new(channel)
            .describe(gantry_proto::v1::DescribeRequest::default())
            .await?;
        anyhow::Ok(())
    }
    .await;
    assert!(described.is_err(), "the gate API refused the agent");

    // An agent cannot make up a tunnel: only one the gate asked it to open.
    let channel = agent_listener(&cluster, Some(agent_identity(&machine.dir)))
        .await
        .unwrap();
    let first = gantry_proto::v1::TunnelData {
        tunnel_id: "tunnel-0".into(),
        data: b"GET / HTTP/1.0\r\n\r\n".to_vec(),
    };
    let refused = AgentClient::new(channel)
        .tunnel(futures::stream::iter([first]))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::NotFound, "{refused:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn agents_renew_their_certificates_and_an_expired_one_is_refused() {
    let cluster = aws_cluster(|site| {
        site.gate_args = vec!["--agent-cert-lifetime".into(), "4".into()];
    })
    .await;
    let first = submit(&cluster, &["--site", "aws", "--", "true"]);
    until_state(&cluster, &first, "COMPLETED").await;
    let machine = played(&cluster).remove(0);
    let old = agent_identity(&machine.dir);
    let old_pem = std::fs::read_to_string(machine.dir.join("agent/agent.pem")).unwrap();

    // Well past the first certificate's life, the agent still runs jobs:
    // it renewed in time, more than once.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let second = submit(&cluster, &["--site", "aws", "--", "echo", "renewed"]);
    until_state(&cluster, &second, "COMPLETED").await;
    eventually(
        Duration::from_secs(10),
        "a renewed certificate on disk",
        async || {
            let now = std::fs::read_to_string(machine.dir.join("agent/agent.pem")).unwrap();
            if now != old_pem {
                Ok(())
            } else {
                Err("the same".into())
            }
        },
    )
    .await;

    // The first certificate has expired: the gate refuses it.
    let refused = match agent_listener(&cluster, Some(old)).await {
        Err(e) => e,
        Ok(channel) => format!(
            "{:?}",
            AgentClient::new(channel)
                .renew(RenewRequest { csr_pem: csr() })
                .await
                .expect_err("an expired certificate is refused")
        ),
    };
    assert!(!refused.is_empty());
}
