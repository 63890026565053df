//! The streaming checker: [`Checker`] judges a log's header, then each
//! command as the reader hands it over, then the end of the log.
//!
//! Memory stays flat in what a command holds: across commands it keeps only
//! what whole-log rules need (the set of outputs written so far with their
//! writer, and the root paths read before anything wrote them) and a cache
//! of binary checks per (tool, program).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use cmdlog::path::{check_confined, is_absolute, normalize_under};
use cmdlog::path_ids::{PathIdMap, PathIds};
use cmdlog::{Command, Header, Os, ToolKind};
use serde::Serialize;

use crate::binary::{self, BinaryCheck, Host};
use crate::dirs::{ancestors, is_under, DirCache, RootDir};
use crate::error::CheckerError;
use crate::load::{dir_key, never_from_log};
use crate::model::{Policy, ToolLimits, ValueRule};
use crate::rootfs::{Kind, Lookup, RootFs};

/// How many (tool, program) binary checks are remembered.
const BINARY_CACHE_MAX: usize = 4096;

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
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
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

impl Resolved {
    /// Checks, now, that every file the linker will read from the root is
    /// an object or a regular archive of objects that names no other file
    /// (GNU ld reads any other file as a linker script; `ld.lld` follows
    /// `.deplibs` sections; thin archives name their members by path), and
    /// that every `lib*.so*`/`lib*.a` in its `-L` directories is a regular
    /// file inside the root that passes the same checks (one that cannot
    /// be read is refused, not skipped). `Err` names the file and the rule.
    /// Files are opened through a handle on `root`, so nothing outside it
    /// is read; only headers and section tables are read.
    pub fn verify_linker_reads(&self, root: &Path) -> Result<(), String> {
        let reads = &self.linker_reads;
        if reads.objects.is_empty() && reads.library_dirs.is_empty() {
            return Ok(());
        }
        let mut fs = RootFs::open(root).map_err(|e| format!("cannot open the work root: {e}"))?;
        match crate::linker::check_reads(&mut fs, reads, false)
            .into_iter()
            .next()
        {
            None => Ok(()),
            Some(r) => Err(format!("{} [{}]", r.message, r.rule)),
        }
    }
}

/// Checks a log against a policy, one command at a time.
pub struct Checker<'p> {
    policy: &'p Policy,
    options: CheckOptions,
    fs: RootFs,
    /// Lower-cased root-relative paths of protected files inside the root.
    protected: Vec<String>,
    /// Canonical system input directories (those that exist here).
    system_canonical: Vec<PathBuf>,
    /// The log's platform, once the header was seen.
    log_os: Os,
    /// Every output written so far (its [`PathIds`] identity), by its
    /// writer: a fixed few bytes per output, whatever its path's length.
    written: PathIdMap<u64>,
    /// Root paths read before any command wrote them, by first reader.
    read_early: PathIdMap<u64>,
    /// Identities of the paths in `written` and `read_early`.
    ids: PathIds,
    /// Whether the whole-log rules are judged (all but a run's second
    /// pass: see [`Checker::whole_log_judged`]).
    judge_whole_log: bool,
    /// Binary checks by tool kind, then program.
    binaries: HashMap<ToolKind, HashMap<String, Rc<BinaryCheck>>>,
    /// How many binary checks are cached.
    binaries_cached: usize,
    /// The binaries that may serve each tool kind here (see
    /// [`Resolved::may_exec`]), computed on first need.
    kind_binaries: HashMap<ToolKind, Rc<Vec<ExecAllowed>>>,
    /// Walks of input directories already made.
    dir_cache: DirCache,
    /// How many outputs so far each root directory holds (its identity
    /// in `ids`), for the input-directory rule.
    out_dirs: PathIdMap<u64>,
    /// Root directories read as input directories, by first reader.
    read_dirs: PathIdMap<u64>,
    commands: u64,
    /// The previous command's id: ids must strictly increase.
    last_id: Option<u64>,
}

