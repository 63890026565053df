//! One run per work root: [`RootLock`], an exclusive `flock` on the root's
//! lock file (`ROOT/.replay.lock`) held for the whole run (and, in driver
//! mode, from before the producer starts).
//!
//! Two runs on one root would interleave: one's clean-up removes the
//! other's temporaries, a fresh run's journal replaces one a resume is
//! appending to. So a second run does not wait: it stops at once, naming
//! the holder's pid, which the holder writes into the lock file.
//!
//! The lock file is never removed (removing it would let a third run lock
//! a new file while a second still holds the old one), and never replaced:
//! it is opened with [`ownfile::open_shared`]. The kernel drops the lock
//! when the holder exits, however it exits, so a crash leaves no stale
//! lock behind.

use std::fs::File;
use std::io::{self, Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::ownfile::{self, OwnFileError};

/// The lock file's name under the work root.
pub const LOCK_FILE: &str = ".replay.lock";

/// Why a run could not take the root.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// The lock file cannot be opened, or is not `replay`'s own.
    #[error("cannot open the work root's lock file")]
    Open(#[source] OwnFileError),
    /// Another process holds the lock.
    #[error(
        "another replay run ({}) is using the work root `{}`",
        holder.map_or_else(|| "pid unknown".to_owned(), |pid| format!("pid {pid}")),
        root.display()
    )]
    Held {
        /// The work root.
        root: PathBuf,
        /// The holder's pid, as it wrote it in the lock file.
        holder: Option<u32>,
    },
    /// Taking the lock or writing the pid failed.
    #[error("cannot lock the work root `{}`", root.display())]
    Lock {
        /// The work root.
        root: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl LockError {
    /// What the user can do about it.
    pub fn hint(&self) -> String {
        match self {
            LockError::Held { holder, .. } => format!(
                "one work root takes one run at a time: wait for that run to finish{}, then run again",
                holder.map_or_else(String::new, |pid| format!(" (or stop it: `kill {pid}`)"))
            ),
            LockError::Open(OwnFileError::Unsafe { .. }) => format!(
                "`{LOCK_FILE}` in the work root is not a lock file replay made: remove it, then run again"
            ),
            LockError::Open(_) | LockError::Lock { .. } => format!(
                "replay keeps its lock file `{LOCK_FILE}` in the work root: make the root writable, then run again"
            ),
        }
    }
}

/// The exclusive lock on a work root; released when dropped (or when the
/// process ends, however it ends).
#[derive(Debug)]
pub struct RootLock {
    root: PathBuf,
    _file: File,
}

impl RootLock {
    /// Takes the lock on `root` (canonical), or fails at once if another
    /// process holds it.
    pub fn acquire(root: &Path) -> Result<RootLock, LockError> {
        let path = root.join(LOCK_FILE);
        let mut file = ownfile::open_shared(&path).map_err(LockError::Open)?;
        let lock_error = |source| LockError::Lock {
            root: root.to_owned(),
            source,
        };
        // SAFETY: `flock` on a descriptor `file` owns for the call; no
        // pointers are passed.
        let locked = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if locked != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(LockError::Held {
                    root: root.to_owned(),
                    holder: read_pid(&mut file),
                });
            }
            return Err(lock_error(error));
        }
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "{}", std::process::id()))
            .map_err(lock_error)?;
        Ok(RootLock {
            root: root.to_owned(),
            _file: file,
        })
    }

    /// The lock a run needs on `root`: none more if `held` is already the
    /// lock on that root (driver mode takes it before the producer), else
    /// a new one, held by the returned guard.
    pub fn hold_for_run(
        root: &Path,
        held: Option<&Arc<RootLock>>,
    ) -> Result<Option<RootLock>, LockError> {
        match held {
            Some(lock) if lock.root == root => Ok(None),
            _ => RootLock::acquire(root).map(Some),
        }
    }

    /// The root this lock holds.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The pid a holder wrote into the lock file, if it has yet.
fn read_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.take(32).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_root_fails_at_once_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(dir.path()).unwrap();
        // `flock` locks belong to the open file: a second open in this same
        // process conflicts as another process's would.
        let error = RootLock::acquire(dir.path()).unwrap_err();
        let pid = std::process::id();
        assert!(
            matches!(error, LockError::Held { holder: Some(p), .. } if p == pid),
            "{error:?}"
        );
        assert!(error.to_string().contains(&format!("pid {pid}")), "{error}");
        assert!(error.hint().contains(&format!("kill {pid}")));
        drop(first);
        RootLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_run_under_a_held_lock_takes_no_second_one() {
        let dir = tempfile::tempdir().unwrap();
        let held = Arc::new(RootLock::acquire(dir.path()).unwrap());
        assert!(RootLock::hold_for_run(dir.path(), Some(&held))
            .unwrap()
            .is_none());
        let other = tempfile::tempdir().unwrap();
        assert!(RootLock::hold_for_run(other.path(), Some(&held))
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_planted_lock_link_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, "precious").unwrap();
        std::os::unix::fs::symlink(&outside, dir.path().join(LOCK_FILE)).unwrap();
        assert!(matches!(
            RootLock::acquire(dir.path()),
            Err(LockError::Open(_))
        ));
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
    }
}
