//! The local store: blobs by digest, entries by action digest, verified
//! on every restore, bounded by size.
//!
//! ```text
//! DIR/                 0700, this user's
//!   cas/ab/<hex>       blobs, named by their SHA-256
//!   ac/<hex>           entries (JSON), named by the action digest
//!   use/<hex>          empty; its mtime is the entry's last hit
//!   lock               flock: shared while storing or looking up,
//!                      exclusive while evicting, verifying, clearing
//!   stats.json         counters, rewritten by rename under stats.lock
//! ```
//!
//! Every file is written under a temporary name in its final directory (or
//! in `cas/` for blobs, the same file system) and renamed into place, so a
//! reader sees a whole file or none, and two processes writing the same
//! blob or entry both succeed: the last rename wins, with equal content.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use tempfile::NamedTempFile;

use crate::key::FORMAT_VERSION;
use crate::memo::{digest_reader, DigestMemo};
use crate::reapi::{hex, Digest};

/// What a tool cost when it ran: what a hit saves, and what the scheduler
/// predicts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cost {
    /// Wall-clock time, milliseconds.
    pub wall_ms: u64,
    /// User plus system CPU time of the process tree, milliseconds.
    pub cpu_ms: u64,
    /// Peak resident set size, bytes.
    pub peak_rss_bytes: u64,
}

/// A file the tool was observed to read, and what it held.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadFile {
    /// Its absolute path.
    pub path: PathBuf,
    /// Its content digest, or `None` if the tool looked for it and it was
    /// not there (a header search that missed): then it must still be
    /// missing for a hit.
    pub digest: Option<Digest>,
    /// A directory the tool listed: the digest is of its sorted entry
    /// names ([`listing_digest`]), not of a file's content.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub listing: bool,
}

/// The digest of a directory's listing: its entry names, sorted, each
/// ended by a NUL byte. A toolchain found by listing a directory (clang
/// picks the highest GCC version it sees) changes with it.
pub fn listing_digest(dir: &Path) -> io::Result<Digest> {
    use std::os::unix::ffi::OsStrExt;
    let mut names: Vec<Vec<u8>> = fs::read_dir(dir)?
        .map(|entry| entry.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<io::Result<_>>()?;
    names.sort();
    let mut bytes = Vec::new();
    for name in names {
        bytes.extend_from_slice(&name);
        bytes.push(0);
    }
    Ok(Digest::of(&bytes))
}

/// The digests of files, saved between runs ([`Store::save_memo`]).
const MEMO_FILE: &str = "memo.json";

/// An entry larger than this is not read (a store writes far smaller).
const MAX_ENTRY_BYTES: u64 = 16 << 20;

/// A standard-stream blob larger than this is not read.
const MAX_STREAM_BYTES: u64 = 16 << 20;

/// Read-set files an entry may list.
const MAX_READ_SET: usize = 50_000;

/// Opens a file of the store for reading: not through a link, not
/// blocking, and only if it is a regular file of this user's that nobody
/// else can write (anything else was not written by a store).
fn open_own(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(
            nix::fcntl::OFlag::O_NOFOLLOW.bits()
                | nix::fcntl::OFlag::O_NONBLOCK.bits()
                | nix::fcntl::OFlag::O_CLOEXEC.bits(),
        )
        .open(path)?;
    let meta = file.metadata()?;
    let uid = nix::unistd::geteuid().as_raw();
    if !meta.is_file() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "`{}` is not a regular file of this user's that only it can write",
                path.display()
            ),
        ));
    }
    Ok(file)
}

/// Reads at most `max` bytes of a file [`open_own`] accepts.
fn read_own(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let file = open_own(path)?;
    if file.metadata()?.len() > max {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("`{}` is larger than {max} bytes", path.display()),
        ));
    }
    let mut bytes = Vec::new();
    file.take(max + 1).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Checks that `dir` and every directory above it are owned by this user
/// or root, and writable by nobody else unless sticky (as `/tmp` is):
/// otherwise another user could rename the cache away and plant one.
fn check_ancestors(dir: &Path) -> Result<(), OpenError> {
    let uid = nix::unistd::geteuid().as_raw();
    let canonical = fs::canonicalize(dir).map_err(|source| OpenError::Io {
        path: dir.to_owned(),
        source,
    })?;
    for at in canonical.ancestors().skip(1) {
        let meta = fs::metadata(at).map_err(|source| OpenError::Io {
            path: at.to_owned(),
            source,
        })?;
        let mode = meta.mode() & 0o7777;
        let sticky = mode & 0o1000 != 0;
        if (meta.uid() != uid && meta.uid() != 0) || (mode & 0o022 != 0 && !sticky) {
            return Err(OpenError::UnsafeAncestor {
                path: at.to_owned(),
                owner: meta.uid(),
                mode,
            });
        }
    }
    Ok(())
}

/// One output as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputEntry {
    /// The declared path, relative to the work root.
    pub path: String,
    /// Its content's blob.
    pub digest: Digest,
    /// Whether it is restored 0755 (else 0644).
    pub executable: bool,
    /// Its size in bytes.
    pub size: u64,
}

/// A stored result, serialized as JSON in `ac/<hex>`: JSON because it is
/// small, read once per lookup, and a person debugging a miss can read
/// it; `format` must equal [`FORMAT_VERSION`] or the entry is a miss.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The entry format, [`FORMAT_VERSION`].
    pub format: u32,
    /// The key it is stored under.
    pub action: Digest,
    /// The outputs.
    pub outputs: Vec<OutputEntry>,
    /// The tool's standard output, as a blob.
    pub stdout: Digest,
    /// The tool's standard error, as a blob.
    pub stderr: Digest,
    /// Always 0: nothing else is stored.
    pub exit_code: i32,
    /// What the run cost.
    pub cost: Cost,
    /// The files read besides the declared inputs.
    pub read_set: Vec<ReadFile>,
}

/// One output the tool produced: where it was declared and where it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProducedFile {
    /// The declared path, relative to the work root.
    pub path: String,
    /// The file as the tool left it (in the staging directory).
    pub file: PathBuf,
}

/// A finished run, as the executor hands it over to be stored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    /// Every declared output.
    pub outputs: Vec<ProducedFile>,
    /// What the tool wrote to standard output.
    pub stdout: Vec<u8>,
    /// What the tool wrote to standard error.
    pub stderr: Vec<u8>,
    /// The exit code: only 0 is stored.
    pub exit_code: i32,
    /// What it cost.
    pub cost: Cost,
    /// The files it read besides its declared inputs.
    pub read_set: Vec<ReadFile>,
}

