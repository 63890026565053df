//! Driver mode: `replay drive --policy P -- aotc input.bc ...` starts the
//! producer with a pipe for its log, passes its stdout and stderr through,
//! waits for it to exit, and only then validates and runs what it logged.
//! The producer's memory is returned before any tool starts, so the
//! pipeline's peak is max(compiler, tool), not the sum.
//!
//! The protocol (see the README): the producer finds the write end of the
//! pipe as the descriptor number in `REPLAY_LOG_FD`, and the work root in
//! `REPLAY_ROOT`; it writes one v1 log there and closes it. `replay` copies
//! the log to a file under the root as it arrives (it must read it twice),
//! bounded by the reader's size limit. A producer that exits non-zero, or
//! writes a truncated log, causes nothing to run.

use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Instant;

use nix::fcntl::OFlag;

use crate::run::trace::{ExitStatus, ProcessPeak, Tracer, Tree};

/// The environment variable naming the log's descriptor.
pub const LOG_FD_VAR: &str = "REPLAY_LOG_FD";

/// The environment variable naming the work root.
pub const ROOT_VAR: &str = "REPLAY_ROOT";

/// What the producer did.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Produced {
    /// The producer as started.
    pub program: String,
    /// How it exited.
    pub exit: ExitStatus,
    /// Its wall time, in milliseconds.
    pub wall_ms: u64,
    /// Its own exact peak RSS (`VmHWM` at exit), if it could be traced.
    pub peak_rss: Option<u64>,
    /// `ru_maxrss` of the producer, in bytes: a cross-check.
    pub ru_maxrss: u64,
    /// Bytes of log it wrote.
    pub log_bytes: u64,
    /// Where the log is (the report does not say: it is under the root).
    #[serde(skip)]
    pub log: PathBuf,
}

/// Why driver mode could not get a log.
#[derive(Debug, thiserror::Error)]
pub enum DriveError {
    /// The pipe could not be made.
    #[error("cannot create the log pipe")]
    Pipe(#[source] nix::Error),
    /// The log file under the root could not be written.
    #[error("cannot write the producer's log to `{}`", path.display())]
    LogFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log file under the root could not be created.
    #[error("cannot create the producer's log")]
    OwnLog(#[source] crate::ownfile::OwnFileError),
    /// The producer could not be started.
    #[error("cannot start the producer `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Waiting for it failed.
    #[error("lost track of the producer")]
    Wait(#[source] io::Error),
    /// It wrote more than a log may hold.
    #[error("the producer wrote more than {0} bytes of log")]
    TooLarge(u64),
}

/// Starts `program` with `args` as a producer whose log goes to `log`
/// (under `root`), passes its output through, and waits for it.
pub fn produce(
    program: &OsString,
    args: &[OsString],
    root: &Path,
    log: &Path,
    max_bytes: u64,
) -> Result<Produced, DriveError> {
    let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(DriveError::Pipe)?;
    // The write end must survive exec in the producer, under the number
    // we announce. It is cleared of CLOEXEC only in the child, between fork
    // and exec, so no other child of replay can inherit it.
    let fd = write.as_raw_fd();
    // A name planted in the root (a hard link or symlink to a file outside
    // it, a FIFO) is unlinked, never written through.
    let mut file = crate::ownfile::create_fresh(log).map_err(DriveError::OwnLog)?;
    let mut command = Command::new(program);
    command
        .args(args)
        .env(LOG_FD_VAR, fd.to_string())
        .env(ROOT_VAR, root)
        .process_group(0);
    // SAFETY: `fcntl` is async-signal-safe and touches only the descriptor
    // number captured by value; nothing is allocated between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 || libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC) < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let started = Instant::now();
    let child = command.spawn().map_err(|source| DriveError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    drop(write);
    let copier = thread::Builder::new()
        .name("replay-drive-log".into())
        .spawn(move || copy_bounded(read, &mut file, max_bytes))
        .map_err(DriveError::Wait)?;
    let pid = child.id() as i32;
    // Exact peak of the producer: attach now; it is measured at its exit.
    let (exit, ru_maxrss, peaks) = match Tracer::seize(pid, Tree::default(), None) {
        Ok(tracer) => {
            let crate::run::trace::Traced { main, peaks, .. } =
                tracer.wait().map_err(DriveError::Wait)?;
            (main.status, main.ru_maxrss, peaks)
        }
        Err(_) => {
            let mut child = child;
            let status = child.wait().map_err(DriveError::Wait)?;
            let exit = ExitStatus::from_std(status);
            (exit, 0, Vec::new())
        }
    };
    let log_bytes = copier
        .join()
        .map_err(|_| DriveError::Wait(io::Error::other("the log copier panicked")))?
        .map_err(|source| match source {
            CopyError::TooLarge => DriveError::TooLarge(max_bytes),
            CopyError::Io(source) => DriveError::LogFile {
                path: log.to_owned(),
                source,
            },
        })?;
    Ok(Produced {
        program: program.to_string_lossy().into_owned(),
        exit,
        wall_ms: started.elapsed().as_millis() as u64,
        peak_rss: peaks
            .iter()
            .find(|p| p.pid == pid)
            .or_else(|| peaks.iter().max_by_key(|p| p.bytes))
            .map(|p: &ProcessPeak| p.bytes),
        ru_maxrss,
        log_bytes,
        log: log.to_owned(),
    })
}

enum CopyError {
    TooLarge,
    Io(io::Error),
}

/// Copies the pipe to the file until EOF, at most `max` bytes.
fn copy_bounded(read: OwnedFd, file: &mut File, max: u64) -> Result<u64, CopyError> {
    let mut pipe = File::from(read);
    let mut buffer = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match pipe.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Io(e)),
        };
        total += n as u64;
        if total > max {
            return Err(CopyError::TooLarge);
        }
        file.write_all(&buffer[..n]).map_err(CopyError::Io)?;
    }
    file.sync_data().map_err(CopyError::Io)?;
    Ok(total)
}

/// A signal's name for messages: `SIGKILL`, or the number if it has none.
pub fn signal_name(signal: i32) -> String {
    nix::sys::signal::Signal::try_from(signal)
        .map(|s| s.as_str().to_owned())
        .unwrap_or_else(|_| format!("signal {signal}"))
}

/// How a producer that did not succeed ended, for the user, and the exit
/// code `replay drive` returns for it.
pub fn producer_failure(program: &str, exit: ExitStatus) -> (i32, String) {
    use cmdlog::exit_codes::ReplayExitCode;
    match exit {
        ExitStatus::Signal(signal) => (
            ReplayExitCode::PRODUCER_KILLED,
            format!(
                "the producer `{program}` was killed by signal {signal} ({}): nothing ran",
                signal_name(signal)
            ),
        ),
        ExitStatus::Code(code) => (
            ReplayExitCode::TOOL_FAILED,
            format!("the producer `{program}` failed with exit code {code}: nothing ran"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_producer_killed_by_a_signal_is_not_a_failed_tool() {
        let (code, message) = producer_failure("aotc", ExitStatus::Signal(9));
        assert_eq!(code, cmdlog::exit_codes::ReplayExitCode::PRODUCER_KILLED);
        assert!(message.contains("signal 9 (SIGKILL)"), "{message}");
        let (code, message) = producer_failure("aotc", ExitStatus::Code(3));
        assert_eq!(code, cmdlog::exit_codes::ReplayExitCode::TOOL_FAILED);
        assert!(message.contains("exit code 3"), "{message}");
    }
}
