//! Running Slurm's commands. Today on this host (the gate runs where
//! `sbatch` works: a login node or the controller); the SSH mode of issue 3
//! runs the same commands on a login node over one multiplexed connection.

use std::process::Stdio;
use std::time::Duration;

use gantry_gate::GateError;
use tokio::io::AsyncWriteExt;

/// How long one Slurm command may take before the gate gives up on it.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Where Slurm's commands run.
#[derive(Debug, Clone, Default)]
pub struct Runner {
    /// Environment added to every command (e.g. `SLURM_CONF`).
    pub env: Vec<(String, String)>,
}

impl Runner {
    /// Run `program args` with `stdin`; its stdout when it exits 0, else an
    /// error carrying its stderr. UNAVAILABLE when it cannot be run at all.
    pub async fn run(
        &self,
        program: &str,
        args: &[String],
        stdin: Option<&[u8]>,
    ) -> Result<String, GateError> {
        let mut cmd = tokio::process::Command::new(program);
        cmd.args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let shown = format!("{program} {}", args.join(" "));
        let mut child = cmd
            .spawn()
            .map_err(|e| GateError::Unavailable(format!("cannot run `{program}`: {e}")))?;
        if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(bytes).await.map_err(|e| {
                GateError::Unavailable(format!("`{shown}`: writing its input: {e}"))
            })?;
        }
        let out = tokio::time::timeout(COMMAND_TIMEOUT, child.wait_with_output())
            .await
            .map_err(|_| {
                GateError::Unavailable(format!("`{shown}` took over {COMMAND_TIMEOUT:?}"))
            })?
            .map_err(|e| GateError::Unavailable(format!("`{shown}`: {e}")))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let stderr = String::from_utf8_lossy(&out.stderr);
            Err(GateError::Unavailable(format!(
                "`{shown}` failed ({}): {}",
                out.status,
                stderr.trim()
            )))
        }
    }
}
