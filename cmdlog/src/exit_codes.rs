//! The exit codes of `replay`, in one place, for scripts and CI to match on.

/// The exit codes `replay` uses; each outcome has its own.
pub struct ReplayExitCode;

impl ReplayExitCode {
    /// Everything passed (and, when running, every tool succeeded).
    pub const SUCCESS: i32 = 0;
    /// A tool ran and failed (non-zero exit or killed by a signal).
    pub const TOOL_FAILED: i32 = 1;
    /// Bad input or usage: an unreadable or malformed log or policy, or a
    /// command line `replay` does not accept.
    pub const BAD_INPUT: i32 = 2;
    /// The policy refused at least one command; nothing ran.
    pub const DENIED: i32 = 3;
    /// A limit (time, memory, output size) stopped a tool.
    pub const LIMIT: i32 = 4;
    /// Driver mode: a signal killed the producer, so there is no log to
    /// trust; nothing ran. (A producer that exits non-zero is a failed
    /// tool, [`ReplayExitCode::TOOL_FAILED`].)
    pub const PRODUCER_KILLED: i32 = 5;
    /// `replay` was interrupted (SIGINT or SIGTERM) and stopped the tool
    /// that was running; 128 + SIGINT, as shells report it.
    pub const INTERRUPTED: i32 = 130;
}
