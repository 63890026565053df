//! The typed, validated policy: what [`crate::Policy::load`] produces and
//! the checker reads. Nothing here is parsed from text at check time; every
//! pattern is compiled and every size is a number.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use cmdlog::{Os, ToolKind};
use regex::Regex;
use serde::{Serialize, Serializer};

/// A loaded policy: per-tool binaries, argument grammars, paths,
/// environment and limits for one platform.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it was loaded from.
    pub(crate) path: PathBuf,
    /// Its name, from `[policy] name`.
    pub(crate) name: String,
    /// The platform whose logs it judges.
    pub(crate) os: Os,
    /// Read-only system directories inputs may come from (absolute, `/`
    /// separated, lexically normal).
    pub(crate) system_inputs: Vec<String>,
    /// The environment rules.
    pub(crate) env: EnvRules,
    /// The allowed tool kinds.
    pub(crate) tools: BTreeMap<ToolKind, ToolRules>,
    /// The argument grammars, by name.
    pub(crate) grammars: BTreeMap<String, Grammar>,
    /// The `[[plugin]]` tables, raw, for the plugin host.
    pub(crate) plugins: Vec<PluginTable>,
    /// Sandbox layers a tool must run under; without one, nothing runs.
    pub(crate) required_layers: Vec<String>,
    /// `[policy] refuse_undeclared_reads`: a tool seen reading a file of
    /// the root that its command does not declare fails.
    pub(crate) refuse_undeclared_reads: bool,
    /// `[policy] remote_cache = false`: no remote action cache for this
    /// platform (a derived policy cannot allow it again).
    pub(crate) remote_cache_forbidden: bool,
    /// `[policy] remote_execution = false`: every command of this platform
    /// runs here, never on a build farm (a derived policy cannot allow it
    /// again).
    pub(crate) remote_execution_forbidden: bool,
    /// `[policy] remote_cache_writers`: the remote caches (URLs) trusted
    /// with results made here; any other is only read.
    pub(crate) remote_cache_writers: Vec<String>,
    /// `[policy] builtins`: the built-in file operations logs may name.
    pub(crate) builtins: Vec<ToolKind>,
    /// `[limits]`: what a built-in operation may take (a copy's size, its
    /// time).
    pub(crate) builtin_limits: ToolLimits,
    /// Every file the policy was read from (canonical): its own, then each
    /// one it extends.
    pub(crate) files: Vec<PathBuf>,
    /// The same files, by the paths they were opened at (links and all).
    pub(crate) sources: Vec<PathBuf>,
}

/// The sandbox layers a policy may require, as `replay` names them.
pub const SANDBOX_LAYERS: &[&str] = &[
    "landlock",
    "network",
    "no_new_privs",
    "rlimits",
    "parent_death_signal",
];

/// One `[[plugin]]` table of a policy, kept raw for the plugin host.
#[derive(Debug, Clone)]
pub struct PluginTable {
    /// The policy file that holds it; relative paths in it are relative to
    /// this file's directory.
    pub file: PathBuf,
    /// Its line in that file.
    pub line: usize,
    /// The table as written.
    pub table: toml::Table,
}

/// Which variables a tool's environment holds: `set` always, `allow` when a
/// log asks for them with an acceptable value; nothing else.
#[derive(Debug, Clone, Default)]
pub struct EnvRules {
    /// Variables every tool gets, with these values.
    pub(crate) set: BTreeMap<String, String>,
    /// Variables a log may set, each with the values it may take.
    pub(crate) allow: BTreeMap<String, ValueRule>,
}

/// What one tool kind may be on this platform.
#[derive(Debug, Clone)]
pub struct ToolRules {
    /// Program names that may serve the kind, each with its grammar.
    pub(crate) programs: Vec<ProgramRule>,
    /// The only directories a program is looked up in, in order.
    pub(crate) dirs: Vec<String>,
    /// Resource limits for the tool.
    pub(crate) limits: ToolLimits,
    /// sha256 pins by canonical binary path.
    pub(crate) sha256: BTreeMap<String, [u8; 32]>,
    /// Refuse a binary that has no pin.
    pub(crate) require_sha256: bool,
    /// Other tool kinds whose allowed binaries the tool's process tree may
    /// execute (`[tool.cc] runs = ["ld"]`): see [`crate::ExecAllowed`].
    pub(crate) runs: Vec<ToolKind>,
    /// `local_only = true`: never sent to a build farm.
    pub(crate) local_only: bool,
}

