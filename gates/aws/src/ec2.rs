//! [`Ec2Machines`]: the fleet's machines as EC2 instances. Every instance
//! carries the tags `gantry:installation`, `gantry:gate` and
//! `gantry:partition`, powers off into termination, and sits in a security
//! group with no inbound rule.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_ec2::types::{
    Filter, InstanceStateName, InstanceType, ResourceType, ShutdownBehavior, Tag, TagSpecification,
};
use gantry_fleet::{Launch, Machine, MachineState, Machines};
use gantry_gate::{GateError, PartitionId, Result};
use gantry_proto::v1::{Capacity, Flavor};

use crate::image::Image;
use crate::prices::Prices;
use crate::s3::S3Storage;

/// The tag naming the installation.
pub const TAG_INSTALLATION: &str = "gantry:installation";
/// The tag naming the gate.
pub const TAG_GATE: &str = "gantry:gate";
/// The tag naming the partition.
pub const TAG_PARTITION: &str = "gantry:partition";

/// What the gate launches, from its flags.
#[derive(Debug, Clone)]
pub struct Ec2Settings {
    /// The installation (tags).
    pub installation: String,
    /// The gate's name (tags).
    pub gate: String,
    /// Instance types offered as flavors.
    pub instance_types: Vec<String>,
    /// The AMI machines boot.
    pub image: Image,
    /// The subnet to launch in; the default VPC's when `None`.
    pub subnet: Option<String>,
    /// At most this many machines of each type at once.
    pub max_machines: u32,
    /// Hourly prices.
    pub prices: Prices,
}

/// EC2 as a fleet's cloud, with an S3 bucket for staging when given.
pub struct Ec2Machines {
    client: Client,
    settings: Ec2Settings,
    security_group: String,
    storage: Option<S3Storage>,
}

/// The gate API's error for an EC2 error: capacity and quota are
/// RESOURCE_EXHAUSTED (the scheduler may try another flavor), settings EC2
/// refuses are INVALID_ARGUMENT naming the setting, refused credentials
/// FAILED_PRECONDITION, and the rest UNAVAILABLE (retried).
pub fn ec2_error<E, R>(what: &str, err: SdkError<E, R>) -> GateError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    let (code, message) = match err.as_service_error() {
        Some(e) => (
            e.code().unwrap_or_default().to_string(),
            e.message().unwrap_or_default().to_string(),
        ),
        None => {
            return GateError::Unavailable(format!(
                "EC2 {what}: cannot reach EC2: {}",
                aws_sdk_ec2::error::DisplayErrorContext(&err)
            ));
        }
    };
    let said = format!("EC2 {what}: {code}: {message}");
    match code.as_str() {
        "InsufficientInstanceCapacity"
        | "InsufficientCapacity"
        | "VcpuLimitExceeded"
        | "InstanceLimitExceeded"
        | "MaxSpotInstanceCountExceeded"
        | "InsufficientFreeAddressesInSubnet" => GateError::ResourceExhausted(said),
        c if c.starts_with("InvalidAMIID") => GateError::invalid("the AWS gate's --image", said),
        c if c.starts_with("InvalidSubnetID") => {
            GateError::invalid("the AWS gate's --subnet", said)
        }
        c if c.starts_with("InvalidInstanceType") || c == "Unsupported" => {
            GateError::invalid("flavor", said)
        }
        c if c.starts_with("InvalidParameter") => {
            GateError::invalid("the AWS gate's settings", said)
        }
        "UnauthorizedOperation" | "AuthFailure" | "OptInRequired" | "Blocked" => {
            GateError::FailedPrecondition(format!(
                "{said} (the gate's AWS credentials may not do this; see docs/aws.md)"
            ))
        }
        _ => GateError::Unavailable(said),
    }
}

fn tag(key: &str, value: &str) -> Tag {
    Tag::builder().key(key).value(value).build()
}

/// A DescribeX filter: `name` is any of `values`.
pub(crate) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

impl Ec2Machines {
    /// Reach EC2 with `client` and make sure the gate's security group exists.
    pub async fn new(
        client: Client,
        settings: Ec2Settings,
        storage: Option<S3Storage>,
    ) -> Result<Self> {
        let security_group = ensure_security_group(&client, &settings).await?;
        Ok(Self {
            client,
            settings,
            security_group,
            storage,
        })
    }

