//! Policies: which commands of a [`cmdlog`] log may run on a platform.
//!
//! This crate is the security boundary of `replay`: per-platform TOML
//! allowlists (binaries, argument grammars, paths, environment, limits),
//! and WebAssembly plugins that can only restrict further.
//!
//! [`Policy::load`] reads a policy file (and those it `extends`) into typed
//! rules; a [`Checker`] then judges a log as it streams: the header, each
//! command (a [`Verdict`] with its [`Finding`]s and, when allowed, how to
//! run it: [`Resolved`]), and the end of the log. [`report`] renders
//! findings for people.

#[cfg(feature = "wasm")]
pub mod combine;
pub mod explain;
#[cfg(feature = "wasm")]
pub mod plugin;

mod checker;
mod ctx;
mod error;
mod host;
mod kind;
mod lint;
mod load;
mod model;
pub mod report;
mod rootfs;
mod rules;
mod show;
mod spill;
mod verdict;
mod wire;

pub use checker::{Checker, End};
pub use error::{CheckerError, Invalid, PolicyError};
pub use host::HostDirs;
pub use kind::{check_input_kind, InputKindError};
pub use lint::Lint;
pub use load::{never_from_log, MAX_INCLUDE_DEPTH};
pub use model::{parse_duration, parse_size, PluginTable, Policy, ToolLimits};
pub use rules::derived::split_dwarf_file;
pub use rules::late::Recount;
pub use spill::{DEFAULT_RUN_RECORDS, DEFAULT_SPILL_AFTER, LEAN_RUN_RECORDS, LEAN_SPILL_AFTER};
pub use verdict::{
    CheckOptions, ExecAllowed, Finding, LinkerReads, Mode, Resolved, Status, Verdict,
};
