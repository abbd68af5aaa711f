//! Whose Unix account a job runs as: the gate's own for every job, or each
//! job's owner's (`--run-as owner`), found by an explicit map and/or by the
//! same name, never root nor a system account.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::GateError;
use crate::server::ServeError;

/// The lowest uid of a person's account unless `--min-uid` says otherwise
/// (Debian's `UID_MIN`): accounts below it are the system's.
pub const DEFAULT_MIN_UID: u32 = 1000;

/// `--run-as`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RunAsMode {
    /// Each job as its owner's account.
    Owner,
    /// Every job as the gate's own account.
    Gate,
}

/// The flags of gates that can run jobs as their owners (flatten them).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunAsArgs {
    /// Whose Unix account jobs run as: `owner` (each job's owner's account,
    /// found by --user-map and --same-name; the gate, or its SSH login, must
    /// be root) or `gate` (the gate's own account, for every job)
    /// [default: owner when the gate runs jobs as root, else gate]
    #[arg(long, env = "GANTRY_GATE_RUN_AS", value_enum)]
    pub run_as: Option<RunAsMode>,
    /// A TOML file of Gantry user names and the Unix accounts their jobs run
    /// as, one `alice = "asmith"` per line; read at start.
    #[arg(long, env = "GANTRY_GATE_USER_MAP")]
    pub user_map: Option<PathBuf>,
    /// Whether a user missing from --user-map runs as the account of the
    /// same name (false: their jobs are refused).
    #[arg(
        long,
        env = "GANTRY_GATE_SAME_NAME",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub same_name: bool,
    /// Accounts jobs never run as, comma-separated (root never, whatever this says).
    #[arg(long, env = "GANTRY_GATE_DENY_ACCOUNTS", value_delimiter = ',')]
    pub deny_accounts: Vec<String>,
    /// Accounts with a uid below this are the system's: jobs never run as them.
    #[arg(long, env = "GANTRY_GATE_MIN_UID", default_value_t = DEFAULT_MIN_UID)]
    pub min_uid: u32,
}

/// A Unix account a job runs as, as the password and group databases say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// Every group it is in, the primary one included (`initgroups`).
    pub groups: Vec<u32>,
    /// Its home directory.
    pub home: String,
    /// Its login shell.
    pub shell: String,
}

impl Account {
    /// What `login` gives it ([`login_env_of`]).
    pub fn login_env(&self) -> BTreeMap<String, String> {
        login_env_of(self.uid, Some((&self.name, &self.home, &self.shell)))
    }

    /// The account `name` of this machine, if there is one.
    pub fn local(name: &str) -> Result<Option<Self>, GateError> {
        let user = nix::unistd::User::from_name(name)
            .map_err(|e| GateError::Internal(format!("cannot look up account `{name}`: {e}")))?;
        let Some(user) = user else { return Ok(None) };
        let c_name = CString::new(name)
            .map_err(|_| GateError::Internal(format!("account `{name}` holds a NUL")))?;
        let groups = nix::unistd::getgrouplist(&c_name, user.gid)
            .map_err(|e| GateError::Internal(format!("cannot list the groups of `{name}`: {e}")))?;
        Ok(Some(Self {
            name: user.name,
            uid: user.uid.as_raw(),
            gid: user.gid.as_raw(),
            groups: groups.into_iter().map(|g| g.as_raw()).collect(),
            home: user.dir.to_string_lossy().into_owned(),
            shell: user.shell.to_string_lossy().into_owned(),
        }))
    }
}

/// What `login` gives the account `uid`, whose name, home and shell are
/// `user` when it has an entry: Debian's `/etc/login.defs` PATH (root's
/// with the sbin directories), HOME, USER, LOGNAME and SHELL.
pub fn login_env_of(uid: u32, user: Option<(&str, &str, &str)>) -> BTreeMap<String, String> {
    let path = if uid == 0 {
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    } else {
        "/usr/local/bin:/usr/bin:/bin"
    };
    let mut env = BTreeMap::from([("PATH".to_string(), path.to_string())]);
    if let Some((name, home, shell)) = user {
        env.insert("HOME".into(), home.to_string());
        env.insert("USER".into(), name.to_string());
        env.insert("LOGNAME".into(), name.to_string());
        env.insert("SHELL".into(), shell.to_string());
    }
    env
}

