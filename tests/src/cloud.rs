//! The AWS gate's test bench: moto (`scripts/moto`) as EC2, and
//! [`MachinePlayer`], **the one stand-in of these tests**. moto launches
//! instances but runs nothing on them, so the player plays each machine on
//! this host: it reads the instance's user-data back through the EC2 API and
//! runs it as the boot script it is, in a directory of its own, with a
//! `poweroff` on PATH that marks the machine off; it turns that power-off
//! into TerminateInstances, and kills a machine's processes once EC2 says
//! it is shutting down or terminated, whoever terminated it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::types::{Filter, Instance, InstanceAttributeName, InstanceStateName};
use base64::Engine;

/// The AMI the tests launch (one of moto's stock images).
pub const TEST_IMAGE: &str = "ami-1e749f67";

/// The credentials every AWS test process uses against moto.
pub const AWS_ENV: [(&str, &str); 3] = [
    ("AWS_ACCESS_KEY_ID", "testing"),
    ("AWS_SECRET_ACCESS_KEY", "testing"),
    ("AWS_REGION", "us-east-1"),
];

/// moto's endpoint: `GANTRY_TEST_MOTO_URL`, or a server this test starts
/// (or finds up) in /tmp/gantry-test-moto.
pub fn moto_endpoint() -> String {
    match std::env::var("GANTRY_TEST_MOTO_URL") {
        Ok(url) => url,
        Err(_) => crate::services::start_script("moto", &["/tmp/gantry-test-moto".as_ref()], &[])
            .display()
            .to_string(),
    }
}

