//! Atomic, confined outputs: each command writes its declared outputs into
//! a private staging directory of its own, the only place in the work root
//! the sandbox lets it write, and only after it succeeded are they moved
//! into place. A tool that fails, is killed, or is interrupted leaves the
//! previous outputs exactly as they were; whatever it wrote that was not
//! declared is never committed, and is reported.
//!
//! The layout, under the work root:
//!
//! ```text
//! .replay-stage/                 replay's own, made fresh by each run (StageBase)
//!   RUN-ID/                      one command (RUN: this run's id)
//!     out/DECLARED/OUTPUT        the declared outputs, mirrored by path
//!     tmp/                       the tool's TMPDIR
//! ```
//!
//! The executor knows which arguments name declared outputs (the policy
//! insists that outputs are named by arguments), so it rewrites those
//! arguments to the staged paths: a whole argument (`p0.o`), the value of
//! an `=` flag (`-Map=out.map`), glued to `-o` (`-oout.o`), or an item of a
//! `-Wl,` list. An output that no argument names is expected where the
//! tool derives it from a named one (`-MD` writes `p0.d` beside `p0.o`):
//! mirroring by path puts it at its staged path too.
//!
//! Tools write output names into what they produce. The one case a staged
//! path would change on Linux, the target of a `-M` dependency file (clang
//! takes it from `-o`), is pinned to the declared name with `-MQ`
//! ([`dependency_target`]), so a staged run gives the same bytes as an
//! unstaged one.
//!
//! The commit is one `renameat2(RENAME_EXCHANGE)` per output, so the
//! previous version stays in the staging directory until every output is in
//! place (a failure half-way exchanges them back), then the directory goes.
//! Nothing in the root but the declared outputs is ever renamed, and no
//! file is recognised by its name: a run removes only the staging
//! directories under its own `.replay-stage`, which it checked is a real
//! directory of its user, and leftovers of earlier runs there are deleted,
//! never moved into the root.

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use cmdlog::path::normalize_under;

/// The directory under the work root that holds every command's staging.
pub const STAGE_DIR: &str = ".replay-stage";

