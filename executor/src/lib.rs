//! `replay`: check every command of a compiler's command log against an
//! allowlist policy, then run the tools one at a time, sandboxed and
//! measured.
//!
//! The binary is a thin clap layer over this library. The foundation gives
//! [`job`] (the log, its work root and the policy a run is about); the
//! validation pass, the runner, the sandbox, the memory monitor, the journal
//! and the reporters are the later issues'.

pub mod audit;
#[cfg(target_os = "linux")]
pub mod builtin;
#[cfg(target_os = "linux")]
pub mod cached;
#[cfg(target_os = "linux")]
pub mod confine;
#[cfg(target_os = "linux")]
pub mod drive;
pub mod event;
#[cfg(target_os = "linux")]
pub mod execute;
pub mod import;
pub mod job;
pub mod journal;
pub mod lock;
pub mod ownfile;
pub mod remote;
pub mod report;
#[cfg(target_os = "linux")]
pub mod run;
#[cfg(target_os = "linux")]
pub mod sandbox;
#[cfg(target_os = "linux")]
pub mod session;
#[cfg(target_os = "linux")]
pub mod space;
pub mod staging;
#[cfg(target_os = "linux")]
pub mod worker;

pub use cmdlog::exit_codes::ReplayExitCode;
