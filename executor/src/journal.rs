//! The journal: an append-only record, next to the log, of each command that
//! finished, with the hashes of its outputs. Each entry is one JSON line,
//! written (`write(2)`, no user-space buffer) before the next command
//! starts, so after a SIGKILL of `replay` the journal says exactly which
//! commands completed: what is written is in the kernel, whatever happens
//! to the process.
//!
//! Durability against a crash of the machine (power, kernel) is a group
//! commit: a syncer thread `fdatasync`s the journal whenever entries were
//! written since its last sync, off the commands' path, so one sync covers
//! every entry written while the previous one was in flight. Such a crash
//! can lose the entries of the last sync's window (a few milliseconds of
//! commands): `--resume` then runs them again. It never skips a command it
//! should not, because it trusts no entry blindly: see below.
//!
//! `replay --resume` skips a command only if its entry matches the command
//! as it is now (a hash of the whole command) and every output still has
//! the recorded hash; anything else runs again. A final line cut short by a
//! crash is ignored.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use cmdlog::Command;
use sha2::{Digest, Sha256};

use crate::ownfile::{self, OwnFileError};

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
    /// Whether the outputs were restored from the action cache rather
    /// than made by the tool.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cached: bool,
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

/// The first input whose hash differs between `before` and `after`
/// ([`input_hashes`] of `command` before its tool started and after it
/// exited), ignoring inputs that are also declared outputs (a command may
/// update a file in place).
pub fn changed_input<'a>(
    command: &Command,
    before: &'a [(String, String)],
    after: &[(String, String)],
) -> Option<&'a str> {
    before
        .iter()
        .zip(after)
        .find(|((path, old), (_, new))| old != new && !command.outputs.contains(path))
        .map(|((path, _), _)| path.as_str())
}

/// The failure of a command whose input `path` changed while it ran.
pub fn changed_input_message(path: &str) -> String {
    format!(
        "the input `{path}` changed while the tool ran, so its outputs may be built from the old contents: they were not kept, nor journaled; run again to build from `{path}` as it is now"
    )
}

