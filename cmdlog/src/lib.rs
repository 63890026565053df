//! The command log, version 1: the contract between a compiler that records
//! the tool commands it would run (`aotc`) and the driver that checks and runs
//! them (`replay`).
//!
//! The document is JSON (see `docs/log-v1.schema.json`):
//!
//! ```json
//! { "format": "replay-log", "version": 1,
//!   "producer": { "name": "aotc", "version": "0.1.0", "llvm": "14.0.6" },
//!   "platform": { "os": "linux", "arch": "x86_64" },
//!   "commands": [ { "id": 1, "tool": "opt", "program": "opt", "args": [],
//!                   "cwd": ".", "env": {}, "inputs": [], "outputs": [] } ] }
//! ```
//!
//! [`LogReader`] streams it: commands reach a [`Visit`] one at a time and are
//! never held together, so a reader's memory is flat in the number of
//! commands. Everything a log can get wrong (truncation, unknown fields,
//! duplicate ids, NUL bytes, paths that leave the work root, oversize parts)
//! is a [`ReadError`] that says where. [`LogWriter`] is the producer's side:
//! it emits commands as they are decided and refuses to write what a reader
//! would refuse.

pub mod builtin;
mod error;
pub mod exit_codes;
mod limits;
pub mod path;
pub mod path_ids;
mod read;
pub mod schema;
pub mod text;
mod types;
mod validate;
mod write;

pub use builtin::{FileOp, FileOpError};
pub use error::{CommandRef, Field, Item, Location, Problem, ReadError, WriteError};
pub use limits::{Limit, Limits, MAX_HEADER_BYTES};
pub use read::{read_document, LogReader, Position, Summary, Visit};
pub use types::{Command, Document, Header, Os, Platform, Producer, ToolKind, FORMAT, VERSION};
pub use write::LogWriter;
