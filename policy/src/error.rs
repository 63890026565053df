//! Errors of loading a policy ([`PolicyError`]) and of starting a check
//! ([`CheckerError`]). A log's violations are not errors: they are
//! [`crate::Finding`]s.

use std::io;
use std::path::PathBuf;

/// Why a policy could not be loaded. Each names the file, and where the
/// problem is tied to a place, the line, column and key.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy `{path}`")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The file is not TOML, or does not have the policy's shape.
    #[error("{}: {message}", place(path, *line, *column))]
    Parse {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the problem (0 if unknown).
        line: usize,
        /// 1-based column of the problem (0 if unknown).
        column: usize,
        /// What the TOML parser said.
        message: String,
    },
    /// A value has the right type but is not acceptable.
    #[error("{}: bad value for `{key}`", place(path, *line, *column))]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// 1-based line of the value (0 if unknown).
        line: usize,
        /// 1-based column of the value (0 if unknown).
        column: usize,
        /// The dotted key, e.g. `args.clang.flags[3].pattern`.
        key: String,
        /// What is wrong with it.
        #[source]
        problem: Invalid,
    },
    /// A file named in `extends` could not be read.
    #[error("cannot read policy `{path}`, which `{by}` extends")]
    Extends {
        /// The extended file, as resolved.
        path: PathBuf,
        /// The policy whose `extends` names it.
        by: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Policies include each other in a cycle.
    #[error("policy `{path}` includes itself: {chain}")]
    Cycle {
        /// The file that closes the cycle.
        path: PathBuf,
        /// The chain of includes, ` -> ` separated.
        chain: String,
    },
    /// Includes nest deeper than allowed.
    #[error("policy `{path}` nests includes deeper than {max}")]
    TooDeep {
        /// The file at which the limit was passed.
        path: PathBuf,
        /// The limit.
        max: usize,
    },
}

/// `` `file`:line:column ``, or just `` `file` `` when the line is unknown.
fn place(path: &std::path::Path, line: usize, column: usize) -> String {
    if line == 0 {
        format!("`{}`", path.display())
    } else {
        format!("`{}`:{line}:{column}", path.display())
    }
}

/// What is wrong with one value of a policy.
#[derive(Debug, thiserror::Error)]
pub enum Invalid {
    /// Not a regular expression.
    #[error("invalid regular expression")]
    Regex(#[source] regex::Error),
    /// Not a size (`512`, `64MiB`, `8GiB`).
    #[error("`{0}` is not a size (e.g. `512MiB`, `8GiB`, or a byte count)")]
    Size(String),
    /// Not a duration (`30s`, `10m`, `1h`).
    #[error("`{0}` is not a duration (e.g. `30s`, `10m`, `1h`)")]
    Duration(String),
    /// An unknown operating system.
    #[error("`{0}` is not an operating system (`linux`, `macos`, `windows`)")]
    Os(String),
    /// A required key is missing.
    #[error("the key is missing, and no included policy sets it")]
    Missing,
    /// A directory that is not absolute or not normal.
    #[error("`{0}` must be an absolute directory without `.` or `..`")]
    Dir(String),
    /// A program entry that is not a plain file name.
    #[error("`{0}` must be a file name, not a path")]
    ProgramName(String),
    /// A sha256 pin that is not 64 hex digits.
    #[error("`{0}` is not a sha256 digest (64 hex digits)")]
    Sha256(String),
    /// A variable a log may never set, whatever the policy says.
    #[error(
        "`{0}` can never come from a log: it changes which code a tool loads or where it looks"
    )]
    NeverFromLog(String),
    /// A flag form that does not exist.
    #[error("`{0}` is not a flag form (`switch`, `joined`, `separate`, `rest`)")]
    Form(String),
    /// A flag's value constraint is missing, doubled or meaningless.
    #[error("{0}")]
    Constraint(&'static str),
    /// A positional rule that does not exist.
    #[error("`{0}` is not a positional rule (`input`, `refuse`, `archive`)")]
    Positional(String),
    /// A path rule that does not exist.
    #[error("`{0}` is not a path rule (`input`, `output`, `dir`)")]
    PathRule(String),
    /// A reference to a grammar no policy defines.
    #[error("no grammar `{0}` is defined under `[args]`")]
    UnknownGrammar(String),
    /// An empty range or enum.
    #[error("the set of accepted values is empty or inverted")]
    Empty,
    /// A flag name that does not start with one of the grammar's flag chars.
    #[error("flag `{0}` does not start with one of the grammar's `flag_chars`")]
    FlagName(String),
    /// A sandbox layer `replay` does not know.
    #[error("`{0}` is not a sandbox layer (`landlock`, `network`, `no_new_privs`, `rlimits`, `parent_death_signal`)")]
    SandboxLayer(String),
    /// A `builtins` entry that is not a built-in file operation, or a
    /// `[tool]` table for one (built-ins run no program).
    #[error("`{0}` is not a built-in file operation (`symlink`, `copy`, `rename`, `remove`), or is one and has no `[tool]` table: list built-ins in `[policy] builtins`")]
    Builtin(String),
    /// A `runs` entry naming a tool kind no policy layer defines.
    #[error("no tool kind `{0}` is defined under `[tool]`")]
    UnknownTool(String),
    /// A `split` that is not one character.
    #[error("`{0}` must be exactly one character")]
    Split(String),
}

/// Why a checker could not start.
#[derive(Debug, thiserror::Error)]
pub enum CheckerError {
    /// The work root does not exist or is not a directory.
    #[error("cannot use `{path}` as the work root")]
    Root {
        /// The root given.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
}