/// The per-command state rules share while one command is checked.
pub(crate) struct Ctx<'a> {
    pub policy: &'a Policy,
    pub fs: &'a mut RootFs,
    pub findings: Vec<Finding>,
    id: u64,
    strict: bool,
    pub fold: bool,
    /// Whether the log's platform is this host's (paths outside the root
    /// can be looked at).
    pub here: bool,
    /// Canonical system input directories (those that exist here).
    pub system_canonical: &'a [PathBuf],
    /// Input directories that passed, absolute and canonical.
    pub input_dirs: Vec<PathBuf>,
    /// Declared inputs, resolved.
    pub input_files: Vec<PathBuf>,
    /// Directories in the root to check once the paths are known.
    pub root_dirs: Vec<RootDir>,
    /// Walks already made.
    pub dir_cache: &'a mut DirCache,
    /// The command's cwd, normalized (`.` for the root).
    cwd: String,
    /// The command's cwd as written.
    raw_cwd: &'a str,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// What the linker will read from the root, to verify before it runs.
    pub linker_reads: LinkerReads,
}

impl<'p> Checker<'p> {
    /// A checker for logs whose work root is `root`.
    pub fn new(
        policy: &'p Policy,
        root: &Path,
        options: CheckOptions,
    ) -> Result<Self, CheckerError> {
        let fs = RootFs::open(root).map_err(|source| CheckerError::Root {
            path: root.to_owned(),
            source,
        })?;
        let protected = options
            .protected
            .iter()
            .filter_map(|p| inside_root(fs.root(), p))
            .map(|p| p.to_lowercase())
            .collect();
        let system_canonical = policy
            .system_inputs
            .iter()
            .filter_map(|d| std::fs::canonicalize(d).ok())
            .collect();
        Ok(Checker {
            policy,
            log_os: policy.os,
            options,
            fs,
            protected,
            system_canonical,
            written: PathIdMap::default(),
            read_early: PathIdMap::default(),
            ids: PathIds::new(),
            judge_whole_log: true,
            binaries: HashMap::new(),
            binaries_cached: 0,
            kind_binaries: HashMap::new(),
            dir_cache: DirCache::default(),
            out_dirs: PathIdMap::default(),
            read_dirs: PathIdMap::default(),
            commands: 0,
            last_id: None,
        })
    }

    /// For a second pass over bytes whose whole-log rules already passed
    /// (a run reads a private snapshot of the log twice): skips those rules
    /// (two writers of a file, a read before the write, an input no
    /// command produces) and keeps no state per output, so memory stays
    /// flat while tools run. An input missing when its command is judged
    /// is left to the executor, which checks every input before it runs.
    /// It also looks every command's paths up on disk anew: tools ran
    /// since the last command was judged.
    pub fn whole_log_judged(mut self) -> Self {
        self.judge_whole_log = false;
        self.fs = self.fs.uncached();
        self
    }

    /// The canonical work root.
    pub fn root(&self) -> &Path {
        self.fs.root()
    }

    fn strict(&self) -> bool {
        self.options.strict || self.options.mode == Mode::Run
    }

    fn host(&self) -> Host {
        if Os::host() == Some(self.policy.os) && self.log_os == self.policy.os {
            Host::Here
        } else {
            Host::Elsewhere {
                log: self.log_os,
                host: Os::host(),
            }
        }
    }

    /// Judges the log's header: its platform must be the policy's, and a
    /// log to be run must be for this host.
    pub fn header(&mut self, header: &Header) -> Vec<Finding> {
        self.log_os = header.platform.os;
        let mut out = Vec::new();
        if header.platform.os != self.policy.os {
            out.push(Finding {
                id: None,
                rule: "platform.os-mismatch",
                subject: header.platform.os.to_string(),
                message: format!(
                    "the log is for {}, the policy `{}` for {}",
                    header.platform.os, self.policy.name, self.policy.os
                ),
                hint: format!(
                    "check it with `policies/{}.toml` or a policy that extends it",
                    header.platform.os
                ),
                status: Status::Refused,
            });
        }
        if self.options.mode == Mode::Run && Os::host() != Some(header.platform.os) {
            out.push(Finding {
                id: None,
                rule: "platform.not-runnable",
                subject: header.platform.os.to_string(),
                message: format!("a log for {} cannot run on this host", header.platform.os),
                hint: "audit it with `replay check` instead".into(),
                status: Status::Refused,
            });
        }
        out
    }

