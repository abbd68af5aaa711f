//! Attempt directories: `attempts/<id>/` with `work/` (the job's cwd),
//! `stdout`, `stderr` and, for script tasks, `script`. Released directories
//! whose `work/` is empty are kept under `spare/` and renamed into place for
//! the next attempt, their log files truncated: on a file system such as
//! ext4, creating and deleting four inodes per job costs more than running
//! a short job.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use gantry_gate::Account;

use crate::protocol::Script;

/// At most this many spare directories are kept.
const MAX_SPARES: usize = 256;

/// The `attempts/` and `spare/` directories of one work directory.
pub struct Dirs {
    attempts: PathBuf,
    spare: PathBuf,
    /// Spare directories, ready to be renamed into place.
    spares: Vec<PathBuf>,
    /// The name the next spare gets.
    next_spare: u64,
}

/// What a starting job gets: its cwd and its log files.
pub struct Prepared {
    /// `work/`.
    pub work: PathBuf,
    /// `stdout`, truncated.
    pub stdout: File,
    /// `stderr`, truncated.
    pub stderr: File,
}

impl Dirs {
    /// The directories under `work_dir` (created when missing).
    pub fn open(work_dir: &Path) -> io::Result<Self> {
        let attempts = work_dir.join("attempts");
        let spare = work_dir.join("spare");
        std::fs::create_dir_all(&attempts)?;
        std::fs::create_dir_all(&spare)?;
        // Jobs run as other accounts pass through to their own directories.
        std::fs::set_permissions(&attempts, std::fs::Permissions::from_mode(0o711))?;
        let mut spares = Vec::new();
        let mut next_spare = 0;
        for entry in std::fs::read_dir(&spare)?.flatten() {
            let n = entry
                .file_name()
                .to_str()
                .and_then(|s| s.parse::<u64>().ok());
            match n {
                Some(n) if spares.len() < MAX_SPARES => {
                    next_spare = next_spare.max(n + 1);
                    spares.push(entry.path());
                }
                _ => {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
            }
        }
        Ok(Self {
            attempts,
            spare,
            spares,
            next_spare,
        })
    }

    /// The directory of `attempt`.
    pub fn of(&self, attempt: &str) -> PathBuf {
        self.attempts.join(attempt)
    }

    /// Make `attempt`'s directory ready to run in: reuse what staging in
    /// created or a spare, else create it; write the script; open the logs.
    /// For a job run as `account`, `work/` (with what was staged into it),
    /// the logs and the script become the account's and no one else's;
    /// the attempt's directory stays the supervisor's, so the job cannot put
    /// a link where the gate reads its logs.
    pub fn prepare(
        &mut self,
        attempt: &str,
        script: Option<&Script>,
        account: Option<&Account>,
    ) -> io::Result<Prepared> {
        let dir = self.of(attempt);
        let work = dir.join("work");
        if !dir.exists() {
            match self.spares.pop() {
                Some(spare) => std::fs::rename(spare, &dir)?,
                None => std::fs::create_dir_all(&work)?,
            }
        } else if !work.exists() {
            std::fs::create_dir(&work)?;
        }
        if let Some(script) = script {
            let path = dir.join("script");
            std::fs::write(&path, &script.text)?;
            if script.executable {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
            }
        }
        let log = |name: &str| {
            OpenOptions::new()
                .create(true)
                .write(true)
                .truncate(true)
                .open(dir.join(name))
        };
        let prepared = Prepared {
            work,
            stdout: log("stdout")?,
            stderr: log("stderr")?,
        };
        if let Some(account) = account {
            hand_over(&dir, &prepared, account)?;
        }
        Ok(prepared)
    }

    /// Remove `attempt`'s directory, or keep it as a spare when its `work/`
    /// is empty. A large tree is removed on a thread of its own.
    pub fn release(&mut self, attempt: &str) {
        let dir = self.of(attempt);
        let work_empty = std::fs::read_dir(dir.join("work")).is_ok_and(|mut d| d.next().is_none());
        if work_empty && self.spares.len() < MAX_SPARES {
            let _ = std::fs::remove_file(dir.join("script"));
            let spare = self.spare.join(self.next_spare.to_string());
            self.next_spare += 1;
            if std::fs::rename(&dir, &spare).is_ok() {
                self.spares.push(spare);
                return;
            }
        }
        if work_empty {
            let _ = std::fs::remove_dir_all(&dir);
        } else if dir.exists() {
            std::thread::spawn(move || {
                if let Err(e) = std::fs::remove_dir_all(&dir)
                    && e.kind() != io::ErrorKind::NotFound
                {
                    note!("gantry-supervisor: cannot remove {}: {e}", dir.display());
                }
            });
        }
    }
}

/// Make what `account`'s job uses its own: `work/` and everything in it,
/// its logs and script; readable by no one else.
fn hand_over(dir: &Path, prepared: &Prepared, account: &Account) -> io::Result<()> {
    use std::os::unix::fs::{fchown, lchown};
    let owner = (Some(account.uid), Some(account.gid));
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    for log in [&prepared.stdout, &prepared.stderr] {
        fchown(log, owner.0, owner.1)?;
        log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    let script = dir.join("script");
    if let Ok(meta) = std::fs::symlink_metadata(&script) {
        lchown(&script, owner.0, owner.1)?;
        let mode = meta.permissions().mode() & 0o100 | 0o600;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(mode))?;
    }
    // Staged in by the gate as itself; never following a link.
    for entry in walkdir::WalkDir::new(&prepared.work).follow_links(false) {
        let entry = entry.map_err(io::Error::other)?;
        lchown(entry.path(), owner.0, owner.1)?;
    }
    std::fs::set_permissions(&prepared.work, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_released_directories_with_empty_logs() {
        let tmp = tempfile::tempdir().unwrap();
        let mut dirs = Dirs::open(tmp.path()).unwrap();
        let p = dirs.prepare("a1", None, None).unwrap();
        std::fs::write(dirs.of("a1").join("stdout"), "old output").unwrap();
        drop(p);
        dirs.release("a1");
        assert!(!dirs.of("a1").exists());
        assert_eq!(dirs.spares.len(), 1);

        let script = Script {
            text: "#!/bin/sh\necho hi\n".into(),
            executable: true,
        };
        let p = dirs.prepare("a2", Some(&script), None).unwrap();
        assert!(dirs.spares.is_empty());
        assert!(p.work.is_dir());
        assert_eq!(std::fs::read(dirs.of("a2").join("stdout")).unwrap(), b"");
        let mode = std::fs::metadata(dirs.of("a2").join("script"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);

        // A directory with files in work/ is removed, not kept.
        std::fs::write(p.work.join("result.txt"), "42").unwrap();
        dirs.release("a2");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while dirs.of("a2").exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!dirs.of("a2").exists());
        assert!(dirs.spares.is_empty());

        // Spares survive a restart; staged-in directories are used as they are.
        dirs.prepare("a3", None, None).unwrap();
        dirs.release("a3");
        let mut again = Dirs::open(tmp.path()).unwrap();
        assert_eq!(again.spares.len(), 1);
        std::fs::create_dir_all(again.of("a4").join("work")).unwrap();
        std::fs::write(again.of("a4").join("work/in.txt"), "x").unwrap();
        let p = again.prepare("a4", None, None).unwrap();
        assert!(p.work.join("in.txt").is_file());
        assert_eq!(again.spares.len(), 1);
    }
}
