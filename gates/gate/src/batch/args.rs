//! The command-line flags every batch gate shares (how to reach the
//! cluster, how often to poll it), flattened into each one's CLI.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::BatchConfig;
use crate::error::{GateError, Result};
use crate::host::{Host, LocalHost, SshHost, SshTarget};
use crate::{RunAs, RunAsArgs};

/// Flags every batch gate takes (`#[command(flatten)]` them).
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// Run the batch system's commands and keep the work directory on this
    /// login node, reached with the system's ssh (`[user@]host`,
    /// `ssh://[user@]host[:port]` or a Host of the ssh config): key
    /// authentication only (BatchMode), the host key must already be in
    /// known_hosts, one master connection for everything.
    #[arg(long, env = "GANTRY_GATE_SSH", value_name = "DESTINATION")]
    pub ssh: Option<String>,
    /// The ssh_config file to use with --ssh [default: ~/.ssh/config].
    #[arg(
        long,
        env = "GANTRY_GATE_SSH_CONFIG",
        requires = "ssh",
        value_name = "FILE"
    )]
    pub ssh_config: Option<PathBuf>,
    /// Seconds between asking the batch system for the jobs' states.
    #[arg(long, env = "GANTRY_GATE_POLL", default_value_t = 2.0)]
    pub poll: f64,
    /// How many times a partition's capacity gantryd may hand this gate
    /// beyond it; the batch system queues the rest.
    #[arg(long, env = "GANTRY_GATE_QUEUE_FACTOR", default_value_t = 100)]
    pub queue_factor: u32,
    /// Whose Unix account jobs run as.
    #[command(flatten)]
    pub run_as: RunAsArgs,
}

impl BatchArgs {
    /// Reach the host the commands run on (with `env` set for each of
    /// them: this machine, or the login node over SSH) and keep the work
    /// directory `work_dir` there.
    pub async fn config(
        self,
        work_dir: PathBuf,
        env: Vec<(String, String)>,
    ) -> Result<BatchConfig> {
        if self.poll.is_nan() || self.poll <= 0.0 {
            return Err(GateError::invalid("--poll", "must be more than 0 seconds"));
        }
        let host: Arc<dyn Host> = match self.ssh {
            None => Arc::new(LocalHost { env }),
            Some(destination) => Arc::new(
                SshHost::connect(SshTarget {
                    destination,
                    config_file: self.ssh_config,
                    env,
                })
                .await?,
            ),
        };
        // Whose jobs the commands run as: root's may become their owners'.
        let account = host.run("id", &["-un".to_string()], None).await?;
        let uid = host.run("id", &["-u".to_string()], None).await?;
        let run_as = RunAs::from_args(&self.run_as, account.trim(), uid.trim() == "0")
            .map_err(|e| GateError::invalid("--run-as", e.to_string()))?;
        Ok(BatchConfig {
            run_as,
            host,
            work_dir,
            poll: Duration::from_secs_f64(self.poll),
            queue_factor: self.queue_factor,
        })
    }
}