/// Why outputs could not be staged or committed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A declared output leaves the work root (the reader and the policy
    /// refuse this first; this is a last line of defence).
    #[error("output `{0}` is not inside the work root")]
    Escapes(String),
    /// A declared output lies in `replay`'s own staging directory.
    #[error("output `{0}` is inside `.replay-stage`, which `replay` keeps for itself")]
    Reserved(String),
    /// The staging base is not a directory of this user that `replay` can
    /// trust (a symlink, another user's, a file).
    #[error("`{}` is not a directory `replay` made: {reason}", path.display())]
    Untrusted {
        /// The base.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Making a staging directory failed.
    #[error("cannot make the staging directory `{}`", path.display())]
    Make {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The tool succeeded but did not write a declared output.
    #[error("the tool exited 0 but did not write the declared output `{0}`")]
    Missing(String),
    /// The tool left something other than a plain file as an output.
    #[error("the tool left `{path}` as {what}, not a regular file; it is not committed")]
    NotRegular {
        /// The output.
        path: String,
        /// What it is.
        what: &'static str,
    },
    /// Renaming a finished output into place failed.
    #[error("cannot move the new `{path}` into place")]
    Commit {
        /// The output.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// `.replay-stage` of one run: checked, cleared of earlier runs' leftovers,
/// and removed when the run ends.
#[derive(Debug)]
pub struct StageBase {
    root: PathBuf,
    path: PathBuf,
    run: String,
    janitor: Janitor,
}

/// Removes committed commands' staging directories in the background, off
/// the path of the next command (a `remove_dir_all` of a few directories
/// and the outputs' previous versions costs a few hundred microseconds on
/// ext4). The run's end waits for it ([`StageBase`]'s drop).
#[derive(Debug, Clone, Default)]
struct Janitor {
    queue: std::sync::Arc<(std::sync::Mutex<JanitorQueue>, std::sync::Condvar)>,
}

/// The directories waiting for the janitor, whether the run ended, and
/// the janitor's thread once started.
#[derive(Debug, Default)]
struct JanitorQueue {
    dirs: Vec<PathBuf>,
    closed: bool,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Janitor {
    /// Queues `dir` for removal; `false` once the run ended or the thread
    /// cannot start (the caller removes it itself then).
    fn remove_later(&self, dir: &Path) -> bool {
        let (lock, wake) = &*self.queue;
        let Ok(mut queue) = lock.lock() else {
            return false;
        };
        if queue.closed {
            return false;
        }
        if queue.thread.is_none() {
            let janitor = self.clone();
            let Ok(thread) = std::thread::Builder::new()
                .name("replay-janitor".into())
                .spawn(move || janitor.work())
            else {
                return false;
            };
            queue.thread = Some(thread);
        }
        queue.dirs.push(dir.to_owned());
        wake.notify_one();
        true
    }

    /// The thread: removes each queued directory until the run ends and
    /// the queue is empty.
    fn work(&self) {
        let (lock, wake) = &*self.queue;
        loop {
            let next = {
                let Ok(mut queue) = lock.lock() else { return };
                loop {
                    if let Some(dir) = queue.dirs.pop() {
                        break Some(dir);
                    }
                    if queue.closed {
                        break None;
                    }
                    queue = match wake.wait(queue) {
                        Ok(queue) => queue,
                        Err(_) => return,
                    };
                }
            };
            let Some(dir) = next else { return };
            // `remove_dir_all` does not follow symbolic links.
            let _ = fs::remove_dir_all(&dir);
        }
    }

    /// Ends the run: every queued directory is removed when this returns
    /// (the thread empties the queue, then ends).
    fn finish(&self) {
        let (lock, wake) = &*self.queue;
        let thread = match lock.lock() {
            Ok(mut queue) => {
                queue.closed = true;
                wake.notify_all();
                queue.thread.take()
            }
            Err(_) => None,
        };
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }
}

impl StageBase {
    /// Opens (making it if needed) `ROOT/.replay-stage` for a new run, and
    /// deletes what killed runs left in it. The caller holds the root for
    /// this run alone.
    pub fn open(root: &Path) -> Result<StageBase, StagingError> {
        let path = root.join(STAGE_DIR);
        match fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => return Err(StagingError::Make { path, source }),
        }
        let meta = fs::symlink_metadata(&path).map_err(|source| StagingError::Make {
            path: path.clone(),
            source,
        })?;
        let untrusted = |reason: &str| StagingError::Untrusted {
            path: path.clone(),
            reason: reason.to_owned(),
        };
        if meta.file_type().is_symlink() {
            return Err(untrusted("it is a symbolic link"));
        }
        if !meta.is_dir() {
            return Err(untrusted("it is not a directory"));
        }
        // SAFETY: `geteuid` takes no arguments and cannot fail.
        let uid = unsafe { libc::geteuid() };
        if meta.uid() != uid {
            return Err(untrusted(&format!(
                "it belongs to uid {}, not to this user ({uid})",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted("others may write to it"));
        }
        // Leftovers of killed runs: deleted, never moved into the root.
        // `remove_dir_all` does not follow symbolic links.
        if let Ok(entries) = fs::read_dir(&path) {
            for entry in entries.flatten() {
                let leftover = entry.path();
                let _ = match entry.file_type() {
                    Ok(kind) if kind.is_dir() => fs::remove_dir_all(&leftover),
                    _ => fs::remove_file(&leftover),
                };
            }
        }
        Ok(StageBase {
            root: root.to_owned(),
            path,
            run: run_id(),
            janitor: Janitor::default(),
        })
    }

    /// The base directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for StageBase {
    fn drop(&mut self) {
        self.janitor.finish();
        // Empty once every command committed or aborted; a directory left
        // by a failure to clean up stays for the next run to delete.
        let _ = fs::remove_dir(&self.path);
    }
}

/// A run's id: unique among runs on one machine (pid and start time).
fn run_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// Whether root-relative, normalized `normal` is `replay`'s staging
/// directory or beneath it: never a command's output.
pub fn reserved(normal: &str) -> bool {
    normal
        .strip_prefix(STAGE_DIR)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// One declared output and where the tool writes it meanwhile.
#[derive(Debug)]
struct Staged {
    /// The output as declared (root-relative).
    declared: String,
    /// The output normalized under the root (`out/p.o`).
    normal: String,
    /// Its final place.
    target: PathBuf,
    /// Where the tool writes it: its mirror in the staging directory.
    written: PathBuf,
}

/// The outputs of one command while it runs; [`Staging::commit`] or
/// [`Staging::abort`] ends it.
#[derive(Debug)]
pub struct Staging {
    staged: Vec<Staged>,
    /// The work root.
    root: PathBuf,
    /// `.replay-stage/RUN-ID`.
    dir: PathBuf,
    /// Made by [`Staging::prepare`]; removed by commit or abort.
    made: bool,
    /// Whether an output may be a symbolic link: only one `replay` made
    /// itself (a built-in `symlink`), never a tool's.
    links: bool,
    /// Removes the directory after a commit.
    janitor: Janitor,
}

/// What a commit did besides moving the declared outputs into place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Each declared output and the sha256 of what was committed, hashed
    /// from the staged file itself before it moved (what the journal
    /// records).
    pub hashes: Vec<(String, String)>,
    /// Files the tool wrote in its staging directory that no output
    /// declares (root-relative as they would have been): never committed.
    pub discarded: Vec<String>,
}

/// The ways an argument can name a path: the part of `arg` that is the
/// path, and the text before it.
fn path_parts(arg: &str) -> Vec<(&str, &str)> {
    let mut parts = vec![("", arg)];
    if arg.starts_with('-') {
        if let Some(at) = arg.find('=') {
            parts.push(arg.split_at(at + 1));
        }
        if arg.len() > 2 && arg.starts_with("-o") && !arg.starts_with("-o=") {
            parts.push(arg.split_at(2));
        }
    }
    parts
}

/// Flags whose value is a dependency file's target: text, never staged.
const DEPENDENCY_TARGETS: &[&str] = &["-MT", "-MQ"];

/// Linker flags whose value is the soname a shared library records.
const SONAME_FLAGS: &[&str] = &["-soname", "-h"];

/// Flags that make clang write a dependency file.
const DEPENDENCY_FLAGS: &[&str] = &["-M", "-MM", "-MD", "-MMD"];

/// For a clang command that writes a dependency file and names no target
/// (`-MT`/`-MQ`), the arguments that pin the target to what clang would
/// have taken from `-o` unstaged: `-MQ` and the `-o` value as written
/// (clang quotes its default target exactly as `-MQ` does).
pub fn dependency_target(args: &[String]) -> Option<[String; 2]> {
    if !args.iter().any(|a| DEPENDENCY_FLAGS.contains(&a.as_str())) {
        return None;
    }
    if args
        .iter()
        .any(|a| a.starts_with("-MT") || a.starts_with("-MQ"))
    {
        return None;
    }
    let mut output = None;
    let mut at = 0;
    while at < args.len() {
        let arg = &args[at];
        if arg == "-o" {
            output = args.get(at + 1).cloned();
            at += 1;
        } else if let Some(glued) = arg.strip_prefix("-o") {
            if !glued.is_empty() && !arg.starts_with("-o=") {
                output = Some(glued.to_owned());
            }
        }
        at += 1;
    }
    output.map(|o| ["-MQ".to_owned(), o])
}

impl Staging {
    /// Plans the outputs of command `id` of the run of `base`, run in `cwd`
    /// (root-relative) under `root`, and returns the arguments rewritten to
    /// the staged paths.
    pub fn plan(
        base: &StageBase,
        cwd: &str,
        args: &[String],
        outputs: &[String],
        id: u64,
    ) -> Result<(Vec<String>, Staging), StagingError> {
        let dir = base.path.join(format!("{}-{id}", base.run));
        let mut staged = Vec::with_capacity(outputs.len());
        for declared in outputs {
            let normal = normalize_under(".", declared)
                .filter(|n| n != ".")
                .ok_or_else(|| StagingError::Escapes(declared.clone()))?;
            if reserved(&normal) {
                return Err(StagingError::Reserved(declared.clone()));
            }
            staged.push(Staged {
                declared: declared.clone(),
                target: base.root.join(&normal),
                written: dir.join("out").join(&normal),
                normal,
            });
        }
        let mut rewritten = Vec::with_capacity(args.len());
        // Whether the previous linker word was `-soname`/`-h` (through
        // `-Wl,` or `-Xlinker`): its value is text the library records.
        let mut soname_next = false;
        for (at, arg) in args.iter().enumerate() {
            // A dependency file's target (`-MT x`, `-MQ x`, `-MTx`) names
            // an output but is text written into the file: kept as
            // written, so the file is the same as an unstaged run's.
            // Regression: `-MT main.o` became the staged path.
            let target_value = at
                .checked_sub(1)
                .is_some_and(|before| DEPENDENCY_TARGETS.contains(&args[before].as_str()));
            let glued_target = DEPENDENCY_TARGETS
                .iter()
                .any(|flag| arg.len() > flag.len() && arg.starts_with(flag));
            // A shared library's soname (`-Wl,-soname,libx.so.1`) names
            // the output when the library is not versioned further: it is
            // what dependents record, kept as written. Regression: it
            // became the staged path, and programs linked against the
            // library looked for it in `.replay-stage`.
            let mut linker_word = |word: &str| {
                let text = std::mem::replace(&mut soname_next, SONAME_FLAGS.contains(&word));
                if text || word.starts_with("-soname=") {
                    word.to_owned()
                } else {
                    rewrite(word, cwd, &staged)
                }
            };
            let after_xlinker = at
                .checked_sub(1)
                .is_some_and(|before| args[before] == "-Xlinker");
            rewritten.push(if target_value || glued_target {
                arg.clone()
            } else if let Some(list) = arg.strip_prefix("-Wl,") {
                let items: Vec<String> = list.split(',').map(&mut linker_word).collect();
                format!("-Wl,{}", items.join(","))
            } else if after_xlinker {
                linker_word(arg)
            } else {
                rewrite(arg, cwd, &staged)
            });
        }
        Ok((
            rewritten,
            Staging {
                staged,
                root: base.root.clone(),
                dir,
                made: false,
                links: false,
                janitor: base.janitor.clone(),
            },
        ))
    }

    /// Lets the outputs be symbolic links, committed as links: for a
    /// built-in `symlink`, whose staging `replay` writes itself (a tool's
    /// staging never gets this: a link a tool left is refused).
    pub fn replay_writes_links(&mut self) {
        self.links = true;
    }

    /// The staged directory that holds the output `normal` and its name:
    /// opened from the staging's mirror without following links.
    pub fn staged_dir(&self, normal: &str) -> io::Result<(OwnedFd, String)> {
        let (dir, name) = split(normal);
        Ok((
            open_beneath(&self.dir.join("out"), dir, false)?,
            name.to_owned(),
        ))
    }

    /// The command's staging directory: the one place it may write.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The mirror of the work root the outputs are written into.
    pub fn out_dir(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// Each output's normalized root-relative path and its staged file.
    pub fn staged_files(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.staged
            .iter()
            .map(|s| (s.normal.as_str(), s.written.as_path()))
    }

    /// The directory the tool gets as `TMPDIR`.
    pub fn tmp_dir(&self) -> PathBuf {
        self.dir.join("tmp")
    }

    /// Before the tool runs: makes the staging directory (fresh: it must
    /// not exist), the mirror of each output's directory and `tmp`.
    pub fn prepare(&mut self) -> Result<(), StagingError> {
        let make = |path: &Path, recursive: bool| {
            fs::DirBuilder::new()
                .mode(0o700)
                .recursive(recursive)
                .create(path)
                .map_err(|source| StagingError::Make {
                    path: path.to_owned(),
                    source,
                })
        };
        make(&self.dir, false)?;
        self.made = true;
        make(&self.tmp_dir(), false)?;
        make(&self.dir.join("out"), false)?;
        for output in &self.staged {
            if let Some(parent) = output.written.parent() {
                make(parent, true)?;
            }
        }
        Ok(())
    }

    /// After the tool succeeded (and every process of it is gone): checks
    /// every output was written as a plain file, gives it a sane mode,
    /// hashes it, then moves each into place, all or none. Returns the
    /// hashes and what the tool wrote that was not declared (discarded).
    ///
    /// Every path is walked one directory at a time from descriptors,
    /// never following a symbolic link, and the moves are `renameat2`
    /// between those descriptors: a link the tool left in its staging
    /// (were Landlock missing) cannot make `replay` touch anything else.
    pub fn commit(mut self) -> Result<Committed, StagingError> {
        let mirror = self.dir.join("out");
        let mut places = Vec::with_capacity(self.staged.len());
        let mut hashes = Vec::with_capacity(self.staged.len());
        for output in &self.staged {
            let (dir, name) = split(&output.normal);
            let missing = || StagingError::Missing(output.declared.clone());
            let from = open_beneath(&mirror, dir, false).map_err(|_| missing())?;
            let hash = seal(&from, name, self.links).map_err(|error| match error {
                Sealed::Missing => missing(),
                Sealed::Not(what) => StagingError::NotRegular {
                    path: output.declared.clone(),
                    what,
                },
                Sealed::Io(source) => StagingError::Commit {
                    path: output.declared.clone(),
                    source,
                },
            })?;
            hashes.push((output.declared.clone(), hash));
            places.push((from, name));
        }
        let mut moved: Vec<(OwnedFd, OwnedFd, &str, Move)> = Vec::with_capacity(places.len());
        for ((from, name), output) in places.into_iter().zip(&self.staged) {
            let (dir, _) = split(&output.normal);
            let put = open_beneath(&self.root, dir, true)
                .and_then(|to| put_in_place(&from, &to, name).map(|how| (to, how)));
            match put {
                Ok((to, how)) => moved.push((from, to, name, how)),
                Err(source) => {
                    // Put back every output already moved, newest first.
                    for (from, to, name, how) in moved.iter().rev() {
                        take_back(from, to, name, *how);
                    }
                    return Err(StagingError::Commit {
                        path: output.declared.clone(),
                        source,
                    });
                }
            }
        }
        let committed = Committed {
            hashes,
            discarded: self.undeclared(),
        };
        // What is left there (the outputs' previous versions, the empty
        // mirror and `tmp`) goes in the background.
        if self.made && self.janitor.remove_later(&self.dir) {
            self.made = false;
        }
        self.remove();
        Ok(committed)
    }

    /// After the tool failed or was stopped: removes what it wrote. The
    /// previous outputs were never touched.
    pub fn abort(mut self) {
        self.remove();
    }

    /// Files under the staging mirror that no output declares, walked
    /// from descriptors without following links (bounded).
    fn undeclared(&self) -> Vec<String> {
        let declared: HashSet<&str> = self.staged.iter().map(|s| s.normal.as_str()).collect();
        let mut found = Vec::new();
        let Ok(mirror) = open_beneath(&self.dir.join("out"), "", false) else {
            return found;
        };
        let mut pending = vec![(mirror, String::new())];
        let mut visited = 0usize;
        while let Some((dir, prefix)) = pending.pop() {
            let Ok(entries) = fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd())) else {
                continue;
            };
            for entry in entries.flatten() {
                visited += 1;
                if visited > MAX_WALKED || found.len() >= MAX_DISCARDED_NAMED {
                    break;
                }
                let name = entry.file_name().to_string_lossy().into_owned();
                let relative = format!("{prefix}{name}");
                // `file_type` is the entry's own type: a link is a link.
                match entry.file_type() {
                    Ok(kind) if kind.is_dir() => {
                        if let Ok(sub) = open_dir_at(&dir, &name, false) {
                            pending.push((sub, format!("{relative}/")));
                        }
                    }
                    Ok(_) if !declared.contains(relative.as_str()) => found.push(relative),
                    _ => {}
                }
            }
        }
        found.sort();
        found
    }

    fn remove(&mut self) {
        if self.made {
            let _ = fs::remove_dir_all(&self.dir);
            self.made = false;
        }
    }

    /// The final paths of the outputs, in declared order.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.staged
            .iter()
            .map(|s| (s.declared.as_str(), s.target.as_path()))
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        self.remove();
    }
}

/// How many undeclared files a report names.
const MAX_DISCARDED_NAMED: usize = 64;

/// How many entries of a staging the search for undeclared files reads.
const MAX_WALKED: usize = 100_000;

/// `normal` (root-relative, `/`-separated) as (its directory, its name).
pub(crate) fn split(normal: &str) -> (&str, &str) {
    match normal.rfind('/') {
        Some(at) => (&normal[..at], &normal[at + 1..]),
        None => ("", normal),
    }
}

/// The directory `name` in `dir`, never through a link; with `make`, made
/// (0o755) if it is missing.
pub(crate) fn open_dir_at(dir: &OwnedFd, name: &str, make: bool) -> io::Result<OwnedFd> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    match openat(dir, name, flags, Mode::empty()) {
        Err(nix::errno::Errno::ENOENT) if make => {
            match nix::sys::stat::mkdirat(dir, name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(errno) => return Err(errno.into()),
            }
            openat(dir, name, flags, Mode::empty()).map_err(io::Error::from)
        }
        opened => opened.map_err(io::Error::from),
    }
}

/// The directory `relative` (`/`-separated, no `..`) beneath `base`,
/// walked one component at a time without following a link (`base` itself
/// is the caller's: the root or a staging `replay` made).
pub(crate) fn open_beneath(base: &Path, relative: &str, make: bool) -> io::Result<OwnedFd> {
    use nix::fcntl::{open, OFlag};
    use nix::sys::stat::Mode;
    let mut dir = open(
        base,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for part in relative.split('/').filter(|p| !p.is_empty() && *p != ".") {
        if part == ".." {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a path that climbs with `..`",
            ));
        }
        dir = open_dir_at(&dir, part, make)?;
    }
    Ok(dir)
}

/// Why a staged output cannot be committed.
pub(crate) enum Sealed {
    /// Nothing is there.
    Missing,
    /// Something other than one plain file is there.
    Not(&'static str),
    /// It could not be read or its mode set.
    Io(io::Error),
}

/// Checks the staged `name` in `dir` is one plain file (no link, one hard
/// link), sets its mode to what `replay` commits (0o755 for an ELF
/// executable or shared object, 0o644 otherwise: never setuid, setgid or
/// writable by others, whatever the tool asked), and hashes it.
pub(crate) fn seal(dir: &OwnedFd, name: &str, links: bool) -> Result<String, Sealed> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::{fstat, Mode, SFlag};
    if links {
        if let Ok(target) = nix::fcntl::readlinkat(dir, name) {
            return Ok(crate::journal::link_hash(target.as_encoded_bytes()));
        }
    }
    let fd = match openat(
        dir,
        name,
        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(nix::errno::Errno::ENOENT) => return Err(Sealed::Missing),
        Err(nix::errno::Errno::ELOOP) => return Err(Sealed::Not("a symbolic link")),
        Err(errno) => return Err(Sealed::Io(errno.into())),
    };
    let stat = fstat(&fd).map_err(|e| Sealed::Io(e.into()))?;
    let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
    if kind != SFlag::S_IFREG {
        return Err(Sealed::Not(match kind {
            SFlag::S_IFDIR => "a directory",
            SFlag::S_IFIFO => "a FIFO",
            SFlag::S_IFSOCK => "a socket",
            _ => "a device",
        }));
    }
    if stat.st_nlink != 1 {
        return Err(Sealed::Not("a file with other hard links"));
    }
    let mut file = fs::File::from(fd);
    let mut head = [0u8; 18];
    let read = io::Read::read(&mut file, &mut head).map_err(Sealed::Io)?;
    let elf_program = read == 18 && head[..4] == *b"\x7fELF" && {
        // e_type, in the file's own byte order: ET_EXEC (2) or ET_DYN (3).
        let e_type = if head[5] == 2 {
            u16::from_be_bytes([head[16], head[17]])
        } else {
            u16::from_le_bytes([head[16], head[17]])
        };
        e_type == 2 || e_type == 3
    };
    let mode = if elf_program { 0o755 } else { 0o644 };
    nix::sys::stat::fchmod(&file, Mode::from_bits_truncate(mode))
        .map_err(|e| Sealed::Io(e.into()))?;
    io::Seek::rewind(&mut file).map_err(Sealed::Io)?;
    crate::journal::hash_reader(&mut file).map_err(Sealed::Io)
}

/// `arg` with the path it names rewritten to its staged path, if it names a
/// declared output (from `cwd`).
fn rewrite(arg: &str, cwd: &str, staged: &[Staged]) -> String {
    for (head, candidate) in path_parts(arg) {
        let Some(resolved) = normalize_under(cwd, candidate) else {
            continue;
        };
        if let Some(output) = staged.iter().find(|s| s.normal == resolved) {
            return format!("{head}{}", output.written.display());
        }
    }
    arg.to_owned()
}

/// How an output was put in place.
#[derive(Debug, Clone, Copy)]
enum Move {
    /// Exchanged with the previous version, which now sits at the staged path.
    Exchanged,
    /// Renamed where nothing was.
    Renamed,
}

/// Moves the staged `name` in `from` to `name` in `to`, keeping the
/// previous version (if any) in the staging directory.
fn put_in_place(from: &OwnedFd, to: &OwnedFd, name: &str) -> io::Result<Move> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fstatat, SFlag};
    match fstatat(to, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) if stat.st_mode & SFlag::S_IFMT.bits() == SFlag::S_IFDIR.bits() => Err(
            io::Error::new(io::ErrorKind::IsADirectory, "a directory is in its place"),
        ),
        Ok(_) => exchange(from, name, to, name).map(|()| Move::Exchanged),
        Err(nix::errno::Errno::ENOENT) => {
            rename_no_replace(from, name, to, name).map(|()| Move::Renamed)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Undoes [`put_in_place`].
fn take_back(from: &OwnedFd, to: &OwnedFd, name: &str, how: Move) {
    match how {
        Move::Exchanged => {
            let _ = exchange(from, name, to, name);
        }
        Move::Renamed => {
            let _ = rename_no_replace(to, name, from, name);
        }
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn exchange(a_dir: &OwnedFd, a: &str, b_dir: &OwnedFd, b: &str) -> io::Result<()> {
    use nix::fcntl::{renameat, renameat2, RenameFlags};
    match renameat2(a_dir, a, b_dir, b, RenameFlags::RENAME_EXCHANGE) {
        Ok(()) => Ok(()),
        // A file system without exchange (NFS, some FUSE): a plain rename
        // replaces the previous version, which is then gone; the commit of
        // several outputs is then not all-or-none on a failure half-way.
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
            renameat(a_dir, a, b_dir, b).map_err(io::Error::from)
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn exchange(a_dir: &OwnedFd, a: &str, b_dir: &OwnedFd, b: &str) -> io::Result<()> {
    nix::fcntl::renameat(a_dir, a, b_dir, b).map_err(io::Error::from)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn rename_no_replace(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    use nix::fcntl::{renameat, renameat2, RenameFlags};
    match renameat2(from_dir, from, to_dir, to, RenameFlags::RENAME_NOREPLACE) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOSYS) => {
            renameat(from_dir, from, to_dir, to).map_err(io::Error::from)
        }
        Err(errno) => Err(io::Error::from(errno)),
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn rename_no_replace(from_dir: &OwnedFd, from: &str, to_dir: &OwnedFd, to: &str) -> io::Result<()> {
    nix::fcntl::renameat(from_dir, from, to_dir, to).map_err(io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A staging planned in `base` for command `id` in `cwd`, prepared.
    fn prepared(
        base: &StageBase,
        args: &[String],
        outputs: &[String],
        id: u64,
    ) -> (Vec<String>, Staging) {
        let (args, mut staging) = Staging::plan(base, ".", args, outputs, id).unwrap();
        staging.prepare().unwrap();
        (args, staging)
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut left: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        left
    }

    #[test]
    fn output_arguments_are_rewritten_in_every_form() {
        let dir = tempfile::tempdir().unwrap();
        let base = StageBase::open(dir.path()).unwrap();
        let args = strings(&[
            "-O2",
            "in.bc",
            "-o",
            "out/p0.o",
            "-Map=out/p0.map",
            "-oout/x.o",
            "-Wl,-Map,out/l.map,--gc-sections",
        ]);
        let outputs = strings(&["out/p0.o", "out/p0.map", "out/x.o", "out/l.map"]);
        let (args, staging) = Staging::plan(&base, ".", &args, &outputs, 7).unwrap();
        let staged = |p: &str| staging.dir().join("out").join(p).display().to_string();
        assert_eq!(args[0], "-O2");
        assert_eq!(args[1], "in.bc");
        assert_eq!(args[3], staged("out/p0.o"));
        assert_eq!(args[4], format!("-Map={}", staged("out/p0.map")));
        assert_eq!(args[5], format!("-o{}", staged("out/x.o")));
        assert_eq!(
            args[6],
            format!("-Wl,-Map,{},--gc-sections", staged("out/l.map"))
        );
        assert!(staging.dir().starts_with(dir.path().join(STAGE_DIR)));
    }

    #[test]
    fn arguments_are_resolved_against_the_cwd() {
        let dir = tempfile::tempdir().unwrap();
        let base = StageBase::open(dir.path()).unwrap();
        let (args, staging) = Staging::plan(
            &base,
            "sub",
            &strings(&["-o", "../top.o", "top.o"]),
            &strings(&["top.o"]),
            1,
        )
        .unwrap();
        // `../top.o` from `sub` is the declared `top.o`; `top.o` from `sub`
        // is `sub/top.o`, another file.
        assert_eq!(
            args[1],
            staging.dir().join("out/top.o").display().to_string()
        );
        assert_eq!(args[2], "top.o");
        assert_eq!(staging.staged[0].target, dir.path().join("top.o"));
    }

    #[test]
    fn a_soname_naming_the_output_is_not_staged() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let base = StageBase::open(tmp.path()).expect("base");
        let args = strings(&[
            "-shared",
            "-Wl,-soname,libx.so.1",
            "-Xlinker",
            "-soname",
            "-Xlinker",
            "libx.so.1",
            "-o",
            "libx.so.1",
        ]);
        let (rewritten, _) =
            Staging::plan(&base, ".", &args, &strings(&["libx.so.1"]), 1).expect("plan");
        assert_eq!(rewritten[..7], args[..7]);
        assert_ne!(rewritten[7], args[7]);
    }

    #[test]
    fn a_dependency_target_naming_an_output_is_not_staged() {
        let dir = tempfile::tempdir().unwrap();
        let base = StageBase::open(dir.path()).unwrap();
        let args = strings(&["-MD", "-MF", "a.d", "-MT", "a.o", "-MQa.o", "-o", "a.o"]);
        let (args, staging) =
            Staging::plan(&base, ".", &args, &strings(&["a.o", "a.d"]), 1).unwrap();
        assert_eq!(args[4], "a.o");
        assert_eq!(args[5], "-MQa.o");
        assert_eq!(args[7], staging.dir().join("out/a.o").display().to_string());
        assert_eq!(args[2], staging.dir().join("out/a.d").display().to_string());
    }

    #[test]
    fn a_dependency_file_keeps_the_target_clang_would_have_named() {
        let pin = |args: &[&str]| dependency_target(&strings(args));
        assert_eq!(
            pin(&["-c", "a.c", "-MD", "-MF", "a.d", "-o", "out/a.o"]),
            Some(strings(&["-MQ", "out/a.o"]).try_into().unwrap())
        );
        assert_eq!(
            pin(&["-MMD", "-oout/a.o", "-c", "a.c"]),
            Some(strings(&["-MQ", "out/a.o"]).try_into().unwrap())
        );
        // A target given, no dependency file, or no `-o`: nothing to pin.
        assert_eq!(pin(&["-MD", "-MT", "x", "-o", "a.o"]), None);
        assert_eq!(pin(&["-c", "a.c", "-o", "a.o"]), None);
        assert_eq!(pin(&["-MD", "-c", "a.c"]), None);
    }

    #[test]
    fn commit_moves_outputs_into_place_and_abort_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        fs::write(root.join("p.o"), "old").unwrap();
        // A failed run: the staging goes, the old output stays.
        let (args, staging) = prepared(&base, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 1);
        fs::write(&args[1], "half").unwrap();
        staging.abort();
        assert_eq!(fs::read_to_string(root.join("p.o")).unwrap(), "old");
        assert!(!Path::new(&args[1]).exists());
        // A successful run: the new output replaces it.
        let (args, staging) = prepared(&base, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 2);
        fs::write(&args[1], "new").unwrap();
        let committed = staging.commit().unwrap();
        assert!(committed.discarded.is_empty());
        assert_eq!(fs::read_to_string(root.join("p.o")).unwrap(), "new");
        drop(base);
        assert_eq!(names(root), ["p.o"], "nothing of the staging is left");
    }

    #[test]
    fn a_commit_that_fails_half_way_puts_every_previous_output_back() {
        // Regression: the first output was moved into place and its backup
        // dropped before the second failed: a new `a.o` beside an old `b.o`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        fs::write(root.join("a.o"), "old a").unwrap();
        let (args, staging) = prepared(
            &base,
            &strings(&["-o", "a.o", "-o", "b.o"]),
            &strings(&["a.o", "b.o"]),
            3,
        );
        fs::write(&args[1], "new a").unwrap();
        fs::write(&args[3], "new b").unwrap();
        // Something took `b.o`'s place meanwhile: its move must fail.
        fs::create_dir(root.join("b.o")).unwrap();
        fs::write(root.join("b.o/x"), "").unwrap();
        assert!(staging.commit().is_err());
        assert_eq!(fs::read_to_string(root.join("a.o")).unwrap(), "old a");
        drop(base);
        assert_eq!(names(root), ["a.o", "b.o"]);
    }

    #[test]
    fn what_the_tool_wrote_undeclared_is_discarded_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        let (args, staging) = prepared(&base, &strings(&["-o", "w.exe"]), &strings(&["w.exe"]), 4);
        fs::write(&args[1], "exe").unwrap();
        let side = staging.dir().join("out/w.pdb");
        fs::write(side, "pdb").unwrap();
        fs::create_dir(staging.dir().join("out/w.dSYM")).unwrap();
        fs::write(staging.dir().join("out/w.dSYM/x"), "dwarf").unwrap();
        let committed = staging.commit().unwrap();
        assert_eq!(committed.discarded, ["w.dSYM/x", "w.pdb"]);
        assert!(!root.join("w.pdb").exists() && !root.join("w.dSYM").exists());
        assert_eq!(fs::read_to_string(root.join("w.exe")).unwrap(), "exe");
    }

    #[test]
    fn an_output_left_as_a_symlink_or_hard_link_is_not_committed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        fs::write(root.join("secret"), "s").unwrap();
        let (args, staging) = prepared(&base, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 5);
        std::os::unix::fs::symlink("/etc/passwd", &args[1]).unwrap();
        let error = staging.commit().unwrap_err();
        assert!(matches!(error, StagingError::NotRegular { .. }), "{error}");
        let (args, staging) = prepared(&base, &strings(&["-o", "q.o"]), &strings(&["q.o"]), 6);
        fs::hard_link(root.join("secret"), &args[1]).unwrap();
        let error = staging.commit().unwrap_err();
        assert!(matches!(error, StagingError::NotRegular { .. }), "{error}");
        assert!(!root.join("p.o").exists() && !root.join("q.o").exists());
    }

    #[test]
    fn a_link_left_in_the_staging_never_leads_the_commit_outside() {
        // Regression (review): the tool replaced its staged `out/sub` with
        // a link to a directory outside, and the commit swapped a file
        // there with the previous output in the root.
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("secret.txt"), "outside").unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::write(root.join("sub/secret.txt"), "previous").unwrap();
        let base = StageBase::open(root).unwrap();
        let (_, staging) = prepared(
            &base,
            &strings(&["-o", "sub/secret.txt"]),
            &strings(&["sub/secret.txt"]),
            9,
        );
        let staged_sub = staging.dir().join("out/sub");
        fs::remove_dir(&staged_sub).unwrap();
        std::os::unix::fs::symlink(outside.path(), &staged_sub).unwrap();
        assert!(staging.commit().is_err());
        assert_eq!(
            fs::read_to_string(outside.path().join("secret.txt")).unwrap(),
            "outside"
        );
        assert_eq!(
            fs::read_to_string(root.join("sub/secret.txt")).unwrap(),
            "previous"
        );
    }

    #[test]
    fn outputs_get_the_mode_replay_gives_not_the_tools() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        let (args, staging) = prepared(
            &base,
            &strings(&["-o", "p.o", "-o", "prog"]),
            &strings(&["p.o", "prog"]),
            10,
        );
        fs::write(&args[1], "data").unwrap();
        fs::set_permissions(&args[1], fs::Permissions::from_mode(0o6777)).unwrap();
        // An ELF executable's header: class 64, little-endian, ET_DYN.
        let mut elf = b"\x7fELF\x02\x01\x01".to_vec();
        elf.resize(16, 0);
        elf.extend_from_slice(&3u16.to_le_bytes());
        fs::write(&args[3], &elf).unwrap();
        staging.commit().unwrap();
        let mode = |p: &str| fs::metadata(root.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("p.o"), 0o644);
        assert_eq!(mode("prog"), 0o755);
    }

    #[test]
    fn a_missing_output_fails_the_commit() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = StageBase::open(root).unwrap();
        fs::write(root.join("a.out"), "old").unwrap();
        let (_, staging) = prepared(&base, &[], &strings(&["a.out", "b.o"]), 3);
        let error = staging.commit().unwrap_err();
        assert!(
            matches!(error, StagingError::Missing(ref o) if o == "a.out"),
            "{error}"
        );
        assert_eq!(fs::read_to_string(root.join("a.out")).unwrap(), "old");
    }

    #[test]
    fn leftovers_of_a_killed_run_are_deleted_and_never_moved_into_the_root() {
        // Regression (hardening): planted `.replay-backup-*` files were
        // renamed over outputs by name. Now nothing is recognised by name:
        // what is under `.replay-stage` is deleted, whatever it is called.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join(STAGE_DIR).join("old-5/out")).unwrap();
        fs::set_permissions(
            root.join(STAGE_DIR),
            std::os::unix::fs::PermissionsExt::from_mode(0o700),
        )
        .unwrap();
        fs::write(root.join(STAGE_DIR).join("old-5/out/p.o"), "script").unwrap();
        fs::write(root.join(".replay-backup-5-999-p.o"), "planted").unwrap();
        let base = StageBase::open(root).unwrap();
        assert_eq!(names(base.path()), Vec::<String>::new());
        assert!(!root.join("p.o").exists());
        assert_eq!(
            fs::read_to_string(root.join(".replay-backup-5-999-p.o")).unwrap(),
            "planted",
            "a file in the root is never touched for its name"
        );
    }

    #[test]
    fn an_output_in_the_staging_directory_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let base = StageBase::open(dir.path()).unwrap();
        for output in [".replay-stage", "./.replay-stage/x/out/p.o"] {
            let error = Staging::plan(&base, ".", &[], &strings(&[output]), 1).unwrap_err();
            assert!(matches!(error, StagingError::Reserved(_)), "{error}");
        }
        assert!(Staging::plan(&base, ".", &[], &strings(&[".replay-stagex"]), 1).is_ok());
    }

    #[test]
    fn a_stage_base_that_is_a_symlink_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), dir.path().join(STAGE_DIR)).unwrap();
        let error = StageBase::open(dir.path()).unwrap_err();
        assert!(matches!(error, StagingError::Untrusted { .. }), "{error}");
    }
}
