//! `aotc`: the producer side of replay. It reads LLVM IR or bitcode, does the
//! memory-heavy work in-process, and writes the `opt`/`llc`/link commands it
//! would have run as a [`cmdlog`] log, then exits so that `replay` runs them
//! with the compiler's memory already returned.
//!
//! The foundation only loads and verifies a module ([`load`]); partitioning
//! and the log are the `aotc` issue's.

pub mod load;
