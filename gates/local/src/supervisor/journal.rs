//! `work-dir/supervisor.journal`: what the supervisor knows, appended one
//! JSON line per change, so a supervisor started after another died knows
//! every attempt's end (or that it was lost). A start is written before the
//! job starts and again, with its pid, before the gate hears of it; a start
//! that cannot be written (a full or failing disk) is refused. The other
//! lines of one turn of the main loop (ends, forgets) go out in one write;
//! should that fail, the gate still hears of the ends (gantryd records them)
//! and a later supervisor would report those jobs lost instead. Lines are not
//! fsynced: a machine crash ends the jobs too, and gantryd starts again what
//! its gate no longer lists.

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
    /// An attempt as a whole: written when its job starts (or could not),
    /// and by compaction.
    Known(Known),
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
    /// Lines in the file (and in `unwritten`).
    lines: usize,
    /// Lines appended but not written yet (see [`Journal::write`]).
    unwritten: Vec<u8>,
    /// The last write failed and may have left half a line.
    torn: bool,
}

impl Journal {
    /// Open (creating) the journal at `path` and fold it into the attempts
    /// it describes. A torn last line (a supervisor killed mid-write) is skipped.
    pub fn open(path: &Path) -> io::Result<(Self, HashMap<String, Known>)> {
        let mut known = HashMap::new();
        let mut lines = 0;
        if let Ok(file) = File::open(path) {
            // Bytes, not text: a line torn inside a UTF-8 sequence is skipped
            // like any other torn line.
            for bytes in BufReader::new(file).split(b'\n') {
                let bytes = bytes?;
                if bytes.is_empty() {
                    continue;
                }
                lines += 1;
                match serde_json::from_slice::<Entry>(&bytes) {
                    Ok(entry) => fold(&mut known, entry),
                    Err(e) => note!("gantry-supervisor: skipping a journal line: {e}"),
                }
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let journal = Self {
            path: path.to_path_buf(),
            file,
            lines,
            unwritten: Vec::new(),
            torn: false,
        };
        Ok((journal, known))
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `entry` (written by the next [`Journal::write`]).
    pub fn append(&mut self, entry: &Entry) {
        self.lines += 1;
        self.unwritten.extend_from_slice(&line(entry));
    }

    /// Write what was appended, in one write. What a failed write did not
    /// write is dropped; the next write first ends the torn line, so the
    /// lines after it read whole.
    pub fn write(&mut self) -> io::Result<()> {
        if self.unwritten.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.unwritten.insert(0, b'\n');
        }
        let result = self.file.write_all(&self.unwritten);
        self.unwritten.clear();
        self.torn = result.is_err();
        result
    }

    /// Whether the file holds many more lines than `live` attempts need.
    pub fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 4 * live + 4096
    }

    /// Rewrite the journal as one line per attempt in `known` (temp file +
    /// rename, so a crash leaves the old or the new one whole).
    pub fn compact<'a>(&mut self, known: impl Iterator<Item = &'a Known>) -> io::Result<()> {
        // What this turn appended goes to the old file first: should the
        // rewrite fail, nothing the gate is told is missing from it.
        self.write()?;
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
        self.torn = false;
        Ok(())
    }
}

/// Apply one entry to the attempts it describes.
pub fn fold(known: &mut HashMap<String, Known>, entry: Entry) {
    match entry {
        Entry::Known(k) => {
            known.insert(k.attempt.clone(), k);
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
        for (a, pid) in [("a1", 7), ("a2", 8), ("a3", 9)] {
            j.append(&Entry::Known(Known {
                attempt: a.into(),
                meta: serde_json::json!({"job": a}),
                pid,
                start_ticks: 1,
                start_ms: 1,
                exit: None,
                held: serde_json::Value::Null,
            }));
        }
        j.append(&Entry::Exit {
            attempt: "a1".into(),
            exit: exit(),
        });
        j.append(&Entry::Forget {
            attempt: "a2".into(),
        });
        j.write().unwrap();
        // A torn last line is skipped.
        j.file.write_all(b"{\"j\":\"exit\",\"att").unwrap();
        drop(j);

        let (mut j, known) = Journal::open(&path).unwrap();
        assert_eq!(known.len(), 2);
        assert_eq!(known["a1"].pid, 7);
        assert_eq!(known["a1"].exit, Some(exit()));
        assert_eq!(known["a3"].exit, None);
        assert_eq!(known["a3"].meta["job"], "a3");
        j.compact(known.values()).unwrap();
        drop(j);

        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 2);
        let (_, again) = Journal::open(&path).unwrap();
        assert_eq!(again, known);
    }
}