    fn own_filters(&self) -> Vec<Filter> {
        vec![
            filter(
                &format!("tag:{TAG_INSTALLATION}"),
                &[&self.settings.installation],
            ),
            filter(&format!("tag:{TAG_GATE}"), &[&self.settings.gate]),
            filter(
                "instance-state-name",
                &["pending", "running", "shutting-down", "stopping", "stopped"],
            ),
        ]
    }
}

/// The gate's security group, `gantry-<installation>-<gate>`: no inbound
/// rule (agents dial out), made when missing.
async fn ensure_security_group(client: &Client, settings: &Ec2Settings) -> Result<String> {
    let name = format!("gantry-{}-{}", settings.installation, settings.gate);
    let vpc = match &settings.subnet {
        Some(subnet) => {
            let found = client
                .describe_subnets()
                .subnet_ids(subnet)
                .send()
                .await
                .map_err(|e| ec2_error("DescribeSubnets", e))?;
            found
                .subnets()
                .first()
                .and_then(|s| s.vpc_id())
                .map(String::from)
        }
        None => None,
    };
    let mut filters = vec![filter("group-name", &[&name])];
    if let Some(vpc) = &vpc {
        filters.push(filter("vpc-id", &[vpc]));
    }
    let found = client
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(|e| ec2_error("DescribeSecurityGroups", e))?;
    if let Some(id) = found.security_groups().first().and_then(|g| g.group_id()) {
        return Ok(id.to_string());
    }
    let created = client
        .create_security_group()
        .group_name(&name)
        .description("Gantry node agents: no inbound connection; agents dial out to their gate")
        .set_vpc_id(vpc)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::SecurityGroup)
                .tags(tag(TAG_INSTALLATION, &settings.installation))
                .tags(tag(TAG_GATE, &settings.gate))
                .build(),
        )
        .send()
        .await
        .map_err(|e| ec2_error("CreateSecurityGroup", e))?;
    let id = created
        .group_id()
        .ok_or_else(|| GateError::Unavailable("EC2 CreateSecurityGroup returned no id".into()))?
        .to_string();
    tracing::info!(group = %id, name, "made the gate's security group (no inbound rule)");
    Ok(id)
}

fn machine_state(state: Option<&InstanceStateName>) -> MachineState {
    match state {
        Some(InstanceStateName::Pending) => MachineState::Pending,
        Some(InstanceStateName::Running) => MachineState::Running,
        Some(InstanceStateName::Terminated) => MachineState::Terminated,
        _ => MachineState::Stopping,
    }
}