/// A program name allowed for a tool kind and the grammar of its arguments.
#[derive(Debug, Clone)]
pub struct ProgramRule {
    /// The file name, as a log names it (`clang-14`, `lld-link.exe`).
    pub(crate) name: String,
    /// The name of the grammar in [`Policy::grammars`].
    pub(crate) grammar: String,
}

/// Limits the executor enforces on a tool; `None` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ToolLimits {
    /// Wall-clock time before the tool is killed.
    #[serde(serialize_with = "secs")]
    pub timeout: Option<Duration>,
    /// Peak resident memory, bytes.
    pub max_rss: Option<u64>,
    /// Bytes the tool may write to its outputs (each file).
    pub max_output: Option<u64>,
}

fn secs<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

/// The grammar of a program's arguments: an allowlist of flags.
#[derive(Debug, Clone)]
pub struct Grammar {
    /// What a positional argument must be.
    pub(crate) positional: Positional,
    /// Whether `@file` is expanded (else refused).
    pub(crate) response_files: bool,
    /// How deep response files may nest.
    pub(crate) response_file_depth: u32,
    /// Flag names compare ignoring ASCII case (Windows tools).
    pub(crate) case_insensitive: bool,
    /// Characters that start a flag; the first is canonical, and an
    /// argument starting with another is read as if it started with it
    /// (`-out:` is `/out:` for `lld-link`).
    pub(crate) flag_chars: Vec<char>,
    /// Allowed flags.
    pub(crate) flags: Vec<FlagRule>,
    /// Flags refused with a reason, checked before the allowed ones.
    pub(crate) deny: Vec<DenyRule>,
    /// Canonical flag names one of which a command must give (empty: none
    /// required). Checked for the command's own argv, not delegated parts.
    pub(crate) require_one_of: Vec<String>,
    /// Whether positional inputs are linker inputs (see
    /// [`crate::rules::args`]): an existing one must look like an object.
    pub(crate) linker_inputs: bool,
    /// Extensions (without the dot) of inputs compiled, not linked.
    pub(crate) source_extensions: Vec<String>,
    /// The archiver operations (with modifiers) a [`Positional::Archive`]
    /// grammar allows, exactly as written (`qc`, `rcs`).
    pub(crate) operations: Vec<String>,
    /// Its name: `[args.NAME]`.
    pub(crate) name: String,
    /// The policy files that define or extend it, the earliest first.
    pub(crate) files: Vec<PathBuf>,
}

impl Grammar {
    /// Where to allow a flag: the grammar's table and the files that hold
    /// it, for hints.
    pub(crate) fn whereabouts(&self) -> String {
        let files: Vec<String> = self
            .files
            .iter()
            .map(|f| format!("`{}`", f.display()))
            .collect();
        format!("`[args.{}]` ({})", self.name, files.join(", "))
    }
}

/// What a positional argument must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positional {
    /// A declared input.
    Input,
    /// Positional arguments are refused.
    Refuse,
    /// An archiver's (`ar qc lib.a a.o`): the first is the operation, one
    /// of the grammar's `operations`; the second the archive, a declared
    /// output; the rest are declared inputs (the members).
    Archive,
}

/// How a flag carries its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forms {
    /// Exactly the name, no value (`-shared`).
    pub(crate) switch: bool,
    /// The value joined to the name (`-O2`, `-filetype=obj`, `/OUT:x`).
    pub(crate) joined: bool,
    /// The value in the following argument(s) (`-o out`).
    pub(crate) separate: bool,
    /// Every following argument is handed to the value's grammar
    /// (`clang-cl ... /link ...`).
    pub(crate) rest: bool,
}

/// An allowed flag.
#[derive(Debug, Clone)]
pub struct FlagRule {
    /// The name as matched (lowercase if the grammar ignores case).
    pub(crate) name: String,
    /// How it takes its value.
    pub(crate) forms: Forms,
    /// How many arguments a separate value spans (`-platform_version` 3).
    pub(crate) count: u32,
    /// What its value must be; `None` only for switches.
    pub(crate) value: Option<ValueRule>,
    /// Canonical names of flags one of which the command must also give
    /// for this one to be allowed (`-MD` needs `-MF`); empty: none.
    pub(crate) requires: Vec<String>,
}

