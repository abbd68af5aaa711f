//! `gantry-gate-aws`: the gate that runs jobs on EC2 machines it launches.

use std::path::PathBuf;

use clap::Parser;
use gantry_fleet::FleetArgs;
use gantry_gate::GateArgs;
use gantry_gate_aws::{Ec2Machines, Ec2Settings, Image, Prices, S3Storage};

/// Serve the Gantry gate API for AWS EC2: each partition is a machine the
/// gate launches with gantry-agent on it and terminates when it is idle.
/// AWS credentials come from the environment (AWS_ACCESS_KEY_ID, a profile,
/// an instance role) as for every AWS tool; they never reach the machines.
#[derive(Debug, Parser)]
#[command(name = "gantry-gate-aws", version)]
struct Cli {
    #[command(flatten)]
    gate: GateArgs,
    #[command(flatten)]
    fleet: FleetArgs,
    /// The AWS region.
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Reach EC2 here instead of AWS's own endpoint (e.g. a VPC endpoint, or
    /// moto's server in tests).
    #[arg(long, env = "GANTRY_AWS_ENDPOINT_URL")]
    endpoint_url: Option<String>,
    /// Instance types offered as flavors, comma-separated (e.g. c5.large,c5.xlarge).
    #[arg(
        long,
        env = "GANTRY_AWS_INSTANCE_TYPES",
        value_delimiter = ',',
        required = true
    )]
    instance_types: Vec<String>,
    /// The AMI machines boot: its id (ami-...), or a DescribeImages query
    /// whose newest match each new machine boots, as
    /// owner=ACCOUNT,name=PATTERN[,FILTER=VALUE...] (e.g.
    /// owner=099720109477,name=ubuntu/images/*noble*amd64-server-*). It must
    /// have gantry-agent and gantry-supervisor on its PATH, or install them
    /// with --boot-prelude.
    #[arg(long, env = "GANTRY_AWS_IMAGE")]
    image: Image,
    /// The subnet to launch in [default: the default VPC's].
    #[arg(long, env = "GANTRY_AWS_SUBNET")]
    subnet: Option<String>,
    /// At most this many machines of each instance type at once.
    #[arg(long, env = "GANTRY_AWS_MAX_MACHINES", default_value_t = 10)]
    max_machines: u32,
    /// The hourly price table (TOML; see gates/aws/prices.toml) [default: the shipped one].
    #[arg(long, env = "GANTRY_AWS_PRICES")]
    prices: Option<PathBuf>,
    /// An S3 bucket (existing) for jobs' inputs and outputs; machines reach
    /// their own files in it only through URLs the gate presigns. Without
    /// it, jobs with --input or --output cannot run on this site.
    #[arg(long, env = "GANTRY_AWS_BUCKET")]
    bucket: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    gantry_proto::tls::install_crypto_provider();
    let _telemetry = gantry_proto::telemetry::init("gantry-gate-aws", "info");
    let cli: Cli = gantry_gate::parse_gate_cli(gantry_gate::default_listen::AWS);
    let gate = cli.gate.config()?;
    let prices = Prices::load(cli.prices.as_deref())?;
    let mut aws = aws_config::from_env().region(aws_config::Region::new(cli.region.clone()));
    if let Some(url) = &cli.endpoint_url {
        aws = aws.endpoint_url(url);
    }
    let aws = aws.load().await;
    let client = aws_sdk_ec2::Client::new(&aws);
    let storage = match cli.bucket {
        Some(bucket) => {
            let s3 = aws_sdk_s3::config::Builder::from(&aws)
                .force_path_style(cli.endpoint_url.is_some())
                .build();
            let s3 = aws_sdk_s3::Client::from_conf(s3);
            Some(
                S3Storage::new(s3, bucket)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?,
            )
        }
        None => None,
    };
    let settings = Ec2Settings {
        installation: gate.installation.clone(),
        gate: gate.name.clone(),
        instance_types: cli.instance_types,
        image: cli.image,
        subnet: cli.subnet,
        max_machines: cli.max_machines,
        prices,
    };
    let machines = Ec2Machines::new(client, settings, storage)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    gantry_fleet::serve(machines, &cli.gate, &cli.fleet).await?;
    Ok(())
}
