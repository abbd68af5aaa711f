//! Who may do what: one place that answers for every handler.

use gantry_proto::Principal;

use crate::config::Config;
use crate::error::{CoreError, Result};

/// The caller of a client API request, as authorization sees it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The certificate's identity.
    pub principal: Principal,
    /// The user the caller acts as (itself for users; the named user for a
    /// service acting for one).
    pub user: Option<String>,
    /// Whether the caller may see and change every job.
    pub admin: bool,
}

impl Caller {
    /// Decide who a client API caller is. Gates and the scheduler are refused.
    pub fn new(principal: Principal, config: &Config) -> Result<Self> {
        match &principal {
            Principal::User(name) => Ok(Caller {
                admin: config.admins.contains(name),
                user: Some(name.clone()),
                principal,
            }),
            Principal::Service(name) => {
                let known = config.services.iter().any(|s| &s.name == name);
                if !known {
                    return Err(CoreError::Forbidden(format!(
                        "service/{name} is not configured in gantryd's [[services]]"
                    )));
                }
                Ok(Caller {
                    principal,
                    user: None,
                    admin: false,
                })
            }
            other => Err(CoreError::Forbidden(format!(
                "{other} may not use the client API; use a user or service certificate"
            ))),
        }
    }

    /// The owner of a job this caller submits, honouring `on_behalf_of`.
    pub fn owner_for_submit(&self, on_behalf_of: &str, config: &Config) -> Result<String> {
        if on_behalf_of.is_empty() {
            return self.user.clone().ok_or_else(|| {
                CoreError::Invalid(crate::error::FieldError::new(
                    "on_behalf_of",
                    "a service must name the user it submits for",
                ))
            });
        }
        if !gantry_proto::identity::is_valid_name(on_behalf_of) {
            return Err(
                crate::error::FieldError::new("on_behalf_of", "not a valid user name").into(),
            );
        }
        match &self.principal {
            Principal::Service(name)
                if config
                    .services
                    .iter()
                    .any(|s| &s.name == name && s.act_for_users) =>
            {
                Ok(on_behalf_of.to_string())
            }
            _ if self.user.as_deref() == Some(on_behalf_of) => Ok(on_behalf_of.to_string()),
            _ => Err(CoreError::Forbidden(format!(
                "{} may not act on behalf of other users",
                self.principal
            ))),
        }
    }

    /// Whether the caller may see and change `owner`'s jobs.
    pub fn may_access(&self, owner: &str, config: &Config) -> bool {
        self.sees_all(config) || self.user.as_deref() == Some(owner)
    }

    /// Admins and services that act for users see every job.
    pub fn sees_all(&self, config: &Config) -> bool {
        self.admin
            || matches!(&self.principal, Principal::Service(name)
                if config.services.iter().any(|s| &s.name == name && s.act_for_users))
    }

