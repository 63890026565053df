//! The built-in file operations ([`cmdlog::FileOp`]: `symlink`, `copy`,
//! `rename`, `remove`), performed by `replay` itself: no shell, no
//! program, no sandbox to escape, so every path is walked the way the
//! commit walks outputs ([`crate::staging`]): from directory descriptors,
//! one component at a time, never following a symbolic link, and only
//! inside the work root. The policy judged the operation's declared paths
//! first (`policy/src/rules/builtin.rs`); this is the second line.
//!
//! A new file or link is made in the command's staging directory and
//! committed as a tool's outputs are ([`Done::Staged`]: all or nothing,
//! hashed, journaled); a rename or a remove is one `renameat`/`unlinkat`
//! per path between descriptors ([`Done::Moved`]), each atomic, and the
//! whole operation all or nothing: every path is reached and judged before
//! the first changes, and directories a rename made are removed if it
//! fails. A rename never moves a symbolic link (its relative text would
//! name something else from the new place), and gives the file it moves a
//! committed output's mode. A symlink's relative target is judged again
//! right before it is made. A copy reads its source with
//! `openat2(RESOLVE_BENEATH)` (symlinks followed only while they stay
//! inside the root), once, hashing it as it goes, within the policy's
//! `[limits]` and stopping on an interrupt ([`Limits`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmdlog::{Command, FileOp, FileOpError};

use crate::journal;
use crate::run::watch::Stop;
use crate::staging::{open_beneath, split, Sealed, StageBase, Staging, StagingError};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

/// Why a built-in operation was not performed.
#[derive(Debug, thiserror::Error)]
pub enum BuiltinError {
    /// The arguments do not describe the operation (the policy refuses
    /// this first).
    #[error("command {id}: malformed built-in operation")]
    Malformed {
        /// The command.
        id: u64,
        /// What is wrong.
        #[source]
        source: FileOpError,
    },
    /// The staging of its output could not be made.
    #[error("command {id}: cannot stage `{path}`")]
    Stage {
        /// The command.
        id: u64,
        /// The output.
        path: String,
        /// Why.
        #[source]
        source: StagingError,
    },
    /// A path could not be reached without following a link, or read or
    /// written.
    #[error("command {id} ({kind}): cannot {action} `{path}`")]
    Io {
        /// The command.
        id: u64,
        /// Its kind.
        kind: &'static str,
        /// What it was doing: `read`, `make`, `move`, `remove`.
        action: &'static str,
        /// The path, root-relative.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A copy's source changed while it was copied (the copy is
    /// discarded).
    #[error("command {id} (copy): `{path}` changed while it was copied; the copy was discarded")]
    Changed {
        /// The command.
        id: u64,
        /// The source.
        path: String,
    },
    /// A limit stopped it (its partial output is discarded).
    #[error("command {id} ({kind}): stopped: {stop:?}")]
    Stopped {
        /// The command.
        id: u64,
        /// Its kind.
        kind: &'static str,
        /// Which limit.
        stop: Stop,
    },
    /// What is in a path's place is not what the operation may touch.
    #[error("command {id} ({kind}): `{path}` is {what}; built-in operations move and remove files and symbolic links only")]
    NotAFile {
        /// The command.
        id: u64,
        /// Its kind.
        kind: &'static str,
        /// The path.
        path: String,
        /// What is there.
        what: &'static str,
    },
}

/// What bounds a built-in operation: the policy's `[limits]` (a copy
/// longer than `max_output` bytes, or running past `timeout`, is stopped)
/// and `replay`'s interruption.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Bytes a copy may write.
    pub max_output: Option<u64>,
    /// Wall-clock time the operation may take (the policy's, or the
    /// run's `--timeout` if tighter).
    pub timeout: Option<Duration>,
    /// Set by `replay`'s signal handler.
    pub interrupted: Arc<AtomicBool>,
}

/// How many bytes a copy moves between checks of its limits.
const COPY_CHUNK: usize = 1 << 20;

