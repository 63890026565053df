//! Loading a policy: read each file (following `extends`, refusing cycles),
//! convert its [`crate::wire`] form into a typed layer (every error names
//! the file, line and key), merge the layers in order (included files first,
//! the including file last), and check that the result is complete.

use std::collections::BTreeMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdlog::{Os, ToolKind};
use regex::Regex;
use toml::Spanned;

use crate::error::{Invalid, PolicyError};
use crate::model::{
    parse_duration, parse_size, DenyRule, EnvRules, FlagRule, Forms, Grammar, PluginTable, Policy,
    Positional, ProgramRule, ToolLimits, ToolRules, ValueRule,
};
use crate::wire::{
    DenyWire, FileWire, FlagWire, FormWire, GrammarWire, LimitsWire, ProgramWire, Quantity,
    ToolWire, ValueWire,
};

/// How deep `extends` may nest.
pub const MAX_INCLUDE_DEPTH: usize = 16;

/// The largest policy file read (the shipped ones are a few KiB).
const MAX_POLICY_BYTES: u64 = 4 << 20;

/// A policy file's text: a regular file (a FIFO or a device named by
/// `extends` would block or never end), opened without blocking, at most
/// [`MAX_POLICY_BYTES`].
fn read_policy_text(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut text = String::new();
    file.take(MAX_POLICY_BYTES + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_POLICY_BYTES {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_POLICY_BYTES} bytes"
        )));
    }
    Ok(text)
}

/// Variables no log may set, whatever a policy allows: each changes which
/// code a tool (or the dynamic loader under it) loads, or where it looks
/// for programs, headers and libraries.
pub const NEVER_FROM_LOG: &[&str] = &[
    "PATH",
    "COMPILER_PATH",
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "LIBRARY_PATH",
    "GCC_EXEC_PREFIX",
    "CCC_OVERRIDE_OPTIONS",
    "CCC_ADD_ARGS",
    "CL",
    "_CL_",
    "LINK",
    "_LINK_",
    "LIB",
    "LIBPATH",
    "INCLUDE",
    "IFS",
    "ENV",
    "BASH_ENV",
    "SHELLOPTS",
    "GCONV_PATH",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "NLSPATH",
    "TMPDIR",
    "SDKROOT",
    "DEVELOPER_DIR",
    "MACOSX_DEPLOYMENT_TARGET_OVERRIDE",
    "RC_DEBUG_OPTIONS",
    "AS_SECURE_LOG_FILE",
    "LD_RUN_PATH",
    "LLVM_PROFILE_FILE",
    "LLVM_DISABLE_CRASH_REPORT",
    "CLANG_MODULE_CACHE_PATH",
    "CC_PRINT_OPTIONS_FILE",
    "CC_PRINT_HEADERS_FILE",
    "CC_LOG_DIAGNOSTICS_FILE",
    "CC_PRINT_PROC_STAT_FILE",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
    "MALLOC_CONF",
    "PYTHONPATH",
];

/// Prefixes of variables no log may set (`LD_PRELOAD`, `DYLD_INSERT_LIBRARIES`,
/// `LLVM_*`, `CLANG_*` ...).
pub const NEVER_FROM_LOG_PREFIXES: &[&str] = &[
    "LD_", "DYLD_", "MALLOC_", "GLIBC_", "LLVM_", "CLANG_", "GCC_", "XRAY_", "ASAN_",
];

/// Whether a policy's own `env.set` may hold `name` despite
/// [`never_from_log`]: only `PATH`, and only as absolute directories.
fn policy_may_set(name: &str, value: &str) -> bool {
    // An empty entry would mean the tool's cwd, inside the log's root.
    name == "PATH"
        && !value.is_empty()
        && value
            .split(':')
            .all(|dir| dir.starts_with('/') && dir_key(dir).is_some())
}

/// Whether a log may never set the variable `name`, whatever the policy says.
pub fn never_from_log(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    NEVER_FROM_LOG.contains(&upper.as_str())
        || NEVER_FROM_LOG_PREFIXES.iter().any(|p| upper.starts_with(p))
}

/// A policy file's text, kept to turn spans into lines.
struct Source {
    path: PathBuf,
    text: String,
}

impl Source {
    fn line_col(&self, span: Range<usize>) -> (usize, usize) {
        let start = span.start.min(self.text.len());
        let before = self.text.get(..start).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        (line, column)
    }

    fn invalid(&self, span: Range<usize>, key: impl Into<String>, problem: Invalid) -> PolicyError {
        let (line, column) = self.line_col(span);
        PolicyError::Invalid {
            path: self.path.clone(),
            line,
            column,
            key: key.into(),
            problem,
        }
    }

    fn place(&self, span: Range<usize>, key: String) -> Place {
        let (line, column) = self.line_col(span);
        Place {
            path: self.path.clone(),
            line,
            column,
            key,
        }
    }
}

/// Where a value was written, for errors found after merging.
#[derive(Debug, Clone)]
struct Place {
    path: PathBuf,
    line: usize,
    column: usize,
    key: String,
}

