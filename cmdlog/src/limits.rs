//! Size limits a reader enforces while it streams, so that a hostile log
//! cannot make it allocate without bound.

use std::fmt;

/// The sizes a log may not exceed; [`Limits::default`] suits real builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Bytes in the whole document.
    pub max_log_bytes: u64,
    /// Bytes of JSON in one command (and in the header); bounds what a
    /// single command can make the reader hold.
    pub max_command_bytes: u64,
    /// Commands in one log.
    pub max_commands: u64,
    /// Arguments in one command.
    pub max_args: u64,
    /// Bytes in one argument.
    pub max_arg_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_log_bytes: 4 << 30,
            // Linux's whole argv+envp limit is 2 MiB by default; JSON quoting
            // may double it.
            max_command_bytes: 4 << 20,
            max_commands: 10_000_000,
            max_args: 32_768,
            // Linux's MAX_ARG_STRLEN: the kernel refuses a longer argument.
            max_arg_bytes: 128 << 10,
        }
    }
}

/// The most bytes a log may have outside its commands: the header before
/// `commands`, and what follows the list. Fixed, since nothing legitimate
/// there grows with the build.
pub const MAX_HEADER_BYTES: u64 = 1 << 20;

/// Which of the [`Limits`] a log exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// [`Limits::max_log_bytes`].
    LogBytes,
    /// [`Limits::max_command_bytes`].
    CommandBytes,
    /// [`MAX_HEADER_BYTES`], before or after the commands.
    HeaderBytes,
    /// [`Limits::max_commands`].
    Commands,
    /// [`Limits::max_args`].
    Args,
    /// [`Limits::max_arg_bytes`].
    ArgBytes,
}

impl Limit {
    /// The value of this limit in `limits`.
    pub fn value(self, limits: &Limits) -> u64 {
        match self {
            Limit::LogBytes => limits.max_log_bytes,
            Limit::CommandBytes => limits.max_command_bytes,
            Limit::HeaderBytes => MAX_HEADER_BYTES,
            Limit::Commands => limits.max_commands,
            Limit::Args => limits.max_args,
            Limit::ArgBytes => limits.max_arg_bytes,
        }
    }
}

impl fmt::Display for Limit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Limit::LogBytes => "bytes in the log",
            Limit::CommandBytes => "bytes in one command",
            Limit::HeaderBytes => {
                "bytes outside the commands (the header and what follows the list)"
            }
            Limit::Commands => "commands in the log",
            Limit::Args => "arguments in one command",
            Limit::ArgBytes => "bytes in one argument",
        })
    }
}