/// What a performed operation leaves for the runner.
#[derive(Debug)]
pub enum Done {
    /// Its new file or link, staged: commit it as a tool's outputs.
    Staged(Staging),
    /// A copy, staged, with its source's declared path and the hash of
    /// what was copied: the source was seen unchanged from before the copy
    /// to after it (its identity, size and times), so it is not read
    /// again to be journaled.
    Copied {
        /// The copy.
        staging: Staging,
        /// The source as the command declares it, and its hash.
        source: (String, String),
    },
    /// Already in place: each declared output and its hash now.
    Moved(Vec<(String, String)>),
}

/// Performs `command`, a built-in operation the policy allowed, under
/// `root`, staging under `base`.
pub fn perform(
    command: &Command,
    root: &Path,
    base: &StageBase,
    limits: &Limits,
) -> Result<Done, BuiltinError> {
    let started = Instant::now();
    let id = command.id;
    let kind = kind_name(command);
    let op = FileOp::parse(command).map_err(|source| BuiltinError::Malformed { id, source })?;
    // What the policy does not know: replay's own staging (where other
    // commands' outputs wait under `-j`) is never touched.
    let (inputs, outputs) = op.declares();
    if let Some(path) = inputs
        .into_iter()
        .chain(outputs)
        .find(|p| crate::staging::reserved(p))
    {
        return Err(BuiltinError::Stage {
            id,
            source: StagingError::Reserved(path.clone()),
            path,
        });
    }
    let io = |action: &'static str, path: &str| {
        let path = path.to_owned();
        move |source: io::Error| BuiltinError::Io {
            id,
            kind,
            action,
            path,
            source,
        }
    };
    match &op {
        FileOp::Symlink {
            target,
            resolved,
            link,
        } => {
            // Judged again now, from the link's own directory (physical:
            // the commit walks it without following links): a relative
            // target must not lead out of the root through a link made
            // since the check.
            if !cmdlog::path::is_absolute(target) {
                stays_inside(root, resolved).map_err(io("make", link))?;
            }
            let mut staging = stage(base, link, id)?;
            staging.replay_writes_links();
            let (dir, name) = staging.staged_dir(link).map_err(io("make", link))?;
            nix::unistd::symlinkat(target.as_str(), &dir, name.as_str())
                .map_err(|e| io("make", link)(e.into()))?;
            Ok(Done::Staged(staging))
        }
        FileOp::Copy { from, to } => {
            let mut source = open_inside(root, from).map_err(io("read", from))?;
            let kind_of = source.metadata().map_err(io("read", from))?;
            if !kind_of.is_file() {
                return Err(BuiltinError::NotAFile {
                    id,
                    kind,
                    path: from.clone(),
                    what: "not a regular file",
                });
            }
            let stopped = |stop| BuiltinError::Stopped { id, kind, stop };
            let after_ms = || started.elapsed().as_millis() as u64;
            let too_big = |max| {
                stopped(Stop::FileSize {
                    limit: max,
                    after_ms: after_ms(),
                })
            };
            // Known before a byte is written.
            if let Some(max) = limits.max_output.filter(|max| kind_of.len() > *max) {
                return Err(too_big(max));
            }
            let staging = stage(base, to, id)?;
            let (dir, name) = staging.staged_dir(to).map_err(io("make", to))?;
            let mut copy = create_at(&dir, &name).map_err(io("make", to))?;
            // In chunks, each limit checked between them (the source may
            // grow while it is read): the staging, dropped on an error,
            // takes the partial copy with it.
            let mut buffer = vec![0u8; COPY_CHUNK];
            let mut written: u64 = 0;
            let mut hasher = Sha256::new();
            loop {
                if limits.interrupted.load(Ordering::SeqCst) {
                    return Err(stopped(Stop::Interrupted {
                        after_ms: after_ms(),
                    }));
                }
                if let Some(timeout) = limits.timeout.filter(|t| started.elapsed() >= *t) {
                    return Err(stopped(Stop::Timeout {
                        limit_ms: timeout.as_millis() as u64,
                        after_ms: after_ms(),
                    }));
                }
                let n = match source.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(io("read", from)(e)),
                };
                written += n as u64;
                if let Some(max) = limits.max_output.filter(|max| written > *max) {
                    return Err(too_big(max));
                }
                hasher.update(&buffer[..n]);
                copy.write_all(&buffer[..n]).map_err(io("make", to))?;
            }
            copy.sync_all().map_err(io("make", to))?;
            // What the path names now is the file read, as it was.
            let now = open_inside(root, from)
                .and_then(|f| f.metadata())
                .map_err(io("read", from))?;
            if identity(&now) != identity(&kind_of) {
                return Err(BuiltinError::Changed {
                    id,
                    path: from.clone(),
                });
            }
            let declared = command
                .inputs
                .first()
                .cloned()
                .unwrap_or_else(|| from.clone());
            Ok(Done::Copied {
                staging,
                source: (declared, hex(&hasher.finalize())),
            })
        }
        FileOp::Rename { from, to } => {
            // Everything is checked before anything changes: the source
            // (a file, not a link), the destination's name and the
            // directories that exist on its way; then the missing
            // directories are made, and removed again if the move fails.
            let (from_dir, from_name) = parent_of(root, from, false).map_err(io("move", from))?;
            // A link's text is read from its own directory: moved, it
            // would point at what nobody judged (out of the root, even).
            // Refused whatever the check saw (an earlier command may have
            // made it since).
            if is_link(&from_dir, &from_name).map_err(io("move", from))? {
                return Err(BuiltinError::NotAFile {
                    id,
                    kind,
                    path: from.clone(),
                    what: "a symbolic link (`rename` moves regular files only: make the link anew with `symlink`)",
                });
            }
            if let Some(what) = movable(&from_dir, &from_name).map_err(io("move", from))? {
                return Err(BuiltinError::NotAFile {
                    id,
                    kind,
                    path: from.clone(),
                    what,
                });
            }
            exists(&from_dir, &from_name).map_err(io("move", from))?;
            // Given the mode a committed output has (0755 for an ELF
            // program, 0644 otherwise: never setuid, setgid or writable by
            // others) and hashed, before it moves: one plain file.
            let hash = match crate::staging::seal(&from_dir, &from_name, false) {
                Ok(hash) => hash,
                Err(Sealed::Not(what)) => {
                    return Err(BuiltinError::NotAFile {
                        id,
                        kind,
                        path: from.clone(),
                        what,
                    })
                }
                Err(Sealed::Missing) => {
                    return Err(io("move", from)(io::ErrorKind::NotFound.into()))
                }
                Err(Sealed::Io(e)) => return Err(io("move", from)(e)),
            };
            let (to_parent, to_name) = split(to);
            let (mut chain, missing) = reach(root, to_parent).map_err(io("move", to))?;
            if let Some(long) = missing
                .iter()
                .map(String::as_str)
                .chain([to_name])
                .find(|n| n.len() > NAME_MAX)
            {
                return Err(io("move", to)(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("the name `{long}` is longer than {NAME_MAX} bytes"),
                )));
            }
            if missing.is_empty() {
                if let Some(what) = movable(&chain[0], to_name).map_err(io("move", to))? {
                    return Err(BuiltinError::NotAFile {
                        id,
                        kind,
                        path: to.clone(),
                        what,
                    });
                }
            }
            let mut made = Vec::new();
            let moved = (|| -> io::Result<()> {
                for name in &missing {
                    let last = chain.last().ok_or(io::ErrorKind::NotFound)?;
                    nix::sys::stat::mkdirat(last, name.as_str(), Mode::from_bits_truncate(0o755))?;
                    made.push(name.as_str());
                    let dir = crate::staging::open_dir_at(last, name, false)?;
                    chain.push(dir);
                }
                let last = chain.last().ok_or(io::ErrorKind::NotFound)?;
                nix::fcntl::renameat(&from_dir, from_name.as_str(), last, to_name)?;
                Ok(())
            })();
            if let Err(error) = moved {
                // Undone: the directories made for it, deepest first.
                for (at, name) in made.iter().enumerate().rev() {
                    let _ = nix::unistd::unlinkat(
                        &chain[at],
                        *name,
                        nix::unistd::UnlinkatFlags::RemoveDir,
                    );
                }
                return Err(io("move", to)(error));
            }
            Ok(Done::Moved(vec![
                (to.clone(), hash),
                (from.clone(), journal::ABSENT.to_owned()),
            ]))
        }
        FileOp::Remove { paths } => {
            // All or nothing: every path is reached and judged before the
            // first is removed.
            let mut found = Vec::with_capacity(paths.len());
            for path in paths {
                let (dir, name) = match parent_of(root, path, false) {
                    Ok(found) => found,
                    // No directory, nothing to remove (`rm -f`).
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {
                        found.push(None);
                        continue;
                    }
                    Err(e) => return Err(io("remove", path)(e)),
                };
                match movable(&dir, &name) {
                    Ok(None) => {}
                    Ok(Some(what)) => {
                        return Err(BuiltinError::NotAFile {
                            id,
                            kind,
                            path: path.clone(),
                            what,
                        })
                    }
                    Err(e) => return Err(io("remove", path)(e)),
                }
                found.push(Some((dir, name)));
            }
            let mut hashes = Vec::with_capacity(paths.len());
            for (path, found) in paths.iter().zip(found) {
                if let Some((dir, name)) = found {
                    match nix::unistd::unlinkat(
                        &dir,
                        name.as_str(),
                        nix::unistd::UnlinkatFlags::NoRemoveDir,
                    ) {
                        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                        Err(errno) => return Err(io("remove", path)(errno.into())),
                    }
                }
                hashes.push((path.clone(), journal::ABSENT.to_owned()));
            }
            Ok(Done::Moved(hashes))
        }
    }
}

