//! `gantry pki`: an installation's CA and certificates.

use std::path::PathBuf;

use anyhow::bail;
use clap::{Args, Subcommand, ValueEnum};
use gantry_proto::Principal;
use gantry_proto::identity::is_valid_name;
use gantry_proto::pki::{self, Pki};
use serde::Serialize;

use crate::cmd::Ctx;
use crate::output;

/// Arguments of `gantry pki`.
#[derive(Args, Debug)]
#[command(after_help = "\
Examples:
  gantry pki init --dir /etc/gantry/pki --installation lab --host gantry.example.org
  gantry pki issue --dir /etc/gantry/pki user alice
  gantry pki issue --dir /etc/gantry/pki gate slurm-prod --host login1.example.org
  gantry pki issue --dir /etc/gantry/pki agent-issuer aws   # an elastic gate's agent issuer")]
pub struct PkiArgs {
    #[command(subcommand)]
    command: PkiCommand,
}

#[derive(Subcommand, Debug)]
enum PkiCommand {
    /// Create the CA (if absent) and the certificates of core, scheduler and gate/local
    Init {
        /// The PKI directory (created if needed)
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The installation name: the trust domain of every identity (spiffe://NAME/...)
        #[arg(long, value_name = "NAME", default_value = "gantry")]
        installation: String,
        /// A host name or IP gantryd's certificate serves: every name clients
        /// reach it by (localhost and 127.0.0.1 are always in it); give them
        /// all each time, as a certificate lacking one is issued anew with these
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
    },
    /// Issue (or re-issue) one more certificate from the CA in DIR
    Issue {
        /// The PKI directory holding the CA
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// What the identity is
        kind: Kind,
        /// Its name: 1-64 of A-Z a-z 0-9 . _ - (not starting with . or -)
        name: String,
        /// Extra host names or IPs the certificate serves (gates only; localhost is always included)
        #[arg(long = "host", value_name = "HOST")]
        hosts: Vec<String>,
        /// How long it is valid, e.g. 12h, 30d, 1y [default: 30d for a user, 1y for a service or a gate]
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        lifetime: Option<std::time::Duration>,
    },
    /// Revoke a certificate: write the CA's revocation list (crl.pem beside
    /// ca.pem) anew, which every server reads again within a second and
    /// checks at each handshake. Copy crl.pem to the servers on other hosts.
    Revoke {
        /// The PKI directory holding the CA
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// What the identity is (with NAME: revoke its current certificate in DIR)
        #[arg(required_unless_present = "serial", requires = "name")]
        kind: Option<Kind>,
        /// Its name
        name: Option<String>,
        /// Or the serial number (hex) of any certificate of this CA
        #[arg(long, value_name = "HEX", conflicts_with_all = ["kind", "name"])]
        serial: Option<String>,
    },
}

/// The kinds of identity `issue` makes.
#[derive(ValueEnum, Debug, Clone, Copy)]
enum Kind {
    /// A person: spiffe://<installation>/user/<name>
    User,
    /// A program acting as itself (e.g. jupyterhub): .../service/<name>
    Service,
    /// A gate serving a site: .../gate/<name>
    Gate,
    /// An elastic gate's agent issuer: a CA of that gate's own that signs its
    /// node agents' certificates (agent-issuer-<name>.pem/.key)
    AgentIssuer,
}

impl Kind {
    /// The identity `name` of this kind; `None` for an agent issuer, a CA
    /// rather than an identity.
    fn principal(self, name: String) -> Option<Principal> {
        match self {
            Kind::User => Some(Principal::User(name)),
            Kind::Service => Some(Principal::Service(name)),
            Kind::Gate => Some(Principal::Gate(name)),
            Kind::AgentIssuer => None,
        }
    }
}

#[derive(Serialize)]
struct Issued {
    identity: String,
    cert: PathBuf,
    key: PathBuf,
    /// When it expires (RFC 3339, UTC).
    valid_until: Option<String>,
}

/// `cert`'s expiry as RFC 3339, UTC.
fn valid_until(cert: &std::path::Path) -> Option<String> {
    pki::expiry(cert).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

fn report(ctx: &Ctx, ca: PathBuf, issued: &[Issued]) -> anyhow::Result<()> {
    if ctx.json {
        #[derive(Serialize)]
        struct View<'a> {
            ca: PathBuf,
            issued: &'a [Issued],
        }
        return output::print_json(&View { ca, issued });
    }
    crate::out!("CA: {}", ca.display());
    for i in issued {
        let until = i.valid_until.as_deref().unwrap_or("unknown");
        crate::out!(
            "{}: {} {} (valid until {until})",
            i.identity,
            i.cert.display(),
            i.key.display()
        );
    }
    Ok(())
}

/// Run `gantry pki`.
pub fn run(ctx: &Ctx, args: PkiArgs) -> anyhow::Result<i32> {
    match args.command {
        PkiCommand::Init {
            dir,
            installation,
            hosts,
        } => {
            if !is_valid_name(&installation) {
                bail!(
                    "--installation `{installation}` is not a valid name; use 1-64 of A-Z a-z 0-9 . _ - (e.g. lab)"
                );
            }
            let pki = Pki::init(&dir, &installation)?;
            let mut issued = Vec::new();
            for principal in [
                Principal::Core,
                Principal::Scheduler,
                Principal::Gate("local".into()),
            ] {
                let serves = if principal == Principal::Core {
                    hosts.as_slice()
                } else {
                    &[]
                };
                let paths = pki.ensure(&principal, serves)?;
                issued.push(Issued {
                    identity: principal.uri(pki.installation()),
                    valid_until: valid_until(&paths.cert),
                    cert: paths.cert,
                    key: paths.key,
                });
            }
            report(ctx, pki.ca_path(), &issued)?;
        }
        PkiCommand::Issue {
            dir,
            kind,
            name,
            hosts,
            lifetime,
        } => {
            if !is_valid_name(&name) {
                bail!("`{name}` is not a valid name; use 1-64 of A-Z a-z 0-9 . _ - (e.g. alice)");
            }
            let Some(principal) = kind.principal(name.clone()) else {
                if !hosts.is_empty() {
                    bail!("--host is only for gate certificates (an issuer does not serve)");
                }
                let pki = Pki::open(&dir)?;
                let paths = pki.issue_agent_issuer(&name)?;
                let issued = [Issued {
                    identity: format!("agent issuer of gate/{name}"),
                    valid_until: valid_until(&paths.cert),
                    cert: paths.cert,
                    key: paths.key,
                }];
                report(ctx, pki.ca_path(), &issued)?;
                return Ok(0);
            };
            if !hosts.is_empty() && !matches!(principal, Principal::Gate(_)) {
                bail!("--host is only for gate certificates (users and services do not serve)");
            }
            let pki = Pki::open(&dir)?;
            let lifetime = lifetime.unwrap_or_else(|| pki::default_lifetime(&principal));
            if lifetime < std::time::Duration::from_secs(60) {
                bail!(
                    "--lifetime must be at least a minute, not {}",
                    humantime::format_duration(lifetime)
                );
            }
            let paths = pki.issue_for(&principal, &hosts, lifetime)?;
            let issued = [Issued {
                identity: principal.uri(pki.installation()),
                valid_until: valid_until(&paths.cert),
                cert: paths.cert,
                key: paths.key,
            }];
            report(ctx, pki.ca_path(), &issued)?;
        }
        PkiCommand::Revoke {
            dir,
            kind,
            name,
            serial,
        } => {
            let pki = Pki::open(&dir)?;
            let (serial, what) = match (kind, name, serial) {
                (_, _, Some(serial)) => (serial, "by serial".to_string()),
                (Some(kind), Some(name), None) => {
                    let Some(principal) = kind.principal(name) else {
                        bail!(
                            "an agent issuer is a CA of its own; revoke it by making a new one (`gantry pki issue agent-issuer NAME`) and restarting its gate"
                        )
                    };
                    let cert = pki.paths(&principal).cert;
                    let Some(serial) = pki::serial_of(&cert) else {
                        bail!(
                            "no certificate of {} in {} ({} cannot be read); revoke it with --serial",
                            principal.path(),
                            dir.display(),
                            cert.display()
                        );
                    };
                    (serial, principal.path())
                }
                _ => bail!("name what to revoke: KIND NAME, or --serial HEX"),
            };
            let crl = pki.revoke(&serial, &what)?;
            if ctx.json {
                #[derive(Serialize)]
                struct Revoked<'a> {
                    serial: &'a str,
                    identity: &'a str,
                    crl: PathBuf,
                }
                return output::print_json(&Revoked {
                    serial: &serial,
                    identity: &what,
                    crl,
                })
                .map(|()| 0);
            }
            crate::out!(
                "revoked {what} (serial {serial}); revocation list: {}",
                crl.display()
            );
        }
    }
    Ok(0)
}