impl Place {
    fn invalid(&self, problem: Invalid) -> PolicyError {
        PolicyError::Invalid {
            path: self.path.clone(),
            line: self.line,
            column: self.column,
            key: self.key.clone(),
            problem,
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct LimitsLayer {
    timeout: Option<Duration>,
    max_rss: Option<u64>,
    max_output: Option<u64>,
}

impl LimitsLayer {
    fn over(self, base: LimitsLayer) -> LimitsLayer {
        LimitsLayer {
            timeout: self.timeout.or(base.timeout),
            max_rss: self.max_rss.or(base.max_rss),
            max_output: self.max_output.or(base.max_output),
        }
    }
}

struct ToolLayer {
    programs: Option<Vec<(String, Option<String>)>>,
    dirs: Option<Vec<String>>,
    args: Option<String>,
    limits: LimitsLayer,
    sha256: Option<BTreeMap<String, [u8; 32]>>,
    require_sha256: Option<bool>,
    runs: Option<Vec<(String, Place)>>,
    disabled: bool,
    local_only: bool,
    place: Place,
}

struct GrammarLayer {
    positional: Option<Positional>,
    response_files: Option<bool>,
    response_file_depth: Option<u32>,
    case_insensitive: Option<bool>,
    flag_chars: Option<Vec<char>>,
    flags: Vec<(FlagRule, Place)>,
    deny: Vec<(DenyRule, Place)>,
    drop_flags: Vec<String>,
    require_one_of: Option<Vec<String>>,
    linker_inputs: Option<bool>,
    source_extensions: Option<Vec<String>>,
    operations: Option<Vec<String>>,
    place: Place,
    /// The files that define or extend it, the earliest first.
    files: Vec<PathBuf>,
}

#[derive(Default)]
struct Layer {
    name: Option<String>,
    os: Option<Os>,
    system_inputs: Option<Vec<String>>,
    required_layers: Vec<String>,
    refuse_undeclared_reads: bool,
    remote_cache_forbidden: bool,
    remote_execution_forbidden: bool,
    remote_cache_writers: Option<Vec<String>>,
    builtins: Option<Vec<ToolKind>>,
    env_set: BTreeMap<String, String>,
    env_allow: BTreeMap<String, ValueRule>,
    limits: LimitsLayer,
    tools: BTreeMap<String, ToolLayer>,
    grammars: BTreeMap<String, GrammarLayer>,
    plugins: Vec<PluginTable>,
}

impl Policy {
    /// Loads the policy at `path`, with every policy it extends, and checks
    /// that the result is complete and consistent.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let mut layers = Vec::new();
        let mut stack = Vec::new();
        let mut files = Vec::new();
        load_layers(path, &mut stack, &mut layers, &mut files)?;
        let mut policy = finish(path, layers)?;
        (policy.files, policy.sources) = files.into_iter().unzip();
        Ok(policy)
    }
}

fn load_layers(
    path: &Path,
    stack: &mut Vec<PathBuf>,
    out: &mut Vec<Layer>,
    files: &mut Vec<(PathBuf, PathBuf)>,
) -> Result<(), PolicyError> {
    let read_err = |source| PolicyError::Read {
        path: path.to_owned(),
        source,
    };
    let canonical = fs::canonicalize(path).map_err(read_err)?;
    if stack.contains(&canonical) {
        let chain = stack
            .iter()
            .chain(std::iter::once(&canonical))
            .map(|p| format!("`{}`", p.display()))
            .collect::<Vec<_>>()
            .join(" -> ");
        return Err(PolicyError::Cycle {
            path: path.to_owned(),
            chain,
        });
    }
    if stack.len() >= MAX_INCLUDE_DEPTH {
        return Err(PolicyError::TooDeep {
            path: path.to_owned(),
            max: MAX_INCLUDE_DEPTH,
        });
    }
    let text = read_policy_text(&canonical).map_err(read_err)?;
    let source = Source {
        path: path.to_owned(),
        text,
    };
    let wire: FileWire = toml::from_str(&source.text).map_err(|e| {
        let (line, column) = e.span().map_or((0, 0), |s| source.line_col(s));
        PolicyError::Parse {
            path: path.to_owned(),
            line,
            column,
            message: e.message().trim_end().to_owned(),
        }
    })?;
    let base_dir = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if !files.iter().any(|(file, _)| *file == canonical) {
        files.push((canonical.clone(), path.to_owned()));
    }
    stack.push(canonical);
    if let Some(header) = &wire.policy {
        for include in &header.extends {
            let included = base_dir.join(include.get_ref());
            load_layers(&included, stack, out, files).map_err(|error| match error {
                // Name the file whose `extends` led to the unreadable one.
                PolicyError::Read {
                    path: unread,
                    source,
                } if unread == included => PolicyError::Extends {
                    path: unread,
                    by: path.to_owned(),
                    source,
                },
                other => other,
            })?;
        }
    }
    stack.pop();
    out.push(convert(wire, &source)?);
    Ok(())
}

fn parse_os(source: &Source, os: &Spanned<String>) -> Result<Os, PolicyError> {
    match os.get_ref().as_str() {
        "linux" => Ok(Os::Linux),
        "macos" => Ok(Os::Macos),
        "windows" => Ok(Os::Windows),
        other => Err(source.invalid(os.span(), "policy.os", Invalid::Os(other.to_owned()))),
    }
}

/// A directory as policies and checks compare it: `/` separators, no
/// repeated or trailing separator. `None` if relative or not normal.
pub(crate) fn dir_key(dir: &str) -> Option<String> {
    if !cmdlog::path::is_absolute(dir) {
        return None;
    }
    let unified = dir.replace('\\', "/");
    let mut out = String::new();
    let (prefix, rest) = match unified.find('/') {
        Some(i) => unified.split_at(i),
        None => return None,
    };
    out.push_str(prefix);
    for part in rest.split('/') {
        match part {
            "" => {}
            "." | ".." => return None,
            p => {
                out.push('/');
                out.push_str(p);
            }
        }
    }
    if out.is_empty() || out == prefix {
        out.push('/');
    }
    Some(out)
}

fn dirs(source: &Source, key: &str, list: &[Spanned<String>]) -> Result<Vec<String>, PolicyError> {
    list.iter()
        .map(|d| {
            dir_key(d.get_ref())
                .ok_or_else(|| source.invalid(d.span(), key, Invalid::Dir(d.get_ref().clone())))
        })
        .collect()
}

fn quantity<T>(
    source: &Source,
    key: &str,
    q: &Option<Spanned<Quantity>>,
    number: impl Fn(u64) -> Option<T>,
    text: impl Fn(&str) -> Option<T>,
    problem: impl Fn(String) -> Invalid,
) -> Result<Option<T>, PolicyError> {
    let Some(q) = q else { return Ok(None) };
    let (value, shown) = match q.get_ref() {
        Quantity::Number(n) => (number(*n), n.to_string()),
        Quantity::Text(t) => (text(t), t.clone()),
    };
    value
        .map(Some)
        .ok_or_else(|| source.invalid(q.span(), key, problem(shown)))
}

fn limits(source: &Source, key: &str, wire: &LimitsWire) -> Result<LimitsLayer, PolicyError> {
    Ok(LimitsLayer {
        timeout: quantity(
            source,
            &format!("{key}.timeout"),
            &wire.timeout,
            |n| Some(Duration::from_secs(n)),
            parse_duration,
            Invalid::Duration,
        )?,
        max_rss: quantity(
            source,
            &format!("{key}.max_rss"),
            &wire.max_rss,
            Some,
            parse_size,
            Invalid::Size,
        )?,
        max_output: quantity(
            source,
            &format!("{key}.max_output"),
            &wire.max_output,
            Some,
            parse_size,
            Invalid::Size,
        )?,
    })
}

/// The fields of a value constraint, shared by flags and variables.
struct ValueFields<'a> {
    enum_: &'a Option<Vec<String>>,
    pattern: &'a Option<String>,
    range: &'a Option<(i64, i64)>,
    path: &'a Option<String>,
    grammar: &'a Option<String>,
    split: &'a Option<String>,
    pipeline: &'a Option<Vec<String>>,
}

impl ValueFields<'_> {
    fn convert(&self) -> Result<Option<ValueRule>, Invalid> {
        let set = [
            self.enum_.is_some(),
            self.pattern.is_some(),
            self.range.is_some(),
            self.path.is_some(),
            self.grammar.is_some(),
            self.pipeline.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if set > 1 {
            return Err(Invalid::Constraint(
                "give at most one of `enum`, `pattern`, `range`, `path`, `grammar`, `pipeline`",
            ));
        }
        if self.split.is_some() && self.grammar.is_none() {
            return Err(Invalid::Constraint("`split` only applies with `grammar`"));
        }
        if let Some(names) = self.pipeline {
            if names.is_empty() {
                return Err(Invalid::Empty);
            }
            return Ok(Some(ValueRule::Pipeline(names.clone())));
        }
        if let Some(values) = self.enum_ {
            if values.is_empty() {
                return Err(Invalid::Empty);
            }
            return Ok(Some(ValueRule::Enum(values.clone())));
        }
        if let Some(p) = self.pattern {
            // Checked alone first, so an error shows the user's pattern,
            // not the anchored one.
            Regex::new(p).map_err(Invalid::Regex)?;
            return Regex::new(&format!("^(?:{p})$"))
                .map(|r| Some(ValueRule::Pattern(r)))
                .map_err(Invalid::Regex);
        }
        if let Some((lo, hi)) = self.range {
            if lo > hi {
                return Err(Invalid::Empty);
            }
            return Ok(Some(ValueRule::Range(*lo, *hi)));
        }
        if let Some(p) = self.path {
            return match p.as_str() {
                "input" => Ok(Some(ValueRule::Input)),
                "output" => Ok(Some(ValueRule::Output)),
                "dir" => Ok(Some(ValueRule::Dir)),
                other => Err(Invalid::PathRule(other.to_owned())),
            };
        }
        if let Some(g) = self.grammar {
            let split = match self.split {
                None => None,
                Some(s) => {
                    let mut chars = s.chars();
                    match (chars.next(), chars.next()) {
                        (Some(c), None) => Some(c),
                        _ => return Err(Invalid::Split(s.clone())),
                    }
                }
            };
            return Ok(Some(ValueRule::Grammar {
                name: g.clone(),
                split,
            }));
        }
        Ok(None)
    }
}

fn forms(wire: &Option<FormWire>) -> Result<Forms, Invalid> {
    let names: Vec<&str> = match wire {
        None => vec!["switch"],
        Some(FormWire::One(s)) => vec![s.as_str()],
        Some(FormWire::Many(v)) => v.iter().map(String::as_str).collect(),
    };
    if names.is_empty() {
        return Err(Invalid::Form(String::new()));
    }
    let mut forms = Forms {
        switch: false,
        joined: false,
        separate: false,
        rest: false,
    };
    for name in names {
        match name {
            "switch" => forms.switch = true,
            "joined" => forms.joined = true,
            "separate" => forms.separate = true,
            "rest" => forms.rest = true,
            other => return Err(Invalid::Form(other.to_owned())),
        }
    }
    Ok(forms)
}

fn flag(wire: &FlagWire) -> Result<FlagRule, Invalid> {
    let forms = forms(&wire.form)?;
    let value = ValueFields {
        enum_: &wire.enum_,
        pattern: &wire.pattern,
        range: &wire.range,
        path: &wire.path,
        grammar: &wire.grammar,
        split: &wire.split,
        pipeline: &wire.pipeline,
    }
    .convert()?;
    let takes_value = forms.joined || forms.separate || forms.rest;
    if forms.switch && takes_value {
        return Err(Invalid::Constraint(
            "a `switch` takes no value; declare the valued form as another flag",
        ));
    }
    if takes_value && value.is_none() {
        return Err(Invalid::Constraint(
            "a flag that takes a value needs one of `enum`, `pattern`, `range`, `path`, `grammar`, `pipeline`",
        ));
    }
    if forms.switch && value.is_some() {
        return Err(Invalid::Constraint("a `switch` takes no value constraint"));
    }
    if forms.rest && !matches!(value, Some(ValueRule::Grammar { .. })) {
        return Err(Invalid::Constraint(
            "a `rest` flag hands its arguments to a `grammar`",
        ));
    }
    let count = wire.count.unwrap_or(1);
    if count == 0 || (count > 1 && !forms.separate) || count > 16 {
        return Err(Invalid::Constraint(
            "`count` (1 to 16) applies to `separate` flags only",
        ));
    }
    if wire.name.is_empty() {
        return Err(Invalid::FlagName(String::new()));
    }
    Ok(FlagRule {
        name: wire.name.clone(),
        forms,
        count,
        value,
        requires: wire.requires.clone().unwrap_or_default(),
    })
}

fn deny(wire: &DenyWire) -> Result<DenyRule, Invalid> {
    match (&wire.exact, &wire.prefix) {
        (Some(name), None) => Ok(DenyRule {
            name: name.clone(),
            prefix: false,
            reason: wire.reason.clone(),
        }),
        (None, Some(name)) => Ok(DenyRule {
            name: name.clone(),
            prefix: true,
            reason: wire.reason.clone(),
        }),
        _ => Err(Invalid::Constraint(
            "give exactly one of `exact` or `prefix`",
        )),
    }
}

fn grammar(
    source: &Source,
    name: &str,
    spanned: &Spanned<GrammarWire>,
) -> Result<GrammarLayer, PolicyError> {
    let wire = spanned.get_ref();
    let key = format!("args.{name}");
    let positional = match &wire.positional {
        None => None,
        Some(p) => Some(match p.get_ref().as_str() {
            "input" => Positional::Input,
            "refuse" => Positional::Refuse,
            "archive" => Positional::Archive,
            other => {
                return Err(source.invalid(
                    p.span(),
                    format!("{key}.positional"),
                    Invalid::Positional(other.to_owned()),
                ))
            }
        }),
    };
    let flag_chars = match &wire.flag_chars {
        None => None,
        Some(chars) if chars.get_ref().is_empty() => {
            return Err(source.invalid(
                chars.span(),
                format!("{key}.flag_chars"),
                Invalid::Constraint("give at least one flag character"),
            ))
        }
        Some(chars) if !chars.get_ref().is_ascii() => {
            return Err(source.invalid(
                chars.span(),
                format!("{key}.flag_chars"),
                Invalid::Constraint("flag characters must be ASCII"),
            ))
        }
        Some(chars) => Some(chars.get_ref().chars().collect()),
    };
    let mut flags = Vec::new();
    for (i, f) in wire.flags.iter().enumerate() {
        let k = format!("{key}.flags[{i}]");
        let rule = flag(f.get_ref()).map_err(|p| source.invalid(f.span(), k.clone(), p))?;
        flags.push((rule, source.place(f.span(), k)));
    }
    let mut denies = Vec::new();
    for (i, d) in wire.deny.iter().enumerate() {
        let k = format!("{key}.deny[{i}]");
        let rule = deny(d.get_ref()).map_err(|p| source.invalid(d.span(), k.clone(), p))?;
        denies.push((rule, source.place(d.span(), k)));
    }
    Ok(GrammarLayer {
        positional,
        response_files: wire.response_files,
        response_file_depth: wire.response_file_depth,
        case_insensitive: wire.case_insensitive,
        flag_chars,
        flags,
        deny: denies,
        drop_flags: wire.drop_flags.clone(),
        require_one_of: wire.require_one_of.clone(),
        linker_inputs: wire.linker_inputs,
        source_extensions: wire.source_extensions.clone(),
        operations: wire.operations.clone(),
        place: source.place(spanned.span(), key),
        files: vec![source.path.clone()],
    })
}

fn tool(
    source: &Source,
    name: &str,
    spanned: &Spanned<ToolWire>,
) -> Result<ToolLayer, PolicyError> {
    let wire = spanned.get_ref();
    let key = format!("tool.{name}");
    let at = |k: &str, p| source.invalid(spanned.span(), format!("{key}.{k}"), p);
    let programs = match &wire.programs {
        None => None,
        Some(list) => {
            let mut out = Vec::new();
            for p in list {
                let (n, g) = match p {
                    ProgramWire::Name(n) => (n.clone(), None),
                    ProgramWire::Table(t) => (t.name.clone(), t.args.clone()),
                };
                if n.is_empty() || n.contains(['/', '\\']) || n == "." || n == ".." {
                    return Err(at("programs", Invalid::ProgramName(n)));
                }
                out.push((n, g));
            }
            Some(out)
        }
    };
    let dirs = match &wire.dirs {
        None => None,
        Some(list) => Some(dirs(source, &format!("{key}.dirs"), list)?),
    };
    let limits = match &wire.limits {
        None => LimitsLayer::default(),
        Some(l) => limits(source, &format!("{key}.limits"), l)?,
    };
    let sha256 = match &wire.sha256 {
        None => None,
        Some(pins) => {
            let mut out = BTreeMap::new();
            for (path, digest) in pins {
                let k = format!("{key}.sha256");
                let dir = dir_key(path).ok_or_else(|| {
                    source.invalid(digest.span(), k.clone(), Invalid::Dir(path.clone()))
                })?;
                let bytes = parse_hex32(digest.get_ref()).ok_or_else(|| {
                    source.invalid(
                        digest.span(),
                        k.clone(),
                        Invalid::Sha256(digest.get_ref().clone()),
                    )
                })?;
                out.insert(dir, bytes);
            }
            Some(out)
        }
    };
    let runs = wire.runs.as_ref().map(|list| {
        list.iter()
            .enumerate()
            .map(|(i, kind)| {
                (
                    kind.get_ref().clone(),
                    source.place(kind.span(), format!("{key}.runs[{i}]")),
                )
            })
            .collect()
    });
    Ok(ToolLayer {
        programs,
        dirs,
        args: wire.args.clone(),
        limits,
        sha256,
        require_sha256: wire.require_sha256,
        runs,
        disabled: wire.disabled.unwrap_or(false),
        local_only: wire.local_only.unwrap_or(false),
        place: source.place(spanned.span(), key),
    })
}

fn parse_hex32(text: &str) -> Option<[u8; 32]> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn convert(wire: FileWire, source: &Source) -> Result<Layer, PolicyError> {
    let mut layer = Layer::default();
    if let Some(header) = &wire.policy {
        layer.name = header.name.clone();
        if let Some(os) = &header.os {
            layer.os = Some(parse_os(source, os)?);
        }
        if let Some(list) = &header.system_inputs {
            layer.system_inputs = Some(dirs(source, "policy.system_inputs", list)?);
        }
        layer.refuse_undeclared_reads = header.refuse_undeclared_reads.unwrap_or(false);
        layer.remote_cache_forbidden = header.remote_cache == Some(false);
        layer.remote_execution_forbidden = header.remote_execution == Some(false);
        layer.remote_cache_writers = header.remote_cache_writers.clone();
        for name in &header.require_sandbox {
            if !crate::model::SANDBOX_LAYERS.contains(&name.get_ref().as_str()) {
                return Err(source.invalid(
                    name.span(),
                    "policy.require_sandbox",
                    Invalid::SandboxLayer(name.get_ref().clone()),
                ));
            }
            layer.required_layers.push(name.get_ref().clone());
        }
        if let Some(names) = &header.builtins {
            let mut kinds = Vec::new();
            for name in names {
                let kind = ToolKind::from_name(name.get_ref());
                if !kind.is_builtin() {
                    return Err(source.invalid(
                        name.span(),
                        "policy.builtins",
                        Invalid::Builtin(name.get_ref().clone()),
                    ));
                }
                if !kinds.contains(&kind) {
                    kinds.push(kind);
                }
            }
            layer.builtins = Some(kinds);
        }
    }
    if let Some(env) = &wire.env {
        for (name, value) in &env.set {
            if never_from_log(name) && !policy_may_set(name, value.get_ref()) {
                // A policy may not set them either: the tool's environment
                // never holds a loader or search-path variable, except a
                // `PATH` of absolute directories the policy itself names
                // (`clang` finds `ld` through it).
                return Err(source.invalid(
                    value.span(),
                    format!("env.set.{name}"),
                    Invalid::NeverFromLog(name.clone()),
                ));
            }
            layer.env_set.insert(name.clone(), value.get_ref().clone());
        }
        for (name, value) in &env.allow {
            let key = format!("env.allow.{name}");
            if never_from_log(name) {
                return Err(source.invalid(value.span(), key, Invalid::NeverFromLog(name.clone())));
            }
            let ValueWire {
                enum_,
                pattern,
                range,
            } = value.get_ref();
            let rule = ValueFields {
                enum_,
                pattern,
                range,
                path: &None,
                grammar: &None,
                split: &None,
                pipeline: &None,
            }
            .convert()
            .and_then(|r| {
                r.ok_or(Invalid::Constraint(
                    "give one of `enum`, `pattern`, `range`",
                ))
            })
            .map_err(|p| source.invalid(value.span(), key, p))?;
            layer.env_allow.insert(name.clone(), rule);
        }
    }
    if let Some(l) = &wire.limits {
        layer.limits = limits(source, "limits", l)?;
    }
    for (name, t) in &wire.tool {
        if ToolKind::from_name(name).is_builtin() {
            return Err(source.invalid(
                t.span(),
                format!("tool.{name}"),
                Invalid::Builtin(name.clone()),
            ));
        }
        layer.tools.insert(name.clone(), tool(source, name, t)?);
    }
    for (name, g) in &wire.args {
        layer
            .grammars
            .insert(name.clone(), grammar(source, name, g)?);
    }
    for table in wire.plugin {
        let (line, _) = source.line_col(table.span());
        layer.plugins.push(PluginTable {
            file: source.path.clone(),
            line,
            table: table.into_inner(),
        });
    }
    Ok(layer)
}

/// Merges the layers (later wins), then checks completeness.
fn finish(path: &Path, layers: Vec<Layer>) -> Result<Policy, PolicyError> {
    let top = Place {
        path: path.to_owned(),
        line: 0,
        column: 0,
        key: String::new(),
    };
    let mut merged = Layer::default();
    for layer in layers {
        merged.name = layer.name.or(merged.name);
        merged.os = layer.os.or(merged.os);
        merged.system_inputs = layer.system_inputs.or(merged.system_inputs);
        // Requirements only add up: a derived policy cannot drop one.
        merged.refuse_undeclared_reads |= layer.refuse_undeclared_reads;
        merged.remote_cache_forbidden |= layer.remote_cache_forbidden;
        merged.remote_execution_forbidden |= layer.remote_execution_forbidden;
        merged.remote_cache_writers = layer.remote_cache_writers.or(merged.remote_cache_writers);
        for layer_name in layer.required_layers {
            if !merged.required_layers.contains(&layer_name) {
                merged.required_layers.push(layer_name);
            }
        }
        // Like `system_inputs`, a layer's list replaces its base's: a
        // derived policy may allow fewer built-ins (`[]`: none) or more.
        merged.builtins = layer.builtins.or(merged.builtins);
        merged.env_set.extend(layer.env_set);
        merged.env_allow.extend(layer.env_allow);
        merged.limits = layer.limits.over(merged.limits);
        merged.plugins.extend(layer.plugins);
        for (name, t) in layer.tools {
            let entry = merged.tools.remove(&name);
            let t = match entry {
                Some(base) if !t.disabled => ToolLayer {
                    programs: t.programs.or(base.programs),
                    dirs: t.dirs.or(base.dirs),
                    args: t.args.or(base.args),
                    limits: t.limits.over(base.limits),
                    sha256: t.sha256.or(base.sha256),
                    require_sha256: t.require_sha256.or(base.require_sha256),
                    runs: t.runs.or(base.runs),
                    disabled: false,
                    // A derived policy cannot send out what its base keeps.
                    local_only: t.local_only || base.local_only,
                    place: t.place,
                },
                _ => t,
            };
            merged.tools.insert(name, t);
        }
        for (name, g) in layer.grammars {
            let g = match merged.grammars.remove(&name) {
                Some(mut base) => {
                    base.flags.retain(|(f, _)| !g.drop_flags.contains(&f.name));
                    base.flags.extend(g.flags);
                    base.deny.extend(g.deny);
                    GrammarLayer {
                        positional: g.positional.or(base.positional),
                        response_files: g.response_files.or(base.response_files),
                        response_file_depth: g.response_file_depth.or(base.response_file_depth),
                        case_insensitive: g.case_insensitive.or(base.case_insensitive),
                        flag_chars: g.flag_chars.or(base.flag_chars),
                        flags: base.flags,
                        deny: base.deny,
                        drop_flags: Vec::new(),
                        require_one_of: g.require_one_of.or(base.require_one_of),
                        linker_inputs: g.linker_inputs.or(base.linker_inputs),
                        source_extensions: g.source_extensions.or(base.source_extensions),
                        operations: g.operations.or(base.operations),
                        place: g.place,
                        files: {
                            let mut files = base.files;
                            files.retain(|f| !g.files.contains(f));
                            files.extend(g.files);
                            files
                        },
                    }
                }
                None => g,
            };
            merged.grammars.insert(name, g);
        }
    }
    let os = merged.os.ok_or_else(|| {
        Place {
            key: "policy.os".into(),
            ..top.clone()
        }
        .invalid(Invalid::Missing)
    })?;
    let name = merged.name.unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    });

    let mut grammars = BTreeMap::new();
    for (gname, g) in &merged.grammars {
        grammars.insert(gname.clone(), finish_grammar(gname, g)?);
    }
    // Every grammar a flag hands values to must exist.
    for g in merged.grammars.values() {
        for (f, place) in &g.flags {
            if let Some(ValueRule::Grammar { name, .. }) = &f.value {
                if !grammars.contains_key(name) {
                    return Err(place.invalid(Invalid::UnknownGrammar(name.clone())));
                }
            }
        }
    }

    // `runs` names kinds some layer defines; a kind a later layer disabled
    // is known but contributes no binary (a typo is an error, a disabled
    // linker only narrows what the compiler may run).
    for t in merged.tools.values().filter(|t| !t.disabled) {
        for (kind, place) in t.runs.iter().flatten() {
            if !merged.tools.contains_key(kind) {
                return Err(place.invalid(Invalid::UnknownTool(kind.clone())));
            }
        }
    }
    let mut tools = BTreeMap::new();
    for (tname, t) in merged.tools {
        if t.disabled {
            continue;
        }
        let at = |k: &str| Place {
            key: format!("{}.{k}", t.place.key),
            ..t.place.clone()
        };
        let programs = t
            .programs
            .filter(|p| !p.is_empty())
            .ok_or_else(|| at("programs").invalid(Invalid::Missing))?;
        let dirs = t
            .dirs
            .filter(|d| !d.is_empty())
            .ok_or_else(|| at("dirs").invalid(Invalid::Missing))?;
        let default_grammar = t.args.clone().unwrap_or_else(|| tname.clone());
        let mut rules = Vec::new();
        for (pname, g) in programs {
            let g = g.unwrap_or_else(|| default_grammar.clone());
            if !grammars.contains_key(&g) {
                return Err(at("programs").invalid(Invalid::UnknownGrammar(g)));
            }
            rules.push(ProgramRule {
                name: pname,
                grammar: g,
            });
        }
        let limits = t.limits.over(merged.limits);
        tools.insert(
            ToolKind::from_name(&tname),
            ToolRules {
                programs: rules,
                dirs,
                limits: ToolLimits {
                    timeout: limits.timeout,
                    max_rss: limits.max_rss,
                    max_output: limits.max_output,
                },
                sha256: t.sha256.unwrap_or_default(),
                require_sha256: t.require_sha256.unwrap_or(false),
                local_only: t.local_only,
                runs: {
                    let mut runs: Vec<ToolKind> = Vec::new();
                    for (kind, _) in t.runs.iter().flatten() {
                        let kind = ToolKind::from_name(kind);
                        if !runs.contains(&kind) {
                            runs.push(kind);
                        }
                    }
                    runs
                },
            },
        );
    }

    Ok(Policy {
        path: path.to_owned(),
        name,
        os,
        system_inputs: merged.system_inputs.unwrap_or_default(),
        env: EnvRules {
            set: merged.env_set,
            allow: merged.env_allow,
        },
        tools,
        grammars,
        plugins: merged.plugins,
        required_layers: merged.required_layers,
        refuse_undeclared_reads: merged.refuse_undeclared_reads,
        remote_cache_forbidden: merged.remote_cache_forbidden,
        remote_execution_forbidden: merged.remote_execution_forbidden,
        remote_cache_writers: merged.remote_cache_writers.unwrap_or_default(),
        builtins: merged.builtins.unwrap_or_default(),
        builtin_limits: ToolLimits {
            timeout: merged.limits.timeout,
            max_rss: merged.limits.max_rss,
            max_output: merged.limits.max_output,
        },
        files: Vec::new(),
        sources: Vec::new(),
    })
}

