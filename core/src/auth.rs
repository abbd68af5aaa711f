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

    /// The owner filter for listings: `None` means everyone.
    pub fn owner_scope(&self, config: &Config) -> Option<String> {
        if self.sees_all(config) {
            None
        } else {
            self.user.clone()
        }
    }
}