/// A hit: outputs are restored, and this is the rest of the result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// The entry.
    pub entry: Entry,
    /// Standard output to replay.
    pub stdout: Vec<u8>,
    /// Standard error to replay.
    pub stderr: Vec<u8>,
}

/// Why a lookup did not hit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MissReason {
    /// No entry is stored under the key.
    NoEntry,
    /// The entry could not be read as an entry; it was evicted.
    BadEntry {
        /// What is wrong.
        reason: String,
    },
    /// The entry is of another format version; it was evicted.
    OtherFormat {
        /// Its version.
        found: u32,
    },
    /// A file the tool read is not what it was.
    ReadChanged {
        /// The file.
        path: PathBuf,
    },
    /// A blob's content no longer matches its digest: it and the entry
    /// were evicted.
    Corrupt {
        /// The blob.
        digest: Digest,
    },
    /// A blob the entry names is gone: the entry was evicted.
    MissingBlob {
        /// The blob.
        digest: Digest,
    },
}

impl std::fmt::Display for MissReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MissReason::NoEntry => write!(f, "no entry"),
            MissReason::BadEntry { reason } => write!(f, "unreadable entry ({reason}), evicted"),
            MissReason::OtherFormat { found } => {
                write!(f, "entry of format {found}, not {FORMAT_VERSION}; evicted")
            }
            MissReason::ReadChanged { path } => {
                write!(f, "`{}`, which the tool read, changed", path.display())
            }
            MissReason::Corrupt { digest } => {
                write!(f, "blob {digest} is corrupt; it and the entry were evicted")
            }
            MissReason::MissingBlob { digest } => {
                write!(f, "blob {digest} is missing; the entry was evicted")
            }
        }
    }
}

/// What a lookup found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Every output was restored; replay stdout and stderr.
    Hit(Hit),
    /// Nothing was restored; run the tool.
    Miss(MissReason),
}

/// Counters and sizes of a store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Entries stored now.
    pub entries: u64,
    /// Bytes on disk now (entries and blobs).
    pub bytes: u64,
    /// Lookups that hit, ever (until `clear`).
    pub hits: u64,
    /// Lookups that missed.
    pub misses: u64,
    /// Entries evicted (by size, corruption or verification).
    pub evictions: u64,
    /// Output bytes restored instead of made.
    pub bytes_saved: u64,
    /// Wall milliseconds of tool runs saved.
    pub ms_saved: u64,
    /// What the remote cache (`--remote-cache`) did for this store.
    pub remote: RemoteCounts,
}

/// What a remote cache did for a local store, counted across runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct RemoteCounts {
    /// Local misses the remote had (its outputs verified and restored).
    pub remote_hits: u64,
    /// Local misses the remote did not have (or had unusable).
    pub remote_misses: u64,
    /// Results uploaded (`UpdateActionResult` accepted).
    pub remote_uploads: u64,
    /// Blob bytes downloaded.
    pub remote_bytes_down: u64,
    /// Blob bytes uploaded.
    pub remote_bytes_up: u64,
}

impl RemoteCounts {
    /// Adds `other` to these counts.
    pub fn add(&mut self, other: &RemoteCounts) {
        self.remote_hits += other.remote_hits;
        self.remote_misses += other.remote_misses;
        self.remote_uploads += other.remote_uploads;
        self.remote_bytes_down += other.remote_bytes_down;
        self.remote_bytes_up += other.remote_bytes_up;
    }
}

/// What `gc` or an eviction did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Entries evicted to get under the cap.
    pub evicted: u64,
    /// Blobs removed (unreferenced, or of evicted entries).
    pub blobs_removed: u64,
    /// Bytes on disk after.
    pub bytes: u64,
}

/// What `verify` found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Blobs rehashed.
    pub checked: u64,
    /// Blob files whose content did not match their name; removed.
    pub bad: Vec<PathBuf>,
    /// Entries evicted because a blob of theirs was bad or missing.
    pub evicted: u64,
}

