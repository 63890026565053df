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
        let opened = File::open(log).and_then(|file| file.metadata());
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
    #[cfg(target_os = "linux")]
    pub fn snapshot(&self) -> Result<(Job, File), JobError> {
        use std::os::fd::AsRawFd;
        let snapshot = |source| JobError::Log {
            path: self.log.clone(),
            source,
        };
        let mut copy = tempfile::tempfile().map_err(snapshot)?;
        let mut original = File::open(&self.log).map_err(snapshot)?;
        io::copy(&mut original, &mut copy).map_err(snapshot)?;
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

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_snapshot_has_no_name_and_keeps_the_bytes_it_was_taken_with() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("log.json");
        let policy = dir.path().join("p.toml");
        std::fs::write(&log, "the log as judged").expect("write the log");
        std::fs::write(&policy, "").expect("write the policy");
        let job = Job::new(&log, None, &policy).expect("a job");
        let (snapshot, guard) = job.snapshot().expect("a snapshot");
        // Nothing in any directory names it.
        assert_eq!(guard.metadata().expect("fstat").nlink(), 0);
        std::fs::write(&log, "a log changed since").expect("rewrite the log");
        let read = std::fs::read_to_string(&snapshot.read_from).expect("reads the snapshot");
        assert_eq!(read, "the log as judged");
        // Twice: each pass opens it anew, from the start.
        let again = std::fs::read_to_string(&snapshot.read_from).expect("reads it again");
        assert_eq!(again, read);
        assert_eq!(snapshot.log, log);
    }
}
