//! What kind of file an input is. A tool that opens a fifo waits for a
//! writer (until its timeout), and a device or socket is no build input:
//! inputs, and what input directories hold, are regular files or
//! directories. [`check_input_kind`] is the check the executor repeats
//! right before a command runs.

use std::fs::FileType;
use std::io;
use std::path::{Path, PathBuf};

/// Why a path may not be an input.
#[derive(Debug, thiserror::Error)]
pub enum InputKindError {
    /// It cannot be looked at (it does not exist, or leads nowhere).
    #[error("cannot look at input `{path}`")]
    Unreadable {
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// It is not a regular file or a directory.
    #[error("input `{path}` is a {kind}, not a regular file or directory: a tool reading it could block or read a device")]
    NotRegular {
        /// The path.
        path: PathBuf,
        /// What it is: `fifo`, `socket`, `character device`, `block device`.
        kind: &'static str,
    },
}

/// Checks that `path` (symlinks followed, as a tool opens it) is a regular
/// file or a directory: not a fifo, socket or device.
pub fn check_input_kind(path: &Path) -> Result<(), InputKindError> {
    let md = std::fs::metadata(path).map_err(|source| InputKindError::Unreadable {
        path: path.to_owned(),
        source,
    })?;
    match special(&md.file_type()) {
        None => Ok(()),
        Some(kind) => Err(InputKindError::NotRegular {
            path: path.to_owned(),
            kind,
        }),
    }
}

/// What a file type is when it is neither a regular file, a directory nor
/// a symlink: `None` for those three.
pub(crate) fn special(ft: &FileType) -> Option<&'static str> {
    if ft.is_file() || ft.is_dir() || ft.is_symlink() {
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if ft.is_fifo() {
            return Some("fifo");
        }
        if ft.is_socket() {
            return Some("socket");
        }
        if ft.is_char_device() {
            return Some("character device");
        }
        if ft.is_block_device() {
            return Some("block device");
        }
    }
    Some("special file")
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn regular_files_and_directories_pass_and_devices_and_fifos_do_not() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let file = tmp.path().join("f");
        std::fs::write(&file, "x").expect("write");
        assert!(check_input_kind(&file).is_ok());
        assert!(check_input_kind(tmp.path()).is_ok());
        assert!(matches!(
            check_input_kind(Path::new("/dev/null")),
            Err(InputKindError::NotRegular {
                kind: "character device",
                ..
            })
        ));
        let fifo = tmp.path().join("p");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        assert!(matches!(
            check_input_kind(&fifo),
            Err(InputKindError::NotRegular { kind: "fifo", .. })
        ));
        assert!(matches!(
            check_input_kind(&tmp.path().join("missing")),
            Err(InputKindError::Unreadable { .. })
        ));
    }
}
