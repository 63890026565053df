//! The policy file as written: serde structs with `deny_unknown_fields`, so
//! a misspelt key is an error that names its line instead of a rule
//! silently not applied. [`crate::load`] converts them into typed rules.
//! Values that can be wrong beyond their type are [`Spanned`] so the
//! conversion can say where.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// A whole policy file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileWire {
    #[serde(default)]
    pub policy: Option<HeaderWire>,
    #[serde(default)]
    pub env: Option<EnvWire>,
    #[serde(default)]
    pub limits: Option<LimitsWire>,
    #[serde(default)]
    pub tool: BTreeMap<String, Spanned<ToolWire>>,
    #[serde(default)]
    pub args: BTreeMap<String, Spanned<GrammarWire>>,
    /// Kept raw for the plugin host (`policy::plugin`).
    #[serde(default)]
    pub plugin: Vec<Spanned<toml::Table>>,
}

/// `[policy]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderWire {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub os: Option<Spanned<String>>,
    #[serde(default)]
    pub extends: Vec<Spanned<String>>,
    #[serde(default)]
    pub system_inputs: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    pub require_sandbox: Vec<Spanned<String>>,
    #[serde(default)]
    pub refuse_undeclared_reads: Option<bool>,
    #[serde(default)]
    pub remote_cache: Option<bool>,
    #[serde(default)]
    pub remote_execution: Option<bool>,
    #[serde(default)]
    pub remote_cache_writers: Option<Vec<String>>,
    /// Built-in file operations (`symlink`, `copy`, `rename`, `remove`)
    /// logs may name; in a derived policy, the whole list (`[]`: none).
    #[serde(default)]
    pub builtins: Option<Vec<Spanned<String>>>,
}

/// `[env]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EnvWire {
    #[serde(default)]
    pub set: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    pub allow: BTreeMap<String, Spanned<ValueWire>>,
}

/// A value constraint on its own (environment variables).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ValueWire {
    #[serde(default, rename = "enum")]
    pub enum_: Option<Vec<String>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub range: Option<(i64, i64)>,
}

/// `[limits]` and `[tool.X.limits]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitsWire {
    #[serde(default)]
    pub timeout: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub max_rss: Option<Spanned<Quantity>>,
    #[serde(default)]
    pub max_output: Option<Spanned<Quantity>>,
}

/// A size or duration: a bare number or a string with a unit.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Quantity {
    Number(u64),
    Text(String),
}

/// `[tool.KIND]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolWire {
    #[serde(default)]
    pub programs: Option<Vec<ProgramWire>>,
    #[serde(default)]
    pub dirs: Option<Vec<Spanned<String>>>,
    /// The grammar of programs that do not name their own.
    #[serde(default)]
    pub args: Option<String>,
    #[serde(default)]
    pub limits: Option<LimitsWire>,
    #[serde(default)]
    pub sha256: Option<BTreeMap<String, Spanned<String>>>,
    #[serde(default)]
    pub require_sha256: Option<bool>,
    /// Other tool kinds whose allowed binaries this tool's process tree
    /// may execute (`clang` runs the linker).
    #[serde(default)]
    pub runs: Option<Vec<Spanned<String>>>,
    /// Removes the tool an included policy allowed.
    #[serde(default)]
    pub disabled: Option<bool>,
    /// The tool never runs on a build farm (`--remote-executor`).
    #[serde(default)]
    pub local_only: Option<bool>,
}

/// A program: a bare name (the tool's grammar) or a name with its own.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum ProgramWire {
    Name(String),
    Table(ProgramTableWire),
}

/// `{ name = "clang-cl.exe", args = "clang-cl" }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProgramTableWire {
    pub name: String,
    #[serde(default)]
    pub args: Option<String>,
}

/// `[args.NAME]`: a grammar.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GrammarWire {
    #[serde(default)]
    pub positional: Option<Spanned<String>>,
    #[serde(default)]
    pub response_files: Option<bool>,
    #[serde(default)]
    pub response_file_depth: Option<u32>,
    #[serde(default)]
    pub case_insensitive: Option<bool>,
    #[serde(default)]
    pub flag_chars: Option<Spanned<String>>,
    #[serde(default)]
    pub flags: Vec<Spanned<FlagWire>>,
    #[serde(default)]
    pub deny: Vec<Spanned<DenyWire>>,
    /// Names of flags an included policy allowed that this one removes.
    #[serde(default)]
    pub drop_flags: Vec<String>,
    /// Flags one of which must be given (the output flag of a tool that
    /// would otherwise write a file named after its input).
    #[serde(default)]
    pub require_one_of: Option<Vec<String>>,
    /// Positional inputs are linker inputs: an existing one in the root
    /// must be an object, archive or bitcode file, never a text file the
    /// linker would read as a script.
    #[serde(default)]
    pub linker_inputs: Option<bool>,
    /// Extensions of positional inputs the program compiles rather than
    /// hands to the linker (exempt from the `linker_inputs` check).
    #[serde(default)]
    pub source_extensions: Option<Vec<String>>,
    /// With `positional = "archive"`: the operations (with modifiers)
    /// allowed as the first positional argument.
    #[serde(default)]
    pub operations: Option<Vec<String>>,
}

/// One allowed flag.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FlagWire {
    pub name: String,
    #[serde(default)]
    pub form: Option<FormWire>,
    #[serde(default)]
    pub count: Option<u32>,
    #[serde(default, rename = "enum")]
    pub enum_: Option<Vec<String>>,
    #[serde(default)]
    pub pattern: Option<String>,
    #[serde(default)]
    pub range: Option<(i64, i64)>,
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub grammar: Option<String>,
    #[serde(default)]
    pub split: Option<String>,
    /// An LLVM pass pipeline whose pass names are all in this list.
    #[serde(default)]
    pub pipeline: Option<Vec<String>>,
    /// Flags one of which must also be given for this one to be allowed.
    #[serde(default)]
    pub requires: Option<Vec<String>>,
}

/// `form = "joined"` or `form = ["joined", "separate"]`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum FormWire {
    One(String),
    Many(Vec<String>),
}

/// One refused flag, with its reason.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DenyWire {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    pub reason: String,
}