/// Whose account jobs run as, checked at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunAs {
    /// Every job as the gate's (or its login's) own account, named here for people.
    Gate {
        /// The account's name.
        account: String,
    },
    /// Each job as its owner's account.
    Owner(AccountMap),
}

impl RunAs {
    /// What `args` ask for, for a gate whose jobs start as `account`
    /// (`root`: it can run them as anyone). `--run-as owner` from another
    /// account is refused: it could not keep its word.
    pub fn from_args(args: &RunAsArgs, account: &str, is_root: bool) -> Result<Self, ServeError> {
        let mode = args.run_as.unwrap_or(if is_root {
            RunAsMode::Owner
        } else {
            RunAsMode::Gate
        });
        match mode {
            RunAsMode::Gate => {
                if is_root {
                    tracing::warn!(
                        "--run-as gate: every user's job runs as root; \
                         --run-as owner runs each as its owner's own account"
                    );
                }
                Ok(Self::Gate {
                    account: account.to_string(),
                })
            }
            RunAsMode::Owner if !is_root => Err(ServeError::Config(format!(
                "--run-as owner: jobs start as `{account}`, which cannot become another \
                 account; run the gate (or log in over SSH) as root, or pass --run-as gate"
            ))),
            RunAsMode::Owner => Ok(Self::Owner(AccountMap::from_args(args)?)),
        }
    }

    /// What `args` ask for, for a gate whose jobs start as this process.
    pub fn from_args_here(args: &RunAsArgs) -> Result<Self, ServeError> {
        let is_root = nix::unistd::geteuid().is_root();
        Self::from_args(args, &own_account(), is_root)
    }

    /// This process's own account, for every job.
    pub fn this_process() -> Self {
        Self::Gate {
            account: own_account(),
        }
    }

    /// What `Describe` says of it.
    pub fn info(&self) -> gantry_proto::v1::RunAs {
        match self {
            Self::Gate { account } => gantry_proto::v1::RunAs {
                owner: false,
                account: account.clone(),
            },
            Self::Owner(_) => gantry_proto::v1::RunAs {
                owner: true,
                account: String::new(),
            },
        }
    }

    /// The account of this machine that `owner`'s job runs as; `None` when
    /// every job runs as the gate's own. PERMISSION_DENIED, saying why, when
    /// `owner` may not run jobs here.
    pub fn local_account(&self, owner: &str) -> Result<Option<Account>, GateError> {
        match self {
            Self::Gate { .. } => Ok(None),
            Self::Owner(map) => {
                let name = map.account_name(owner)?;
                let account =
                    Account::local(&name)?.ok_or_else(|| AccountMap::no_account(owner, &name))?;
                map.check(owner, account.uid, &account.name)?;
                Ok(Some(account))
            }
        }
    }
}

/// The name of this process's account (its uid when it has none).
fn own_account() -> String {
    let uid = nix::unistd::geteuid();
    nix::unistd::User::from_uid(uid)
        .ok()
        .flatten()
        .map_or_else(|| uid.to_string(), |u| u.name)
}

/// Gantry user names to Unix account names, and the accounts never used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountMap {
    explicit: BTreeMap<String, String>,
    same_name: bool,
    denied: BTreeSet<String>,
    min_uid: u32,
}