/// The longest name a directory entry may have (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;

/// The deepest existing directory on the way to root-relative `dir`
/// (walked without following a link), alone in a chain the caller grows
/// as it makes the names still missing below it (returned too). A component that
/// exists but is not a directory is an error.
fn reach(root: &Path, dir: &str) -> io::Result<(Vec<OwnedFd>, Vec<String>)> {
    if dir.split('/').any(|p| p == "..") {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "a path that climbs with `..`",
        ));
    }
    let mut chain = vec![open_beneath(root, ".", false)?];
    let mut parts = dir
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .peekable();
    while let Some(part) = parts.peek() {
        let last = chain.last().ok_or(io::ErrorKind::NotFound)?;
        match crate::staging::open_dir_at(last, part, false) {
            Ok(next) => {
                chain.push(next);
                parts.next();
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) => return Err(e),
        }
    }
    let missing: Vec<String> = parts.map(str::to_owned).collect();
    // Only the deepest is needed: the rename's directories are made (and
    // undone) below it.
    Ok((chain.split_off(chain.len() - 1), missing))
}

/// Checks that `name` exists in `dir` (not followed).
fn exists(dir: &OwnedFd, name: &str) -> io::Result<()> {
    nix::sys::stat::fstatat(dir, name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
        .map(|_| ())
        .map_err(io::Error::from)
}

/// The kind's name, as `'static` (the checked kinds are known).
fn kind_name(command: &Command) -> &'static str {
    match command.tool {
        cmdlog::ToolKind::Symlink => "symlink",
        cmdlog::ToolKind::Copy => "copy",
        cmdlog::ToolKind::Rename => "rename",
        _ => "remove",
    }
}

