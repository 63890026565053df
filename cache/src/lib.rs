//! The action cache: a command's result kept under a key made of
//! everything the result depends on, so that running the same command on
//! the same inputs again restores its outputs instead.
//!
//! # Keys
//!
//! A key is a Remote Execution API v2 `Action` digest ([`ActionSpec::key`]),
//! the SHA-256 of the encoded `Action` message, so a remote cache speaking
//! REAPI (BuildGrid) can use the same key unchanged. The `Action` holds
//! the digest of a `Command` (the argv as declared in the log after
//! response-file expansion, never the staging paths the executor rewrites
//! outputs to; the whole environment sorted by name; the working directory;
//! the declared outputs, sorted; the platform properties) and of the input
//! root `Directory`: a canonical Merkle tree (entries sorted by name, each
//! once, each subdirectory its own message) holding every declared input's
//! content digest under its path. Inputs inside the work root sit at their
//! relative path; inputs named by an absolute path sit under
//! [`SYSTEM_DIR`] (`/usr/lib/x.a` is `.replay-system/usr/lib/x.a`), so
//! their contents are keyed exactly like the others and a remote cache
//! can be handed every blob, and the tool's canonical binary sits at
//! [`PROGRAM_FILE`]. The `Action`'s salt carries [`FORMAT_VERSION`].
//! File digests are memoized by device, inode, size, mtime and ctime
//! ([`DigestMemo`]).
//!
//! # Hits and misses
//!
//! [`Store::lookup`] hits only if an entry is stored under the key, is of
//! this format, every file in its read set (what the tool was seen to
//! read besides its declared inputs) still has the digest it had, or is
//! still absent, and every blob it names rehashes to its digest. It then
//! restores the outputs into the directory the executor gives, all or
//! nothing, as fresh copies with modes 0755 or 0644. Anything else is a
//! [`Lookup::Miss`] with a [`MissReason`]; a corrupt or missing blob, an
//! unreadable entry or one of another format also evicts the entry.
//!
//! # Never cached
//!
//! A run that exited non-zero, and a run that did not leave every declared
//! output as a regular file ([`PutError`] says which).
//!
//! # Sharing
//!
//! Several `replay` processes may use one cache directory at once: files
//! are written under temporary names and renamed, stores and lookups hold
//! a shared `flock`, eviction, `verify` and `clear` an exclusive one, and
//! the counters are rewritten by rename under a lock of their own. The
//! directory must be this user's and writable by nobody else
//! ([`Store::open`]).
//!
//! # Wiring
//!
//! ```no_run
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use replay_cache::{default_dir, ActionSpec, Lookup, Record, Store};
//! let store = Store::open(&default_dir().ok_or("no home")?, 10 << 30)?;
//! let spec = ActionSpec::default(); // filled from the resolved command
//! let key = spec.key()?;
//! match store.lookup(&key.action, std::path::Path::new("stage/out"), &["a.o".into()])? {
//!     Lookup::Hit(hit) => { /* commit the staging dir; print hit.stdout */ }
//!     Lookup::Miss(reason) => {
//!         eprintln!("cache miss: {reason}");
//!         // run the tool, then:
//!         store.put(&key.action, &Record::default())?;
//!     }
//! }
//! # Ok(()) }
//! ```

mod key;
mod memo;
pub mod reapi;
#[cfg(feature = "remote")]
pub mod remote;
mod store;
mod warm;

pub use key::{
    host_platform, ActionKey, ActionSpec, InputFile, KeyError, FORMAT_VERSION, PROGRAM_FILE,
    SYSTEM_DIR,
};
pub use memo::DigestMemo;
pub use reapi::Digest;
pub use store::{
    default_dir, listing_digest, BlobSink, Cost, Entry, GcReport, Hit, Lookup, LookupError,
    MaintError, MissReason, OpenError, OutputEntry, ProducedFile, PutError, ReadFile, Record,
    RemoteCounts, Stats, Store, VerifyReport,
};
pub use warm::{Warmer, MAX_WARMED};

#[cfg(test)]
mod tests;
