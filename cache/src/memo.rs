//! File digests, memoized by what `stat` says about the file.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest as _, Sha256};

use crate::key::InputFile;
use crate::reapi::{hex, Digest};

/// What a memoized digest was taken of: the file is the same while device,
/// inode, size, mtime and ctime are (ctime changes on every write and
/// cannot be set back by the user).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

/// A memo of file digests, shared by threads.
///
/// A file changed within the last second is hashed but not remembered:
/// on a file system with coarse timestamps, a second write in the same
/// tick would leave the stamp unchanged ("racily clean", as git says).
/// One thread at a time hashes a given file: another that asks for it
/// meanwhile waits for that digest instead of reading the file again
/// (a [`crate::Warmer`] hashing a library in the background is then never
/// hashed twice).
#[derive(Debug)]
pub struct DigestMemo {
    known: Mutex<HashMap<(u64, u64), (Stamp, Digest)>>,
    /// The files (device, inode) a thread is hashing now.
    hashing: Mutex<HashSet<(u64, u64)>>,
    /// Signalled when a file leaves `hashing`.
    hashed: Condvar,
    /// How long ago a file must have changed to be remembered.
    settle: Duration,
    /// Bytes read to hash files, in all.
    bytes_hashed: AtomicU64,
}

impl Default for DigestMemo {
    fn default() -> DigestMemo {
        DigestMemo {
            known: Mutex::new(HashMap::new()),
            hashing: Mutex::new(HashSet::new()),
            hashed: Condvar::new(),
            settle: Duration::from_secs(1),
            bytes_hashed: AtomicU64::new(0),
        }
    }
}

/// Takes a file out of [`DigestMemo::hashing`] however its hashing ends.
struct Hashing<'a> {
    memo: &'a DigestMemo,
    id: (u64, u64),
}

impl Drop for Hashing<'_> {
    fn drop(&mut self) {
        if let Ok(mut hashing) = self.memo.hashing.lock() {
            hashing.remove(&self.id);
        }
        self.memo.hashed.notify_all();
    }
}

/// Hashes an open reader to its end.
pub(crate) fn digest_reader(reader: &mut impl Read) -> io::Result<Digest> {
    digest_reader_until(reader, &|| false)
}

/// Hashes an open reader to its end, or until `stop` says so between two
/// reads (then an error of kind `TimedOut`: the caller gave up).
fn digest_reader_until(reader: &mut impl Read, stop: &dyn Fn() -> bool) -> io::Result<Digest> {
    let mut hasher = Sha256::new();
    let mut size: u64 = 0;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if stop() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "hashing was stopped before the file's end",
            ));
        }
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok(Digest {
        hash: hex(&hasher.finalize()),
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
    })
}

impl DigestMemo {
    /// An empty memo.
    pub fn new() -> DigestMemo {
        DigestMemo::default()
    }

    /// An empty memo that remembers a file changed more than `settle` ago.
    pub fn settled_after(settle: Duration) -> DigestMemo {
        DigestMemo {
            settle,
            ..DigestMemo::default()
        }
    }

    /// How many bytes this memo has read to hash files.
    pub fn bytes_hashed(&self) -> u64 {
        self.bytes_hashed.load(Ordering::Relaxed)
    }

    /// The content digest of the file at `path` (symbolic links followed),
    /// from the memo while its stamp is unchanged. A file is read no
    /// further than the size `fstat` gave when it was opened: one that
    /// turns out longer (growing, or a pseudo-file that says 0 and never
    /// ends, as `/proc/PID/pagemap`) or whose stamp changed while it was
    /// hashed is an error, never a digest of bytes no stamp describes.
    pub fn digest(&self, path: &Path) -> io::Result<Digest> {
        self.digest_until(path, &|| false)
    }