/// Why the cache directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// It, or a directory in it, could not be made or read.
    #[error("cannot make or read the cache directory `{}`: {source}; check the path, or choose another with XDG_CACHE_HOME", path.display())]
    Io {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// It is not a directory.
    #[error("the cache directory `{}` is not a directory; remove it or choose another", path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// Another user owns it, so they could plant results.
    #[error("the cache directory `{}` belongs to uid {owner}, not to this user ({uid}); use a cache directory of your own", path.display())]
    OtherOwner {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This user.
        uid: u32,
    },
    /// Its group or others may write to it, so they could plant results.
    #[error("the cache directory `{}` is writable by others (mode {mode:o}); run `chmod go-w` on it, or use another", path.display())]
    Writable {
        /// The directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A directory above it belongs to another user or may be written by
    /// others (and is not sticky): they could swap the cache for theirs.
    #[error("`{}`, above the cache directory, belongs to uid {owner} or is writable by others (mode {mode:o}); put the cache under a directory only you (or root) can change", path.display())]
    UnsafeAncestor {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// Its permission bits.
        mode: u32,
    },
}

/// Why a result was not stored. The first four say the result is not
/// cacheable; the executor carries on either way.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The tool failed: failures are never cached.
    #[error("not cached: the tool exited with {code}; only successful runs are cached")]
    NonZeroExit {
        /// The exit code.
        code: i32,
    },
    /// A declared output was not written: such a run is never cached.
    #[error("not cached: the declared output `{path}` is missing at `{}`", file.display())]
    MissingOutput {
        /// The declared output.
        path: String,
        /// Where it was looked for.
        file: PathBuf,
    },
    /// A declared output is not a regular file.
    #[error("not cached: the output `{path}` is not a regular file")]
    NotRegular {
        /// The declared output.
        path: String,
    },
    /// A declared output or read path cannot be stored as given.
    #[error("not cached: the path `{path}` {reason}")]
    BadPath {
        /// The path.
        path: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The key is not a SHA-256 digest.
    #[error("the key `{0}` is not a SHA-256 digest; make keys with ActionSpec::key")]
    BadKey(Digest),
    /// An entry from elsewhere (a remote cache) is not one a lookup
    /// would use.
    #[error("the entry is refused: {reason}")]
    BadEntry {
        /// Why.
        reason: String,
    },
    /// A blob from elsewhere is not what its digest names.
    #[error("the blob {expected} is refused: its content hashes to {got}")]
    Mismatch {
        /// The digest it was fetched as.
        expected: Digest,
        /// What its bytes hash to.
        got: Digest,
    },
    /// Reading or writing failed.
    #[error("cannot {what} `{}`: {source}; check the cache directory's space and permissions", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why a lookup failed (a miss is not a failure: see [`Lookup`]).
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    /// The key is not a SHA-256 digest.
    #[error("the key `{0}` is not a SHA-256 digest; make keys with ActionSpec::key")]
    BadKey(Digest),
    /// Reading the store or writing into the staging directory failed;
    /// nothing was left in the staging directory. Run the tool instead.
    #[error("cannot {what} `{}`: {source}; nothing was restored, run the tool instead", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// Why a maintenance operation (`stats`, `gc`, `verify`, `clear`) failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot {what} `{}`: {source}; check the cache directory, or remove it to start afresh", path.display())]
pub struct MaintError {
    /// What was being done.
    pub what: &'static str,
    /// Where.
    pub path: PathBuf,
    /// Why.
    #[source]
    pub source: io::Error,
}

/// Wraps an I/O error with what and where, for any of the error types.
fn at<E>(
    what: &'static str,
    path: &Path,
    make: fn(&'static str, PathBuf, io::Error) -> E,
) -> impl FnOnce(io::Error) -> E {
    let path = path.to_owned();
    move |source| make(what, path, source)
}

fn put_io(what: &'static str, path: PathBuf, source: io::Error) -> PutError {
    PutError::Io { what, path, source }
}

fn lookup_io(what: &'static str, path: PathBuf, source: io::Error) -> LookupError {
    LookupError::Io { what, path, source }
}

fn maint_io(what: &'static str, path: PathBuf, source: io::Error) -> MaintError {
    MaintError { what, path, source }
}

/// The default cache directory: `$XDG_CACHE_HOME/replay/actions`, else
/// `$HOME/.cache/replay/actions`; `None` if neither variable is set to an
/// absolute path.
pub fn default_dir() -> Option<PathBuf> {
    let absolute = |var: &str| {
        std::env::var_os(var)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
    };
    absolute("XDG_CACHE_HOME")
        .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
        .map(|base| base.join("replay").join("actions"))
}

/// Temporary files older than this are leftovers of killed processes.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// Prefix of every temporary file in the store.
const TEMP_PREFIX: &str = ".tmp-";

/// The persisted counters.
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
struct Counters {
    hits: u64,
    misses: u64,
    evictions: u64,
    bytes_saved: u64,
    ms_saved: u64,
    #[serde(flatten)]
    remote: RemoteCounts,
    /// Bytes on disk as last counted, plus what was stored since: when it
    /// passes the cap, an eviction recounts exactly.
    bytes_estimate: u64,
}

/// A local action cache in one directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    max_size: u64,
    memo: Arc<DigestMemo>,
}

/// Makes a directory 0700 if it is missing.
fn make_dir(path: &Path) -> io::Result<()> {
    match fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Lowercase hex SHA-256 file names only: nothing read from disk becomes a
/// path component unless it passes.
fn check_key(key: &Digest) -> bool {
    key.is_well_formed()
}

/// A relative path with no empty, `.` or `..` segment.
fn plain_relative(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..")
}

impl Store {
    /// Opens the cache in `dir`, making it 0700 if missing, refusing it if
    /// another user owns it or may write to it. `max_size` caps the bytes
    /// of entries and blobs; least recently used entries go first.
    pub fn open(dir: &Path, max_size: u64) -> Result<Store, OpenError> {
        let io_err = |source| OpenError::Io {
            path: dir.to_owned(),
            source,
        };
        make_dir(dir).map_err(io_err)?;
        let meta = fs::metadata(dir).map_err(io_err)?;
        if !meta.is_dir() {
            return Err(OpenError::NotADirectory {
                path: dir.to_owned(),
            });
        }
        let uid = nix::unistd::geteuid().as_raw();
        if meta.uid() != uid {
            return Err(OpenError::OtherOwner {
                path: dir.to_owned(),
                owner: meta.uid(),
                uid,
            });
        }
        let mode = meta.mode() & 0o7777;
        if mode & 0o022 != 0 {
            return Err(OpenError::Writable {
                path: dir.to_owned(),
                mode,
            });
        }
        check_ancestors(dir)?;
        for sub in ["cas", "ac", "use"] {
            let path = dir.join(sub);
            make_dir(&path).map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
            let meta = fs::symlink_metadata(&path).map_err(|source| OpenError::Io {
                path: path.clone(),
                source,
            })?;
            if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
                return Err(OpenError::Writable {
                    path,
                    mode: meta.mode() & 0o7777,
                });
            }
        }
        let memo = Arc::new(DigestMemo::new());
        // The digests earlier runs took, for files whose stamp is the same.
        if let Ok(bytes) = read_own(&dir.join(MEMO_FILE), MAX_ENTRY_BYTES * 2) {
            memo.load_bytes(&bytes);
        }
        Ok(Store {
            dir: dir.to_owned(),
            max_size,
            memo,
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The memo the store rechecks read sets with; use it for input
    /// digests too.
    pub fn memo(&self) -> &DigestMemo {
        &self.memo
    }

    /// The same memo, to share with another thread (a [`crate::Warmer`]).
    pub fn shared_memo(&self) -> Arc<DigestMemo> {
        Arc::clone(&self.memo)
    }

    /// Saves the memo's digests for the next run (`memo.json`, by rename):
    /// a hit then costs no rehash of the system libraries its read set
    /// names. Best effort: only time is lost if it fails.
    pub fn save_memo(&self) -> io::Result<()> {
        let mut file = tempfile::Builder::new()
            .prefix(".memo-")
            .tempfile_in(&self.dir)?;
        file.write_all(&self.memo.to_bytes())?;
        file.persist(self.dir.join(MEMO_FILE))
            .map(drop)
            .map_err(|e| e.error)
    }

    /// The content digest of a file, through the memo.
    pub fn digest_file(&self, path: &Path) -> io::Result<Digest> {
        self.memo.digest(path)
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir
            .join("cas")
            .join(&digest.hash[..2])
            .join(&digest.hash)
    }

    fn entry_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("ac").join(&key.hash)
    }

    fn use_path(&self, key: &Digest) -> PathBuf {
        self.dir.join("use").join(&key.hash)
    }

    /// Takes the store-wide lock: shared for store and lookup, exclusive
    /// for what removes entries wholesale.
    fn lock(&self, exclusive: bool) -> io::Result<Flock<File>> {
        let path = self.dir.join("lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        let arg = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        Flock::lock(file, arg).map_err(|(_, errno)| io::Error::from(errno))
    }

    /// Changes the counters under `stats.lock`, rewriting `stats.json` by
    /// rename so a reader never sees half of it. Counting is best effort:
    /// a failure to count never fails a lookup or a store.
    fn count(&self, change: impl FnOnce(&mut Counters)) -> io::Result<Counters> {
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(self.dir.join("stats.lock"))?;
        let _held = Flock::lock(lock, FlockArg::LockExclusive)
            .map_err(|(_, errno)| io::Error::from(errno))?;
        let mut counters = self.read_counters();
        change(&mut counters);
        let bytes = serde_json::to_vec(&counters).map_err(io::Error::other)?;
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&self.dir)?;
        temp.write_all(&bytes)?;
        temp.persist(self.dir.join("stats.json"))
            .map_err(|e| e.error)?;
        Ok(counters)
    }

    fn read_counters(&self) -> Counters {
        fs::read(self.dir.join("stats.json"))
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default()
    }

    /// Copies `reader` into the CAS, hashing on the way; returns the digest
    /// and whether the blob was new.
    fn put_reader(&self, reader: &mut impl Read, what: &Path) -> Result<(Digest, bool), PutError> {
        let cas = self.dir.join("cas");
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&cas)
            .map_err(at("make a temporary file in", &cas, put_io))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(put_io("read", what.to_owned(), e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
            temp.write_all(&buf[..n])
                .map_err(at("write", temp.path(), put_io))?;
        }
        let digest = Digest {
            hash: hex(&hasher.finalize()),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        };
        let target = self.blob_path(&digest);
        let parent = cas.join(&digest.hash[..2]);
        make_dir(&parent).map_err(at("make", &parent, put_io))?;
        let new = !target.exists();
        temp.as_file()
            .set_permissions(Permissions::from_mode(0o400))
            .map_err(at("set the mode of", &target, put_io))?;
        temp.persist(&target)
            .map_err(|e| put_io("rename a blob to", target.clone(), e.error))?;
        Ok((digest, new))
    }

    /// Stores a successful run's result under `key`. Refuses (with the
    /// `NonZeroExit`, `MissingOutput`, `NotRegular` errors) what is never
    /// cached. Evicts least recently used entries if the cap is passed.
    pub fn put(&self, key: &Digest, record: &Record) -> Result<Entry, PutError> {
        if !check_key(key) {
            return Err(PutError::BadKey(key.clone()));
        }
        if record.exit_code != 0 {
            return Err(PutError::NonZeroExit {
                code: record.exit_code,
            });
        }
        let mut seen = HashSet::new();
        for output in &record.outputs {
            if !plain_relative(&output.path) {
                return Err(PutError::BadPath {
                    path: output.path.clone(),
                    reason: "is not a plain path inside the work root",
                });
            }
            if !seen.insert(output.path.as_str()) {
                return Err(PutError::BadPath {
                    path: output.path.clone(),
                    reason: "is declared twice",
                });
            }
        }
        for read in &record.read_set {
            if read.path.to_str().is_none() {
                return Err(PutError::BadPath {
                    path: read.path.display().to_string(),
                    reason: "is read but is not UTF-8, which an entry cannot hold",
                });
            }
            if !read.path.is_absolute() {
                return Err(PutError::BadPath {
                    path: read.path.display().to_string(),
                    reason: "is read but not absolute",
                });
            }
        }
        let held = self
            .lock(false)
            .map_err(at("lock", &self.dir.join("lock"), put_io))?;
        let mut added: u64 = 0;
        let mut outputs = Vec::with_capacity(record.outputs.len());
        for output in &record.outputs {
            let meta = match fs::symlink_metadata(&output.file) {
                Ok(meta) => meta,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    return Err(PutError::MissingOutput {
                        path: output.path.clone(),
                        file: output.file.clone(),
                    })
                }
                Err(e) => return Err(put_io("read", output.file.clone(), e)),
            };
            if !meta.is_file() {
                return Err(PutError::NotRegular {
                    path: output.path.clone(),
                });
            }
            let mut file = File::open(&output.file).map_err(at("open", &output.file, put_io))?;
            let (digest, new) = self.put_reader(&mut file, &output.file)?;
            if new {
                added += digest.size();
            }
            outputs.push(OutputEntry {
                path: output.path.clone(),
                size: digest.size(),
                digest,
                executable: meta.mode() & 0o111 != 0,
            });
        }
        let (stdout, new) = self.put_reader(&mut record.stdout.as_slice(), Path::new("stdout"))?;
        if new {
            added += stdout.size();
        }
        let (stderr, new) = self.put_reader(&mut record.stderr.as_slice(), Path::new("stderr"))?;
        if new {
            added += stderr.size();
        }
        let entry = Entry {
            format: FORMAT_VERSION,
            action: key.clone(),
            outputs,
            stdout,
            stderr,
            exit_code: 0,
            cost: record.cost,
            read_set: record.read_set.clone(),
        };
        let json = serde_json::to_vec(&entry).map_err(|e| PutError::BadPath {
            path: e.to_string(),
            reason: "cannot be written as JSON (is it UTF-8?)",
        })?;
        let ac = self.dir.join("ac");
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&ac)
            .map_err(at("make a temporary file in", &ac, put_io))?;
        temp.write_all(&json)
            .map_err(at("write", temp.path(), put_io))?;
        let target = self.entry_path(key);
        temp.persist(&target)
            .map_err(|e| put_io("rename an entry to", target.clone(), e.error))?;
        // A fresh entry has not been read yet: it goes first when evicting.
        match fs::remove_file(self.use_path(key)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(put_io("remove", self.use_path(key), e)),
        }
        drop(held);
        added += json.len() as u64;
        let over = self
            .count(|c| c.bytes_estimate = c.bytes_estimate.saturating_add(added))
            .map(|c| c.bytes_estimate > self.max_size)
            .unwrap_or(false);
        if over {
            // Best effort: the entry is stored either way, and while the
            // estimate stays over the cap every later put tries again.
            let _ = self.gc();
        }
        Ok(entry)
    }

    /// A writer of one blob into the CAS that must turn out to be
    /// `expected` (a download from a remote cache): nothing is kept
    /// unless [`BlobSink::finish`] finds the digest and size it names.
    pub fn blob_sink(&self, expected: &Digest) -> Result<BlobSink<'_>, PutError> {
        if !expected.is_well_formed() {
            return Err(PutError::BadKey(expected.clone()));
        }
        let cas = self.dir.join("cas");
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&cas)
            .map_err(at("make a temporary file in", &cas, put_io))?;
        Ok(BlobSink {
            store: self,
            expected: expected.clone(),
            temp,
            hasher: Sha256::new(),
            size: 0,
        })
    }

    /// The size cap in bytes.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Whether the CAS holds a blob named `digest` (not rehashed: a
    /// restore rehashes it).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        digest.is_well_formed() && self.blob_path(digest).is_file()
    }

    /// Reads a blob of the CAS whole, rehashed: `None` if it is missing
    /// or does not match `digest` (what is uploaded is what it names).
    pub fn blob_bytes(&self, digest: &Digest) -> Option<Vec<u8>> {
        if !digest.is_well_formed() {
            return None;
        }
        let bytes = read_own(&self.blob_path(digest), MAX_STREAM_BYTES.max(digest.size())).ok()?;
        (Digest::of(&bytes) == *digest).then_some(bytes)
    }

    /// Opens a blob of the CAS to stream it (a large upload), if it is
    /// there as the store writes blobs and has the digest's size; its
    /// content is not rehashed here (the receiving server checks it).
    pub fn open_blob(&self, digest: &Digest) -> Option<File> {
        if !digest.is_well_formed() {
            return None;
        }
        let file = open_own(&self.blob_path(digest)).ok()?;
        let size = file.metadata().ok()?.len();
        (size == digest.size()).then_some(file)
    }

    /// Stores an entry whose blobs the CAS already holds (one fetched from
    /// a remote cache), after the checks a lookup makes of any entry; a
    /// lookup then verifies its read set and blobs and restores it.
    pub fn put_entry(&self, entry: &Entry, expected: &[String]) -> Result<(), PutError> {
        let json = serde_json::to_vec(entry).map_err(|e| PutError::BadPath {
            path: e.to_string(),
            reason: "cannot be written as JSON (is it UTF-8?)",
        })?;
        if let Err(reason) = parse_entry(&json, &entry.action, Some(expected)) {
            return Err(PutError::BadEntry {
                reason: reason.to_string(),
            });
        }
        if let Some(read) = entry.read_set.iter().find(|r| !r.path.is_absolute()) {
            return Err(PutError::BadPath {
                path: read.path.display().to_string(),
                reason: "is read but not absolute",
            });
        }
        let held = self
            .lock(false)
            .map_err(at("lock", &self.dir.join("lock"), put_io))?;
        let ac = self.dir.join("ac");
        let mut temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempfile_in(&ac)
            .map_err(at("make a temporary file in", &ac, put_io))?;
        temp.write_all(&json)
            .map_err(at("write", temp.path(), put_io))?;
        let target = self.entry_path(&entry.action);
        temp.persist(&target)
            .map_err(|e| put_io("rename an entry to", target.clone(), e.error))?;
        drop(held);
        let added = json.len() as u64 + entry.outputs.iter().map(|o| o.size).sum::<u64>();
        let _ = self.count(|c| c.bytes_estimate = c.bytes_estimate.saturating_add(added));
        Ok(())
    }

    /// The first file of `read_set` that is not as it was (another
    /// digest, now absent or present, unreadable), if any.
    pub fn read_set_changed(&self, read_set: &[ReadFile]) -> Option<PathBuf> {
        for read in read_set {
            let now = if read.listing {
                listing_digest(&read.path)
            } else {
                self.memo.digest(&read.path)
            };
            let now = match now {
                Ok(digest) => Some(digest),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(_) => return Some(read.path.clone()),
            };
            if now != read.digest {
                return Some(read.path.clone());
            }
        }
        None
    }

    /// As [`Store::read_set_changed`], for a read set a remote cache sent
    /// (so naming whatever its server chose): a file whose size is not
    /// the one its digest names, or that is no regular file, is changed
    /// without being read; one expected absent is not opened; a file is
    /// read no further than its size; and hashing gives up as soon as
    /// `stop` says so (an error of kind `TimedOut`: the time is up).
    pub fn remote_read_set_changed(
        &self,
        read_set: &[ReadFile],
        stop: &dyn Fn() -> bool,
    ) -> io::Result<Option<PathBuf>> {
        for read in read_set {
            if stop() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the read set was not checked in time",
                ));
            }
            let now = match (&read.digest, read.listing) {
                (_, true) => listing_digest(&read.path),
                (None, false) => match fs::symlink_metadata(&read.path) {
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    _ => return Ok(Some(read.path.clone())),
                },
                (Some(digest), false) => match fs::metadata(&read.path) {
                    Ok(meta) if meta.is_file() && meta.len() == digest.size() => {
                        self.memo.digest_until(&read.path, stop)
                    }
                    Ok(_) => return Ok(Some(read.path.clone())),
                    Err(e) => Err(e),
                },
            };
            let now = match now {
                Ok(digest) => Some(digest),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) if e.kind() == io::ErrorKind::TimedOut => return Err(e),
                Err(_) => return Ok(Some(read.path.clone())),
            };
            if now != read.digest {
                return Ok(Some(read.path.clone()));
            }
        }
        Ok(None)
    }

    /// Adds what a remote cache did to the persisted counters.
    pub fn count_remote(&self, counts: &RemoteCounts) {
        let _ = self.count(|c| c.remote.add(counts));
    }

    /// The measured cost of the run stored under `key`, if an entry of
    /// this format is there: a prediction only (nothing is verified or
    /// restored, and no counter moves).
    pub fn cost(&self, key: &Digest) -> Option<Cost> {
        if !check_key(key) {
            return None;
        }
        let text = read_own(&self.entry_path(key), MAX_ENTRY_BYTES).ok()?;
        let entry: Entry = serde_json::from_slice(&text).ok()?;
        (entry.format == FORMAT_VERSION).then_some(entry.cost)
    }

    /// Looks `key` up; on a hit, restores every output into `out_dir`,
    /// mirrored by declared path, as fresh 0755/0644 copies whose content
    /// was rehashed. All or nothing: on a miss or an error nothing is left
    /// in `out_dir` (give a fresh staging directory: a file already at an
    /// output's place is replaced, and removed if a later one fails). A
    /// corrupt or missing blob evicts the entry.
    /// `expected` lists the declared outputs (root-relative, normalized):
    /// an entry that restores any other set is a bad entry.
    pub fn lookup(
        &self,
        key: &Digest,
        out_dir: &Path,
        expected: &[String],
    ) -> Result<Lookup, LookupError> {
        if !check_key(key) {
            return Err(LookupError::BadKey(key.clone()));
        }
        let held = self
            .lock(false)
            .map_err(at("lock", &self.dir.join("lock"), lookup_io))?;
        let outcome = self.lookup_locked(key, out_dir, expected);
        drop(held);
        let _ = self.count(|c| match &outcome {
            Ok(Lookup::Hit(hit)) => {
                c.hits += 1;
                c.bytes_saved += hit.entry.outputs.iter().map(|o| o.size).sum::<u64>();
                c.ms_saved += hit.entry.cost.wall_ms;
            }
            Ok(Lookup::Miss(reason)) => {
                c.misses += 1;
                if matches!(
                    reason,
                    MissReason::BadEntry { .. }
                        | MissReason::OtherFormat { .. }
                        | MissReason::Corrupt { .. }
                        | MissReason::MissingBlob { .. }
                ) {
                    c.evictions += 1;
                }
            }
            Err(_) => c.misses += 1,
        });
        outcome
    }

    /// Removes an entry and its use stamp.
    fn evict_entry(&self, key_hex: &str) {
        let _ = fs::remove_file(self.dir.join("ac").join(key_hex));
        let _ = fs::remove_file(self.dir.join("use").join(key_hex));
    }

    fn lookup_locked(
        &self,
        key: &Digest,
        out_dir: &Path,
        expected: &[String],
    ) -> Result<Lookup, LookupError> {
        let path = self.entry_path(key);
        let bytes = match read_own(&path, MAX_ENTRY_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Lookup::Miss(MissReason::NoEntry))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                self.evict_entry(&key.hash);
                return Ok(Lookup::Miss(MissReason::BadEntry {
                    reason: e.to_string(),
                }));
            }
            Err(e) => return Err(lookup_io("read", path, e)),
        };
        let entry = match parse_entry(&bytes, key, Some(expected)) {
            Ok(entry) => entry,
            Err(reason) => {
                self.evict_entry(&key.hash);
                return Ok(Lookup::Miss(reason));
            }
        };
        if let Some(path) = self.read_set_changed(&entry.read_set) {
            return Ok(Lookup::Miss(MissReason::ReadChanged { path }));
        }
        let stdout = match self.read_blob(&entry.stdout)? {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(self.bad_blob(&entry, reason)),
        };
        let stderr = match self.read_blob(&entry.stderr)? {
            Ok(bytes) => bytes,
            Err(reason) => return Ok(self.bad_blob(&entry, reason)),
        };
        match self.restore(&entry, out_dir)? {
            Ok(()) => {}
            Err(reason) => return Ok(self.bad_blob(&entry, reason)),
        }
        // The entry's last use: evicted after those used less recently.
        let stamp = self.use_path(key);
        let _ = File::create(&stamp).and_then(|f| f.set_modified(SystemTime::now()));
        Ok(Lookup::Hit(Hit {
            entry,
            stdout,
            stderr,
        }))
    }

    /// Evicts an entry whose blob is bad (and the blob, if corrupt).
    fn bad_blob(&self, entry: &Entry, reason: MissReason) -> Lookup {
        if let MissReason::Corrupt { digest } = &reason {
            let _ = fs::remove_file(self.blob_path(digest));
        }
        self.evict_entry(&entry.action.hash);
        Lookup::Miss(reason)
    }

    /// Reads a whole blob, checking its digest.
    fn read_blob(&self, digest: &Digest) -> Result<Result<Vec<u8>, MissReason>, LookupError> {
        let path = self.blob_path(digest);
        let bytes = match read_own(&path, MAX_STREAM_BYTES) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(MissReason::MissingBlob {
                    digest: digest.clone(),
                }))
            }
            Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                return Ok(Err(MissReason::Corrupt {
                    digest: digest.clone(),
                }))
            }
            Err(e) => return Err(lookup_io("read", path, e)),
        };
        if Digest::of(&bytes) != *digest {
            return Ok(Err(MissReason::Corrupt {
                digest: digest.clone(),
            }));
        }
        Ok(Ok(bytes))
    }

    /// Copies every output into `out_dir` under temporary names, checking
    /// each copy's digest, then renames them all into place; on any
    /// failure removes what it wrote and the directories it made.
    fn restore(
        &self,
        entry: &Entry,
        out_dir: &Path,
    ) -> Result<Result<(), MissReason>, LookupError> {
        let mut made_dirs: Vec<PathBuf> = Vec::new();
        let mut temps: Vec<(NamedTempFile, PathBuf)> = Vec::new();
        let undo = |made_dirs: &[PathBuf], placed: &[PathBuf]| {
            for path in placed {
                let _ = fs::remove_file(path);
            }
            for dir in made_dirs.iter().rev() {
                let _ = fs::remove_dir(dir);
            }
        };
        for output in &entry.outputs {
            let target = out_dir.join(&output.path);
            let written = self.restore_one(output, out_dir, &target, &mut made_dirs);
            match written {
                Ok(Ok(temp)) => temps.push((temp, target)),
                Ok(Err(reason)) => {
                    drop(temps);
                    undo(&made_dirs, &[]);
                    return Ok(Err(reason));
                }
                Err(e) => {
                    drop(temps);
                    undo(&made_dirs, &[]);
                    return Err(e);
                }
            }
        }
        let mut placed = Vec::with_capacity(temps.len());
        let mut temps = temps.into_iter();
        while let Some((temp, target)) = temps.next() {
            if let Err(e) = temp.persist(&target) {
                drop(temps);
                undo(&made_dirs, &placed);
                return Err(lookup_io("move a restored output to", target, e.error));
            }
            placed.push(target);
        }
        Ok(Ok(()))
    }

    fn restore_one(
        &self,
        output: &OutputEntry,
        out_dir: &Path,
        target: &Path,
        made_dirs: &mut Vec<PathBuf>,
    ) -> Result<Result<NamedTempFile, MissReason>, LookupError> {
        let parent = target.parent().unwrap_or(out_dir).to_owned();
        let mut missing = Vec::new();
        let mut dir = parent.as_path();
        while dir != out_dir && !dir.exists() {
            missing.push(dir.to_owned());
            match dir.parent() {
                Some(up) => dir = up,
                None => break,
            }
        }
        for dir in missing.into_iter().rev() {
            fs::create_dir(&dir).map_err(at("make", &dir, lookup_io))?;
            made_dirs.push(dir);
        }
        let blob = self.blob_path(&output.digest);
        let mut source = match open_own(&blob) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Err(MissReason::MissingBlob {
                    digest: output.digest.clone(),
                }))
            }
            // A link, a FIFO, another's file: not what a store wrote.
            Err(e) if e.kind() == io::ErrorKind::InvalidData || e.raw_os_error() == Some(40) => {
                return Ok(Err(MissReason::Corrupt {
                    digest: output.digest.clone(),
                }))
            }
            Err(e) => return Err(lookup_io("read", blob, e)),
        };
        let mut temp = tempfile::Builder::new()
            .prefix(".replay-restore-")
            .tempfile_in(&parent)
            .map_err(at("make a temporary file in", &parent, lookup_io))?;
        let mut hasher = Sha256::new();
        let mut size: u64 = 0;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match source.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(lookup_io("read", blob, e)),
            };
            hasher.update(&buf[..n]);
            size += n as u64;
            temp.write_all(&buf[..n])
                .map_err(at("write", target, lookup_io))?;
        }
        let digest = Digest {
            hash: hex(&hasher.finalize()),
            size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        };
        if digest != output.digest {
            return Ok(Err(MissReason::Corrupt {
                digest: output.digest.clone(),
            }));
        }
        let mode = if output.executable { 0o755 } else { 0o644 };
        temp.as_file()
            .set_permissions(Permissions::from_mode(mode))
            .map_err(at("set the mode of", target, lookup_io))?;
        Ok(Ok(temp))
    }
}

