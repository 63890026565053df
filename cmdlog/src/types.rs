//! The typed v1 document: header, commands, tool kinds.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The value of the document's `format` field.
pub const FORMAT: &str = "replay-log";

/// The version of the format this crate reads and writes.
pub const VERSION: u32 = 1;

/// A whole log held in memory; use [`crate::LogReader`] to stream instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "replay command log, version 1")]
pub struct Document {
    /// Always `"replay-log"`.
    pub format: String,
    /// Always `1` for this version of the format.
    pub version: u32,
    /// The program that wrote the log.
    pub producer: Producer,
    /// The platform the commands were recorded for.
    pub platform: Platform,
    /// The commands, in the order they run; ids strictly increase.
    pub commands: Vec<Command>,
}

/// Everything in a log but its commands; readers see it before any command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The program that wrote the log.
    pub producer: Producer,
    /// The platform the commands were recorded for.
    pub platform: Platform,
}

/// The program that wrote a log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Producer {
    /// The producer's name, e.g. `aotc`.
    pub name: String,
    /// The producer's own version.
    pub version: String,
    /// The LLVM version the producer was built with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llvm: Option<String>,
}

/// The platform a log's commands were recorded for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Platform {
    /// The operating system whose tools the commands name.
    pub os: Os,
    /// The CPU architecture, as Rust names it (`x86_64`, `aarch64`, ...).
    pub arch: String,
}

/// The operating systems a log can be recorded for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Os {
    /// Linux (ELF, GNU or LLVM tools).
    Linux,
    /// macOS (Mach-O, Apple's or LLVM's tools).
    Macos,
    /// Windows (COFF, MSVC's or LLVM's tools).
    Windows,
}

impl Os {
    /// The operating system this crate was built for, if it is one of ours.
    pub fn host() -> Option<Os> {
        match std::env::consts::OS {
            "linux" => Some(Os::Linux),
            "macos" => Some(Os::Macos),
            "windows" => Some(Os::Windows),
            _ => None,
        }
    }

    /// The name used in logs and policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Os::Linux => "linux",
            Os::Macos => "macos",
            Os::Windows => "windows",
        }
    }
}

impl fmt::Display for Os {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tool invocation the producer would have run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Unique in the log, strictly increasing in document order.
    pub id: u64,
    /// What kind of tool this is; the policy maps kinds to allowed binaries.
    pub tool: ToolKind,
    /// The program the producer would have run (a bare name or a path).
    pub program: String,
    /// The arguments, without the program name (argv[1..]).
    pub args: Vec<String>,
    /// The directory the tool runs in, relative to the work root.
    pub cwd: String,
    /// Variables the command asks for; the policy decides which it gets.
    pub env: BTreeMap<String, String>,
    /// Every file the command reads: relative to the work root, or absolute
    /// (system files, subject to the policy).
    pub inputs: Vec<String>,
    /// Every file the command writes, relative to the work root.
    pub outputs: Vec<String>,
    /// The producer's content key for the outputs, if it caches them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_key: Option<String>,
}

/// The kind of a tool: what it does, not where it lives.
///
/// Kinds are names rather than paths because each platform names its tools
/// differently (`ld`, `ld64`, `lld-link`); a policy maps a kind to the
/// binaries allowed for it. [`ToolKind::Other`] keeps a name this version does
/// not know, honestly: policies refuse it unless they name it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ToolKind {
    /// LLVM's optimizer, `opt`.
    Opt,
    /// LLVM's code generator, `llc`.
    Llc,
    /// A C compiler driver (`clang`, `cc`, `cl`), also used to link.
    Cc,
    /// A C++ compiler driver (`clang++`, `c++`, `g++`), also used to link.
    Cxx,
    /// A linker (`ld`, `ld64`, `lld-link`, `link`).
    Ld,
    /// An assembler.
    As,
    /// An archiver (`ar`, `llvm-ar`, `lib`).
    Ar,
    /// LLVM's bitcode linker, `llvm-link`.
    LlvmLink,
    /// An object copier (`objcopy`, `llvm-objcopy`).
    Objcopy,
    /// A symbol stripper (`strip`, `llvm-strip`).
    Strip,
    /// A debug-info linker (`dsymutil`).
    Dsymutil,
    /// Built in: make a symbolic link (`ln -s`, `cmake -E create_symlink`).
    Symlink,
    /// Built in: copy a file (`cp`, `cmake -E copy`).
    Copy,
    /// Built in: rename a file (`mv`, `cmake -E rename`).
    Rename,
    /// Built in: remove files (`rm -f`, `cmake -E rm -f`).
    Remove,
    /// A kind this version does not know, by its name.
    Other(String),
}