/// Why the journal cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Opening or creating it failed, or what holds its name is not a
    /// journal `replay` may use (a link, a FIFO, someone else's file).
    #[error("cannot use the journal")]
    Open(#[source] OwnFileError),
    /// Writing or syncing it failed.
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

impl JournalError {
    /// What the user can do about it. Never "`--resume`": the journal is
    /// what `--resume` needs, and it is what just failed.
    pub fn hint(&self) -> String {
        match self {
            JournalError::Open(error) => format!(
                "move `{}` out of the way (replay never writes through a link, a FIFO or another user's file), then run again; without a journal every command runs",
                error.path().display()
            ),
            JournalError::Write { path, .. } | JournalError::Read { path, .. } => format!(
                "check the space and permissions of the directory that holds `{}`, then run again",
                path.display()
            ),
        }
    }
}

/// An open journal, appending; its entries are made durable by a syncer
/// thread ([`Journal::finish`] waits for the last sync).
pub struct Journal {
    file: Arc<File>,
    path: PathBuf,
    syncer: Option<Syncer>,
}

/// The group commit: what was written, what is durable, and the thread
/// that syncs the one up to the other.
struct Syncer {
    shared: Arc<SyncShared>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The state the syncer thread and the writer share.
#[derive(Default)]
struct SyncShared {
    progress: Mutex<Progress>,
    changed: Condvar,
}

/// How far writing and syncing have come.
#[derive(Default)]
struct Progress {
    /// Writes made (each a whole line).
    written: u64,
    /// Writes known durable.
    synced: u64,
    /// The first failed sync, kept for the next write or [`Journal::finish`].
    failed: Option<(io::ErrorKind, String)>,
    /// No more writes come: sync what there is, then stop.
    closing: bool,
}

/// Set in `replay`'s environment by a test, the syncer never syncs: a
/// SIGKILL then always falls between entries and their sync (what
/// `--resume` must handle exactly). It weakens durability against a
/// machine crash only, never what a run does.
const HOLD_SYNC_VAR: &str = "REPLAY_TEST_HOLD_JOURNAL_SYNC";

impl Syncer {
    fn start(file: Arc<File>) -> io::Result<Syncer> {
        let shared = Arc::new(SyncShared::default());
        let hold = std::env::var_os(HOLD_SYNC_VAR).is_some();
        let thread = std::thread::Builder::new()
            .name("journal-sync".into())
            .spawn({
                let shared = Arc::clone(&shared);
                move || sync_loop(&file, &shared, hold)
            })?;
        Ok(Syncer {
            shared,
            thread: Some(thread),
        })
    }

    /// Counts one more write; the error of an earlier failed sync, if any.
    fn wrote(&self) -> io::Result<()> {
        let mut progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((kind, message)) = &progress.failed {
            return Err(io::Error::new(*kind, message.clone()));
        }
        progress.written += 1;
        self.shared.changed.notify_all();
        Ok(())
    }

    /// Waits until every write is synced, stops the thread, and returns
    /// the first failed sync's error, if any.
    fn close(&mut self) -> io::Result<()> {
        {
            let mut progress = self
                .shared
                .progress
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            progress.closing = true;
            self.shared.changed.notify_all();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let progress = self
            .shared
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        match &progress.failed {
            Some((kind, message)) => Err(io::Error::new(*kind, message.clone())),
            None => Ok(()),
        }
    }
}

/// The syncer thread: syncs whenever writes are ahead of the last sync,
/// until closed with nothing left to sync (or a sync failed).
fn sync_loop(file: &File, shared: &SyncShared, hold: bool) {
    let mut progress = shared.progress.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        while progress.written == progress.synced && !progress.closing {
            progress = shared
                .changed
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
        }
        if progress.written == progress.synced || progress.failed.is_some() {
            return;
        }
        if hold {
            if progress.closing {
                return;
            }
            progress = shared
                .changed
                .wait(progress)
                .unwrap_or_else(|p| p.into_inner());
            continue;
        }
        let target = progress.written;
        drop(progress);
        let synced = file.sync_data();
        progress = shared.progress.lock().unwrap_or_else(|p| p.into_inner());
        match synced {
            Ok(()) => progress.synced = target,
            Err(error) => progress.failed = Some((error.kind(), error.to_string())),
        }
        shared.changed.notify_all();
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(mut syncer) = self.syncer.take() {
            let _ = syncer.close();
        }
    }
}

/// What `--resume` found in a journal.
pub struct Resumed {
    /// The journal, appending.
    pub journal: Journal,
    /// Its entries by id (the last entry for an id wins).
    pub entries: HashMap<u64, Entry>,
    /// Lines that are not entries (garbage, binary or text, or lines over
    /// [`MAX_LINE_BYTES`]), not counting a last line cut short by a crash.
    /// Their commands run again.
    pub ignored_lines: u64,
}

/// The longest journal line read; a longer one is skipped, unread, as
/// garbage. An entry holds two hashes per declared file, so this allows
/// far more files than a command may name.
pub const MAX_LINE_BYTES: usize = 64 << 20;

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
    /// Starts a new, empty journal at `path` (a fresh run). Whatever held
    /// the name is unlinked, never written through ([`ownfile::create_fresh`]).
    pub fn create(path: &Path) -> Result<Journal, JournalError> {
        let file = ownfile::create_fresh(path).map_err(JournalError::Open)?;
        Journal::with_syncer(file, path)
    }

    /// The journal on `file`, with its syncer thread started.
    fn with_syncer(file: File, path: &Path) -> Result<Journal, JournalError> {
        let file = Arc::new(file);
        let syncer = Syncer::start(Arc::clone(&file)).map_err(|source| JournalError::Write {
            path: path.to_owned(),
            source,
        })?;
        Ok(Journal {
            file,
            path: path.to_owned(),
            syncer: Some(syncer),
        })
    }

    /// Opens `path` to resume: the journal, appending, and the entries it
    /// holds. Refuses a journal that is not `replay`'s own regular file
    /// ([`ownfile::open_existing`]); starts a new one if there is none.
    pub fn resume(path: &Path) -> Result<Resumed, JournalError> {
        let Some(mut file) = ownfile::open_existing(path).map_err(JournalError::Open)? else {
            return Ok(Resumed {
                journal: Journal::create(path)?,
                entries: HashMap::new(),
                ignored_lines: 0,
            });
        };
        let (entries, ignored_lines) =
            read_entries(&mut file).map_err(|source| JournalError::Read {
                path: path.to_owned(),
                source,
            })?;
        // A torn last line would glue itself to the next entry: start on a
        // fresh line.
        let mut journal = Journal::with_syncer(file, path)?;
        journal.write_all(b"\n")?;
        Ok(Resumed {
            journal,
            entries,
            ignored_lines,
        })
    }

    /// Appends `entry`: written when this returns (a SIGKILL of `replay`
    /// cannot lose it), durable soon after (the syncer's next sync).
    pub fn record(&mut self, entry: &Entry) -> Result<(), JournalError> {
        let mut line = serde_json::to_vec(entry).map_err(|e| JournalError::Write {
            path: self.path.clone(),
            source: io::Error::from(e),
        })?;
        line.push(b'\n');
        self.write_all(&line)
    }

    /// Writes `bytes` in one go and counts them for the syncer.
    fn write_all(&mut self, bytes: &[u8]) -> Result<(), JournalError> {
        (&*self.file)
            .write_all(bytes)
            .and_then(|()| match &self.syncer {
                Some(syncer) => syncer.wrote(),
                None => self.file.sync_data(),
            })
            .map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            })
    }

    /// Waits until every entry written is durable, and stops the syncer:
    /// the end of a run. Later entries, if any, are synced as they are
    /// written.
    pub fn finish(&mut self) -> Result<(), JournalError> {
        match self.syncer.take() {
            Some(mut syncer) => syncer.close().map_err(|source| JournalError::Write {
                path: self.path.clone(),
                source,
            }),
            None => Ok(()),
        }
    }
}

