//! The verdict types: what a check is for ([`Mode`], [`CheckOptions`])
//! and what it says ([`Status`], [`Finding`], [`Verdict`]), and how an
//! allowed command is to run ([`Resolved`], [`ExecAllowed`],
//! [`LinkerReads`]). Pure data, shared by the checker, the rules, the
//! reports and the executor; it imports nothing of the rules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use cmdlog::ToolKind;
use serde::Serialize;

use crate::model::ToolLimits;

/// What the check is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Auditing a recorded log: nothing will run, inputs need not exist.
    Audit,
    /// About to run the log here: binaries must resolve on this host,
    /// inputs must exist or be produced earlier, and nothing may be
    /// unverified.
    Run,
}

/// How to check.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    /// Audit or run.
    pub mode: Mode,
    /// Refuse what cannot be verified (always so in [`Mode::Run`]).
    pub strict: bool,
    /// Files no command may write: the log, the policy, the journal.
    pub protected: Vec<PathBuf>,
}

/// The outcome of a check, from best to worst.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Passed every rule.
    Allowed,
    /// Passed every rule that could be checked here; some could not be.
    Unverified,
    /// Broke a rule.
    Refused,
}

impl Status {
    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Allowed => "allowed",
            Status::Unverified => "unverified",
            Status::Refused => "refused",
        }
    }
}

/// One rule a log (or one command of it) broke, or could not be checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// The command, or `None` for the header and the whole log.
    pub id: Option<u64>,
    /// The rule's stable name, e.g. `args.unknown-flag`.
    pub rule: &'static str,
    /// The offending argument, path, variable or program.
    pub subject: String,
    /// What is wrong, for a person.
    pub message: String,
    /// What to do about it.
    pub hint: String,
    /// [`Status::Refused`] or [`Status::Unverified`].
    pub status: Status,
}

/// The judgment on one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// The command's id.
    pub id: u64,
    /// The command's tool kind.
    pub tool: ToolKind,
    /// The worst status of its findings ([`Status::Allowed`] if none).
    pub status: Status,
    /// Every rule it broke or could not be checked against.
    pub findings: Vec<Finding>,
    /// How to run it, when its binary was found and passed.
    pub resolved: Option<Resolved>,
}

/// How the executor runs an allowed command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resolved {
    /// The canonical binary to execute.
    pub program: PathBuf,
    /// The child's `argv[0]`: the program's name as logged (`clang-14`
    /// behaves differently from `clang-cl`).
    pub argv0: String,
    /// The arguments to pass, response files expanded, exactly as checked.
    pub args: Vec<String>,
    /// The whole environment: the policy's `set` plus the log's allowed
    /// variables; nothing is inherited.
    pub env: BTreeMap<String, String>,
    /// Limits to enforce.
    pub limits: ToolLimits,
    /// What the linker will read that the checker could not vouch for
    /// once and for all (a file may be made or changed by an earlier
    /// command): verify with [`Resolved::verify_linker_reads`] right before
    /// the tool runs.
    pub linker_reads: LinkerReads,
    /// Every program the tool's process tree may execute, as the policy
    /// resolved it: the tool's own binary (under each name of its kind
    /// that leads to it), then the binaries of each kind its `[tool.KIND]
    /// runs` names. Anything else the tree tries to run is not allowed.
    pub may_exec: Vec<ExecAllowed>,
    /// The directories the tool may read everything beneath (absolute,
    /// canonical): its `-I`, `-isystem`, `-iquote`, `-idirafter`, `-L`,
    /// `-isysroot` ... values once resolved and checked like inputs, and
    /// a compile's own source directory when it passes the same test.
    pub input_dirs: Vec<PathBuf>,
    /// The command's declared inputs, resolved (absolute; inside the root
    /// where they physically are, outside it canonical).
    pub input_files: Vec<PathBuf>,
}

/// A program a tool's process tree may execute: a canonical binary, run
/// under one program name. Multi-call binaries dispatch on `argv[0]`
/// (`ld.lld` and `lld-link` are both `/usr/lib/llvm-14/bin/lld`), so the
/// binary alone does not say which tool runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ExecAllowed {
    /// The canonical binary, checked as a command's own binary is
    /// (inside the kind's `dirs`, not world-writable, pinned if set).
    pub path: PathBuf,
    /// The program name (`argv[0]`'s file name) it must be run as.
    pub name: String,
}

/// Linker inputs inside the work root, root-relative and `/`-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LinkerReads {
    /// Files given as inputs: each must be an object, archive or bitcode.
    pub objects: Vec<String>,
    /// `-L` directories: each `lib*.so*` and `lib*.a` in them (what `-l`
    /// finds) must be one too.
    pub library_dirs: Vec<String>,
}