    /// As [`DigestMemo::digest`], giving up (an error of kind `TimedOut`)
    /// as soon as `stop` says so: it is asked between two 64 KiB reads.
    pub fn digest_until(&self, path: &Path, stop: &dyn Fn() -> bool) -> io::Result<Digest> {
        // Non-blocking: a FIFO planted where a file was must not hang us.
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc_nonblock())
            .open(path)?;
        let before = file.metadata()?;
        if !before.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{}` is not a regular file", path.display()),
            ));
        }
        let stamp = Stamp {
            dev: before.dev(),
            ino: before.ino(),
            size: before.size(),
            mtime: (before.mtime(), before.mtime_nsec()),
            ctime: (before.ctime(), before.ctime_nsec()),
        };
        if let Some(digest) = self.remembered(&stamp) {
            return Ok(digest);
        }
        let id = (stamp.dev, stamp.ino);
        let _hashing = {
            let Ok(mut hashing) = self.hashing.lock() else {
                return Err(io::Error::other("the digest memo's lock is poisoned"));
            };
            while hashing.contains(&id) {
                hashing = match self.hashed.wait(hashing) {
                    Ok(hashing) => hashing,
                    Err(_) => return Err(io::Error::other("the digest memo's lock is poisoned")),
                };
            }
            // The thread that held it may have remembered this very stamp.
            if let Some(digest) = self.remembered(&stamp) {
                return Ok(digest);
            }
            hashing.insert(id);
            Hashing { memo: self, id }
        };
        // One byte more than `fstat` said tells a file that is longer.
        let mut bounded = Read::by_ref(&mut file).take(stamp.size.saturating_add(1));
        let digest = digest_reader_until(&mut bounded, stop)?;
        self.bytes_hashed.fetch_add(
            u64::try_from(digest.size_bytes).unwrap_or(0),
            Ordering::Relaxed,
        );
        let after = file.metadata()?;
        let same = digest.size() == stamp.size
            && after.size() == stamp.size
            && (after.mtime(), after.mtime_nsec()) == stamp.mtime
            && (after.ctime(), after.ctime_nsec()) == stamp.ctime;
        if !same {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "`{}` changed while it was hashed (or is longer than its size says)",
                    path.display()
                ),
            ));
        }
        let changed = UNIX_EPOCH
            + Duration::from_secs(u64::try_from(stamp.ctime.0).unwrap_or(0))
            + Duration::from_nanos(u64::try_from(stamp.ctime.1).unwrap_or(0));
        let settled = SystemTime::now()
            .duration_since(changed)
            .is_ok_and(|age| age > self.settle);
        if settled {
            if let Ok(mut known) = self.known.lock() {
                known.insert((stamp.dev, stamp.ino), (stamp, digest.clone()));
            }
        }
        Ok(digest)
    }

    /// The digest remembered for a file of `stamp`, if any.
    fn remembered(&self, stamp: &Stamp) -> Option<Digest> {
        let known = self.known.lock().ok()?;
        let (s, d) = known.get(&(stamp.dev, stamp.ino))?;
        (s == stamp).then(|| d.clone())
    }

    /// A declared input for [`crate::ActionSpec`]: `path` as it is keyed
    /// (relative to the work root, or absolute), `file` where it is now;
    /// executable if any execute bit is set.
    pub fn input_file(&self, path: &str, file: &Path) -> io::Result<InputFile> {
        let digest = self.digest(file)?;
        let executable = std::fs::metadata(file)?.mode() & 0o111 != 0;
        Ok(InputFile {
            path: path.to_owned(),
            digest,
            executable,
        })
    }

    /// Remembers the digests of `bytes` (what [`DigestMemo::to_bytes`]
    /// wrote): a later run of `replay` need not hash a system library
    /// again while its stamp is unchanged. Anything unreadable is ignored
    /// (the memo only saves time; a stamp still has to match).
    pub fn load_bytes(&self, bytes: &[u8]) {
        let Ok(saved) = serde_json::from_slice::<Vec<Saved>>(bytes) else {
            return;
        };
        let Ok(mut known) = self.known.lock() else {
            return;
        };
        for s in saved.into_iter().take(MAX_SAVED) {
            let digest = Digest {
                hash: s.hash,
                size_bytes: s.size_bytes,
            };
            if !digest.is_well_formed() {
                continue;
            }
            let stamp = Stamp {
                dev: s.dev,
                ino: s.ino,
                size: s.size,
                mtime: s.mtime,
                ctime: s.ctime,
            };
            known.entry((s.dev, s.ino)).or_insert((stamp, digest));
        }
    }

    /// The memo as [`DigestMemo::load_bytes`] reads it (at most
    /// [`MAX_SAVED`] files).
    pub fn to_bytes(&self) -> Vec<u8> {
        let Ok(known) = self.known.lock() else {
            return b"[]".to_vec();
        };
        let saved: Vec<Saved> = known
            .values()
            .take(MAX_SAVED)
            .map(|(stamp, digest)| Saved {
                dev: stamp.dev,
                ino: stamp.ino,
                size: stamp.size,
                mtime: stamp.mtime,
                ctime: stamp.ctime,
                hash: digest.hash.clone(),
                size_bytes: digest.size_bytes,
            })
            .collect();
        serde_json::to_vec(&saved).unwrap_or_else(|_| b"[]".to_vec())
    }

    /// Forgets every digest.
    pub fn clear(&self) {
        if let Ok(mut known) = self.known.lock() {
            known.clear();
        }
    }

    /// How many files are remembered.
    pub fn len(&self) -> usize {
        self.known.lock().map(|k| k.len()).unwrap_or(0)
    }

    /// Whether no file is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Files a saved memo holds at most.
pub const MAX_SAVED: usize = 100_000;

/// One remembered digest as it is saved between runs.
#[derive(serde::Serialize, serde::Deserialize)]
struct Saved {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    hash: String,
    size_bytes: i64,
}

/// `O_NONBLOCK | O_CLOEXEC`, for opening what a tool read.
fn libc_nonblock() -> i32 {
    nix::fcntl::OFlag::O_NONBLOCK.bits() | nix::fcntl::OFlag::O_CLOEXEC.bits()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn digests_match_and_a_rewrite_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, b"one").expect("write");
        // Its ctime is now, so the memo does not keep it yet.
        let memo = DigestMemo::new();
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"one"));
        assert!(memo.is_empty(), "a file changed just now is not memoized");
        fs::write(&path, b"two").expect("write");
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"two"));
    }

    #[test]
    fn a_settled_file_is_remembered_and_a_same_size_rewrite_is_seen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        fs::write(&path, b"one").expect("write");
        let memo = DigestMemo {
            settle: Duration::ZERO,
            ..DigestMemo::default()
        };
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"one"));
        assert_eq!(memo.len(), 1);
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"one"));
        // Same size, same inode: only mtime and ctime tell.
        fs::write(&path, b"two").expect("write");
        assert_eq!(memo.digest(&path).expect("digest"), Digest::of(b"two"));
        let input = memo.input_file("f", &path).expect("input");
        assert_eq!(
            (input.digest, input.executable),
            (Digest::of(b"two"), false)
        );
    }

    /// Regression: a file was read to its end whatever `fstat` said, so
    /// a pseudo-file of size 0 that never ends (`/proc/self/pagemap`
    /// yields 8 bytes per page of the address space: about 256 GiB) was
    /// hashed for minutes, wherever its name came from (a remote's read
    /// set, a tool's open).
    #[test]
    fn a_file_longer_than_its_size_is_refused_after_one_byte() {
        let memo = DigestMemo::settled_after(Duration::ZERO);
        let got = memo.digest(Path::new("/proc/self/pagemap"));
        assert!(got.is_err(), "{got:?}");
        assert!(memo.is_empty());
        assert_eq!(memo.bytes_hashed(), 0, "nothing is counted as hashed");
    }

    /// Regression: a file rewritten while it was hashed gave the digest
    /// of whatever mix was read, returned as if it were the file's.
    #[test]
    fn a_file_changed_while_hashed_is_an_error_not_a_digest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        fs::write(&path, vec![1u8; 256 << 20]).expect("write");
        let memo = DigestMemo::settled_after(Duration::ZERO);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let got = std::thread::scope(|scope| {
            scope.spawn(|| {
                use std::io::{Seek, SeekFrom, Write};
                let mut file = fs::OpenOptions::new()
                    .write(true)
                    .open(&path)
                    .expect("open");
                let mut byte = 0u8;
                while !stop.load(Ordering::Relaxed) {
                    byte = byte.wrapping_add(1);
                    file.seek(SeekFrom::Start(0)).expect("seek");
                    file.write_all(&[byte]).expect("write");
                    std::thread::sleep(Duration::from_millis(1));
                }
            });
            std::thread::sleep(Duration::from_millis(20));
            let got = memo.digest(&path);
            stop.store(true, Ordering::Relaxed);
            got
        });
        let err = got.expect_err("a file rewritten all along has no digest");
        assert!(
            err.to_string().contains("changed while it was hashed"),
            "{err}"
        );
        assert!(memo.is_empty());
    }

    #[test]
    fn a_directory_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(DigestMemo::new().digest(dir.path()).is_err());
    }

    #[test]
    fn threads_asking_for_one_file_at_once_read_it_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("big");
        let size: usize = 64 << 20;
        fs::write(&path, vec![1u8; size]).expect("write");
        std::thread::sleep(Duration::from_millis(5));
        let memo = DigestMemo::settled_after(Duration::ZERO);
        let digests: Vec<Digest> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..4)
                .map(|_| scope.spawn(|| memo.digest(&path).expect("digest")))
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("join"))
                .collect()
        });
        assert!(digests.iter().all(|d| *d == digests[0]));
        assert_eq!(
            memo.bytes_hashed(),
            size as u64,
            "hashed once, not per thread"
        );
    }
}