/// A staging for the one output `path` of command `id`.
fn stage(base: &StageBase, path: &str, id: u64) -> Result<Staging, BuiltinError> {
    let stage_error = |source| BuiltinError::Stage {
        id,
        path: path.to_owned(),
        source,
    };
    let (_, mut staging) =
        Staging::plan(base, ".", &[], &[path.to_owned()], id).map_err(stage_error)?;
    staging.prepare().map_err(stage_error)?;
    Ok(staging)
}

/// The directory holding root-relative `path` (walked without following
/// a link; with `make`, made where missing) and its last name.
fn parent_of(root: &Path, path: &str, make: bool) -> io::Result<(OwnedFd, String)> {
    let (dir, name) = split(path);
    Ok((open_beneath(root, dir, make)?, name.to_owned()))
}

/// `None` if `name` in `dir` is a regular file, a symbolic link (itself,
/// not followed) or missing; else what it is.
fn movable(dir: &OwnedFd, name: &str) -> io::Result<Option<&'static str>> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fstatat, SFlag};
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            let kind = SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits());
            Ok(match kind {
                SFlag::S_IFREG | SFlag::S_IFLNK => None,
                SFlag::S_IFDIR => Some("a directory"),
                SFlag::S_IFIFO => Some("a FIFO"),
                _ => Some("a device or socket"),
            })
        }
        Err(nix::errno::Errno::ENOENT) => Ok(None),
        Err(errno) => Err(errno.into()),
    }
}