    /// Judges one command, in log order.
    pub fn command(&mut self, command: &Command) -> Verdict {
        self.commands += 1;
        let strict = self.strict();
        let host = self.host();
        let policy = self.policy;
        let fold = policy.os != Os::Linux;
        let key = |p: &str| -> Option<String> {
            let k = if is_absolute(p) {
                dir_key(p)
            } else {
                normalize_under(".", p)
            };
            k.map(|k| if fold { k.to_lowercase() } else { k })
        };
        let cwd = normalize_under(".", &command.cwd).unwrap_or_else(|| ".".into());
        self.fs.begin_command();
        let mut ctx = Ctx {
            policy,
            fs: &mut self.fs,
            findings: Vec::new(),
            id: command.id,
            strict,
            fold,
            cwd: if fold { cwd.to_lowercase() } else { cwd },
            raw_cwd: &command.cwd,
            inputs: command.inputs.iter().filter_map(|p| key(p)).collect(),
            outputs: command.outputs.iter().filter_map(|p| key(p)).collect(),
            linker_reads: LinkerReads::default(),
            here: matches!(host, Host::Here),
            system_canonical: &self.system_canonical,
            input_dirs: Vec::new(),
            input_files: Vec::new(),
            root_dirs: Vec::new(),
            dir_cache: &mut self.dir_cache,
        };

        // Ids are unique because they strictly increase (the reader checks
        // this too; a checker fed by other means must not rely on it). A
        // whole-log rule: a parallel run's second pass judges commands in
        // the order they become ready, not in the log's.
        if let Some(last) = self
            .last_id
            .filter(|last| self.judge_whole_log && command.id <= *last)
        {
            ctx.refuse(
                "log.id-order",
                &command.id.to_string(),
                format!(
                    "id {} does not follow id {last}: ids must be unique and increasing",
                    command.id
                ),
                "number commands in the order they run",
            );
        }
        self.last_id = Some(self.last_id.map_or(command.id, |l| l.max(command.id)));

        // The tool kind and its binary.
        let mut resolved_program = None;
        let mut argv0 = String::new();
        let mut args = Vec::new();
        match policy.tools.get(&command.tool) {
            None => {
                let known: Vec<String> = policy.tools.keys().map(|t| format!("`{t}`")).collect();
                ctx.refuse(
                    "tool.not-allowed",
                    command.tool.name(),
                    format!("tool kind `{}` is not allowed by the policy", command.tool),
                    &format!("the policy allows {}", known.join(", ")),
                );
            }
            Some(rules) => {
                let cached = self
                    .binaries
                    .get(&command.tool)
                    .and_then(|m| m.get(command.program.as_str()))
                    .cloned();
                let check = match cached {
                    Some(c) => c,
                    None => {
                        // A hostile log can name many programs; the cache
                        // only saves work, so it is bounded, not kept whole.
                        if self.binaries_cached >= BINARY_CACHE_MAX {
                            self.binaries.clear();
                            self.binaries_cached = 0;
                        }
                        let c = binary::check(
                            policy.os,
                            rules,
                            command.tool.name(),
                            &command.program,
                            host,
                        );
                        let c = Rc::new(c);
                        self.binaries
                            .entry(command.tool.clone())
                            .or_default()
                            .insert(command.program.clone(), Rc::clone(&c));
                        self.binaries_cached += 1;
                        c
                    }
                };
                for f in &check.findings {
                    ctx.push(f.rule, &f.subject, f.message.clone(), &f.hint, f.status);
                }
                argv0 = check.argv0.clone();
                resolved_program = check.program.clone();
                if let Some(grammar) = &check.grammar {
                    args = crate::args::check(&mut ctx, grammar, &command.args);
                }
            }
        }

        // Paths, and the whole-log rules on them.
        let mut log = LogState {
            written: &mut self.written,
            read_early: &mut self.read_early,
            ids: &self.ids,
            judge: self.judge_whole_log,
            protected: &self.protected,
            out_dirs: &mut self.out_dirs,
            read_dirs: &mut self.read_dirs,
            mode: self.options.mode,
            here: matches!(host, Host::Here),
        };
        paths(&mut ctx, &mut log, command);

        // Environment.
        let env = env(&mut ctx, &command.env);

        let findings = ctx.findings;
        let linker_reads = ctx.linker_reads;
        let input_dirs = ctx.input_dirs;
        let input_files = ctx.input_files;
        let status = findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Allowed);
        let resolved = match (resolved_program, status) {
            (Some(program), Status::Allowed | Status::Unverified) => {
                let may_exec = self.may_exec(&command.tool, &program, &argv0);
                Some(Resolved {
                    program,
                    argv0,
                    args,
                    env,
                    limits: policy
                        .tools
                        .get(&command.tool)
                        .map(|t| t.limits)
                        .unwrap_or_default(),
                    linker_reads,
                    may_exec,
                    input_dirs,
                    input_files,
                })
            }
            _ => None,
        };
        Verdict {
            id: command.id,
            tool: command.tool.clone(),
            status,
            findings,
            resolved,
        }
    }

    /// What a tool of kind `tool`, run as `program` under `argv0`, may
    /// execute: see [`Resolved::may_exec`].
    fn may_exec(&mut self, tool: &ToolKind, program: &Path, argv0: &str) -> Vec<ExecAllowed> {
        let mut out = vec![ExecAllowed {
            path: program.to_owned(),
            name: argv0.to_owned(),
        }];
        let add = |e: &ExecAllowed, out: &mut Vec<ExecAllowed>| {
            if !out.contains(e) {
                out.push(e.clone());
            }
        };
        for e in self.kind_binaries(tool).iter() {
            if e.path == program {
                add(e, &mut out);
            }
        }
        let runs = self
            .policy
            .tools
            .get(tool)
            .map(|t| t.runs.clone())
            .unwrap_or_default();
        for kind in &runs {
            for e in self.kind_binaries(kind).iter() {
                add(e, &mut out);
            }
        }
        out
    }

    /// The binaries that may serve `kind` on this host (none if the policy
    /// does not allow the kind), remembered for the checker's life.
    fn kind_binaries(&mut self, kind: &ToolKind) -> Rc<Vec<ExecAllowed>> {
        if let Some(hit) = self.kind_binaries.get(kind) {
            return Rc::clone(hit);
        }
        let list = match self.policy.tools.get(kind) {
            Some(rules) => binary::allowed_binaries(self.policy.os, rules, kind.name())
                .into_iter()
                .map(|(path, name)| ExecAllowed { path, name })
                .collect(),
            None => Vec::new(),
        };
        let list = Rc::new(list);
        self.kind_binaries.insert(kind.clone(), Rc::clone(&list));
        list
    }

    /// Judges the end of the log. Every whole-log rule is applied as
    /// commands arrive (a later writer of an earlier read is refused in the
    /// writer's verdict), so this only reports a log with no command.
    pub fn finish(self) -> Vec<Finding> {
        let mut out = Vec::new();
        if self.commands == 0 {
            out.push(Finding {
                id: None,
                rule: "log.empty",
                subject: String::new(),
                message: "the log has no commands".into(),
                hint: "nothing to run; check that the producer wrote its commands".into(),
                status: Status::Unverified,
            });
        }
        out
    }
}