/// Parses an entry and checks it belongs under `key`; the reason it is a
/// miss otherwise.
fn parse_entry(
    bytes: &[u8],
    key: &Digest,
    expected: Option<&[String]>,
) -> Result<Entry, MissReason> {
    #[derive(Deserialize)]
    struct Version {
        format: u32,
    }
    let version: Version = serde_json::from_slice(bytes).map_err(|e| MissReason::BadEntry {
        reason: e.to_string(),
    })?;
    if version.format != FORMAT_VERSION {
        return Err(MissReason::OtherFormat {
            found: version.format,
        });
    }
    let entry: Entry = serde_json::from_slice(bytes).map_err(|e| MissReason::BadEntry {
        reason: e.to_string(),
    })?;
    let bad = |reason: String| Err(MissReason::BadEntry { reason });
    if entry.action != *key {
        return bad(format!("it is stored for {}", entry.action));
    }
    if entry.read_set.len() > MAX_READ_SET {
        return bad(format!("it lists more than {MAX_READ_SET} files read"));
    }
    if let Some(expected) = expected {
        let mut stored: Vec<&str> = entry.outputs.iter().map(|o| o.path.as_str()).collect();
        let mut wanted: Vec<&str> = expected.iter().map(String::as_str).collect();
        stored.sort_unstable();
        wanted.sort_unstable();
        if stored != wanted {
            return bad("its outputs are not the command's".into());
        }
    }
    if entry.exit_code != 0 {
        return bad(format!("it records exit code {}", entry.exit_code));
    }
    for digest in entry
        .outputs
        .iter()
        .map(|o| &o.digest)
        .chain([&entry.stdout, &entry.stderr])
    {
        if !digest.is_well_formed() {
            return bad(format!("it names the malformed digest {digest}"));
        }
    }
    let mut seen = HashSet::new();
    for output in &entry.outputs {
        if !plain_relative(&output.path) || !seen.insert(output.path.as_str()) {
            return bad(format!(
                "its output path `{}` is not plain or is repeated",
                output.path
            ));
        }
    }
    Ok(entry)
}

