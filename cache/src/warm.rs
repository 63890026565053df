//! Hashing files into a [`DigestMemo`] on a background thread.
//!
//! A cold run stores each tool's read set, and hashing it is most of what
//! the cache costs such a run: the system libraries a tool maps (LLVM's
//! are over 100 MiB) are hashed once per process. The executor hands each
//! file to a [`Warmer`] as the tracer sees the tool open it, so the
//! hashing overlaps the tool's own run instead of following it; the digest
//! is then a lookup in the memo (or a wait for the one hash under way:
//! the memo hashes a file once at a time). Nothing here decides what goes
//! into a key: a warmed digest is the memo's, checked against the file's
//! stamp like any other.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::memo::DigestMemo;

/// How many distinct files one warmer queues at most; past it, files are
/// left to be hashed when their digest is asked for.
pub const MAX_WARMED: usize = 20_000;

/// A background thread that hashes the files it is given into a memo.
#[derive(Debug)]
pub struct Warmer {
    queue: Mutex<Queue>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The way to the thread (`None` once stopping) and what went down it.
#[derive(Debug)]
struct Queue {
    tx: Option<Sender<PathBuf>>,
    queued: HashSet<PathBuf>,
}

impl Warmer {
    /// Starts the thread, hashing into `memo`.
    pub fn start(memo: Arc<DigestMemo>) -> std::io::Result<Warmer> {
        let (tx, rx) = channel::<PathBuf>();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("replay-warm".into())
            .spawn(move || {
                for path in rx {
                    if stopped.load(Ordering::Relaxed) {
                        break;
                    }
                    // Only a regular file is opened: opening a device or a
                    // FIFO can do something. (The memo checks again on the
                    // file it opened.)
                    // Dropping the warmer stops a hash under way: a huge
                    // file never holds the run (or its Ctrl-C) open.
                    if std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
                        let _ = memo.digest_until(&path, &|| stopped.load(Ordering::Relaxed));
                    }
                }
            })?;
        Ok(Warmer {
            queue: Mutex::new(Queue {
                tx: Some(tx),
                queued: HashSet::new(),
            }),
            stop,
            thread: Some(thread),
        })
    }

    /// Queues `path` to be hashed, once per warmer; returns whether it was
    /// queued now.
    pub fn warm(&self, path: &Path) -> bool {
        let Ok(mut queue) = self.queue.lock() else {
            return false;
        };
        if queue.queued.len() >= MAX_WARMED || queue.queued.contains(path) {
            return false;
        }
        let Some(tx) = queue.tx.as_ref() else {
            return false;
        };
        if tx.send(path.to_owned()).is_err() {
            return false;
        }
        queue.queued.insert(path.to_owned());
        true
    }
}

impl Drop for Warmer {
    /// Stops the hash under way, if any (within one 64 KiB read); what is
    /// still queued is dropped.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Ok(mut queue) = self.queue.lock() {
            queue.tx.take();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Digest;
    use std::time::{Duration, Instant};

    fn settled_memo() -> Arc<DigestMemo> {
        Arc::new(DigestMemo::settled_after(Duration::ZERO))
    }

    #[test]
    fn a_warmed_file_is_in_the_memo_and_queued_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lib.so");
        std::fs::write(&path, vec![7u8; 3 << 20]).expect("write");
        std::thread::sleep(Duration::from_millis(5));
        let memo = settled_memo();
        let warmer = Warmer::start(Arc::clone(&memo)).expect("start");
        assert!(warmer.warm(&path));
        assert!(!warmer.warm(&path), "a path is queued once");
        let deadline = Instant::now() + Duration::from_secs(30);
        while memo.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        assert_eq!(memo.len(), 1, "the warmer remembered the file");
        assert_eq!(
            memo.digest(&path).expect("digest"),
            Digest::of(&vec![7u8; 3 << 20])
        );
    }

    #[test]
    fn what_is_not_a_regular_file_is_never_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let memo = settled_memo();
        let warmer = Warmer::start(Arc::clone(&memo)).expect("start");
        assert!(warmer.warm(&fifo));
        assert!(warmer.warm(dir.path()));
        assert!(warmer.warm(&dir.path().join("missing")));
        // Dropping joins the thread: it must not hang on the FIFO.
        drop(warmer);
        assert!(memo.is_empty());
    }

    /// Regression: dropping a warmer joined its thread only after the file
    /// it was hashing was done, so a huge file a tool opened (here 64 GiB,
    /// sparse) held the run, and its Ctrl-C, open for minutes.
    #[test]
    fn dropping_the_warmer_stops_a_huge_hash_under_way() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("huge");
        let huge: u64 = 64 << 30;
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(huge))
            .expect("make a sparse file");
        let memo = settled_memo();
        let warmer = Warmer::start(Arc::clone(&memo)).expect("start");
        assert!(warmer.warm(&path));
        // Let it start reading (a hash stopped before its first read is
        // as good; the drop must return either way).
        std::thread::sleep(Duration::from_millis(50));
        drop(warmer);
        assert!(memo.is_empty(), "a stopped hash is not remembered");
        // The hash under way was stopped, not finished after the drop.
        let again = DigestMemo::settled_after(Duration::ZERO);
        let stopped = again.digest_until(&path, &|| true);
        assert_eq!(
            stopped.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::TimedOut)
        );
        assert!(memo.bytes_hashed() < huge, "{}", memo.bytes_hashed());
    }

    #[test]
    fn a_file_changed_after_warming_is_hashed_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("lib.so");
        std::fs::write(&path, b"old").expect("write");
        std::thread::sleep(Duration::from_millis(5));
        let memo = settled_memo();
        {
            let warmer = Warmer::start(Arc::clone(&memo)).expect("start");
            warmer.warm(&path);
            let deadline = Instant::now() + Duration::from_secs(30);
            while memo.is_empty() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        std::fs::write(&path, b"new").expect("write");
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"new"));
    }
}