/// A flag refused by name, with the reason shown to the user.
#[derive(Debug, Clone)]
pub struct DenyRule {
    /// The name or prefix (lowercase if the grammar ignores case).
    pub(crate) name: String,
    /// Whether any argument starting with `name` matches.
    pub(crate) prefix: bool,
    /// Why it is refused.
    pub(crate) reason: String,
}

/// A constraint on a value: of a flag, or of an environment variable.
#[derive(Debug, Clone)]
pub enum ValueRule {
    /// One of these strings.
    Enum(Vec<String>),
    /// Matches this regex entirely.
    Pattern(Regex),
    /// An integer in this inclusive range.
    Range(i64, i64),
    /// A path that is a declared input of the command.
    Input,
    /// A path that is a declared output of the command.
    Output,
    /// A directory inside the root or under a system input directory.
    Dir,
    /// An LLVM pass pipeline (`opt -passes=`) whose every pass name is
    /// one of these.
    Pipeline(Vec<String>),
    /// Arguments for another grammar (the linker's, for `-Wl,`), split on
    /// `split` if given.
    Grammar {
        /// The grammar's name.
        name: String,
        /// The separator inside one value (`,` for `-Wl,`).
        split: Option<char>,
    },
}

impl Policy {
    /// The sandbox layers `[policy] require_sandbox` names, from
    /// [`SANDBOX_LAYERS`]: a machine that cannot apply one refuses to run.
    pub fn required_layers(&self) -> &[String] {
        &self.required_layers
    }

    /// Whether a tool seen reading a file inside the root that its command
    /// does not declare (through an input directory, say) fails, its
    /// outputs discarded, rather than being reported only.
    pub fn refuses_undeclared_reads(&self) -> bool {
        self.refuse_undeclared_reads
    }

    /// Whether the policy forbids a remote action cache (`[policy]
    /// remote_cache = false`).
    pub fn forbids_remote_cache(&self) -> bool {
        self.remote_cache_forbidden
    }

    /// The variables the policy itself sets (`[env] set`), after
    /// `extends`.
    pub fn env_set(&self) -> &BTreeMap<String, String> {
        &self.env.set
    }

    /// Whether the policy keeps every command on this machine (`[policy]
    /// remote_execution = false`).
    pub fn forbids_remote_execution(&self) -> bool {
        self.remote_execution_forbidden
    }

    /// Whether the policy trusts the remote cache at `url` with results
    /// made here (`[policy] remote_cache_writers`).
    pub fn trusts_remote_writer(&self, url: &str) -> bool {
        self.remote_cache_writers.iter().any(|w| w == url)
    }

    /// The platform whose logs this policy judges.
    pub fn os(&self) -> Os {
        self.os
    }

    /// The policy's name, from `[policy] name` (or the file's stem).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file the policy was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The `[[plugin]]` tables, in file order (included files first).
    pub fn plugins(&self) -> &[PluginTable] {
        &self.plugins
    }

    /// The files a run must never let a tool write: every file the policy
    /// was read from, and each plugin's module.
    pub fn own_files(&self) -> Vec<PathBuf> {
        let mut files = self.files.clone();
        for plugin in &self.plugins {
            let module = plugin.table.get("path").and_then(toml::Value::as_str);
            if let (Some(module), Some(dir)) = (module, plugin.file.parent()) {
                files.push(dir.join(module));
            }
        }
        files
    }