/// The journal a run writes to, the entries `--resume` may skip, and how
/// many lines of the old journal were not entries.
pub fn open_for_run(
    path: &Path,
    resume: bool,
) -> Result<(Journal, HashMap<u64, Entry>, u64), JournalError> {
    if resume {
        let resumed = Journal::resume(path)?;
        Ok((resumed.journal, resumed.entries, resumed.ignored_lines))
    } else {
        Ok((Journal::create(path)?, HashMap::new(), 0))
    }
}

/// The warning for `ignored` lines of the journal at `path` that are not
/// entries, if any.
pub fn ignored_warning(path: &Path, ignored: u64) -> Option<String> {
    (ignored > 0).then(|| {
        let (lines, what, commands) = if ignored == 1 {
            (
                "line",
                "is not a journal entry",
                "the command it may have recorded runs",
            )
        } else {
            (
                "lines",
                "are not journal entries",
                "the commands they may have recorded run",
            )
        };
        format!(
            "ignored {ignored} {lines} of the journal `{}` that {what} (damaged, or not a journal); {commands} again",
            path.display()
        )
    })
}

/// Reads every line of a journal: the entries by id, and how many lines
/// were not entries. Any bytes are accepted (binary garbage is ignored
/// as text garbage is); a last line with no newline is one a crash cut
/// short, and is dropped silently.
pub fn read_entries(input: impl Read) -> io::Result<(HashMap<u64, Entry>, u64)> {
    let mut entries = HashMap::new();
    let mut ignored = 0u64;
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let (ended, too_long) = read_line(&mut reader, &mut line)?;
        if line.is_empty() && !too_long && !ended {
            break;
        }
        let entry = if too_long {
            None
        } else {
            serde_json::from_slice::<Entry>(&line).ok()
        };
        match entry {
            Some(entry) => {
                entries.insert(entry.id, entry);
            }
            // Blank lines separate resumed runs' entries.
            None if !too_long && line.iter().all(u8::is_ascii_whitespace) => {}
            // A line cut short by a crash: the last, with no newline.
            None if !ended => {}
            None => ignored += 1,
        }
        if !ended {
            break;
        }
    }
    Ok((entries, ignored))
}

