//! `aotc`: the producer side of replay. It reads LLVM IR or bitcode, does the
//! memory-heavy work in-process (linking, partitioning, writing each
//! partition's bitcode), and writes the `opt`/`llc`/link commands it would
//! have run as a [`cmdlog`] log, then exits so that `replay` runs them with
//! the compiler's memory already returned.
//!
//! [`compile::run`] is one run; [`partition`] is the splitter, [`plan`] the
//! command lines, [`sink`] the log's destination (file or driver
//! descriptor), [`exec`] the `--exec` baseline.

pub mod compile;
pub mod exec;
mod ir;
pub mod load;
pub mod options;
pub mod partition;
pub mod plan;
pub mod sink;
pub mod toolchain;

pub use compile::{run, CompileError, Outcome};
pub use options::{Emit, LogDest, OptLevel, Options, Partitions};
