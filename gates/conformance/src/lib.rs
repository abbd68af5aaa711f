//! `gantry-gate-conformance`: acts as gantryd against any gate and checks
//! the contract of `proto/gantry/v1/gate.proto`, printing one named check
//! per row. See docs/writing-a-gate.md.

pub mod checks;
pub mod connect;
pub mod report;
pub mod run;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use gantry_proto::v1::DescribeRequest;

use crate::connect::Target;
use crate::report::Report;
use crate::run::Run;

/// What to check and how.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gate's address, `host:port` or `https://host:port`.
    pub address: String,
    /// Its site name (its certificate names `gate/<name>`).
    pub name: String,
    /// The installation's PKI directory (`ca.pem`, `core.pem`, `core.key`, `installation`).
    pub pki_dir: PathBuf,
    /// The flavor to make partitions of; the first available when `None`.
    pub flavor: Option<String>,
    /// The longest wait for a partition or a job.
    pub timeout: Duration,
    /// The walltime the walltime check gives its job, in seconds.
    pub walltime: u64,
    /// Run only the checks whose names start with one of these.
    pub only: Vec<String>,
    /// A shell command that kills the gate (`kill -9`) and starts it again
    /// on the same address, returning once it is started; the restart
    /// check runs only with it.
    pub restart_cmd: Option<String>,
}

/// Run the checks. An error means the gate could not be checked at all
/// (no PKI, or Describe did not answer); a gate that answers but breaks
/// the contract gives a report with failures.
pub async fn check(config: &Config) -> anyhow::Result<Report> {
    gantry_proto::tls::install_crypto_provider();
    let target = Target::new(&config.address, &config.name, &config.pki_dir)?;
    let mut gate = target.core_client()?;
    let describe = gate
        .describe(DescribeRequest {
            api_versions: vec![gantry_proto::API_VERSION.into()],
        })
        .await
        .with_context(|| format!("Describe of the gate at {} did not answer", target.address))?
        .into_inner();
    let run = Run::new(
        gate,
        target,
        describe,
        config.flavor.as_deref(),
        config.timeout,
    );
    let mut report = Report::new(config.only.clone());
    checks::all(&run, &mut report, config).await;
    run.clean_up().await;
    Ok(report)
}
