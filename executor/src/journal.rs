//! The journal: an append-only record, next to the log, of each command that
//! finished, with the hashes of its outputs. Each entry is one JSON line,
//! written and `fsync`ed before the next command starts, so after a crash
//! or a SIGKILL the journal says exactly which commands completed.
//!
//! `replay --resume` skips a command only if its entry matches the command
//! as it is now (a hash of the whole command) and every output still has
//! the recorded hash; anything else runs again. A final line cut short by a
//! crash is ignored.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};

use cmdlog::Command;
use sha2::{Digest, Sha256};

/// One finished command.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// The command's id.
    pub id: u64,
    /// The sha256 of the command as it was run.
    pub command: String,
    /// Each declared output and the sha256 of its contents.
    pub outputs: Vec<(String, String)>,
    /// Each declared input inside the root and the sha256 of its contents
    /// when the command ran ([`NOT_A_FILE`] if it was not a regular file).
    /// An entry from before this field has none, so it never matches a
    /// command with inputs: such commands rerun.
    #[serde(default)]
    pub inputs: Vec<(String, String)>,
}

/// The hash recorded for an input that is not a regular file.
pub const NOT_A_FILE: &str = "-";

/// The `(input, hash)` pairs of a command's inputs inside `root`.
pub fn input_hashes(command: &Command, root: &Path) -> Vec<(String, String)> {
    command
        .inputs
        .iter()
        .filter(|input| !cmdlog::path::is_absolute(input))
        .map(|input| {
            let path = root.join(input);
            let hash = match fs::metadata(&path) {
                Ok(meta) if meta.is_file() => file_hash(&path).ok(),
                _ => None,
            };
            (input.clone(), hash.unwrap_or_else(|| NOT_A_FILE.to_owned()))
        })
        .collect()
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening, writing or syncing it failed.
    #[error("cannot write the journal `{}`", path.display())]
    Write {
        /// The journal.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Reading it for `--resume` failed.
    #[error("cannot read the journal `{}`", path.display())]
    Read {
        /// The journal.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// An open journal, appending.
pub struct Journal {
    file: File,
    path: PathBuf,
}

/// The journal's path for a log: `LOG.journal`.
pub fn path_for(log: &Path) -> PathBuf {
    let mut name = log
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(".journal");
    log.with_file_name(name)
}

impl Journal {
    /// Starts a new, empty journal at `path` (a fresh run).
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let file = no_follow()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|source| JournalError::Write {
                path: path.to_owned(),
                source,
            })?;
        Ok(Journal {
            file,
            path: path.to_owned(),
        })
    }

    /// Opens `path` to resume: returns the journal, appending, and the
    /// entries it holds by id (the last entry for an id wins).
    pub fn resume(path: &Path) -> Result<(Journal, HashMap<u64, Entry>), JournalError> {
        let read_error = |source| JournalError::Read {
            path: path.to_owned(),
            source,
        };
        let mut entries = HashMap::new();
        match no_follow().read(true).open(path) {
            Ok(file) => {
                for line in BufReader::new(file).lines() {
                    let line = line.map_err(read_error)?;
                    // A line cut short by a crash does not parse: it is the
                    // last one, and its command did not finish.
                    if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
                        entries.insert(entry.id, entry);
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(read_error(error)),
        }
        let file = no_follow()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|source| JournalError::Write {
                path: path.to_owned(),
                source,
            })?;
        // A torn last line would glue itself to the next entry: start on a
        // fresh line.
        let mut journal = Journal {
            file,
            path: path.to_owned(),
        };
        journal.write_all(b"\n")?;
        Ok((journal, entries))
    }

    /// Appends `entry` and makes it durable before returning.
    pub fn record(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| JournalError::Write {
            path: self.path.clone(),
            source: io::Error::from(e),
        })?;
        line.push(b'\n');
        self.write_all(&line)
    }

    fn write_all(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        self.file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })
    }
}

/// Options that refuse to follow a symlink in the last component: a tool
/// can write in the root, where the journal lives, and must not turn it
/// into a link to a file outside.
pub(crate) fn no_follow() -> OpenOptions {
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = OpenOptions::new();
    options.custom_flags(libc::O_NOFOLLOW);
    options
}