/// One blob being written into the CAS; see [`Store::blob_sink`].
pub struct BlobSink<'a> {
    store: &'a Store,
    expected: Digest,
    temp: NamedTempFile,
    hasher: Sha256,
    size: u64,
}

impl BlobSink<'_> {
    /// Appends `bytes`; refused once more than the expected size arrived.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), PutError> {
        self.size += bytes.len() as u64;
        if self.size > self.expected.size() {
            return Err(PutError::Mismatch {
                expected: self.expected.clone(),
                got: Digest {
                    hash: "(longer than its size)".into(),
                    size_bytes: i64::try_from(self.size).unwrap_or(i64::MAX),
                },
            });
        }
        self.hasher.update(bytes);
        let path = self.temp.path().to_owned();
        self.temp
            .write_all(bytes)
            .map_err(|e| put_io("write", path, e))
    }

    /// Keeps the blob if it is what was expected (else drops it); returns
    /// whether it was new to the CAS.
    pub fn finish(self) -> Result<bool, PutError> {
        let got = Digest {
            hash: hex(&self.hasher.finalize()),
            size_bytes: i64::try_from(self.size).unwrap_or(i64::MAX),
        };
        if got != self.expected {
            return Err(PutError::Mismatch {
                expected: self.expected,
                got,
            });
        }
        let cas = self.store.dir.join("cas");
        let target = self.store.blob_path(&got);
        let parent = cas.join(&got.hash[..2]);
        make_dir(&parent).map_err(at("make", &parent, put_io))?;
        let new = !target.exists();
        self.temp
            .as_file()
            .set_permissions(Permissions::from_mode(0o400))
            .map_err(at("set the mode of", &target, put_io))?;
        self.temp
            .persist(&target)
            .map_err(|e| put_io("rename a blob to", target.clone(), e.error))?;
        Ok(new)
    }
}

