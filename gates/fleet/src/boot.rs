//! The boot script an elastic gate gives each machine (EC2 user-data): it
//! starts `gantry-agent` with the gate's address, the installation's CA
//! certificate and a join token, and nothing secret beyond that token
//! (user-data is readable by anyone who may describe the machine).

use std::time::Duration;

/// What one machine's boot script says.
#[derive(Debug, Clone)]
pub struct Boot<'a> {
    /// The address the agent dials, `https://host:port`.
    pub gate_address: &'a str,
    /// The name the gate's certificate must carry: `<gate>.gate.<installation>`.
    pub gate_server_name: &'a str,
    /// The installation's CA certificate (PEM).
    pub ca_pem: &'a str,
    /// The join token for this machine.
    pub token: &'a str,
    /// Power off after this long without the gate.
    pub cut_off: Duration,
    /// Shell lines the operator runs first (e.g. install gantry-agent).
    pub prelude: &'a str,
    /// For people reading the script: which partition and machine it is.
    pub partition: &'a str,
    /// The machine within the partition.
    pub machine: &'a str,
}

/// Quote `value` for a POSIX shell.
fn quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// The boot script: `#!/bin/sh`, the settings as `GANTRY_AGENT_*`
/// variables (the agent's flags read them), the operator's prelude, then
/// `exec gantry-agent`. The agent keeps its state in `$GANTRY_AGENT_DIR`
/// (default `/var/lib/gantry-agent`).
pub fn boot_script(boot: &Boot<'_>) -> String {
    let mut script = String::from("#!/bin/sh\n");
    script.push_str(&format!(
        "# Gantry node agent for partition {} (machine {}). No key is in here: the\n\
         # join token works once, for this machine, and expires within minutes.\n",
        boot.partition, boot.machine
    ));
    script.push_str("set -e\n");
    for (name, value) in [
        ("GANTRY_AGENT_GATE", boot.gate_address.to_string()),
        ("GANTRY_AGENT_GATE_NAME", boot.gate_server_name.to_string()),
        ("GANTRY_AGENT_TOKEN", boot.token.to_string()),
        ("GANTRY_AGENT_CUT_OFF", boot.cut_off.as_secs().to_string()),
        ("GANTRY_AGENT_CA", boot.ca_pem.trim().to_string()),
    ] {
        script.push_str(&format!("export {name}={}\n", quote(&value)));
    }
    script.push_str(": \"${GANTRY_AGENT_DIR:=/var/lib/gantry-agent}\"\nexport GANTRY_AGENT_DIR\n");
    if !boot.prelude.trim().is_empty() {
        script.push_str(boot.prelude.trim_end());
        script.push('\n');
    }
    script.push_str("exec gantry-agent\n");
    script
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_sets_every_setting_quoted_and_ends_starting_the_agent() {
        let script = boot_script(&Boot {
            gate_address: "https://gate.example.org:7443",
            gate_server_name: "aws.gate.gantry",
            ca_pem: "-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----\n",
            token: "ab12",
            cut_off: Duration::from_secs(600),
            prelude: "echo it's here",
            partition: "p1",
            machine: "m0",
        });
        assert!(script.starts_with("#!/bin/sh\n"));
        assert!(script.contains("export GANTRY_AGENT_TOKEN='ab12'\n"));
        assert!(script.contains("export GANTRY_AGENT_CUT_OFF='600'\n"));
        assert!(script.contains(
            "export GANTRY_AGENT_CA='-----BEGIN CERTIFICATE-----\nAAA\n-----END CERTIFICATE-----'\n"
        ));
        assert!(script.contains("echo it's here\n"));
        assert!(script.ends_with("exec gantry-agent\n"));
        assert_eq!(quote("it's"), r"'it'\''s'");
    }
}