impl ToolKind {
    /// Every kind this version knows, in a stable order.
    pub const KNOWN: [ToolKind; 15] = [
        ToolKind::Opt,
        ToolKind::Llc,
        ToolKind::Cc,
        ToolKind::Cxx,
        ToolKind::Ld,
        ToolKind::As,
        ToolKind::Ar,
        ToolKind::LlvmLink,
        ToolKind::Objcopy,
        ToolKind::Strip,
        ToolKind::Dsymutil,
        ToolKind::Symlink,
        ToolKind::Copy,
        ToolKind::Rename,
        ToolKind::Remove,
    ];

    /// The file name of a program as run (`/usr/bin/clang-14`), without
    /// its directory and its version suffixes: `clang`. What importers and
    /// the farm worker guess a tool's kind from.
    pub fn program_stem(program: &str) -> &str {
        let mut name = program.rsplit('/').next().unwrap_or(program);
        while let Some((head, tail)) = name.rsplit_once('-') {
            if !tail.is_empty() && tail.chars().all(|c| c.is_ascii_digit() || c == '.') {
                name = head;
            } else {
                break;
            }
        }
        name
    }

    /// The kind a log names; unknown names become [`ToolKind::Other`].
    pub fn from_name(name: &str) -> ToolKind {
        match name {
            "opt" => ToolKind::Opt,
            "llc" => ToolKind::Llc,
            "cc" => ToolKind::Cc,
            "c++" => ToolKind::Cxx,
            "ld" => ToolKind::Ld,
            "as" => ToolKind::As,
            "ar" => ToolKind::Ar,
            "llvm-link" => ToolKind::LlvmLink,
            "objcopy" => ToolKind::Objcopy,
            "strip" => ToolKind::Strip,
            "dsymutil" => ToolKind::Dsymutil,
            "symlink" => ToolKind::Symlink,
            "copy" => ToolKind::Copy,
            "rename" => ToolKind::Rename,
            "remove" => ToolKind::Remove,
            other => ToolKind::Other(other.to_owned()),
        }
    }

    /// The name used in logs and policies.
    pub fn name(&self) -> &str {
        match self {
            ToolKind::Opt => "opt",
            ToolKind::Llc => "llc",
            ToolKind::Cc => "cc",
            ToolKind::Cxx => "c++",
            ToolKind::Ld => "ld",
            ToolKind::As => "as",
            ToolKind::Ar => "ar",
            ToolKind::LlvmLink => "llvm-link",
            ToolKind::Objcopy => "objcopy",
            ToolKind::Strip => "strip",
            ToolKind::Dsymutil => "dsymutil",
            ToolKind::Symlink => "symlink",
            ToolKind::Copy => "copy",
            ToolKind::Rename => "rename",
            ToolKind::Remove => "remove",
            ToolKind::Other(name) => name,
        }
    }

    /// Whether this is a kind this version knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, ToolKind::Other(_))
    }
}

impl fmt::Display for ToolKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for ToolKind {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for ToolKind {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = Cow::<str>::deserialize(deserializer)?;
        Ok(ToolKind::from_name(&name))
    }
}

impl JsonSchema for ToolKind {
    fn schema_name() -> Cow<'static, str> {
        "ToolKind".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let known: Vec<&str> = ToolKind::KNOWN.iter().map(ToolKind::name).collect();
        schemars::json_schema!({
            "description": "The kind of tool. Known kinds are listed in `examples`; `symlink`, `copy`, `rename` and `remove` are file operations replay performs itself (args `TARGET LINK`, `FROM TO`, `FROM TO`, `PATH...`, relative to `cwd`; inputs and outputs exactly the paths they name: see the README's command log section); any other non-empty name is kept as an unknown kind, which policies refuse unless they name it.",
            "type": "string",
            "minLength": 1,
            "examples": known,
        })
    }
}