    /// Whose jobs the caller may list and watch: `None` means everyone's.
    /// A service that may not act for users owns no jobs and sees none.
    pub fn owner_scope(&self, config: &Config) -> Result<Option<String>> {
        if self.sees_all(config) {
            return Ok(None);
        }
        match &self.user {
            Some(user) => Ok(Some(user.clone())),
            None => Err(CoreError::Forbidden(format!(
                "{} sees no jobs: it may not act for users \
                 (set act_for_users = true in its [[services]] entry of gantryd's config)",
                self.principal
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{SchedulerConfig, ServiceConfig};
    use crate::error::CoreError;
    use gantry_proto::identity::AgentName;
    use gantry_proto::tls::TlsFiles;

    /// alice is an admin; service/hub may act for users, service/monitor may not.
    fn config() -> Config {
        Config {
            installation: "gantry".into(),
            listen: "127.0.0.1:0".into(),
            metrics_listen: None,
            state_dir: "/nonexistent".into(),
            database_url: None,
            admins: vec!["alice".into()],
            tls: TlsFiles {
                ca: "ca.pem".into(),
                cert: "core.pem".into(),
                key: "core.key".into(),
            },
            scheduler: SchedulerConfig {
                address: "https://127.0.0.1:1".into(),
            },
            gates: Vec::new(),
            services: vec![
                ServiceConfig {
                    name: "hub".into(),
                    act_for_users: true,
                },
                ServiceConfig {
                    name: "monitor".into(),
                    act_for_users: false,
                },
            ],
        }
    }

    fn user(name: &str) -> Principal {
        Principal::User(name.into())
    }

    fn service(name: &str) -> Principal {
        Principal::Service(name.into())
    }

    fn caller(principal: Principal) -> Caller {
        Caller::new(principal, &config()).expect("a client API caller")
    }

    /// What an outcome was, for table rows: the owner, or the error's kind.
    fn outcome(result: Result<String>) -> String {
        match result {
            Ok(owner) => format!("ok {owner}"),
            Err(CoreError::Forbidden(_)) => "forbidden".into(),
            Err(CoreError::Invalid(e)) => format!("invalid {}", e.field),
            Err(other) => format!("other {other}"),
        }
    }

    #[test]
    fn who_may_use_the_client_api() {
        let agent = Principal::Agent(AgentName {
            gate: "aws".into(),
            partition: "p1".into(),
            machine: "m1".into(),
        });
        let rows = [
            (user("bob"), "user bob"),
            (user("alice"), "admin alice"),
            (service("hub"), "service/hub acting for nobody"),
            (service("monitor"), "service/monitor acting for nobody"),
            (service("stranger"), "forbidden"),
            (Principal::Core, "forbidden"),
            (Principal::Scheduler, "forbidden"),
            (Principal::Gate("local".into()), "forbidden"),
            (agent.clone(), "forbidden"),
        ];
        for (principal, expected) in rows {
            let got = match Caller::new(principal.clone(), &config()) {
                Ok(c) if c.principal != principal => format!("changed to {}", c.principal),
                Ok(Caller {
                    user: Some(name),
                    admin,
                    ..
                }) => format!("{} {name}", if admin { "admin" } else { "user" }),
                Ok(Caller {
                    user: None, admin, ..
                }) => format!(
                    "{principal} acting for nobody{}",
                    if admin { ", admin" } else { "" }
                ),
                Err(CoreError::Forbidden(_)) => "forbidden".into(),
                Err(other) => format!("other {other}"),
            };
            assert_eq!(got, expected, "{principal}");
        }
        let Err(CoreError::Forbidden(message)) = Caller::new(agent, &config()) else {
            panic!("an agent may not use the client API");
        };
        assert!(message.contains("user or service certificate"), "{message}");
        let Err(CoreError::Forbidden(message)) = Caller::new(service("stranger"), &config()) else {
            panic!("an unconfigured service is refused");
        };
        assert!(message.contains("[[services]]"), "{message}");
    }

    #[test]
    fn who_may_submit_for_whom() {
        let rows = [
            (user("bob"), "", "ok bob"),
            (user("bob"), "bob", "ok bob"),
            (user("bob"), "carol", "forbidden"),
            (user("alice"), "carol", "forbidden"), // admins see all but act as themselves
            (user("alice"), "", "ok alice"),
            (service("hub"), "carol", "ok carol"),
            (service("hub"), "", "invalid on_behalf_of"),
            (service("hub"), "not a name!", "invalid on_behalf_of"),
            (service("hub"), "../root", "invalid on_behalf_of"),
            (service("monitor"), "carol", "forbidden"),
            (service("monitor"), "", "invalid on_behalf_of"),
        ];
        for (principal, on_behalf_of, expected) in rows {
            let got = outcome(caller(principal.clone()).owner_for_submit(on_behalf_of, &config()));
            assert_eq!(got, expected, "{principal} submitting for {on_behalf_of:?}");
        }
    }

    #[test]
    fn who_may_see_whose_jobs() {
        let rows = [
            (user("bob"), "bob", true),
            (user("bob"), "carol", false),
            (user("alice"), "carol", true),
            (service("hub"), "carol", true),
            (service("monitor"), "carol", false),
            (service("monitor"), "", false),
        ];
        for (principal, owner, expected) in rows {
            let c = caller(principal.clone());
            assert_eq!(
                c.may_access(owner, &config()),
                expected,
                "{principal} on {owner}'s job"
            );
        }
    }

    #[test]
    fn whose_jobs_a_listing_covers() {
        let rows = [
            (user("bob"), "ok bob"),
            (user("alice"), "ok everyone"),
            (service("hub"), "ok everyone"),
            (service("monitor"), "forbidden"),
        ];
        for (principal, expected) in rows {
            let got = caller(principal.clone())
                .owner_scope(&config())
                .map(|scope| scope.unwrap_or_else(|| "everyone".into()));
            assert_eq!(outcome(got), expected, "{principal}");
        }
        let Err(CoreError::Forbidden(message)) = caller(service("monitor")).owner_scope(&config())
        else {
            panic!("a service that may not act for users lists nothing");
        };
        assert!(message.contains("act_for_users"), "{message}");
    }
}