#[tonic::async_trait]
impl Machines for Ec2Machines {
    fn provider(&self) -> &'static str {
        "aws"
    }

    async fn flavors(&self) -> Result<Vec<Flavor>> {
        let types: Vec<InstanceType> = self
            .settings
            .instance_types
            .iter()
            .map(|t| InstanceType::from(t.as_str()))
            .collect();
        let found = self
            .client
            .describe_instance_types()
            .set_instance_types(Some(types))
            .send()
            .await
            .map_err(|e| match ec2_error("DescribeInstanceTypes", e) {
                GateError::InvalidArgument { message, .. } => {
                    GateError::invalid("the AWS gate's --instance-types", message)
                }
                other => other,
            })?;
        let mut flavors = Vec::new();
        for info in found.instance_types() {
            let name = info
                .instance_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default();
            let cpus = info
                .v_cpu_info()
                .and_then(|v| v.default_v_cpus())
                .unwrap_or(0);
            let memory_mib = info
                .memory_info()
                .and_then(|m| m.size_in_mib())
                .unwrap_or(0);
            let gpus: i32 = info
                .gpu_info()
                .map(|g| g.gpus().iter().filter_map(|d| d.count()).sum())
                .unwrap_or(0);
            let price = self.settings.prices.prices.get(&name).copied();
            flavors.push(Flavor {
                name: name.clone(),
                capacity: Some(Capacity {
                    cpus: cpus.max(0) as u32,
                    memory_bytes: (memory_mib.max(0) as u64) << 20,
                    gpus: gpus.max(0) as u32,
                    nodes: 1,
                }),
                price_per_hour: price.unwrap_or(0.0),
                currency: self.settings.prices.currency.clone(),
                max_partitions: self.settings.max_machines,
                max_walltime_seconds: 0,
                available: price.is_some(),
                unavailable_reason: if price.is_some() {
                    String::new()
                } else {
                    format!("{name} has no price in the gate's price table (--prices)")
                },
                is_default: false,
                default_walltime_seconds: 0,
            });
        }
        for wanted in &self.settings.instance_types {
            if !flavors.iter().any(|f| &f.name == wanted) {
                return Err(GateError::invalid(
                    "the AWS gate's --instance-types",
                    format!("EC2 does not know instance type {wanted} in this region"),
                ));
            }
        }
        Ok(flavors)
    }

    async fn launch(&self, launch: Launch<'_>) -> Result<Machine> {
        use base64::Engine;
        let s = &self.settings;
        let mut tags = TagSpecification::builder()
            .resource_type(ResourceType::Instance)
            .tags(tag(TAG_INSTALLATION, &s.installation))
            .tags(tag(TAG_GATE, &s.gate))
            .tags(tag(TAG_PARTITION, launch.partition.as_str()))
            .tags(tag(
                "Name",
                &format!("gantry-{}-{}", s.gate, launch.partition),
            ));
        let labels: &BTreeMap<String, String> = launch.labels;
        for (key, value) in labels {
            if !key.starts_with("gantry:") && !key.starts_with("aws:") && key != "Name" {
                tags = tags.tags(tag(key, value));
            }
        }
        let user_data = base64::engine::general_purpose::STANDARD.encode(launch.boot_script);
        let image = s.image.resolve(&self.client).await?;
        let out = self
            .client
            .run_instances()
            .image_id(image)
            .instance_type(InstanceType::from(launch.flavor))
            .min_count(1)
            .max_count(1)
            .user_data(user_data)
            .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
            // Real EC2 honours it; the gate's lookup by tag before a launch
            // is what keeps a retry from launching twice everywhere.
            .client_token(launch.partition.as_str())
            .set_subnet_id(s.subnet.clone())
            .security_group_ids(&self.security_group)
            .tag_specifications(tags.build())
            .send()
            .await
            .map_err(|e| ec2_error("RunInstances", e))?;
        let instance = out.instances().first().ok_or_else(|| {
            GateError::Unavailable("EC2 RunInstances returned no instance".into())
        })?;
        Ok(Machine {
            id: instance.instance_id().unwrap_or_default().to_string(),
            partition: launch.partition.to_string(),
            flavor: launch.flavor.to_string(),
            state: machine_state(instance.state().and_then(|st| st.name())),
        })
    }

    async fn list(&self, partition: Option<&PartitionId>) -> Result<Vec<Machine>> {
        let mut filters = self.own_filters();
        if let Some(p) = partition {
            filters.push(filter(&format!("tag:{TAG_PARTITION}"), &[p.as_str()]));
        }
        let mut pages = self
            .client
            .describe_instances()
            .set_filters(Some(filters))
            .into_paginator()
            .send();
        let mut machines = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| ec2_error("DescribeInstances", e))?;
            for reservation in page.reservations() {
                for instance in reservation.instances() {
                    let tag_value = |key: &str| {
                        instance
                            .tags()
                            .iter()
                            .find(|t| t.key() == Some(key))
                            .and_then(|t| t.value())
                            .unwrap_or_default()
                            .to_string()
                    };
                    let state = machine_state(instance.state().and_then(|st| st.name()));
                    if state == MachineState::Terminated {
                        continue;
                    }
                    machines.push(Machine {
                        id: instance.instance_id().unwrap_or_default().to_string(),
                        partition: tag_value(TAG_PARTITION),
                        flavor: instance
                            .instance_type()
                            .map(|t| t.as_str().to_string())
                            .unwrap_or_default(),
                        state,
                    });
                }
            }
        }
        Ok(machines)
    }

    fn storage(&self) -> Option<&dyn gantry_fleet::Storage> {
        self.storage
            .as_ref()
            .map(|s| s as &dyn gantry_fleet::Storage)
    }

    async fn terminate(&self, ids: &[String]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        match self
            .client
            .terminate_instances()
            .set_instance_ids(Some(ids.to_vec()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("InvalidInstanceID.NotFound") => Ok(()),
            Err(e) => Err(ec2_error("TerminateInstances", e)),
        }
    }
}