/// An EC2 client of moto at `endpoint`.
pub async fn ec2_client(endpoint: &str) -> Client {
    let creds = aws_sdk_ec2::config::Credentials::new("testing", "testing", None, None, "tests");
    let config = aws_sdk_ec2::Config::builder()
        .behavior_version(aws_sdk_ec2::config::BehaviorVersion::latest())
        .region(aws_sdk_ec2::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .build();
    Client::from_conf(config)
}

/// An S3 client of moto at `endpoint`.
pub fn s3_client(endpoint: &str) -> aws_sdk_s3::Client {
    let creds = aws_sdk_s3::config::Credentials::new("testing", "testing", None, None, "tests");
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
        .region(aws_sdk_s3::config::Region::new("us-east-1"))
        .credentials_provider(creds)
        .endpoint_url(endpoint)
        .force_path_style(true)
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

/// Make the bucket `name` in moto at `endpoint` (fine when it exists).
pub async fn create_bucket(endpoint: &str, name: &str) {
    let made = s3_client(endpoint)
        .create_bucket()
        .bucket(name)
        .send()
        .await;
    if let Err(e) = made {
        let code = aws_sdk_s3::error::ProvideErrorMetadata::code(&e)
            .unwrap_or_default()
            .to_string();
        assert!(
            code.starts_with("BucketAlready"),
            "create bucket {name}: {e:?}"
        );
    }
}

/// The keys in bucket `name` under `prefix`.
pub async fn bucket_keys(endpoint: &str, name: &str, prefix: &str) -> Vec<String> {
    let listed = s3_client(endpoint)
        .list_objects_v2()
        .bucket(name)
        .prefix(prefix)
        .send()
        .await
        .expect("list the bucket");
    listed
        .contents()
        .iter()
        .filter_map(|o| o.key().map(String::from))
        .collect()
}

/// Every instance EC2 lists with `installation`'s tag, terminated or not.
pub async fn instances(client: &Client, installation: &str) -> anyhow::Result<Vec<Instance>> {
    let found = client
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:gantry:installation")
                .values(installation)
                .build(),
        )
        .send()
        .await?;
    Ok(found
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect())
}

/// The ids of `installation`'s instances EC2 does not list as terminated.
pub async fn live_instances(client: &Client, installation: &str) -> anyhow::Result<Vec<String>> {
    Ok(instances(client, installation)
        .await?
        .iter()
        .filter(|i| i.state().and_then(|s| s.name()) != Some(&InstanceStateName::Terminated))
        .map(|i| i.instance_id().unwrap_or_default().to_string())
        .collect())
}

/// One instance as the player plays it.
#[derive(Debug, Clone)]
pub struct PlayedMachine {
    /// The instance id.
    pub id: String,
    /// Its `gantry:partition` tag.
    pub partition: String,
    /// The user-data EC2 holds for it, decoded.
    pub user_data: String,
    /// Its security groups.
    pub security_groups: Vec<String>,
    /// Its tags.
    pub tags: HashMap<String, String>,
    /// Its directory (the boot script's log is `boot.log` there).
    pub dir: PathBuf,
    /// Whether it powered itself off.
    pub powered_off: bool,
    /// Whether EC2 says it is going or gone, and its processes were killed.
    pub ended: bool,
}

struct Running {
    machine: PlayedMachine,
    boot: Option<Child>,
}

/// Plays the instances of one installation's gate on this host (see the module doc).
pub struct MachinePlayer {
    machines: Arc<Mutex<HashMap<String, Running>>>,
    task: tokio::task::JoinHandle<()>,
}

const POWEROFF: &str = "#!/bin/sh\n\
# The test machines' poweroff (see tests/src/cloud.rs): mark the machine off;\n\
# the player terminates its instance through the EC2 API.\n\
touch \"$GANTRY_AGENT_DIR/../powered-off\"\n";

impl MachinePlayer {
    /// Start playing the instances tagged with `installation` in `dir`.
    pub fn start(client: Client, installation: &str, dir: &Path) -> Self {
        let machines: Arc<Mutex<HashMap<String, Running>>> = Arc::default();
        let fake_bin = dir.join("machine-bin");
        std::fs::create_dir_all(&fake_bin).expect("machine-bin");
        let poweroff = fake_bin.join("poweroff");
        std::fs::write(&poweroff, POWEROFF).expect("poweroff");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&poweroff, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!(
            "{}:{}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
            fake_bin.display(),
            crate::bin_dir().display()
        );
        let task = tokio::spawn(play(
            client,
            installation.to_string(),
            dir.join("machines"),
            path,
            machines.clone(),
        ));
        Self { machines, task }
    }

    /// Every instance played so far.
    pub fn machines(&self) -> Vec<PlayedMachine> {
        let machines = self.machines.lock().unwrap();
        let mut all: Vec<PlayedMachine> = machines.values().map(|r| r.machine.clone()).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }
}

impl Drop for MachinePlayer {
    fn drop(&mut self) {
        self.task.abort();
        let mut machines = self.machines.lock().unwrap();
        for running in machines.values_mut() {
            end_machine(running);
        }
    }
}

async fn play(
    client: Client,
    installation: String,
    dir: PathBuf,
    path: String,
    machines: Arc<Mutex<HashMap<String, Running>>>,
) {
    loop {
        if let Err(err) = play_once(&client, &installation, &dir, &path, &machines).await {
            eprintln!("machine player: {err:#}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn play_once(
    client: &Client,
    installation: &str,
    dir: &Path,
    path: &str,
    machines: &Mutex<HashMap<String, Running>>,
) -> anyhow::Result<()> {
    let mut powered_off = Vec::new();
    for instance in instances(client, installation).await? {
        let id = instance.instance_id().unwrap_or_default().to_string();
        let state = instance.state().and_then(|s| s.name()).cloned();
        let going = matches!(
            state,
            Some(InstanceStateName::ShuttingDown | InstanceStateName::Terminated)
        );
        let known = machines.lock().unwrap().contains_key(&id);
        if !known && !going {
            let attribute = client
                .describe_instance_attribute()
                .instance_id(&id)
                .attribute(InstanceAttributeName::UserData)
                .send()
                .await?;
            let encoded = attribute
                .user_data()
                .and_then(|u| u.value())
                .unwrap_or_default();
            let user_data =
                String::from_utf8(base64::engine::general_purpose::STANDARD.decode(encoded)?)?;
            let tags: HashMap<String, String> = instance
                .tags()
                .iter()
                .map(|t| {
                    (
                        t.key().unwrap_or_default().to_string(),
                        t.value().unwrap_or_default().to_string(),
                    )
                })
                .collect();
            let machine_dir = dir.join(&id);
            std::fs::create_dir_all(machine_dir.join("agent"))?;
            std::fs::write(machine_dir.join("user-data"), &user_data)?;
            let log = std::fs::File::create(machine_dir.join("boot.log"))?;
            let boot = Command::new("/bin/sh")
                .arg(machine_dir.join("user-data"))
                .env_clear()
                .env("PATH", path)
                .env("HOME", &machine_dir)
                .env("GANTRY_AGENT_DIR", machine_dir.join("agent"))
                .env(
                    "RUST_LOG",
                    std::env::var("GANTRY_TEST_LOG").unwrap_or_else(|_| "info".into()),
                )
                .current_dir(&machine_dir)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .spawn()?;
            let machine = PlayedMachine {
                partition: tags.get("gantry:partition").cloned().unwrap_or_default(),
                security_groups: instance
                    .security_groups()
                    .iter()
                    .filter_map(|g| g.group_id().map(String::from))
                    .collect(),
                tags,
                user_data,
                dir: machine_dir,
                powered_off: false,
                ended: false,
                id: id.clone(),
            };
            machines.lock().unwrap().insert(
                id.clone(),
                Running {
                    machine,
                    boot: Some(boot),
                },
            );
            continue;
        }
        let mut all = machines.lock().unwrap();
        let Some(running) = all.get_mut(&id) else {
            continue;
        };
        if going && !running.machine.ended {
            end_machine(running);
        }
        if !running.machine.powered_off && running.machine.dir.join("powered-off").exists() {
            running.machine.powered_off = true;
            end_machine(running);
            powered_off.push(id.clone());
        }
    }
    if !powered_off.is_empty() {
        client
            .terminate_instances()
            .set_instance_ids(Some(powered_off))
            .send()
            .await?;
    }
    Ok(())
}

/// Kill every process of the machine: its boot script and agent, and what
/// they started (the supervisor and the jobs carry the agent's directory
/// or the partition in their environment).
fn end_machine(running: &mut Running) {
    running.machine.ended = true;
    if let Some(mut boot) = running.boot.take() {
        let _ = boot.kill();
        let _ = boot.wait();
    }
    let agent_dir = format!(
        "GANTRY_AGENT_DIR={}",
        running.machine.dir.join("agent").display()
    );
    let partition = format!("GANTRY_PARTITION_ID={}", running.machine.partition);
    for _ in 0..3 {
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
                continue;
            };
            let mine = environ.split(|b| *b == 0).any(|var| {
                var == agent_dir.as_bytes()
                    || (!running.machine.partition.is_empty() && var == partition.as_bytes())
            });
            if mine {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