/// The sha256 of a command, as the journal identifies it.
pub fn command_hash(command: &Command) -> String {
    let bytes = serde_json::to_vec(command).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

/// The sha256 of a file's contents.
pub fn file_hash(path: &Path) -> io::Result<String> {
    hash_reader(&mut File::open(path)?)
}

/// The sha256 of what `file` reads to its end, as [`file_hash`] gives it.
pub fn hash_reader(file: &mut impl Read) -> io::Result<String> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 64 << 10];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// Whether `entry` shows `command` finished and its outputs under `root`
/// are still what it wrote.
pub fn still_done(entry: &Entry, command: &Command, root: &Path) -> bool {
    entry.command == command_hash(command)
        // Inputs changed since (by a command rerun in an earlier, cut-short
        // resume, or by hand): the outputs are stale even if untouched.
        && entry.inputs == input_hashes(command, root)
        && entry.outputs.len() == command.outputs.len()
        && entry
            .outputs
            .iter()
            .zip(&command.outputs)
            .all(|((path, hash), declared)| {
                path == declared
                    && fs::metadata(root.join(declared)).is_ok_and(|m| m.is_file())
                    && file_hash(&root.join(declared)).is_ok_and(|now| &now == hash)
            })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: u64, output: &str) -> Command {
        Command {
            id,
            tool: cmdlog::ToolKind::Opt,
            program: "opt".into(),
            args: vec![],
            cwd: ".".into(),
            env: Default::default(),
            inputs: vec![],
            outputs: vec![output.into()],
            cache_key: None,
        }
    }

    #[test]
    fn entries_survive_a_torn_last_line_and_resume_appends() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let path = root.join("log.json.journal");
        fs::write(root.join("a.o"), "A").unwrap();
        let a = command(1, "a.o");
        let entry = Entry {
            id: 1,
            command: command_hash(&a),
            outputs: vec![("a.o".into(), file_hash(&root.join("a.o")).unwrap())],
            inputs: vec![],
        };
        let mut journal = Journal::create(&path).unwrap();
        journal.record(&entry).unwrap();
        // A crash in the middle of the next entry.
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"id":2,"comm"#).unwrap();
        drop(file);

        let (mut journal, entries) = Journal::resume(&path).unwrap();
        assert_eq!(entries.len(), 1);
        assert!(still_done(&entries[&1], &a, root));
        journal
            .record(&Entry {
                id: 2,
                ..entry.clone()
            })
            .unwrap();
        let (_, entries) = Journal::resume(&path).unwrap();
        assert_eq!(
            entries.keys().copied().max(),
            Some(2),
            "the new entry parses"
        );
    }

    #[test]
    fn a_changed_output_or_command_is_not_done() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.o"), "A").unwrap();
        let a = command(1, "a.o");
        let entry = Entry {
            id: 1,
            command: command_hash(&a),
            outputs: vec![("a.o".into(), file_hash(&root.join("a.o")).unwrap())],
            inputs: vec![],
        };
        assert!(still_done(&entry, &a, root));
        let mut changed = a.clone();
        changed.args.push("-O3".into());
        assert!(!still_done(&entry, &changed, root));
        fs::write(root.join("a.o"), "B").unwrap();
        assert!(!still_done(&entry, &a, root));
        fs::remove_file(root.join("a.o")).unwrap();
        assert!(!still_done(&entry, &a, root));
    }

    #[test]
    fn a_changed_input_is_not_done_even_with_the_output_untouched() {
        // Regression: a resume cut short after rerunning the producer of
        // `a.txt` left the consumer's old entry, whose output `b.txt` was
        // untouched, so the next resume skipped it with a stale `b.txt`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.txt"), "old").unwrap();
        fs::write(root.join("b.txt"), "from old").unwrap();
        let mut b = command(2, "b.txt");
        b.inputs = vec!["a.txt".into(), "/usr/lib/libm.so".into()];
        let entry = Entry {
            id: 2,
            command: command_hash(&b),
            outputs: vec![("b.txt".into(), file_hash(&root.join("b.txt")).unwrap())],
            inputs: input_hashes(&b, root),
        };
        assert_eq!(entry.inputs.len(), 1, "system inputs are not hashed");
        assert!(still_done(&entry, &b, root));
        fs::write(root.join("a.txt"), "new").unwrap();
        assert!(!still_done(&entry, &b, root));
        // An entry written before inputs were recorded never matches.
        let old = Entry {
            inputs: vec![],
            ..entry
        };
        fs::write(root.join("a.txt"), "old").unwrap();
        assert!(!still_done(&old, &b, root));
    }

    #[test]
    fn the_journal_sits_next_to_the_log() {
        assert_eq!(
            path_for(Path::new("/w/log.json")),
            Path::new("/w/log.json.journal")
        );
    }
}
