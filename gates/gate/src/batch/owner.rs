//! Submitting as the job's owner (`--run-as owner`): their account on the
//! host, the attempt's files handed to it, and the submit command run
//! through `runuser`, so the batch system records them as the job's user.
//!
//! An attempt's directory stays the gate's (mode 0711): what the job
//! writes or reads there — `work/`, `stdout`, `stderr`, `hostfile`, its
//! script and secrets — is made beforehand and given to the account, so the
//! job can neither read another's nor put a link where the gate reads.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_proto::v1::StageInResponse;
use globset::GlobSet;

use crate::error::Result;
use crate::host::Host;
use crate::provider::{FileChunks, LogSource};
use crate::{AccountMap, RunAs, login_env_of};

/// Who submits a job, and the environment it starts from.
pub(super) struct Submitter {
    /// The owner's account the job is submitted as (`None`: the gate's own).
    pub account: Option<String>,
    /// What `login` gives that account on the host ([`login_env_of`]): a
    /// job starts from it, never from the gate's own environment.
    pub login_env: BTreeMap<String, String>,
}

/// The accounts jobs were submitted as, by name, as the host's password
/// database says them (`None`: it has no such account).
#[derive(Default)]
pub(super) struct Logins(Mutex<HashMap<String, Option<Login>>>);

/// An account of the host.
#[derive(Clone)]
struct Login {
    uid: u32,
    env: BTreeMap<String, String>,
}

impl Logins {
    /// Account `name` of `host` (looked up once).
    async fn get(&self, host: &dyn Host, name: &str) -> Result<Option<Login>> {
        if let Some(known) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get(name) {
            return Ok(known.clone());
        }
        let script = "getent passwd \"$1\" || echo none";
        let args = ["-c", script, "sh", name].map(String::from);
        let login = parse_passwd(&host.run("sh", &args, None).await?, name);
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), login.clone());
        Ok(login)
    }
}

/// Account `name` in a line of the password database
/// (`name:x:uid:gid:gecos:home:shell`).
fn parse_passwd(line: &str, name: &str) -> Option<Login> {
    let fields: Vec<&str> = line.trim_end().split(':').collect();
    let [found, _, uid, _, _, home, shell] = fields[..] else {
        return None;
    };
    let uid = uid.parse().ok().filter(|_| found == name)?;
    let env = login_env_of(uid, Some((name, home, shell)));
    Some(Login { uid, env })
}

/// Who submits `owner`'s job on `host`: the owner's account under
/// `--run-as owner`, else the gate's. PERMISSION_DENIED, saying why, when
/// `owner` may not run jobs here.
pub(super) async fn submitter(
    run_as: &RunAs,
    logins: &Logins,
    host: &dyn Host,
    owner: &str,
) -> Result<Submitter> {
    match run_as {
        RunAs::Gate { account } => Ok(Submitter {
            account: None,
            // An account without an entry starts from an empty environment.
            login_env: logins
                .get(host, account)
                .await?
                .map(|l| l.env)
                .unwrap_or_default(),
        }),
        RunAs::Owner(map) => {
            let name = map.account_name(owner)?;
            let Some(login) = logins.get(host, &name).await? else {
                return Err(AccountMap::no_account(owner, &name));
            };
            map.check(owner, login.uid, &name)?;
            Ok(Submitter {
                account: Some(name),
                login_env: login.env,
            })
        }
    }
}

/// Give what `account`'s job uses in the attempt directory `dir` to it.
pub(super) async fn hand_over(host: &dyn Host, dir: &Path, account: &str) -> Result<()> {
    let script = "cd \"$1\" && touch stdout stderr hostfile \
                  && chown -hR -- \"$2:\" work stdout stderr hostfile \
                  && for f in script secrets; do if [ -e \"$f\" ]; then chown -h -- \"$2:\" \"$f\"; fi; done \
                  && chmod 0700 work && chmod 0600 stdout stderr hostfile && chmod 0711 .";
    let dir = dir.to_string_lossy().into_owned();
    let args = ["-c", script, "sh", &dir, account].map(String::from);
    host.run("sh", &args, None).await.map(|_| ())
}

/// `host`, with every command run as `account` (`runuser -u ACCOUNT --`).
pub(super) struct AsAccount {
    pub host: Arc<dyn Host>,
    pub account: String,
}

#[tonic::async_trait]
impl Host for AsAccount {
    fn env(&self) -> &[(String, String)] {
        self.host.env()
    }

    async fn run(&self, program: &str, args: &[String], stdin: Option<&[u8]>) -> Result<String> {
        let mut all = vec!["-u".to_string(), self.account.clone(), "--".into()];
        all.push(program.to_string());
        all.extend(args.iter().cloned());
        self.host.run("runuser", &all, stdin).await
    }

    async fn create_dir_all(&self, dir: &Path) -> Result<()> {
        self.host.create_dir_all(dir).await
    }

    async fn canonicalize(&self, path: &Path) -> Result<PathBuf> {
        self.host.canonicalize(path).await
    }

    async fn write(&self, path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
        self.host.write(path, bytes, mode).await
    }

    async fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        self.host.read(path).await
    }

    async fn list(&self, dir: &Path) -> Result<Vec<String>> {
        self.host.list(dir).await
    }

    async fn size(&self, path: &Path) -> Option<u64> {
        self.host.size(path).await
    }

    async fn remove_file(&self, path: &Path) -> Result<()> {
        self.host.remove_file(path).await
    }

    async fn remove_dir_all(&self, dir: &Path) -> Result<()> {
        self.host.remove_dir_all(dir).await
    }

    async fn stage_in(&self, dir: &Path, files: FileChunks) -> Result<StageInResponse> {
        self.host.stage_in(dir, files).await
    }

    fn stage_out(&self, dir: PathBuf, globs: GlobSet) -> FileChunks {
        self.host.stage_out(dir, globs)
    }

    fn log(&self, path: PathBuf) -> LogSource {
        self.host.log(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_account_of_its_passwd_line() {
        let login = parse_passwd(
            "alice:x:1001:1001:Alice,,,:/home/alice:/bin/bash\n",
            "alice",
        )
        .expect("an account");
        assert_eq!(login.uid, 1001);
        assert_eq!(login.env["HOME"], "/home/alice");
        assert_eq!(login.env["SHELL"], "/bin/bash");
        assert_eq!(login.env["USER"], "alice");
        assert_eq!(login.env["PATH"], "/usr/local/bin:/usr/bin:/bin");
        // `getent passwd 0` finds root by its uid: not an account named `0`.
        assert!(parse_passwd("root:x:0:0:root:/root:/bin/bash", "0").is_none());
        assert!(parse_passwd("none\n", "bob").is_none());
    }
}