    /// The host directories this policy depends on
    /// ([`crate::HostDirs`]): the contents of each tool's `dirs`, of the
    /// directory each allowed binary there resolves into and of its
    /// install prefix (the directory above: its libraries and headers),
    /// of the system input directories, of the directories named by the
    /// absolute paths of `[env] set`, and of the directories of
    /// [`Policy::own_files`] as they were opened; and every directory the
    /// lookup of each passes through, links followed. Whoever may replace
    /// what is in them, or reroute a link on the way, chooses what the
    /// policy allows.
    pub fn host_dirs(&self) -> crate::HostDirs {
        let mut dirs = crate::HostDirs::default();
        for rules in self.tools.values() {
            for dir in &rules.dirs {
                dirs.add_dir(std::path::Path::new(dir));
            }
        }
        for binary in self.binaries() {
            let binary = dirs.add_file(&binary);
            let prefix = binary.parent().and_then(std::path::Path::parent);
            if let Some(prefix) = prefix.filter(|p| p.parent().is_some()) {
                dirs.add_dir(prefix);
            }
        }
        for dir in &self.system_inputs {
            dirs.add_dir(std::path::Path::new(dir));
        }
        for value in self.env.set.values() {
            // `/` itself would cover every root: the system directories'
            // own check stands for it.
            for part in value
                .split(':')
                .filter(|p| p.starts_with('/') && p.len() > 1)
            {
                dirs.add_dir(std::path::Path::new(part));
            }
        }
        for file in self.sources.iter().chain(&self.own_files()) {
            dirs.add_file(file);
        }
        dirs.tidy();
        dirs
    }

    /// Every binary the policy lets a tool be: each program name in each
    /// of its tool's `dirs`, as written there (whether it exists or not).
    pub fn binaries(&self) -> Vec<PathBuf> {
        let mut binaries: Vec<PathBuf> = self
            .tools
            .values()
            .flat_map(|rules| {
                rules.dirs.iter().flat_map(|dir| {
                    rules
                        .programs
                        .iter()
                        .map(move |program| std::path::Path::new(dir).join(&program.name))
                })
            })
            .collect();
        binaries.sort();
        binaries.dedup();
        binaries
    }

    /// Whether logs may name the built-in file operation `kind`.
    pub fn allows_builtin(&self, kind: &ToolKind) -> bool {
        self.builtins.contains(kind)
    }

    /// The policy's `[limits]`, which bound a built-in operation (a
    /// copy's size by `max_output`, its time by `timeout`).
    pub fn builtin_limits(&self) -> ToolLimits {
        self.builtin_limits
    }

    /// The tool kinds this policy allows.
    pub fn tools(&self) -> impl Iterator<Item = &ToolKind> {
        self.tools.keys()
    }

    /// Whether a command of `tool` must run on this machine: the whole
    /// platform is (`remote_execution = false`), or the tool is
    /// (`[tool.KIND] local_only = true`).
    pub fn keeps_local(&self, tool: &ToolKind) -> bool {
        self.remote_execution_forbidden || self.tools.get(tool).is_some_and(|t| t.local_only)
    }

    /// The limits for a tool kind, if the policy allows it.
    pub fn limits(&self, tool: &ToolKind) -> Option<ToolLimits> {
        self.tools.get(tool).map(|t| t.limits)
    }
}

/// Parses a size: a byte count, or a number with `K`, `M`, `G`, `T`
/// (powers of 1024, optionally `KiB` etc., `B` allowed).
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    let shift = match unit.trim() {
        "" | "B" => 0,
        "K" | "KB" | "KiB" | "k" => 10,
        "M" | "MB" | "MiB" => 20,
        "G" | "GB" | "GiB" => 30,
        "T" | "TB" | "TiB" => 40,
        _ => return None,
    };
    n.checked_mul(1u64 << shift)
}

/// Parses a duration: seconds, or a number with `ms`, `s`, `m`, `h`.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, unit) = t.split_at(split);
    let n: u64 = digits.parse().ok()?;
    match unit.trim() {
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => Some(Duration::from_secs(n)),
        "m" | "min" => n.checked_mul(60).map(Duration::from_secs),
        "h" => n.checked_mul(3600).map(Duration::from_secs),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_units_and_refuse_junk() {
        assert_eq!(parse_size("512"), Some(512));
        assert_eq!(parse_size("4KiB"), Some(4096));
        assert_eq!(parse_size("8 GiB"), Some(8 << 30));
        assert_eq!(parse_size("2M"), Some(2 << 20));
        assert_eq!(parse_size("1.5G"), None);
        assert_eq!(parse_size("G"), None);
        assert_eq!(parse_size("99999999999999999999T"), None);
        assert_eq!(parse_size("17179869184T"), None);
    }

    #[test]
    fn durations_parse_with_units_and_refuse_junk() {
        assert_eq!(parse_duration("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("2h"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1d"), None);
        assert_eq!(parse_duration(""), None);
    }
}
