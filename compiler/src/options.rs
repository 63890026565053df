//! The validated options of one `aotc` run: what the command line says,
//! turned into typed values the library acts on (the CLI layer is in
//! `main.rs`; the library does not depend on clap).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use cmdlog::Os;

/// What the final link produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// An executable.
    Exe,
    /// A shared library.
    Shared,
    /// One relocatable object (`ld -r`).
    Obj,
}

impl FromStr for Emit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "exe" => Ok(Emit::Exe),
            "shared" => Ok(Emit::Shared),
            "obj" => Ok(Emit::Obj),
            other => Err(format!("`{other}` is not one of `exe`, `shared`, `obj`")),
        }
    }
}

/// How many partitions to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Partitions {
    /// Exactly this many (at least 1).
    Fixed(usize),
    /// Chosen from the module's size (see [`crate::partition::auto_count`]).
    Auto,
}

impl FromStr for Partitions {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "auto" {
            return Ok(Partitions::Auto);
        }
        match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PARTITIONS).contains(&n) => Ok(Partitions::Fixed(n)),
            _ => Err(format!(
                "`{s}` is not `auto` or a number from 1 to {MAX_PARTITIONS}"
            )),
        }
    }
}

/// The most partitions one may ask for.
pub const MAX_PARTITIONS: usize = 4096;

/// An optimization level, `-O0` to `-O3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OptLevel(u8);

impl OptLevel {
    /// The level from its digit, if it is 0 to 3.
    pub fn new(level: u8) -> Option<OptLevel> {
        (level <= 3).then_some(OptLevel(level))
    }

    /// The flag `opt` and `llc` take, e.g. `-O2`.
    pub fn flag(self) -> String {
        format!("-O{}", self.0)
    }
}

impl Default for OptLevel {
    fn default() -> Self {
        OptLevel(2)
    }
}

impl fmt::Display for OptLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "-O{}", self.0)
    }
}

/// Where the log goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogDest {
    /// A file; its directory is the work root.
    File(PathBuf),
    /// Driver mode: a descriptor opened by `replay drive`, and the work root
    /// it named (`REPLAY_LOG_FD`, `REPLAY_ROOT`).
    Driver {
        /// The descriptor's number.
        fd: i32,
        /// The work root.
        root: PathBuf,
    },
}

/// Everything one run needs, validated.
#[derive(Debug, Clone)]
pub struct Options {
    /// The inputs, in link order.
    pub inputs: Vec<PathBuf>,
    /// The final output, as the user named it (relative to the current
    /// directory); it must lie under the work root.
    pub output: PathBuf,
    /// Where the log goes.
    pub log: LogDest,
    /// Optimization level for `opt` and `llc`.
    pub opt_level: OptLevel,
    /// What the link produces.
    pub emit: Emit,
    /// Libraries to link (`-l`).
    pub libs: Vec<String>,
    /// Library directories (`-L`).
    pub lib_dirs: Vec<PathBuf>,
    /// The platform whose tools the log names.
    pub target_os: Os,
    /// How many partitions.
    pub partitions: Partitions,
    /// Where LLVM's tools are, if not found with `llvm-config`.
    pub llvm_bin: Option<PathBuf>,
    /// Run the commands in-process after writing the log (`--exec`).
    pub exec: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_parse_auto_and_bounded_numbers() {
        assert_eq!("auto".parse(), Ok(Partitions::Auto));
        assert_eq!("3".parse(), Ok(Partitions::Fixed(3)));
        assert!("0".parse::<Partitions>().is_err());
        assert!("x".parse::<Partitions>().is_err());
        assert!("5000".parse::<Partitions>().is_err());
    }

    #[test]
    fn emit_parses_the_three_kinds() {
        assert_eq!("exe".parse(), Ok(Emit::Exe));
        assert_eq!("shared".parse(), Ok(Emit::Shared));
        assert_eq!("obj".parse(), Ok(Emit::Obj));
        assert!("dll".parse::<Emit>().is_err());
    }
}
