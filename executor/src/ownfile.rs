//! Opening `replay`'s own files (the journal, the driver-mode log, the
//! report, the root's lock) in a work root that tools and log authors can
//! write to.
//!
//! Anyone who can write in the root can plant a name there before `replay`
//! runs: a symlink or a hard link to a file outside the root (which
//! `replay`, unsandboxed, would then truncate and write), or a FIFO (whose
//! `open` blocks until a writer comes, forever). So every own file is
//! opened in one of two ways, and never by a plain `open`:
//!
//! - [`create_fresh`]: a new file, `O_CREAT|O_EXCL|O_NOFOLLOW`. Whatever
//!   held the name before is unlinked first (a link's target is never
//!   touched: only the name goes), and the exclusive create fails rather
//!   than follow anything planted in between.
//! - [`open_existing`]: an existing file, `O_NOFOLLOW|O_NONBLOCK` (so a
//!   FIFO or a device cannot block the open), then checked with `fstat` on
//!   the open descriptor: it must be a regular file, with one link, owned
//!   by the user `replay` runs as. Anything else is refused and never read
//!   from or written to.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why one of `replay`'s own files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OwnFileError {
    /// The system refused to open or create it.
    #[error("cannot open `{}`", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Its name is taken by something `replay` must not replace (a
    /// directory), or another process keeps planting it.
    #[error("cannot create `{}`: {reason}", path.display())]
    Taken {
        /// The file.
        path: PathBuf,
        /// What holds the name.
        reason: String,
    },
    /// It exists but is not a file `replay` may have written: a symlink,
    /// a FIFO, a device, a file with other hard links, or someone else's.
    #[error("refusing to use `{}`: {reason}", path.display())]
    Unsafe {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl OwnFileError {
    /// The file the error is about.
    pub fn path(&self) -> &Path {
        match self {
            OwnFileError::Open { path, .. }
            | OwnFileError::Taken { path, .. }
            | OwnFileError::Unsafe { path, .. } => path,
        }
    }
}

/// How many times [`create_fresh`] unlinks a name that reappears before it
/// gives up: someone is racing it.
const CREATE_TRIES: usize = 3;

/// Creates `path` as a new, empty file for writing (mode 0644 less the
/// umask), replacing whatever name was there without following or writing
/// through it.
pub fn create_fresh(path: &Path) -> Result<File, OwnFileError> {
    for _ in 0..CREATE_TRIES {
        let opened = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NOCTTY)
            .open(path);
        match opened {
            Ok(file) => return Ok(file),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                remove_name(path)?;
            }
            Err(source) => {
                return Err(OwnFileError::Open {
                    path: path.to_owned(),
                    source,
                })
            }
        }
    }
    Err(OwnFileError::Taken {
        path: path.to_owned(),
        reason:
            "the name keeps reappearing while replay replaces it (another process is writing there)"
                .into(),
    })
}

/// Unlinks the name `path` (not what it points to). A directory is not
/// replaced: it is refused.
fn remove_name(path: &Path) -> Result<(), OwnFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => {
            return Err(OwnFileError::Taken {
                path: path.to_owned(),
                reason: "it is a directory".into(),
            })
        }
        Ok(_) => {}
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(OwnFileError::Open {
                path: path.to_owned(),
                source,
            })
        }
    }
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(OwnFileError::Open {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Opens the existing file `path` for reading and appending, or returns
/// `None` if there is none. Refuses (without reading or writing it, and
/// without blocking) a symlink, anything but a regular file, a file with
/// more than one link, and a file the current user does not own.
pub fn open_existing(path: &Path) -> Result<Option<File>, OwnFileError> {
    let opened = OpenOptions::new()
        .read(true)
        .append(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file(path, "it is a symbolic link".into()))
        }
        Err(source) => {
            return Err(OwnFileError::Open {
                path: path.to_owned(),
                source,
            })
        }
    };
    checked(path, file).map(Some)
}

/// Opens `path` for reading and writing, creating it if there is none but
/// never truncating or replacing it: for a file several `replay` processes
/// share (the root's lock, which must stay one inode for `flock` to mean
/// anything). Refuses what [`open_existing`] refuses, without blocking.
pub fn open_shared(path: &Path) -> Result<File, OwnFileError> {
    let opened = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path);
    let file = match opened {
        Ok(file) => file,
        Err(error) if error.raw_os_error() == Some(libc::ELOOP) => {
            return Err(unsafe_file(path, "it is a symbolic link".into()))
        }
        Err(source) => {
            return Err(OwnFileError::Open {
                path: path.to_owned(),
                source,
            })
        }
    };
    checked(path, file)
}

/// `file` (opened from `path`) if it is a regular file with one link owned
/// by this user, made blocking again.
fn checked(path: &Path, file: File) -> Result<File, OwnFileError> {
    let meta = file.metadata().map_err(|source| OwnFileError::Open {
        path: path.to_owned(),
        source,
    })?;
    // SAFETY: `geteuid` takes no arguments and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if let Some(reason) = refusal(meta.file_type(), meta.nlink(), meta.uid(), euid) {
        return Err(unsafe_file(path, reason));
    }
    clear_nonblock(&file).map_err(|source| OwnFileError::Open {
        path: path.to_owned(),
        source,
    })?;
    Ok(file)
}

