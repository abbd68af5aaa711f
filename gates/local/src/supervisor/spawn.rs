//! Starting one job: its directory, stdin, working directory, program
//! (found in the job's own PATH), environment, CPUs and process group.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use super::account::Become;
use super::dirs::Dirs;
use super::sys;
use crate::protocol::Start;

/// Start the job; on failure the exit code (127: not found, 126: not
/// executable) and why.
pub(super) fn spawn(
    dirs: &mut Dirs,
    unpinned: &libc::cpu_set_t,
    start: &Start,
) -> Result<u32, (i32, String)> {
    let program = start.argv.first().cloned().unwrap_or_default();
    let account = start.account.as_ref();
    let prepared = dirs
        .prepare(&start.attempt, start.script.as_ref(), account)
        .map_err(|e| (126, format!("cannot prepare its directory: {e}")))?;
    let cwd = match &start.chdir {
        None => prepared.work.clone(),
        Some(dir) if Path::new(dir).is_dir() => PathBuf::from(dir),
        Some(dir) => return Err((1, format!("cannot run in `{dir}`: not a directory here"))),
    };
    // A job run as an account opens its stdin as that account (below).
    let stdin = match &start.stdin {
        Some(path) if account.is_none() => std::fs::File::open(cwd.join(path))
            .map(Stdio::from)
            .map_err(|e| (1, format!("cannot open its stdin `{path}`: {e}")))?,
        _ => Stdio::null(),
    };
    let become_account = account
        .map(|a| {
            Become::new(
                a,
                &cwd,
                start.stdin.as_ref().map(|p| cwd.join(p)).as_deref(),
            )
        })
        .transpose()
        .map_err(|e| (126, format!("cannot run as its account: {e}")))?;
    let pinned = !start.cpus.is_empty();
    if pinned {
        match sys::cpu_set(&start.cpus).and_then(|set| sys::set_affinity(&set)) {
            Ok(()) => {}
            Err(e) => note!(
                "gantry-supervisor: cannot pin to cpus {:?}: {e}",
                start.cpus
            ),
        }
    }
    // Looked up here in the job's own PATH: std would fork and exec
    // instead of posix_spawn for a PATH that is not the supervisor's.
    let path = start.env.get("PATH").map(String::as_str);
    let resolved = match sys::find_program(&program, path) {
        Some(found) => found,
        None if start.env_complete => {
            return Err((
                127,
                format!(
                    "cannot start `{program}`: not found in PATH {}",
                    path.unwrap_or("")
                ),
            ));
        }
        None => program.clone().into(),
    };
    let mut command = std::process::Command::new(&resolved);
    command.arg0(&program);
    if start.env_complete {
        command.env_clear();
    }
    if let Some(become_account) = become_account {
        // SAFETY: `Become::run` makes only async-signal-safe calls on data
        // prepared before the fork.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || become_account.run());
        }
    }
    let spawned = command
        .args(start.argv.iter().skip(1))
        .envs(&start.env)
        .current_dir(&cwd)
        .stdin(stdin)
        .stdout(prepared.stdout)
        .stderr(prepared.stderr)
        .process_group(0)
        .spawn();
    if pinned {
        let _ = sys::set_affinity(unpinned);
    }
    match spawned {
        // Dropping the handle neither waits nor kills; `reap` waits.
        Ok(child) => Ok(child.id()),
        Err(e) => {
            let code = if e.kind() == ErrorKind::NotFound {
                127
            } else {
                126
            };
            let who = account.map_or(String::new(), |a| format!(" as `{}`", a.name));
            Err((code, format!("cannot start `{program}`{who}: {e}")))
        }
    }
}