/// What the path rules need of the checker's state.
struct LogState<'a> {
    written: &'a mut PathIdMap<u64>,
    read_early: &'a mut PathIdMap<u64>,
    ids: &'a PathIds,
    /// Whether to judge the whole-log rules ([`Checker::whole_log_judged`]).
    judge: bool,
    protected: &'a [String],
    out_dirs: &'a mut PathIdMap<u64>,
    read_dirs: &'a mut PathIdMap<u64>,
    mode: Mode,
    /// Whether the log's platform is this host's.
    here: bool,
}

/// The rules on `cwd`, inputs and outputs, and the whole-log rules.
fn paths(ctx: &mut Ctx<'_>, log: &mut LogState<'_>, command: &Command) {
    let id = command.id;
    let run = log.mode == Mode::Run;
    if check_confined(&command.cwd).is_err() {
        ctx.refuse(
            "paths.outside-root",
            &command.cwd,
            format!("cwd `{}` is outside the work root", command.cwd),
            "use a cwd inside the work root",
        );
    } else {
        match ctx.lookup(&command.cwd) {
            Lookup::Escapes { via } => ctx.symlink_escape(&command.cwd, &via),
            Lookup::Inside { kind: Kind::Dir } => {}
            Lookup::Inside {
                kind: Kind::Missing,
            } if !run => {}
            Lookup::Inside { kind } => ctx.refuse(
                "paths.cwd-not-dir",
                &command.cwd,
                format!(
                    "cwd `{}` is {}",
                    command.cwd,
                    if kind == Kind::Missing {
                        "missing"
                    } else {
                        "not a directory"
                    }
                ),
                "run commands in an existing directory inside the work root",
            ),
        }
    }

    for input in &command.inputs {
        if input.is_empty() {
            ctx.refuse(
                "paths.empty",
                input,
                "an input is the empty string".into(),
                "remove it",
            );
            continue;
        }
        if is_absolute(input) {
            let Some(key) =
                dir_key(input).filter(|k| under_any(&ctx.policy.system_inputs, k, ctx.fold))
            else {
                ctx.refuse(
                    "inputs.outside-root",
                    input,
                    format!("input `{input}` is outside the work root and the policy's system directories"),
                    "inputs must be inside the work root, or under one of the policy's `system_inputs`",
                );
                continue;
            };
            if !log.here {
                continue;
            }
            match std::fs::canonicalize(&key) {
                Ok(real) => {
                    let listed = real
                        .to_str()
                        .is_some_and(|r| under_any(&ctx.policy.system_inputs, r, ctx.fold));
                    if !listed && !ctx.system_canonical.iter().any(|d| real.starts_with(d)) {
                        ctx.refuse(
                            "inputs.outside-root",
                            input,
                            format!("input `{input}` resolves to `{}`, outside the policy's system directories", real.display()),
                            "a symlink in a system directory may not lead out of them",
                        );
                    } else if let Err(crate::InputKindError::NotRegular { kind, .. }) =
                        crate::check_input_kind(&real)
                    {
                        ctx.refuse(
                            "inputs.not-a-file",
                            input,
                            format!("input `{input}` is a {kind}, not a regular file or directory: the tool would block on it or read a device"),
                            "inputs are regular files or directories",
                        );
                    } else {
                        ctx.input_files.push(real);
                    }
                }
                Err(_) if run => ctx.refuse(
                    "inputs.missing",
                    input,
                    format!("input `{input}` does not exist"),
                    "install it, or fix the command's `inputs`",
                ),
                Err(_) => {}
            }
            continue;
        }
        if check_confined(input).is_err() {
            ctx.refuse(
                "inputs.outside-root",
                input,
                format!("input `{input}` is outside the work root"),
                "inputs must be inside the work root",
            );
            continue;
        }
        let Some(key) =
            normalize_under(".", input).map(|k| if ctx.fold { k.to_lowercase() } else { k })
        else {
            continue;
        };
        if key == "." {
            // The root itself (lexically): physically it may be elsewhere.
            if let Lookup::Escapes { via } = ctx.lookup(input) {
                ctx.symlink_escape(input, &via);
                continue;
            }
            // Everything beneath it, judged as an input directory (it
            // holds the log and every output: refused).
            if !ctx.root_dirs.iter().any(|d| d.physical == "." && !d.source) {
                ctx.root_dirs.push(RootDir {
                    subject: input.clone(),
                    physical: ".".to_owned(),
                    source: false,
                    exists: true,
                });
            }
            continue;
        }
        let input_id = log.ids.of(&key);
        // Unjudged, every input may be an earlier command's output.
        let produced = !log.judge || log.written.contains_key(&input_id);
        match ctx.lookup(input) {
            Lookup::Escapes { via } => {
                ctx.symlink_escape(input, &via);
                continue;
            }
            Lookup::Inside {
                kind: Kind::Missing,
            } if run && !produced => ctx.refuse(
                "inputs.missing",
                input,
                format!("input `{input}` does not exist and no earlier command writes it"),
                "create it before running, or order the command after the one that writes it",
            ),
            Lookup::Inside { kind: Kind::Other } => {
                let at = ctx.fs.root().join(ctx.native(input).as_ref());
                let kind = match crate::check_input_kind(&at) {
                    Err(crate::InputKindError::NotRegular { kind, .. }) => kind,
                    _ => "special file",
                };
                ctx.refuse(
                    "inputs.not-a-file",
                    input,
                    format!(
                        "input `{input}` is a {kind}, not a regular file or directory: the tool would block on it or read a device"
                    ),
                    "inputs are regular files or directories; the executor checks again right before the command runs (`policy::check_input_kind`)",
                );
                continue;
            }
            Lookup::Inside { kind } => {
                let native = ctx.native(input).into_owned();
                if let Some(physical) = ctx.fs.physical(&native) {
                    let lower = physical.to_lowercase();
                    if let Some(p) = log.protected.iter().find(|p| **p == lower) {
                        // Regression (hardening): a symlink to the log, or
                        // the log itself, declared as an input was granted.
                        ctx.refuse(
                            "inputs.protected",
                            input,
                            format!(
                                "input `{input}` is `{p}`, which replay itself reads or writes"
                            ),
                            "the log, the policy, the journal and replay's lock are never inputs",
                        );
                        continue;
                    }
                    if kind == Kind::Dir {
                        // A directory grants everything beneath it: judged
                        // as `-I` and `-L` values are (regression: `.` as
                        // an input gave a tool the whole root).
                        let physical = if physical.is_empty() {
                            ".".to_owned()
                        } else {
                            physical
                        };
                        if !ctx
                            .root_dirs
                            .iter()
                            .any(|d| d.physical == physical && !d.source)
                        {
                            ctx.root_dirs.push(RootDir {
                                subject: input.clone(),
                                physical,
                                source: false,
                                exists: true,
                            });
                        }
                    } else {
                        let at = if physical.is_empty() {
                            ctx.fs.root().to_path_buf()
                        } else {
                            ctx.fs.root().join(physical)
                        };
                        if !ctx.input_files.contains(&at) {
                            ctx.input_files.push(at);
                        }
                    }
                }
            }
        }
        if !produced && !log.read_early.contains_key(&input_id) {
            log.read_early.insert(input_id, id);
        }
    }

    // Input directories in the root, now that this command's outputs and
    // the earlier ones are known.
    for dir in std::mem::take(&mut ctx.root_dirs) {
        root_dir(ctx, log, &dir);
    }

    for output in &command.outputs {
        if output.is_empty() {
            ctx.refuse(
                "paths.empty",
                output,
                "an output is the empty string".into(),
                "remove it",
            );
            continue;
        }
        let key = if check_confined(output).is_ok() {
            normalize_under(".", output)
        } else {
            None
        };
        let Some(key) = key.map(|k| if ctx.fold { k.to_lowercase() } else { k }) else {
            ctx.refuse(
                "outputs.outside-root",
                output,
                format!("output `{output}` is not a file inside the work root"),
                "write outputs inside the work root",
            );
            continue;
        };
        let lower = key.to_lowercase();
        if let Some(p) = log.protected.iter().find(|p| {
            **p == lower
                || p.strip_prefix(lower.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            ctx.refuse(
                "outputs.protected",
                output,
                format!(
                    "output `{output}` would overwrite `{p}`, which replay itself reads or writes"
                ),
                "the log, the policy and the journal are never outputs; write elsewhere",
            );
            continue;
        }
        match ctx.lookup(output) {
            Lookup::Escapes { via } => {
                ctx.symlink_escape(output, &via);
                continue;
            }
            Lookup::Inside {
                kind: Kind::Dir | Kind::Other,
            } => {
                ctx.refuse(
                    "outputs.not-a-file",
                    output,
                    format!("output `{output}` exists and is not a regular file"),
                    "outputs are regular files",
                );
                continue;
            }
            Lookup::Inside { kind: Kind::Linked } => {
                ctx.refuse(
                    "outputs.hard-link",
                    output,
                    format!(
                        "output `{output}` has other hard links; writing it would change them too"
                    ),
                    "remove the file (or its other links) before running",
                );
                continue;
            }
            Lookup::Inside { .. } => {}
        }
        // Every check above and below compares paths as written; a path
        // through a symlink inside the root (`here/log.json` with `here ->
        // .`) would name a protected file, or another command's output,
        // under a second spelling. Outputs are therefore written only
        // where they physically are.
        if let Some(physical) = ctx.symlinked_as(output) {
            ctx.refuse(
                "outputs.through-symlink",
                output,
                format!("output `{output}` goes through a symlink (it is `{physical}`)"),
                "name outputs by their real path inside the work root",
            );
            continue;
        }
        if !log.judge {
            continue;
        }
        let output_id = log.ids.of(&key);
        if let Some(&writer) = log.written.get(&output_id) {
            let message = if writer == id {
                format!("output `{output}` is listed twice")
            } else {
                format!("output `{output}` is already written by command {writer}")
            };
            ctx.refuse(
                "outputs.duplicate",
                output,
                message,
                "each file may be written by one command only",
            );
            continue;
        }
        if let Some(&reader) = log.read_early.get(&output_id).filter(|r| **r != id) {
            ctx.refuse(
                "outputs.read-before-write",
                output,
                format!("command {reader} reads `{output}` before this command writes it"),
                "order the commands so each file is written before it is read",
            );
        }
        log.written.insert(output_id, id);
        // No output may land in a directory an earlier command reads
        // whole: it would read (or have read) a file nobody declared.
        let mut refused = false;
        for dir in ancestors(&key) {
            let dir_id = log.ids.of(dir);
            if let Some(&reader) = log.read_dirs.get(&dir_id).filter(|r| **r != id) {
                if !refused {
                    ctx.refuse(
                        "outputs.in-input-dir",
                        output,
                        format!("output `{output}` is in `{dir}`, which command {reader} reads as an input directory"),
                        "write outputs outside the directories commands give as `-I`, `-L` ...",
                    );
                    refused = true;
                }
            }
            let n = log.out_dirs.get(&dir_id).copied().unwrap_or(0);
            log.out_dirs.insert(dir_id, n + 1);
        }
    }
}

/// Checks a directory in the root the tool will read whole: it may not
/// hold a protected file (the log), a declared output of this or an
/// earlier command (besides this command's declared inputs), a fifo, a
/// socket, a device or a symlink out of the root. A compile's source
/// directory that fails is left out, not refused.
fn root_dir(ctx: &mut Ctx<'_>, log: &mut LogState<'_>, dir: &RootDir) {
    let key = if ctx.fold {
        dir.physical.to_lowercase()
    } else {
        dir.physical.clone()
    };
    let lower = key.to_lowercase();
    let mut problem: Option<(&'static str, String)> = None;
    if let Some(p) = log.protected.iter().find(|p| is_under(p, &lower)) {
        problem = Some((
            "inputs.dir-holds-output",
            format!("it holds `{p}`, which replay itself reads or writes"),
        ));
    } else if let Some(o) = ctx.outputs.iter().find(|o| is_under(o, &key)) {
        problem = Some((
            "inputs.dir-holds-output",
            format!("it holds `{o}`, an output of this command"),
        ));
    } else if log.judge {
        let held = log.out_dirs.get(&log.ids.of(&key)).copied().unwrap_or(0);
        let declared = ctx
            .inputs
            .iter()
            .filter(|i| is_under(i, &key) && log.written.contains_key(&log.ids.of(i)))
            .count() as u64;
        if held > declared {
            problem = Some((
                "inputs.dir-holds-output",
                "it holds outputs of earlier commands that this command does not declare as inputs"
                    .into(),
            ));
        }
    }
    if problem.is_none() && dir.exists {
        problem = match ctx.dir_cache.root.get(&dir.physical).filter(|_| log.judge) {
            Some(hit) => hit.clone(),
            None => {
                let found = crate::dirs::walk_root(ctx, &dir.physical);
                if log.judge {
                    ctx.dir_cache.remember_root(&dir.physical, &found);
                }
                found
            }
        };
    }
    if let Some((rule, message)) = problem {
        if !dir.source {
            let shown = if dir.physical == "." {
                "the work root".to_owned()
            } else {
                format!("`{}`", dir.physical)
            };
            ctx.refuse(
                rule,
                &dir.subject,
                format!("input directory `{}` ({shown}): {message}", dir.subject),
                "a tool may read everything beneath an input directory; use one that holds only inputs",
            );
        }
        return;
    }
    if log.judge && !dir.source {
        let dir_id = log.ids.of(&key);
        if !log.read_dirs.contains_key(&dir_id) {
            log.read_dirs.insert(dir_id, ctx.id);
        }
    }
    let at = if dir.physical == "." {
        ctx.fs.root().to_path_buf()
    } else {
        ctx.fs.root().join(&dir.physical)
    };
    if dir.exists && at.is_dir() && !ctx.input_dirs.contains(&at) {
        ctx.input_dirs.push(at);
    }
}

/// The root-relative path of `p` if it is inside `root` (canonical).
fn inside_root(root: &Path, p: &Path) -> Option<String> {
    let abs = match std::fs::canonicalize(p) {
        Ok(c) => c,
        Err(_) => {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::canonicalize(parent).ok()?.join(p.file_name()?)
        }
    };
    let rel = abs.strip_prefix(root).ok()?;
    Some(rel.to_str()?.to_owned())
}

fn env(ctx: &mut Ctx<'_>, requested: &BTreeMap<String, String>) -> BTreeMap<String, String> {
    let mut env = ctx.policy.env.set.clone();
    for (name, value) in requested {
        if never_from_log(name) {
            ctx.refuse(
                "env.forbidden",
                name,
                format!("`{name}` can never come from a log: it changes which code runs or where tools look"),
                "remove it from the command's `env`; the tool gets a clean environment",
            );
            continue;
        }
        let Some(rule) = ctx.policy.env.allow.get(name) else {
            ctx.refuse(
                "env.not-allowed",
                name,
                format!("`{name}` is not a variable the policy lets a log set"),
                "remove it, or allow it (with a value constraint) under `[env.allow]`",
            );
            continue;
        };
        let ok = match rule {
            ValueRule::Enum(values) => values.iter().any(|v| v == value),
            ValueRule::Pattern(re) => re.is_match(value),
            ValueRule::Range(lo, hi) => {
                value.parse::<i64>().is_ok_and(|n| (*lo..=*hi).contains(&n))
            }
            _ => false,
        };
        if ok {
            env.insert(name.clone(), value.clone());
        } else {
            ctx.refuse(
                "env.bad-value",
                name,
                format!("`{name}={value}` is not an allowed value"),
                "use a value the policy's `[env.allow]` constraint accepts",
            );
        }
    }
    env
}

impl Ctx<'_> {
    /// Records a finding; unverified ones count as refused when strict.
    pub(crate) fn push(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
        status: Status,
    ) {
        let status = if status == Status::Unverified && self.strict {
            Status::Refused
        } else {
            status
        };
        self.findings.push(Finding {
            id: Some(self.id),
            rule,
            subject: subject.to_owned(),
            message,
            hint: hint.to_owned(),
            status,
        });
    }

    /// Records a broken rule.
    pub(crate) fn refuse(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
    ) {
        self.push(rule, subject, message, hint, Status::Refused);
    }

    /// Records a rule that cannot be checked here.
    pub(crate) fn unverified(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
    ) {
        self.push(rule, subject, message, hint, Status::Unverified);
    }

    /// Records a path that leaves the root through a symlink.
    pub(crate) fn symlink_escape(&mut self, subject: &str, via: &str) {
        self.refuse(
            "paths.symlink-escape",
            subject,
            format!("`{subject}` leads out of the work root through `{via}`"),
            "remove the symlink, or use a path that stays inside the work root",
        );
    }

    /// The root-relative key of a path relative to the command's cwd.
    pub(crate) fn relative_key(&self, path: &str) -> Option<String> {
        if is_absolute(path) {
            return None;
        }
        let k = normalize_under(&self.cwd, path)?;
        Some(if self.fold { k.to_lowercase() } else { k })
    }

    /// The key of an absolute path (no `.` or `..` allowed).
    pub(crate) fn absolute_key(&self, path: &str) -> Option<String> {
        dir_key(path).map(|k| if self.fold { k.to_lowercase() } else { k })
    }

    /// Where a root-relative path leads on disk. A Windows log's `\\` is a
    /// separator there, so it is one here too.
    pub(crate) fn lookup(&mut self, raw: &str) -> Lookup {
        let native = self.native(raw);
        self.fs.lookup(&native)
    }

    /// Where the root-relative `raw` physically is, if that is not where
    /// it says (it goes through a symlink inside the root).
    pub(crate) fn symlinked_as(&mut self, raw: &str) -> Option<String> {
        let native = self.native(raw).into_owned();
        let physical = self.fs.physical(&native)?;
        let written = normalize_under(".", &native).filter(|w| w != ".");
        (Some(&physical) != written.as_ref()).then_some(physical)
    }

    /// `raw` with the log platform's separators made `/`.
    pub(crate) fn native<'s>(&self, raw: &'s str) -> std::borrow::Cow<'s, str> {
        if self.policy.os == Os::Windows && raw.contains('\\') {
            std::borrow::Cow::Owned(raw.replace('\\', "/"))
        } else {
            std::borrow::Cow::Borrowed(raw)
        }
    }

    /// The path under the cwd as the kernel would follow it from the root.
    pub(crate) fn raw_under_cwd(&self, path: &str) -> String {
        match self.raw_cwd {
            "." | "" => path.to_owned(),
            cwd => format!("{cwd}/{path}"),
        }
    }

    /// Whether `key` is one of the command's declared inputs.
    pub(crate) fn is_declared_input(&self, key: &str) -> bool {
        self.inputs.iter().any(|i| i == key)
    }

    /// Whether `key` is one of the command's declared outputs.
    pub(crate) fn is_declared_output(&self, key: &str) -> bool {
        self.outputs.iter().any(|o| o == key)
    }

    /// Whether the absolute `key` is under one of the system input dirs.
    pub(crate) fn under_system(&self, key: &str) -> bool {
        under_any(&self.policy.system_inputs, key, self.fold)
    }
}

/// Whether `key` is one of `dirs` or under one.
/// With `fold`, both sides compare ignoring case.
pub(crate) fn under_any(dirs: &[String], key: &str, fold: bool) -> bool {
    let key = if fold {
        key.to_lowercase()
    } else {
        key.to_owned()
    };
    dirs.iter().any(|d| {
        let d = if fold { d.to_lowercase() } else { d.clone() };
        d == "/" || key == d || key.strip_prefix(&d).is_some_and(|r| r.starts_with('/'))
    })
}