/// Reads one line into `line` (without its newline), keeping at most
/// [`MAX_LINE_BYTES`]: returns whether a newline ended it, and whether it
/// was longer (then `line` is cleared and the rest skipped).
fn read_line(reader: &mut impl BufRead, line: &mut Vec<u8>) -> io::Result<(bool, bool)> {
    let mut too_long = false;
    loop {
        let buffer = match reader.fill_buf() {
            Ok(buffer) => buffer,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error),
        };
        if buffer.is_empty() {
            return Ok((false, too_long));
        }
        let (chunk, ended) = match buffer.iter().position(|&b| b == b'\n') {
            Some(at) => (&buffer[..at], true),
            None => (buffer, false),
        };
        if !too_long {
            if line.len() + chunk.len() > MAX_LINE_BYTES {
                too_long = true;
                line.clear();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = chunk.len() + usize::from(ended);
        reader.consume(used);
        if ended {
            return Ok((true, too_long));
        }
    }
}

/// The sha256 of a command, as the journal identifies it.
pub fn command_hash(command: &Command) -> String {
    let bytes = serde_json::to_vec(command).unwrap_or_default();
    hex(&Sha256::digest(&bytes))
}

/// The sha256 of a file's contents. The open cannot block (a FIFO put
/// in a regular file's place is refused, not waited on).
pub fn file_hash(path: &Path) -> io::Result<String> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    hash_reader(&mut file)
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
                path == declared && output_hash(&root.join(declared)) == *hash
            })
}

/// The hash recorded for an output a built-in `remove` or `rename` took
/// away.
pub const ABSENT: &str = "absent";

/// The hash of a symbolic link an output is: of the text it holds, marked
/// so it never equals a file's.
pub fn link_hash(target: &[u8]) -> String {
    format!("link:{}", hex(&Sha256::digest(target)))
}

