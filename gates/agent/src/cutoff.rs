//! The dead-man's switch: a machine without its gate for the cut-off time
//! powers itself off, so that a lost control plane leaves nothing running.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Tracks contact with the gate and powers off after `cut_off` without it.
#[derive(Clone)]
pub struct DeadMansSwitch {
    inner: Arc<Mutex<Contact>>,
    cut_off: Duration,
    command: Vec<String>,
}

struct Contact {
    connected: bool,
    since: Instant,
}

impl DeadMansSwitch {
    /// A switch that runs `command` (e.g. `["poweroff"]`) after `cut_off`
    /// without a session, counting from now.
    pub fn new(cut_off: Duration, command: Vec<String>) -> Self {
        Self {
            inner: Arc::new(Mutex::new(Contact {
                connected: false,
                since: Instant::now(),
            })),
            cut_off,
            command,
        }
    }

    fn contact(&self) -> std::sync::MutexGuard<'_, Contact> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A session with the gate is up.
    pub fn connected(&self) {
        let mut c = self.contact();
        c.connected = true;
        c.since = Instant::now();
    }

    /// The session ended; the count starts.
    pub fn disconnected(&self) {
        let mut c = self.contact();
        if c.connected {
            c.connected = false;
            c.since = Instant::now();
        }
    }

    /// How long the agent has been without its gate; zero while connected.
    pub fn alone_for(&self) -> Duration {
        let c = self.contact();
        if c.connected {
            Duration::ZERO
        } else {
            c.since.elapsed()
        }
    }

    /// Wait until the cut-off passes, then power off.
    pub async fn watch(self) {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let alone = self.alone_for();
            if alone >= self.cut_off {
                self.power_off(&format!(
                    "no contact with the gate for {}s (cut-off {}s)",
                    alone.as_secs(),
                    self.cut_off.as_secs()
                ))
                .await;
                return;
            }
        }
    }

    /// Run the power-off command, saying why in the log.
    pub async fn power_off(&self, reason: &str) {
        tracing::warn!(reason, command = ?self.command, "powering the machine off");
        let Some((program, args)) = self.command.split_first() else {
            return;
        };
        match tokio::process::Command::new(program)
            .args(args)
            .status()
            .await
        {
            Ok(status) if status.success() => {}
            Ok(status) => tracing::error!(%status, "the power-off command failed"),
            Err(err) => tracing::error!(error = %err, "cannot run the power-off command"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_switch_fires_only_after_the_cut_off_without_contact() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("off");
        let switch = DeadMansSwitch::new(
            Duration::from_secs(1),
            vec!["touch".into(), marker.display().to_string()],
        );
        switch.connected();
        tokio::time::sleep(Duration::from_millis(1300)).await;
        assert_eq!(switch.alone_for(), Duration::ZERO);
        switch.disconnected();
        tokio::time::timeout(Duration::from_secs(10), switch.clone().watch())
            .await
            .unwrap();
        assert!(marker.exists());
    }
}