/// What tells a file's version apart without reading it: its identity,
/// size, and modification and change times (the kernel sets the latter).
fn identity(meta: &std::fs::Metadata) -> (u64, u64, u64, i64, i64, i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (
        meta.dev(),
        meta.ino(),
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
    )
}

/// `bytes` in lower-case hex, as the journal writes hashes.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `name` in `dir` is a symbolic link itself.
fn is_link(dir: &OwnedFd, name: &str) -> io::Result<bool> {
    use nix::fcntl::AtFlags;
    use nix::sys::stat::{fstatat, SFlag};
    match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => {
            Ok(SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK)
        }
        Err(nix::errno::Errno::ENOENT) => Ok(false),
        Err(errno) => Err(errno.into()),
    }
}

/// Checks that root-relative `path`, followed through any links, stays
/// beneath the root (`RESOLVE_BENEATH`); a path that does not exist (yet)
/// passes: it names nothing outside.
fn stays_inside(root: &Path, path: &str) -> io::Result<()> {
    use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let root = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    match openat2(&root, path, how) {
        Ok(_) | Err(nix::errno::Errno::ENOENT) => Ok(()),
        Err(errno) => Err(errno.into()),
    }
}

/// Opens root-relative `path` for reading, following symbolic links only
/// while they stay beneath the root (`RESOLVE_BENEATH`), never blocking
/// on a FIFO.
fn open_inside(root: &Path, path: &str) -> io::Result<File> {
    use nix::fcntl::{open, openat2, OFlag, OpenHow, ResolveFlag};
    use nix::sys::stat::Mode;
    let root = open(
        root,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let how = OpenHow::new()
        .flags(OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NONBLOCK | OFlag::O_NOCTTY)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    Ok(File::from(openat2(&root, path, how)?))
}

/// Creates `name` in `dir` (a staging `replay` made), fresh.
fn create_at(dir: &OwnedFd, name: &str) -> io::Result<File> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let fd = openat(
        dir,
        name,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn command(tool: cmdlog::ToolKind, args: &[&str], ins: &[&str], outs: &[&str]) -> Command {
        let own = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Command {
            id: 7,
            tool,
            program: "cmake".into(),
            args: own(args),
            cwd: ".".into(),
            env: BTreeMap::new(),
            inputs: own(ins),
            outputs: own(outs),
            cache_key: None,
        }
    }

    fn unlimited() -> Limits {
        Limits {
            max_output: None,
            timeout: None,
            interrupted: Arc::new(AtomicBool::new(false)),
        }
    }

    #[test]
    fn a_copy_is_held_to_the_limits_and_leaves_nothing_when_stopped() {
        let (_tmp, root) = planted();
        std::fs::write(root.join("big"), vec![7u8; 3 * COPY_CHUNK]).expect("big");
        let base = StageBase::open(&root).expect("stage base");
        let copy = command(cmdlog::ToolKind::Copy, &["big", "c"], &["big"], &["c"]);
        let limited = |limits: Limits| {
            let done = perform(&copy, &root, &base, &limits);
            assert!(
                matches!(done, Err(BuiltinError::Stopped { .. })),
                "{done:?}"
            );
            match done {
                Err(BuiltinError::Stopped { stop, .. }) => stop,
                _ => unreachable!(),
            }
        };
        let stop = limited(Limits {
            max_output: Some(COPY_CHUNK as u64),
            ..unlimited()
        });
        assert!(matches!(stop, Stop::FileSize { .. }), "{stop:?}");
        let stop = limited(Limits {
            timeout: Some(Duration::ZERO),
            ..unlimited()
        });
        assert!(matches!(stop, Stop::Timeout { .. }), "{stop:?}");
        let interrupted = unlimited();
        interrupted.interrupted.store(true, Ordering::SeqCst);
        let stop = limited(interrupted);
        assert!(matches!(stop, Stop::Interrupted { .. }), "{stop:?}");
        // Nothing copied is left, in place or staged.
        assert!(!root.join("c").exists());
        let staged = walkdir(base.path());
        assert!(staged.is_empty(), "{staged:?}");
        // Within the limits, it copies.
        let done = perform(&copy, &root, &base, &unlimited());
        let hash = journal::file_hash(&root.join("big")).expect("hash");
        assert!(
            matches!(&done, Ok(Done::Copied { source, .. }) if source.1 == hash),
            "{done:?}"
        );
    }

    /// The files beneath `dir`.
    fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walkdir(&path));
            } else {
                found.push(path);
            }
        }
        found
    }

    /// A root beside an `outside` directory holding `victim`, with
    /// `root/in -> outside` and `root/leak -> outside/victim` planted as
    /// if after the policy judged the paths (the second line's case).
    fn planted() -> (tempfile::TempDir, std::path::PathBuf) {
        let tmp = tempfile::tempdir().expect("temp dir");
        let root = tmp.path().join("root");
        let outside = tmp.path().join("outside");
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(&outside).expect("outside");
        std::fs::write(outside.join("victim"), b"victim").expect("victim");
        std::os::unix::fs::symlink(&outside, root.join("in")).expect("dir link");
        std::os::unix::fs::symlink(outside.join("victim"), root.join("leak")).expect("file link");
        (tmp, root)
    }

    #[test]
    fn no_operation_follows_a_link_out_of_the_root() {
        use cmdlog::ToolKind::{Copy, Remove, Rename};
        let (tmp, root) = planted();
        let base = StageBase::open(&root).expect("stage base");
        let copy = command(Copy, &["leak", "c"], &["leak"], &["c"]);
        assert!(matches!(
            perform(&copy, &root, &base, &unlimited()),
            Err(BuiltinError::Io { action: "read", .. })
        ));
        let copy = command(Copy, &["in/victim", "c"], &["in/victim"], &["c"]);
        assert!(perform(&copy, &root, &base, &unlimited()).is_err());
        let remove = command(Remove, &["in/victim"], &[], &["in/victim"]);
        assert!(perform(&remove, &root, &base, &unlimited()).is_err());
        let rename = command(
            Rename,
            &["in/victim", "x"],
            &["in/victim"],
            &["x", "in/victim"],
        );
        assert!(perform(&rename, &root, &base, &unlimited()).is_err());
        let rename = command(Rename, &["leak", "in/x"], &["leak"], &["in/x", "leak"]);
        assert!(perform(&rename, &root, &base, &unlimited()).is_err());
        assert_eq!(
            std::fs::read(tmp.path().join("outside/victim")).expect("victim"),
            b"victim"
        );
        assert!(!tmp.path().join("outside/x").exists());
        assert!(!root.join("c").exists());
    }

    #[test]
    fn replays_own_staging_is_never_renamed_or_removed() {
        let (_tmp, root) = planted();
        let base = StageBase::open(&root).expect("stage base");
        let remove = command(
            cmdlog::ToolKind::Remove,
            &[".replay-stage/x"],
            &[],
            &[".replay-stage/x"],
        );
        assert!(matches!(
            perform(&remove, &root, &base, &unlimited()),
            Err(BuiltinError::Stage {
                source: StagingError::Reserved(_),
                ..
            })
        ));
        assert!(base.path().is_dir());
    }

    #[test]
    fn a_link_is_never_renamed_and_a_link_out_is_never_made() {
        use cmdlog::ToolKind::{Rename, Symlink};
        let (tmp, root) = planted();
        std::fs::create_dir_all(root.join("a/b")).expect("dirs");
        std::fs::write(root.join("f"), b"f").expect("f");
        // Inside the root from `a/b`; from the root, `../../f` is outside.
        std::os::unix::fs::symlink("../../f", root.join("a/b/l")).expect("link");
        let base = StageBase::open(&root).expect("stage base");
        let rename = command(Rename, &["a/b/l", "l"], &["a/b/l"], &["l", "a/b/l"]);
        let refused = perform(&rename, &root, &base, &unlimited());
        assert!(
            matches!(refused, Err(BuiltinError::NotAFile { .. })),
            "{refused:?}"
        );
        assert!(std::fs::symlink_metadata(root.join("l")).is_err());
        assert!(std::fs::symlink_metadata(root.join("a/b/l")).is_ok());
        // `in -> outside` was planted after the check: `in/victim` is
        // outside now, and the link is not made.
        let symlink = command(Symlink, &["in/victim", "v"], &["in/victim"], &["v"]);
        assert!(perform(&symlink, &root, &base, &unlimited()).is_err());
        assert!(std::fs::symlink_metadata(root.join("v")).is_err());
        assert!(tmp.path().join("outside/victim").exists());
    }

    #[test]
    fn a_remove_or_a_rename_that_fails_changes_nothing() {
        use cmdlog::ToolKind::{Remove, Rename};
        let (_tmp, root) = planted();
        std::fs::write(root.join("f"), b"f").expect("f");
        std::fs::write(root.join("g"), b"g").expect("g");
        let base = StageBase::open(&root).expect("stage base");
        let long = "n".repeat(300);
        // `f` is a file: `f/x` cannot be reached; `g` stays.
        let remove = command(Remove, &["g", "f/x"], &[], &["g", "f/x"]);
        assert!(perform(&remove, &root, &base, &unlimited()).is_err());
        assert!(root.join("g").exists());
        let remove = command(Remove, &["g", &long], &[], &["g", &long]);
        assert!(perform(&remove, &root, &base, &unlimited()).is_err());
        assert!(root.join("g").exists());
        // No directory is left behind by a rename that cannot be done.
        let to = format!("nd1/nd2/{long}");
        let rename = command(Rename, &["g", &to], &["g"], &[&to, "g"]);
        assert!(perform(&rename, &root, &base, &unlimited()).is_err());
        assert!(root.join("g").exists());
        assert!(!root.join("nd1").exists());
        // Nor when the move itself fails: a missing source.
        let rename = command(Rename, &["gone", "nd1/x"], &["gone"], &["nd1/x", "gone"]);
        assert!(perform(&rename, &root, &base, &unlimited()).is_err());
        assert!(!root.join("nd1").exists());
        // Done, it makes what it needs.
        let rename = command(Rename, &["g", "nd1/nd2/g"], &["g"], &["nd1/nd2/g", "g"]);
        assert!(perform(&rename, &root, &base, &unlimited()).is_ok());
        assert_eq!(std::fs::read(root.join("nd1/nd2/g")).expect("moved"), b"g");
    }

    #[test]
    fn replays_own_staging_is_never_copied_from() {
        let (_tmp, root) = planted();
        let base = StageBase::open(&root).expect("stage base");
        std::fs::create_dir_all(root.join(".replay-stage/x")).expect("dir");
        std::fs::write(root.join(".replay-stage/x/o"), b"o").expect("o");
        let copy = command(
            cmdlog::ToolKind::Copy,
            &[".replay-stage/x/o", "c"],
            &[".replay-stage/x/o"],
            &["c"],
        );
        assert!(matches!(
            perform(&copy, &root, &base, &unlimited()),
            Err(BuiltinError::Stage {
                source: StagingError::Reserved(_),
                ..
            })
        ));
    }

    #[test]
    fn a_renamed_file_gets_a_committed_outputs_mode() {
        use std::os::unix::fs::PermissionsExt;
        let (_tmp, root) = planted();
        let base = StageBase::open(&root).expect("stage base");
        std::fs::write(root.join("f"), b"plain").expect("f");
        std::fs::set_permissions(root.join("f"), std::fs::Permissions::from_mode(0o6777))
            .expect("chmod");
        let rename = command(
            cmdlog::ToolKind::Rename,
            &["f", "bin/tool"],
            &["f"],
            &["bin/tool", "f"],
        );
        let done = perform(&rename, &root, &base, &unlimited()).expect("renamed");
        let mode = std::fs::metadata(root.join("bin/tool"))
            .expect("moved")
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644);
        // Its hash is what the journal would compute.
        assert!(
            matches!(&done, Done::Moved(h) if h[0].1 == journal::output_hash(&root.join("bin/tool"))),
            "{done:?}"
        );
    }

    #[test]
    fn removing_a_link_removes_the_link_not_its_target() {
        let (tmp, root) = planted();
        let base = StageBase::open(&root).expect("stage base");
        let remove = command(cmdlog::ToolKind::Remove, &["leak"], &[], &["leak"]);
        let done = perform(&remove, &root, &base, &unlimited()).expect("removed");
        assert!(matches!(done, Done::Moved(h) if h[0].1 == journal::ABSENT));
        assert!(std::fs::symlink_metadata(root.join("leak")).is_err());
        assert!(tmp.path().join("outside/victim").exists());
    }
}
