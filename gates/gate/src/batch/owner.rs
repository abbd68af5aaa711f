//! Submitting as the job's owner (`--run-as owner`): their account on the
//! host, the attempt's files handed to it, and the submit command run
//! through `runuser`, so the batch system records them as the job's user.
//!
//! An attempt's directory stays the gate's (mode 0711): what the job
//! writes or reads there — `work/`, `stdout`, `stderr`, `hostfile`, its
//! script and secrets — is made beforehand and given to the account, so the
//! job can neither read another's nor put a link where the gate reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use gantry_proto::v1::StageInResponse;
use globset::GlobSet;

use crate::error::Result;
use crate::host::Host;
use crate::provider::{FileChunks, LogSource};
use crate::{AccountMap, RunAs};

/// The uids of the accounts jobs were submitted as, by name.
#[derive(Default)]
pub(super) struct Uids(Mutex<HashMap<String, u32>>);

/// The account `owner`'s job is submitted as on `host`; `None` when every
/// job runs as the gate's own. PERMISSION_DENIED, saying why, when `owner`
/// may not run jobs here.
pub(super) async fn account_of(
    run_as: &RunAs,
    uids: &Uids,
    host: &dyn Host,
    owner: &str,
) -> Result<Option<String>> {
    let RunAs::Owner(map) = run_as else {
        return Ok(None);
    };
    let name = map.account_name(owner)?;
    let known = uids
        .0
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&name)
        .copied();
    let uid = match known {
        Some(uid) => uid,
        None => {
            let script = "id -u -- \"$1\" 2>/dev/null || echo none";
            let args = ["-c", script, "sh", &name].map(String::from);
            let out = host.run("sh", &args, None).await?;
            let Ok(uid) = out.trim().parse::<u32>() else {
                return Err(AccountMap::no_account(owner, &name));
            };
            uids.0
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), uid);
            uid
        }
    };
    map.check(owner, uid, &name)?;
    Ok(Some(name))
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
