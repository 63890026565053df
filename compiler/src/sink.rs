//! Where the log goes: a file written atomically (a temporary beside it,
//! renamed when the log is complete), or, in driver mode, the descriptor
//! `replay drive` handed over.
//!
//! The driver protocol: when `REPLAY_LOG_FD` holds a decimal descriptor
//! number (3 or more, open for writing), the log is written there instead of
//! a file, and `REPLAY_ROOT` names the work root. stdout and stderr stay the
//! user's. A producer that exits non-zero or leaves the document unfinished
//! runs nothing, so no cleanup of the descriptor is needed on failure.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// The environment variable holding the log's descriptor in driver mode.
pub const LOG_FD_VAR: &str = "REPLAY_LOG_FD";

/// The environment variable holding the work root in driver mode.
pub const ROOT_VAR: &str = "REPLAY_ROOT";

/// Why driver mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// `REPLAY_LOG_FD` is not a descriptor number aotc may take.
    #[error("`{LOG_FD_VAR}` is `{value}`, not a descriptor number of 3 or more")]
    BadNumber {
        /// The variable's value.
        value: String,
    },
    /// `REPLAY_LOG_FD` names a descriptor that is not open.
    #[error("`{LOG_FD_VAR}` names descriptor {fd}, which is not open")]
    NotOpen {
        /// The descriptor.
        fd: i32,
        /// What `fcntl` said.
        #[source]
        source: io::Error,
    },
    /// `REPLAY_LOG_FD` is set but `REPLAY_ROOT` is not.
    #[error("`{LOG_FD_VAR}` is set but `{ROOT_VAR}` is not")]
    NoRoot,
    /// The descriptor was already taken by this process.
    #[error("the driver descriptor was already taken")]
    AlreadyTaken,
}

impl DriverError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        "start `aotc` with `replay drive --policy FILE -- aotc ...`, or unset `REPLAY_LOG_FD` and pass `--log LOG`"
    }
}

/// Reads the driver protocol's variables: `None` when not in driver mode.
pub fn driver_from_env() -> Result<Option<(i32, PathBuf)>, DriverError> {
    let Some(value) = std::env::var_os(LOG_FD_VAR) else {
        return Ok(None);
    };
    let text = value.to_string_lossy().into_owned();
    let fd = match text.trim().parse::<i32>() {
        Ok(fd) if fd >= 3 => fd,
        _ => return Err(DriverError::BadNumber { value: text }),
    };
    let root = std::env::var_os(ROOT_VAR)
        .filter(|r| !r.is_empty())
        .ok_or(DriverError::NoRoot)?;
    Ok(Some((fd, PathBuf::from(root))))
}

static DRIVER_FD_TAKEN: AtomicBool = AtomicBool::new(false);

/// Takes ownership of the driver's descriptor `fd`.
///
/// It is checked with `fcntl(F_GETFD)` first and marked close-on-exec, so
/// the tools `--exec` runs do not inherit it.
pub fn take_driver_fd(fd: i32) -> Result<File, DriverError> {
    if fd < 3 {
        return Err(DriverError::BadNumber {
            value: fd.to_string(),
        });
    }
    // SAFETY: `fcntl(F_GETFD)` only reads the descriptor table; any integer
    // is a valid argument and an unopened one yields -1 (EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
    if flags == -1 {
        return Err(DriverError::NotOpen {
            fd,
            source: io::Error::last_os_error(),
        });
    }
    if DRIVER_FD_TAKEN.swap(true, Ordering::SeqCst) {
        return Err(DriverError::AlreadyTaken);
    }
    // SAFETY: as above; setting FD_CLOEXEC on an open descriptor only changes
    // whether children inherit it.
    unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) };
    // SAFETY: `fd` is open (checked above) and is not stdin, stdout or
    // stderr. The driver protocol hands this descriptor to the producer for
    // the log alone: no other part of this process opened it or refers to
    // it, and `DRIVER_FD_TAKEN` makes sure we wrap it at most once, so the
    // `OwnedFd` is its only owner and closing it on drop is correct.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    Ok(File::from(owned))
}

/// The log's destination while it is written.
pub enum Sink {
    /// A temporary file, renamed to `path` by [`Sink::commit`].
    File {
        /// The buffered temporary.
        out: BufWriter<File>,
        /// The temporary's path.
        temp: PathBuf,
        /// The final path.
        path: PathBuf,
    },
    /// The driver's descriptor.
    Driver(BufWriter<File>),
}

impl Sink {
    /// A sink that becomes `path` once committed.
    pub fn file(path: &Path) -> io::Result<Sink> {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(".aotc-partial");
        let temp = path.with_file_name(name);
        let out = BufWriter::new(File::create(&temp)?);
        Ok(Sink::File {
            out,
            temp,
            path: path.to_owned(),
        })
    }

    /// A sink on the driver's descriptor.
    pub fn driver(file: File) -> Sink {
        Sink::Driver(BufWriter::new(file))
    }

    /// Flushes and, for a file, moves it into place.
    pub fn commit(self) -> io::Result<()> {
        match self {
            Sink::File { out, temp, path } => {
                let file = out.into_inner().map_err(|e| e.into_error())?;
                file.sync_all()?;
                drop(file);
                std::fs::rename(&temp, &path)
            }
            Sink::Driver(out) => {
                out.into_inner().map_err(|e| e.into_error())?;
                Ok(())
            }
        }
    }

    /// Removes a file sink's temporary after a failure.
    pub fn abandon(self) {
        if let Sink::File { temp, .. } = self {
            let _ = std::fs::remove_file(temp);
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File { out, .. } => out.write(buf),
            Sink::Driver(out) => out.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File { out, .. } => out.flush(),
            Sink::Driver(out) => out.flush(),
        }
    }
}