/// What a scan of the store found.
struct Scan {
    /// Entries by key hex: the entry, its file size, its last use (None:
    /// never read) and when it was stored.
    entries: Vec<(String, Entry, u64, Option<SystemTime>, SystemTime)>,
    /// Blobs by hash: path and size.
    blobs: HashMap<String, (PathBuf, u64)>,
}

impl Store {
    /// Lists entries and blobs; removes unreadable entries and stale
    /// temporary files. Call under the exclusive lock.
    fn scan(&self) -> Result<(Scan, u64), MaintError> {
        let mut evicted = 0;
        let mut entries = Vec::new();
        let ac = self.dir.join("ac");
        for item in fs::read_dir(&ac).map_err(at("list", &ac, maint_io))? {
            let item = item.map_err(at("list", &ac, maint_io))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            let meta = item.metadata().map_err(at("read", &path, maint_io))?;
            if name.starts_with(TEMP_PREFIX) {
                remove_if_stale(&path, &meta);
                continue;
            }
            let key = Digest {
                hash: name.clone(),
                size_bytes: 0,
            };
            let parsed = read_own(&path, MAX_ENTRY_BYTES)
                .ok()
                .filter(|_| key.is_well_formed())
                .and_then(|bytes| {
                    // The key's size is not in the file name: take the
                    // entry's own, then check the hash agrees.
                    let entry: Entry = serde_json::from_slice(&bytes).ok()?;
                    (entry.action.hash == name)
                        .then(|| parse_entry(&bytes, &entry.action, None).ok())
                        .flatten()
                });
            let Some(entry) = parsed else {
                self.evict_entry(&name);
                evicted += 1;
                continue;
            };
            let used = fs::metadata(self.dir.join("use").join(&name))
                .and_then(|m| m.modified())
                .ok();
            let stored = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            entries.push((name, entry, meta.len(), used, stored));
        }
        let mut blobs = HashMap::new();
        let cas = self.dir.join("cas");
        for shard in fs::read_dir(&cas).map_err(at("list", &cas, maint_io))? {
            let shard = shard.map_err(at("list", &cas, maint_io))?;
            let path = shard.path();
            let meta = shard.metadata().map_err(at("read", &path, maint_io))?;
            if !meta.is_dir() {
                if shard.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                    remove_if_stale(&path, &meta);
                }
                continue;
            }
            for blob in fs::read_dir(&path).map_err(at("list", &path, maint_io))? {
                let blob = blob.map_err(at("list", &path, maint_io))?;
                let meta = blob
                    .metadata()
                    .map_err(at("read", &blob.path(), maint_io))?;
                let name = blob.file_name().to_string_lossy().into_owned();
                blobs.insert(name, (blob.path(), meta.len()));
            }
        }
        Ok((Scan { entries, blobs }, evicted))
    }

    /// Evicts entries, never-read ones first (oldest stored first), then
    /// least recently used, until entries and the blobs they name fit in
    /// the cap; removes every blob no entry names.
    pub fn gc(&self) -> Result<GcReport, MaintError> {
        let lock_path = self.dir.join("lock");
        let held = self.lock(true).map_err(at("lock", &lock_path, maint_io))?;
        let (scan, mut evicted) = self.scan()?;
        let mut refs: HashMap<&str, u32> = HashMap::new();
        for (_, entry, _, _, _) in &scan.entries {
            for digest in entry_blobs(entry) {
                *refs.entry(digest.hash.as_str()).or_insert(0) += 1;
            }
        }
        let mut blobs_removed = 0;
        let mut total: u64 = 0;
        for (hash, (path, size)) in &scan.blobs {
            if refs.contains_key(hash.as_str()) {
                total += size;
            } else if fs::remove_file(path).is_ok() {
                blobs_removed += 1;
            }
        }
        total += scan.entries.iter().map(|e| e.2).sum::<u64>();
        let mut order: Vec<&(String, Entry, u64, Option<SystemTime>, SystemTime)> =
            scan.entries.iter().collect();
        // Never read (None) sorts first; among them, oldest stored first.
        order.sort_by_key(|(_, _, _, used, stored)| (*used, *stored));
        for (name, entry, size, _, _) in order {
            if total <= self.max_size {
                break;
            }
            self.evict_entry(name);
            evicted += 1;
            total = total.saturating_sub(*size);
            let mut gone = HashSet::new();
            for digest in entry_blobs(entry) {
                if let Some(count) = refs.get_mut(digest.hash.as_str()) {
                    *count = count.saturating_sub(1);
                    if *count == 0 && gone.insert(digest.hash.as_str()) {
                        if let Some((path, size)) = scan.blobs.get(&digest.hash) {
                            if fs::remove_file(path).is_ok() {
                                blobs_removed += 1;
                                total = total.saturating_sub(*size);
                            }
                        }
                    }
                }
            }
        }
        drop(held);
        let _ = self.count(|c| {
            c.evictions += evicted;
            c.bytes_estimate = total;
        });
        Ok(GcReport {
            evicted,
            blobs_removed,
            bytes: total,
        })
    }

    /// Rehashes every blob; removes the bad ones and evicts every entry
    /// that names a bad or missing blob.
    pub fn verify(&self) -> Result<VerifyReport, MaintError> {
        let lock_path = self.dir.join("lock");
        let held = self.lock(true).map_err(at("lock", &lock_path, maint_io))?;
        let (scan, mut evicted) = self.scan()?;
        let mut report = VerifyReport::default();
        let mut good = HashSet::new();
        for (hash, (path, _)) in &scan.blobs {
            report.checked += 1;
            let ok = File::open(path)
                .and_then(|mut f| digest_reader(&mut f))
                .map(|d| d.hash == *hash)
                .unwrap_or(false);
            if ok {
                good.insert(hash.as_str());
            } else {
                let _ = fs::remove_file(path);
                report.bad.push(path.clone());
            }
        }
        for (name, entry, _, _, _) in &scan.entries {
            if entry_blobs(entry).any(|d| !good.contains(d.hash.as_str())) {
                self.evict_entry(name);
                evicted += 1;
            }
        }
        drop(held);
        report.evicted = evicted;
        let _ = self.count(|c| c.evictions += evicted);
        Ok(report)
    }

    /// The counters and the store's size now.
    pub fn stats(&self) -> Result<Stats, MaintError> {
        let lock_path = self.dir.join("lock");
        let held = self.lock(false).map_err(at("lock", &lock_path, maint_io))?;
        let mut stats = Stats::default();
        let ac = self.dir.join("ac");
        for item in fs::read_dir(&ac).map_err(at("list", &ac, maint_io))? {
            let item = item.map_err(at("list", &ac, maint_io))?;
            if item.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                continue;
            }
            stats.entries += 1;
            stats.bytes += item.metadata().map(|m| m.len()).unwrap_or(0);
        }
        let cas = self.dir.join("cas");
        for shard in fs::read_dir(&cas).map_err(at("list", &cas, maint_io))? {
            let shard = shard.map_err(at("list", &cas, maint_io))?;
            if !shard.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                continue;
            }
            let path = shard.path();
            for blob in fs::read_dir(&path).map_err(at("list", &path, maint_io))? {
                let blob = blob.map_err(at("list", &path, maint_io))?;
                stats.bytes += blob.metadata().map(|m| m.len()).unwrap_or(0);
            }
        }
        drop(held);
        let counters = self.read_counters();
        stats.hits = counters.hits;
        stats.misses = counters.misses;
        stats.evictions = counters.evictions;
        stats.bytes_saved = counters.bytes_saved;
        stats.ms_saved = counters.ms_saved;
        stats.remote = counters.remote;
        Ok(stats)
    }

    /// Removes every entry and blob, and resets the counters.
    pub fn clear(&self) -> Result<(), MaintError> {
        let lock_path = self.dir.join("lock");
        let held = self.lock(true).map_err(at("lock", &lock_path, maint_io))?;
        for sub in ["cas", "ac", "use"] {
            let path = self.dir.join(sub);
            match fs::remove_dir_all(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(maint_io("remove", path, e)),
            }
            make_dir(&path).map_err(at("make", &path, maint_io))?;
        }
        drop(held);
        self.count(|c| *c = Counters::default()).map_err(at(
            "reset the counters in",
            &self.dir,
            maint_io,
        ))?;
        Ok(())
    }
}

/// Every blob an entry names.
fn entry_blobs(entry: &Entry) -> impl Iterator<Item = &Digest> {
    entry
        .outputs
        .iter()
        .map(|o| &o.digest)
        .chain([&entry.stdout, &entry.stderr])
}

/// Removes a temporary file a killed process left, once it is old.
fn remove_if_stale(path: &Path, meta: &fs::Metadata) {
    let old = meta
        .modified()
        .ok()
        .and_then(|m| m.elapsed().ok())
        .is_some_and(|age| age > STALE_TEMP);
    if old {
        let _ = fs::remove_file(path);
    }
}