/// What an output is now, as the journal records it: a regular file's
/// [`file_hash`], a symbolic link's [`link_hash`] (not followed),
/// [`ABSENT`], or [`NOT_A_FILE`].
pub fn output_hash(path: &Path) -> String {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => fs::read_link(path)
            .map(|target| link_hash(target.as_os_str().as_encoded_bytes()))
            .unwrap_or_else(|_| NOT_A_FILE.to_owned()),
        Ok(meta) if meta.is_file() => file_hash(path).unwrap_or_else(|_| NOT_A_FILE.to_owned()),
        Ok(_) => NOT_A_FILE.to_owned(),
        Err(error) if error.kind() == io::ErrorKind::NotFound => ABSENT.to_owned(),
        Err(_) => NOT_A_FILE.to_owned(),
    }
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
            cached: false,
        };
        let mut journal = Journal::create(&path).unwrap();
        journal.record(&entry).unwrap();
        // A crash in the middle of the next entry.
        let mut file = fs::OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"id":2,"comm"#).unwrap();
        drop(file);

        let Resumed {
            mut journal,
            entries,
            ignored_lines,
        } = Journal::resume(&path).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(ignored_lines, 0, "a torn last line is not garbage");
        assert!(still_done(&entries[&1], &a, root));
        journal
            .record(&Entry {
                id: 2,
                ..entry.clone()
            })
            .unwrap();
        let entries = Journal::resume(&path).unwrap().entries;
        assert_eq!(
            entries.keys().copied().max(),
            Some(2),
            "the new entry parses"
        );
    }

    #[test]
    fn closing_the_syncer_waits_until_every_write_is_synced() {
        let dir = tempfile::tempdir().unwrap();
        let file = Arc::new(File::create(dir.path().join("j")).unwrap());
        let mut syncer = Syncer::start(Arc::clone(&file)).unwrap();
        for _ in 0..100 {
            (&*file).write_all(b"{}\n").unwrap();
            syncer.wrote().unwrap();
        }
        syncer.close().unwrap();
        let progress = syncer.shared.progress.lock().unwrap();
        assert_eq!((progress.written, progress.synced), (100, 100));
    }

    #[test]
    fn a_failed_sync_fails_the_next_write_and_the_close() {
        // `fdatasync` of a pipe fails (EINVAL), as a failing disk would.
        let (_read, write) = nix::unistd::pipe().unwrap();
        let file = Arc::new(File::from(write));
        let mut syncer = Syncer::start(file).unwrap();
        syncer.wrote().unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        let refused = loop {
            if let Err(error) = syncer.wrote() {
                break error;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the failure never showed"
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        assert_eq!(refused.kind(), io::ErrorKind::InvalidInput);
        assert!(syncer.close().is_err());
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
            cached: false,
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
            cached: false,
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
    fn binary_and_text_garbage_are_ignored_alike_and_counted() {
        // Regression: binary garbage stopped `--resume` ("not valid
        // UTF-8") while text garbage was silently ignored.
        let entry = Entry {
            id: 3,
            command: "c".into(),
            outputs: vec![],
            inputs: vec![],
            cached: false,
        };
        let mut bytes = serde_json::to_vec(&entry).unwrap();
        bytes.extend_from_slice(b"\nnot an entry\n\xff\xfe\x00binary\n\n");
        let (entries, ignored) = read_entries(&bytes[..]).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(ignored, 2);
        // A torn last line (no newline) is not counted.
        bytes.extend_from_slice(br#"{"id":4,"co"#);
        let (entries, ignored) = read_entries(&bytes[..]).unwrap();
        assert_eq!((entries.len(), ignored), (1, 2));
    }

    #[test]
    fn an_overlong_line_is_skipped_not_held() {
        let mut bytes = vec![b'x'; MAX_LINE_BYTES + 10];
        bytes.push(b'\n');
        let entry = Entry {
            id: 1,
            command: "c".into(),
            outputs: vec![],
            inputs: vec![],
            cached: false,
        };
        bytes.extend_from_slice(&serde_json::to_vec(&entry).unwrap());
        bytes.push(b'\n');
        let (entries, ignored) = read_entries(&bytes[..]).unwrap();
        assert_eq!((entries.len(), ignored), (1, 1));
    }

    #[test]
    fn a_hard_linked_journal_is_never_written_through() {
        // Regression (issue 13): a planted `log.json.journal` hard link to
        // a file outside the root was truncated and rewritten.
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::write(&outside, "precious").unwrap();
        let path = dir.path().join("log.json.journal");
        fs::hard_link(&outside, &path).unwrap();
        assert!(matches!(Journal::resume(&path), Err(JournalError::Open(_))));
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
        Journal::create(&path).unwrap();
        assert_eq!(fs::read_to_string(&outside).unwrap(), "precious");
    }

    #[test]
    fn an_input_changed_while_the_tool_ran_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("in.txt"), "old").unwrap();
        fs::write(root.join("lib.a"), "lib").unwrap();
        let mut c = command(1, "lib.a");
        c.inputs = vec!["lib.a".into(), "in.txt".into()];
        let before = input_hashes(&c, root);
        assert_eq!(changed_input(&c, &before, &input_hashes(&c, root)), None);
        // An output updated in place is not a changed input.
        fs::write(root.join("lib.a"), "lib+").unwrap();
        assert_eq!(changed_input(&c, &before, &input_hashes(&c, root)), None);
        fs::write(root.join("in.txt"), "new").unwrap();
        assert_eq!(
            changed_input(&c, &before, &input_hashes(&c, root)),
            Some("in.txt")
        );
        fs::remove_file(root.join("in.txt")).unwrap();
        assert_eq!(
            changed_input(&c, &before, &input_hashes(&c, root)),
            Some("in.txt")
        );
    }

    #[test]
    fn the_journal_sits_next_to_the_log() {
        assert_eq!(
            path_for(Path::new("/w/log.json")),
            Path::new("/w/log.json.journal")
        );
    }
}