fn finish_grammar(name: &str, g: &GrammarLayer) -> Result<Grammar, PolicyError> {
    let case_insensitive = g.case_insensitive.unwrap_or(false);
    let flag_chars = g.flag_chars.clone().unwrap_or_else(|| vec!['-']);
    let canonical = |name: &str, place: &Place| -> Result<String, PolicyError> {
        let first = name.chars().next().filter(|c| flag_chars.contains(c));
        let Some(first) = first else {
            return Err(place.invalid(Invalid::FlagName(name.to_owned())));
        };
        let mut out = String::with_capacity(name.len());
        out.push(flag_chars[0]);
        out.push_str(&name[first.len_utf8()..]);
        if case_insensitive {
            out.make_ascii_lowercase();
        }
        Ok(out)
    };
    let mut flags = Vec::new();
    for (f, place) in &g.flags {
        let mut f = f.clone();
        f.name = canonical(&f.name, place)?;
        let mut requires = Vec::new();
        for r in &f.requires {
            requires.push(canonical(r, place)?);
        }
        f.requires = requires;
        flags.push(f);
    }
    for (f, (_, place)) in flags.iter().zip(&g.flags) {
        if f.requires
            .iter()
            .any(|r| !flags.iter().any(|o| o.name == *r))
        {
            return Err(place.invalid(Invalid::Constraint(
                "every flag in `requires` must be an allowed flag of the grammar",
            )));
        }
    }
    let mut deny = Vec::new();
    for (d, place) in &g.deny {
        let mut d = d.clone();
        d.name = canonical(&d.name, place)?;
        deny.push(d);
    }
    let depth = g.response_file_depth.unwrap_or(4);
    if depth > 32 {
        return Err(Place {
            key: format!("{}.response_file_depth", g.place.key),
            ..g.place.clone()
        }
        .invalid(Invalid::Constraint("`response_file_depth` is at most 32")));
    }
    let require_place = Place {
        key: format!("{}.require_one_of", g.place.key),
        ..g.place.clone()
    };
    let mut require_one_of = Vec::new();
    for name in g.require_one_of.iter().flatten() {
        let name = canonical(name, &require_place)?;
        if !flags.iter().any(|f| f.name == name) {
            return Err(require_place.invalid(Invalid::Constraint(
                "every flag in `require_one_of` must be an allowed flag of the grammar",
            )));
        }
        require_one_of.push(name);
    }
    let positional = g.positional.unwrap_or(Positional::Input);
    let operations = g.operations.clone().unwrap_or_default();
    if positional == Positional::Archive && operations.is_empty() {
        return Err(g.place.invalid(Invalid::Constraint(
            "a grammar with `positional = \"archive\"` must list its `operations`",
        )));
    }
    Ok(Grammar {
        positional,
        response_files: g.response_files.unwrap_or(false),
        response_file_depth: depth,
        case_insensitive,
        flag_chars,
        flags,
        deny,
        require_one_of,
        linker_inputs: g.linker_inputs.unwrap_or(false),
        source_extensions: g.source_extensions.clone().unwrap_or_default(),
        operations,
        name: name.to_owned(),
        files: g.files.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dir_keys_unify_separators_and_refuse_relative_or_dotted() {
        assert_eq!(dir_key("/usr//lib/").as_deref(), Some("/usr/lib"));
        assert_eq!(dir_key("/").as_deref(), Some("/"));
        assert_eq!(
            dir_key("C:\\Program Files\\LLVM\\bin").as_deref(),
            Some("C:/Program Files/LLVM/bin")
        );
        assert_eq!(dir_key("usr/lib"), None);
        assert_eq!(dir_key("/usr/../etc"), None);
        assert_eq!(dir_key("/usr/./lib"), None);
    }

    #[test]
    fn loader_variables_can_never_come_from_a_log() {
        for name in [
            "LD_PRELOAD",
            "ld_preload",
            "DYLD_INSERT_LIBRARIES",
            "PATH",
            "CCC_OVERRIDE_OPTIONS",
            "GCC_EXEC_PREFIX",
            "LIBRARY_PATH",
            "CPATH",
            "COMPILER_PATH",
            "LD_LIBRARY_PATH",
        ] {
            assert!(never_from_log(name), "{name}");
        }
        assert!(!never_from_log("SOURCE_DATE_EPOCH"));
    }

    #[test]
    fn a_policy_may_set_path_only_to_absolute_directories() {
        assert!(policy_may_set("PATH", "/usr/bin:/bin"));
        assert!(!policy_may_set("PATH", "bin:/usr/bin"));
        assert!(!policy_may_set("PATH", "/usr/bin::/bin"));
        assert!(!policy_may_set("PATH", "/usr/../tmp"));
        assert!(!policy_may_set("PATH", ""));
        assert!(!policy_may_set("LD_PRELOAD", "/usr/lib/x.so"));
    }

    #[test]
    fn hex_digests_parse_only_at_full_length() {
        let ok = "00".repeat(31) + "ff";
        assert_eq!(parse_hex32(&ok).map(|d| d[31]), Some(0xff));
        assert_eq!(parse_hex32("abc"), None);
        assert_eq!(parse_hex32(&"zz".repeat(32)), None);
    }
}
