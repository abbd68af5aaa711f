//! `work-dir/supervisor.journal`: what the supervisor knows, appended one
//! JSON line per change, so a supervisor started after another died knows
//! every attempt's end (or that it was lost). Lines reach the kernel before
//! the gate hears of the change; they are not fsynced (a machine crash ends
//! the jobs too, and gantryd starts again what its gate no longer lists).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::protocol::{Exit, Known, line};

/// One journal line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "j", rename_all = "snake_case")]
pub enum Entry {
    /// An attempt as a whole (what compaction writes).
    Known(Known),
    /// An attempt is about to start (written before its process exists).
    Start {
        /// The attempt.
        attempt: String,
        /// The gate's meta.
        meta: serde_json::Value,
    },
    /// Its job runs.
    Pid {
        /// The attempt.
        attempt: String,
        /// The job's pid.
        pid: u32,
        /// Its start in clock ticks since boot.
        start_ticks: u64,
        /// Unix ms it started.
        start_ms: i64,
    },
    /// Its job ended.
    Exit {
        /// The attempt.
        attempt: String,
        /// How.
        exit: Exit,
    },
    /// The gate released it.
    Forget {
        /// The attempt.
        attempt: String,
    },
}

/// The open journal.
pub struct Journal {
    path: PathBuf,
    file: File,
    /// Lines in the file.
    lines: usize,
}

impl Journal {
    /// Open (creating) the journal at `path` and fold it into the attempts
    /// it describes. A torn last line (a supervisor killed mid-write) is skipped.
    pub fn open(path: &Path) -> io::Result<(Self, HashMap<String, Known>)> {
        let mut known = HashMap::new();
        let mut lines = 0;
        if let Ok(file) = File::open(path) {
            for text in BufReader::new(file).lines() {
                let text = text?;
                lines += 1;
                match serde_json::from_str::<Entry>(&text) {
                    Ok(entry) => fold(&mut known, entry),
                    Err(e) => eprintln!("gantry-supervisor: skipping a journal line: {e}"),
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let journal = Self {
            path: path.to_path_buf(),
            file,
            lines,
        };
        Ok((journal, known))
    }

    /// Append `entry`.
    pub fn append(&mut self, entry: &Entry) -> io::Result<()> {
        self.lines += 1;
        self.file.write_all(&line(entry))
    }

    /// Whether the file holds many more lines than `live` attempts need.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 4 * live + 4096
    }

    /// Rewrite the journal as one line per attempt in `known` (temp file +
    /// rename, so a crash leaves the old or the new one whole).
    pub fn compact<'a>(&mut self, known: impl Iterator<Item = &'a Known>) -> io::Result<()> {
        let tmp = self.path.with_extension("journal.tmp");
        let mut out = io::BufWriter::new(File::create(&tmp)?);
        let mut lines = 0;
        for k in known {
            out.write_all(&line(&Entry::Known(k.clone())))?;
            lines += 1;
        }
        out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        self.file = OpenOptions::new().append(true).open(&self.path)?;
        self.lines = lines;
        Ok(())
    }
}

/// Apply one entry to the attempts it describes.
pub fn fold(known: &mut HashMap<String, Known>, entry: Entry) {
    match entry {
        Entry::Known(k) => {
            known.insert(k.attempt.clone(), k);
        }
        Entry::Start { attempt, meta } => {
            known.insert(
                attempt.clone(),
                Known {
                    attempt,
                    meta,
                    pid: 0,
                    start_ticks: 0,
                    start_ms: 0,
                    exit: None,
                },
            );
        }
        Entry::Pid {
            attempt,
            pid,
            start_ticks,
            start_ms,
        } => {
            if let Some(k) = known.get_mut(&attempt) {
                (k.pid, k.start_ticks, k.start_ms) = (pid, start_ticks, start_ms);
            }
        }
        Entry::Exit { attempt, exit } => {
            if let Some(k) = known.get_mut(&attempt) {
                k.exit = Some(exit);
            }
        }
        Entry::Forget { attempt } => {
            known.remove(&attempt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exit() -> Exit {
        Exit {
            exit_code: Some(0),
            signal: None,
            reason: String::new(),
            end_ms: 2,
        }
    }

    #[test]
    fn folds_appends_and_compacts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("supervisor.journal");
        let (mut j, known) = Journal::open(&path).unwrap();
        assert!(known.is_empty());
        for a in ["a1", "a2", "a3"] {
            j.append(&Entry::Start {
                attempt: a.into(),
                meta: serde_json::json!({"job": a}),
            })
            .unwrap();
        }
        j.append(&Entry::Pid {
            attempt: "a1".into(),
            pid: 7,
            start_ticks: 9,
            start_ms: 1,
        })
        .unwrap();
        j.append(&Entry::Exit {
            attempt: "a1".into(),
            exit: exit(),
        })
        .unwrap();
        j.append(&Entry::Forget {
            attempt: "a2".into(),
        })
        .unwrap();
        // A torn last line is skipped.
        j.file.write_all(b"{\"j\":\"pid\",\"att").unwrap();
        drop(j);

        let (mut j, known) = Journal::open(&path).unwrap();
        assert_eq!(known.len(), 2);
        assert_eq!(known["a1"].pid, 7);
        assert_eq!(known["a1"].exit, Some(exit()));
        assert_eq!(known["a3"].pid, 0);
        assert_eq!(known["a3"].meta["job"], "a3");
        j.compact(known.values()).unwrap();
        drop(j);

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let (_, again) = Journal::open(&path).unwrap();
        assert_eq!(again, known);
    }
}
