//! The streaming checker: [`Checker`] judges a log's header, then each
//! command as the reader hands it over, then the end of the log. It holds
//! what lives across commands and calls the rules ([`crate::rules`]) on
//! each command, in order: its binary, its arguments, its paths, its
//! environment; then it turns their findings into a [`Verdict`].
//!
//! Memory stays flat in what a command holds: across commands it keeps only
//! what whole-log rules need (the set of outputs written so far with their
//! writer, and the root paths read before anything wrote them) and a cache
//! of binary checks per (tool, program). Once those tables hold
//! [`DEFAULT_SPILL_AFTER`] paths, they stop growing: each later read and
//! write of a path is spilled to a temporary file and judged after the
//! stream ([`crate::rules::late`]), with the same findings.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use cmdlog::path::{is_absolute, normalize_under};
use cmdlog::path_ids::{PathIdMap, PathIds};
use cmdlog::{Command, Header, Os, ToolKind};

use crate::ctx::{Ctx, DirCache};
use crate::error::CheckerError;
use crate::load::dir_key;
use crate::model::Policy;
use crate::rootfs::RootFs;
use crate::rules::binary::{self, BinaryCheck, Host};
use crate::rules::late::{Late, Recount};
use crate::rules::paths::{inside_root, paths, LogState};
use crate::rules::{args, env};
use crate::spill::{DEFAULT_RUN_RECORDS, DEFAULT_SPILL_AFTER};
use crate::verdict::{
    CheckOptions, ExecAllowed, Finding, LinkerReads, Mode, Resolved, Status, Verdict,
};

/// How many (tool, program) binary checks are remembered.
const BINARY_CACHE_MAX: usize = 4096;

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
    /// Whether verdicts say how to run their command (all but a pass
    /// that only judges: see [`Checker::judge_only`]).
    resolve: bool,
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
    /// Links earlier `symlink` commands make (root-relative keys): a
    /// `rename` of one is refused (see [`crate::rules::builtin`]).
    links: HashSet<String>,
    commands: u64,
    /// The previous command's id: ids must strictly increase.
    last_id: Option<u64>,
    /// Paths `written` and `read_early` may hold before spilling.
    spill_after: usize,
    /// Records a spill sorts in memory at once.
    run_records: usize,
    /// The spilled reads and writes, once spilling began.
    late: Option<Late>,
    /// The first error spilling (the log is then refused).
    late_error: Option<std::io::Error>,
}

/// What [`Checker::finish`] tells besides its findings (which are about
/// the whole log, `id` `None`, or, for a spilled log, about commands the
/// whole-log rules refuse after the stream).
#[derive(Debug, Default)]
pub struct End {
    /// Commands those later findings refuse, by the status they were
    /// given when judged (to move from that count to refused).
    pub recount: Recount,
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
            resolve: true,
            binaries: HashMap::new(),
            binaries_cached: 0,
            kind_binaries: HashMap::new(),
            dir_cache: DirCache::default(),
            out_dirs: PathIdMap::default(),
            read_dirs: PathIdMap::default(),
            links: HashSet::new(),
            commands: 0,
            last_id: None,
            spill_after: DEFAULT_SPILL_AFTER,
            run_records: DEFAULT_RUN_RECORDS,
            late: None,
            late_error: None,
        })
    }

    /// Spills the whole-log rules' paths once the tables hold `paths` of
    /// them, sorting `run_records` records in memory at a time (the
    /// defaults are [`DEFAULT_SPILL_AFTER`] and [`DEFAULT_RUN_RECORDS`];
    /// tests force tiny ones).
    pub fn spill_after(mut self, paths: usize, run_records: usize) -> Self {
        self.spill_after = paths;
        self.run_records = run_records.max(1);
        self
    }

    /// Whether the whole-log rules' paths are being spilled to disk.
    pub fn spilling(&self) -> bool {
        self.late.is_some()
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

    /// For a pass that only judges (`replay check`, a run's first pass):
    /// verdicts carry no [`Resolved`], which such a pass would drop; their
    /// status and findings are the same.
    pub fn judge_only(mut self) -> Self {
        self.resolve = false;
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
        let builtin = command.tool.is_builtin();
        match policy.tools.get(&command.tool) {
            _ if builtin => crate::rules::builtin::builtin(
                &mut ctx,
                command,
                &mut self.links,
                self.judge_whole_log,
            ),
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
                    args = args::check(&mut ctx, grammar, &command.args);
                }
                crate::rules::derived::derived(&mut ctx, command);
            }
        }

        // Paths, and the whole-log rules on them: spilled once the tables
        // are full.
        if self.judge_whole_log
            && self.late.is_none()
            && self.late_error.is_none()
            && self.written.len() + self.read_early.len() >= self.spill_after
        {
            match Late::new(self.run_records) {
                Ok(late) => self.late = Some(late),
                Err(error) => self.late_error = Some(error),
            }
        }
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
            late: self.late.as_mut(),
            late_error: &mut self.late_error,
        };
        paths(&mut ctx, &mut log, command);

        // Environment (a built-in asks for none: judged above).
        let env = if builtin {
            Default::default()
        } else {
            env::env(&mut ctx, &command.env)
        };

        let findings = ctx.findings;
        let linker_reads = ctx.linker_reads;
        let input_dirs = ctx.input_dirs;
        let input_files = ctx.input_files;
        let status = findings
            .iter()
            .map(|f| f.status)
            .max()
            .unwrap_or(Status::Allowed);
        if let Some(late) = &mut self.late {
            if let Err(error) = late.status(command.id, &command.tool, status) {
                self.late_error.get_or_insert(error);
            }
        }
        let resolved = match (resolved_program, status) {
            (Some(program), Status::Allowed | Status::Unverified) if self.resolve => {
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

    /// Judges the end of the log: a log with no command, and, if the
    /// checker spilled, the whole-log rules on the spilled paths. Each
    /// finding goes to `sink`, with the tool of the command it is about
    /// (those about commands come in log order); the
    /// returned [`End`] says which commands they refuse that were counted
    /// otherwise. A spill that cannot be written or read refuses the log.
    pub fn finish(self, sink: &mut dyn FnMut(Option<&ToolKind>, Finding)) -> End {
        let mut end = End::default();
        let mut error = self.late_error;
        if let (Some(late), None) = (self.late, error.as_ref()) {
            match late.judge(&self.written, &self.read_early, sink) {
                Ok(recount) => end.recount = recount,
                Err(failed) => error = Some(failed),
            }
        }
        if let Some(error) = error {
            sink(
                None,
                Finding {
                    id: None,
                    rule: "log.spill-failed",
                    subject: String::new(),
                    message: format!(
                    "the whole-log rules could not be judged: their temporary file failed: {error}"
                ),
                    hint: "free space in the temporary directory (`TMPDIR`), then check again"
                        .into(),
                    status: Status::Refused,
                },
            );
        }
        if self.commands == 0 {
            sink(
                None,
                Finding {
                    id: None,
                    rule: "log.empty",
                    subject: String::new(),
                    message: "the log has no commands".into(),
                    hint: "nothing to run; check that the producer wrote its commands".into(),
                    status: Status::Unverified,
                },
            );
        }
        end
    }
}
