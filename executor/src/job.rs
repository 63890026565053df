//! A [`Job`]: the log a run reads, the work root its paths are relative to,
//! and the policy that judges it, each checked to exist before anything
//! else happens.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use cmdlog::{LogReader, ReadError, Summary};

/// The files a `replay` run is about, resolved and checked.
#[derive(Debug, Clone)]
pub struct Job {
    /// The command log.
    pub log: PathBuf,
    /// The file the passes read the log from: the log itself, or a
    /// snapshot of it with no name ([`Job::snapshot`]).
    pub read_from: PathBuf,
    /// The work root: every path in the log is relative to it (canonical).
    pub root: PathBuf,
    /// The policy file.
    pub policy: PathBuf,
}

/// Why a job's files are not usable.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The log cannot be opened.
    #[error("cannot open the log `{}`", path.display())]
    Log {
        /// The log's path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The policy cannot be opened.
    #[error("cannot open the policy `{}`", path.display())]
    Policy {
        /// The policy's path as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The work root is not a usable directory.
    #[error("the work root `{}` is not a directory", path.display())]
    Root {
        /// The root as given or derived from the log.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log could not be copied into its private snapshot.
    #[error("cannot copy the log `{}` into a private snapshot in `{}`", path.display(), dir.display())]
    Snapshot {
        /// The log's path.
        path: PathBuf,
        /// The directory the snapshot is made in (`TMPDIR`).
        dir: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log is not a valid v1 log.
    #[error("the log `{}` is not a valid command log", path.display())]
    Malformed {
        /// The log's path.
        path: PathBuf,
        /// What and where.
        #[source]
        source: Box<ReadError>,
    },
}

impl Job {
    /// A job for `log` judged by `policy`, its work root `root` or, by
    /// default, the directory that holds the log.
    pub fn new(log: &Path, root: Option<&Path>, policy: &Path) -> Result<Job, JobError> {
        // A FIFO is not opened here: opening and closing it would cut off
        // the writer (it gets SIGPIPE or EPIPE), and would block until one
        // comes. The one pass that reads it opens it.
        let opened = std::fs::metadata(log).and_then(|meta| {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_fifo() {
                Ok(meta)
            } else {
                File::open(log).and_then(|file| file.metadata())
            }
        });
        match opened {
            // A directory opens fine on Unix and then fails at the first
            // read with a message that names no file: refuse it here.
            Ok(meta) if meta.is_dir() => {
                return Err(JobError::Log {
                    path: log.to_owned(),
                    source: io::Error::other("it is a directory, not a log file"),
                })
            }
            Ok(_) => {}
            Err(source) => {
                return Err(JobError::Log {
                    path: log.to_owned(),
                    source,
                })
            }
        }
        File::open(policy).map_err(|source| JobError::Policy {
            path: policy.to_owned(),
            source,
        })?;
        let root = match root {
            Some(root) => root.to_owned(),
            None => match log.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
                _ => PathBuf::from("."),
            },
        };
        let canonical = root
            .canonicalize()
            .and_then(|canonical| {
                if canonical.is_dir() {
                    Ok(canonical)
                } else {
                    Err(io::Error::new(
                        io::ErrorKind::NotADirectory,
                        "not a directory",
                    ))
                }
            })
            .map_err(|source| JobError::Root { path: root, source })?;
        Ok(Job {
            log: log.to_owned(),
            read_from: log.to_owned(),
            root: canonical,
            policy: policy.to_owned(),
        })
    }

    /// Copies the log to a file with no name and returns the job reading
    /// from it (through `/proc/self/fd`), with the file as its guard. Tools
    /// can write in the root (the log usually lives there) and, without
    /// Landlock, in the temporary directory: both passes must read the
    /// same bytes, whatever a tool does meanwhile, and a file with no name
    /// is one no tool can open by path.
    ///
    /// The copy is read as it is made, with the reader's limits: a log
    /// whose header is wrong, or that is not JSON, or that grows past
    /// [`cmdlog::Limits::max_log_bytes`], stops the copy where the reader
    /// stops, so nothing much is copied of a huge hostile log, and the
    /// error is the one `replay check` gives. A FIFO is read once, whole.
    #[cfg(target_os = "linux")]
    pub fn snapshot(&self) -> Result<(Job, File), JobError> {
        self.snapshot_with(cmdlog::Limits::default())
    }

    /// [`Job::snapshot`] with the reader's `limits`.
    #[cfg(target_os = "linux")]
    pub fn snapshot_with(&self, limits: cmdlog::Limits) -> Result<(Job, File), JobError> {
        use std::os::fd::AsRawFd;
        let snapshot = |source| JobError::Snapshot {
            path: self.log.clone(),
            dir: std::env::temp_dir(),
            source,
        };
        let copy = tempfile::tempfile().map_err(snapshot)?;
        let original = File::open(&self.log).map_err(|source| JobError::Log {
            path: self.log.clone(),
            source,
        })?;
        let mut tee = Tee {
            from: original,
            to: &copy,
            error: None,
        };
        let read = LogReader::new(&mut tee)
            .with_limits(limits)
            .read(&mut |_| std::ops::ControlFlow::Continue(()));
        // A failed write to the copy shows up to the reader as a read
        // error: report the write, which is what went wrong.
        if let Some(source) = tee.error.take() {
            return Err(snapshot(source));
        }
        read.map_err(|source| JobError::Malformed {
            path: self.log.clone(),
            source: Box::new(source),
        })?;
        let job = Job {
            read_from: PathBuf::from(format!("/proc/self/fd/{}", copy.as_raw_fd())),
            ..self.clone()
        };
        Ok((job, copy))
    }

    /// Reads the whole log through once, checking its format, and keeps
    /// nothing of it but the summary.
    pub fn scan_log(&self) -> Result<Summary, JobError> {
        let file = File::open(&self.read_from).map_err(|source| JobError::Log {
            path: self.log.clone(),
            source,
        })?;
        LogReader::new(file)
            .read(&mut |_| std::ops::ControlFlow::Continue(()))
            .map_err(|source| JobError::Malformed {
                path: self.log.clone(),
                source: Box::new(source),
            })
    }
}

/// A reader that writes what it reads to `to`: the snapshot, made as the
/// log is checked.
struct Tee<'a, R> {
    from: R,
    to: &'a File,
    /// The first write error, reported instead of the read error it causes.
    error: Option<io::Error>,
}

impl<R: io::Read> io::Read for Tee<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Write;
        let n = self.from.read(buf)?;
        if let Err(error) = (&mut &*self.to).write_all(&buf[..n]) {
            let kind = error.kind();
            self.error = Some(error);
            return Err(io::Error::new(kind, "cannot write the snapshot"));
        }
        Ok(n)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A one-command log with `padding` bytes of JSON whitespace inside
    /// its command.
    fn padded_log(padding: usize) -> String {
        format!(
            r#"{{"format":"replay-log","version":1,"producer":{{"name":"t","version":"0"}},"platform":{{"os":"linux","arch":"x86_64"}},"commands":[{{"id":1,{}"tool":"opt","program":"opt","args":[],"cwd":".","env":{{}},"inputs":[],"outputs":[]}}]}}"#,
            " ".repeat(padding)
        )
    }

    #[test]
    fn a_snapshot_has_no_name_and_keeps_the_bytes_it_was_taken_with() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log.json");
        let policy = dir.path().join("p.toml");
        let judged = padded_log(0);
        std::fs::write(&log, &judged).expect("write the log");
        std::fs::write(&policy, "").expect("write the policy");
        let job = Job::new(&log, None, &policy).expect("a job");
        let (snapshot, guard) = job.snapshot().expect("a snapshot");
        // Nothing in any directory names it.
        assert_eq!(guard.metadata().expect("fstat").nlink(), 0);
        std::fs::write(&log, "a log changed since").expect("rewrite the log");
        let read = std::fs::read_to_string(&snapshot.read_from).expect("reads the snapshot");
        assert_eq!(read, judged);
        // Twice: each pass opens it anew, from the start.
        let again = std::fs::read_to_string(&snapshot.read_from).expect("reads it again");
        assert_eq!(again, read);
        assert_eq!(snapshot.log, log);
    }

    #[test]
    fn a_log_over_the_limit_stops_the_snapshot_where_the_reader_stops() {
        // Regression: the snapshot copied the whole log (6 GiB of a sparse
        // file) before anything checked its size or header.
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log.json");
        let policy = dir.path().join("p.toml");
        let text = padded_log(512 << 10);
        std::fs::write(&log, &text).expect("write the log");
        std::fs::write(&policy, "").expect("write the policy");
        let job = Job::new(&log, None, &policy).expect("a job");
        let limits = cmdlog::Limits {
            max_log_bytes: 4096,
            ..cmdlog::Limits::default()
        };
        let error = job.snapshot_with(limits).expect_err("over the limit");
        assert!(matches!(error, JobError::Malformed { .. }), "{error:?}");
        // The whole log fits the default limits.
        let (_, guard) = job.snapshot().expect("a snapshot");
        assert_eq!(guard.metadata().expect("fstat").len(), text.len() as u64);
    }

    #[test]
    fn a_bad_header_is_refused_before_the_rest_is_copied() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log.json");
        let policy = dir.path().join("p.toml");
        let mut text = r#"{"format":"not-a-log","commands":["#.to_owned();
        text.push_str(&" ".repeat(8 << 20));
        std::fs::write(&log, &text).expect("write the log");
        std::fs::write(&policy, "").expect("write the policy");
        let job = Job::new(&log, None, &policy).expect("a job");
        let error = job.snapshot().expect_err("a bad header");
        assert!(matches!(error, JobError::Malformed { .. }), "{error:?}");
    }
}