impl AccountMap {
    /// The map `args` describe (reading `--user-map`).
    pub fn from_args(args: &RunAsArgs) -> Result<Self, ServeError> {
        let explicit = match &args.user_map {
            None => BTreeMap::new(),
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ServeError::Config(format!("--user-map: cannot read {}: {e}", path.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    ServeError::Config(format!(
                        "--user-map {}: not a table of `user = \"account\"` lines: {e}",
                        path.display()
                    ))
                })?
            }
        };
        if explicit.is_empty() && !args.same_name {
            return Err(ServeError::Config(
                "--run-as owner with --same-name false maps nobody: give --user-map".into(),
            ));
        }
        let mut denied: BTreeSet<String> = args.deny_accounts.iter().cloned().collect();
        denied.insert("root".into());
        Ok(Self {
            explicit,
            same_name: args.same_name,
            denied,
            min_uid: args.min_uid,
        })
    }

    /// The name of the account `owner`'s jobs run as, before it is looked up.
    pub fn account_name(&self, owner: &str) -> Result<String, GateError> {
        if owner.is_empty() {
            return Err(GateError::PermissionDenied(
                "the job names no owner (`task.owner`); this gate runs each job as its owner"
                    .into(),
            ));
        }
        let name = match self.explicit.get(owner) {
            Some(name) => name.clone(),
            None if self.same_name => owner.to_string(),
            None => {
                return Err(GateError::PermissionDenied(format!(
                    "user `{owner}` is not in this site's --user-map, so has no Unix account here; \
                     ask its operator to map them"
                )));
            }
        };
        if self.denied.contains(&name) {
            return Err(GateError::PermissionDenied(format!(
                "user `{owner}` maps to the account `{name}`, which never runs jobs on this site"
            )));
        }
        Ok(name)
    }

    /// The refusal of `owner`'s job when the account `name` does not exist.
    pub fn no_account(owner: &str, name: &str) -> GateError {
        GateError::PermissionDenied(format!(
            "user `{owner}` has no Unix account `{name}` on this site; \
             ask its operator to create one or to map `{owner}` in the gate's --user-map"
        ))
    }

    /// Refuse an account found by lookup that is the system's (root and
    /// every uid below `--min-uid`).
    pub fn check(&self, owner: &str, uid: u32, name: &str) -> Result<(), GateError> {
        if uid == 0 || uid < self.min_uid {
            return Err(GateError::PermissionDenied(format!(
                "user `{owner}` maps to the account `{name}` (uid {uid}), a system account; \
                 jobs run only as accounts with a uid of at least {} on this site",
                self.min_uid.max(1)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(explicit: &[(&str, &str)], same_name: bool) -> AccountMap {
        AccountMap {
            explicit: explicit
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
            same_name,
            denied: ["root".to_string(), "backup".to_string()].into(),
            min_uid: 1000,
        }
    }

    #[test]
    fn the_map_wins_then_the_same_name() {
        let m = map(&[("alice", "asmith")], true);
        assert_eq!(m.account_name("alice").unwrap(), "asmith");
        assert_eq!(m.account_name("bob").unwrap(), "bob");
        let m = map(&[("alice", "asmith")], false);
        let err = m.account_name("bob").unwrap_err().to_string();
        assert!(err.contains("not in this site's --user-map"), "{err}");
    }

    #[test]
    fn root_denied_and_system_accounts_are_refused() {
        let m = map(&[("eve", "root")], true);
        for owner in ["eve", "root", "backup"] {
            let err = m.account_name(owner).unwrap_err();
            assert!(
                matches!(err, GateError::PermissionDenied(_)),
                "{owner}: {err}"
            );
        }
        assert!(m.account_name("").is_err());
        let err = m.check("sam", 2, "bin").unwrap_err().to_string();
        assert!(err.contains("system account"), "{err}");
        assert!(m.check("carol", 1001, "carol").is_ok());
    }

    #[test]
    fn owner_mode_needs_root() {
        let args = RunAsArgs {
            run_as: Some(RunAsMode::Owner),
            same_name: true,
            min_uid: DEFAULT_MIN_UID,
            ..Default::default()
        };
        assert!(RunAs::from_args(&args, "gantry", false).is_err());
        assert!(matches!(
            RunAs::from_args(&args, "root", true),
            Ok(RunAs::Owner(_))
        ));
        let default = RunAsArgs {
            same_name: true,
            ..Default::default()
        };
        assert!(matches!(
            RunAs::from_args(&default, "gantry", false),
            Ok(RunAs::Gate { .. })
        ));
        assert!(matches!(
            RunAs::from_args(&default, "root", true),
            Ok(RunAs::Owner(_))
        ));
    }
}