fn unsafe_file(path: &Path, reason: String) -> OwnFileError {
    OwnFileError::Unsafe {
        path: path.to_owned(),
        reason,
    }
}

/// Why a file with this type, link count and owner is not one of ours.
fn refusal(kind: std::fs::FileType, links: u64, owner: u32, euid: u32) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    if !kind.is_file() {
        let what = if kind.is_fifo() {
            "a FIFO (named pipe)"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else {
            "not a regular file"
        };
        return Some(format!("it is {what}, not a regular file"));
    }
    if links != 1 {
        return Some(format!(
            "it has {links} hard links, so it may be a file outside the work root"
        ));
    }
    if owner != euid {
        return Some(format!(
            "it belongs to user {owner}, not to the user replay runs as ({euid})"
        ));
    }
    None
}

/// Makes reads and writes on `file` blocking again (it was opened
/// `O_NONBLOCK` only so that the open itself could not block).
fn clear_nonblock(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: `fcntl` with F_GETFL/F_SETFL on a descriptor this function
    // borrows for the call; no pointers are passed.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary directory holding `outside.txt` ("precious"): the file a
    /// planted link must never let `replay` write.
    fn with_precious_file() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside.txt");
        std::fs::write(&outside, "precious").unwrap();
        (dir, outside)
    }
    use std::io::{Read, Write};

    #[test]
    fn create_fresh_makes_a_new_file_and_unlinks_a_planted_hard_link() {
        let (dir, outside) = with_precious_file();
        let journal = dir.path().join("log.json.journal");
        std::fs::hard_link(&outside, &journal).unwrap();
        let mut file = create_fresh(&journal).unwrap();
        file.write_all(b"entry").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert_eq!(std::fs::read_to_string(&journal).unwrap(), "entry");
        assert_eq!(std::fs::metadata(&journal).unwrap().nlink(), 1);
    }

    #[test]
    fn create_fresh_replaces_a_symlink_and_a_fifo_without_following_them() {
        let (dir, outside) = with_precious_file();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        create_fresh(&link).unwrap().write_all(b"x").unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert!(std::fs::symlink_metadata(&link).unwrap().is_file());

        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        create_fresh(&fifo).unwrap();
        assert!(std::fs::symlink_metadata(&fifo).unwrap().is_file());
    }

    #[test]
    fn create_fresh_refuses_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        let error = create_fresh(&sub).unwrap_err();
        assert!(matches!(error, OwnFileError::Taken { .. }), "{error}");
        assert!(sub.is_dir());
    }

    #[test]
    fn open_existing_reads_and_appends_our_own_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        assert!(open_existing(&path).unwrap().is_none());
        std::fs::write(&path, "one\n").unwrap();
        let mut file = open_existing(&path).unwrap().unwrap();
        let mut text = String::new();
        file.read_to_string(&mut text).unwrap();
        assert_eq!(text, "one\n");
        file.write_all(b"two\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "one\ntwo\n");
    }

    #[test]
    fn open_existing_refuses_a_hard_link_and_leaves_it_alone() {
        let (dir, outside) = with_precious_file();
        let path = dir.path().join("j");
        std::fs::hard_link(&outside, &path).unwrap();
        let error = open_existing(&path).unwrap_err();
        assert!(error.to_string().contains("2 hard links"), "{error}");
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    }

    #[test]
    fn open_existing_refuses_a_symlink() {
        let (dir, outside) = with_precious_file();
        let path = dir.path().join("j");
        std::os::unix::fs::symlink(&outside, &path).unwrap();
        let error = open_existing(&path).unwrap_err();
        assert!(error.to_string().contains("symbolic link"), "{error}");
    }

    #[test]
    fn open_existing_refuses_a_fifo_without_blocking() {
        // Regression: a FIFO journal hung `replay` in `open()`.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let error = open_existing(&path).unwrap_err();
        assert!(error.to_string().contains("FIFO"), "{error}");
    }

    #[test]
    fn open_shared_creates_once_and_never_truncates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        open_shared(&path).unwrap().write_all(b"123").unwrap();
        drop(open_shared(&path).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "123");
    }

    #[test]
    fn open_shared_refuses_links_and_fifos() {
        let (dir, outside) = with_precious_file();
        let hard = dir.path().join("hard");
        std::fs::hard_link(&outside, &hard).unwrap();
        assert!(matches!(
            open_shared(&hard),
            Err(OwnFileError::Unsafe { .. })
        ));
        let soft = dir.path().join("soft");
        std::os::unix::fs::symlink(&outside, &soft).unwrap();
        assert!(matches!(
            open_shared(&soft),
            Err(OwnFileError::Unsafe { .. })
        ));
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            open_shared(&fifo),
            Err(OwnFileError::Unsafe { .. })
        ));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    }

    #[test]
    fn files_of_other_users_and_odd_types_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = std::fs::metadata(dir.path()).unwrap().file_type();
        assert!(refusal(file, 2, 1000, 1000).unwrap().contains("directory"));
        std::fs::write(dir.path().join("f"), "").unwrap();
        let file = std::fs::metadata(dir.path().join("f")).unwrap().file_type();
        assert_eq!(refusal(file, 1, 1000, 1000), None);
        assert!(refusal(file, 1, 0, 1000).unwrap().contains("user 0"));
        assert!(refusal(file, 3, 1000, 1000)
            .unwrap()
            .contains("3 hard links"));
    }
}
