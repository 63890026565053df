//! A session: the work of one `replay` invocation, from validated options
//! to an outcome, callable in-process (the binary is clap and rendering
//! over this). It holds every decision a run makes before the first tool
//! starts: the policy's required sandbox layers against the probe, the
//! signals that stop a run, the subreaper, the launcher, which reporters
//! hear the session, and driver mode's producer.
//!
//! Both passes speak through one set of reporters: [`check`] builds them
//! for `replay check`, [`run`] and [`drive`] for a run, whose check pass
//! they hear before its run pass.

use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cmdlog::Problem;
use policy::{Mode, Policy, PolicyError, Status};

use crate::audit::{self, AuditError, Footprint};
use crate::cached::CacheOptions;
use crate::drive::DriveError;
use crate::event::{Checked, Event, Reporter, Reporters};
use crate::execute::{execute, ExecuteError, ExecuteOptions, RunStatus};
use crate::job::{Job, JobError};
use crate::lock::{LockError, RootLock};
use crate::ownfile::OwnFileError;
pub use crate::report::Format;
use crate::report::{Document, HumanReporter, ProgressReporter, Verbosity};
use crate::run::capture::Sink;
use crate::sandbox::Want;
use crate::ReplayExitCode;

/// Where driver mode keeps the producer's log, under the work root.
pub const DRIVE_LOG: &str = "replay-drive.log.json";

/// Which policy judges a log, and where its paths are resolved.
#[derive(Debug, Clone)]
pub struct Target {
    /// The policy file (TOML).
    pub policy: PathBuf,
    /// The work root [default: the directory that holds the log; for
    /// `drive`, the current directory].
    pub root: Option<PathBuf>,
}

/// How tools run: the options of a run and of `drive`, validated.
#[derive(Debug, Clone)]
pub struct RunSettings {
    /// After a tool fails, run what does not depend on its outputs.
    pub keep_going: bool,
    /// Skip commands the journal shows done with their outputs unchanged.
    pub resume: bool,
    /// Also write reports to these files, each in its format.
    pub report: Vec<(PathBuf, Format)>,
    /// A timeout tighter than the policy's.
    pub timeout: Option<Duration>,
    /// A memory limit tighter than the policy's, in bytes.
    pub max_rss: Option<u64>,
    /// Time between SIGTERM and SIGKILL on timeout.
    pub grace: Duration,
    /// How often each tool's process tree is sampled.
    pub sample_interval: Duration,
    /// The `replay` binary re-executed as each tool's sandbox launcher
    /// [default: this process's own executable].
    pub launcher: Option<PathBuf>,
    /// The action cache, if the run uses one.
    pub cache: Option<CacheOptions>,
    /// Tools run at once at most (1: one at a time, in order).
    pub jobs: usize,
    /// The memory budget of a parallel run [default: 80% of
    /// `MemAvailable` at the start].
    pub memory_budget: Option<u64>,
    /// Per tool kind, the peak to assume when nothing was measured.
    pub predict: std::collections::BTreeMap<String, u64>,
    /// How much the report for people says.
    pub verbosity: Verbosity,
}

impl Default for RunSettings {
    fn default() -> Self {
        RunSettings {
            keep_going: false,
            resume: false,
            report: Vec::new(),
            timeout: None,
            max_rss: None,
            grace: Duration::from_secs(2),
            sample_interval: Duration::from_millis(5),
            launcher: None,
            cache: None,
            jobs: 1,
            memory_budget: None,
            predict: Default::default(),
            verbosity: Verbosity::Normal,
        }
    }
}

/// Where a session writes: its reports, and the tools' own output.
#[derive(Clone)]
pub struct Console {
    /// Standard output: `replay check`'s verdicts, tools' stdout.
    pub stdout: Sink,
    /// Standard error: a run's report for people, tools' stderr.
    pub stderr: Sink,
    /// A progress bar (on a terminal): output is written around it.
    pub bar: Option<indicatif::ProgressBar>,
}

impl Console {
    /// The process's own standard streams, with a progress bar if stderr
    /// is a terminal.
    pub fn terminal() -> Console {
        let bar = ProgressReporter::terminal_bar();
        Console {
            stdout: Arc::new(Mutex::new(BarWriter::new(bar.clone(), io::stdout()))),
            stderr: Arc::new(Mutex::new(BarWriter::new(bar.clone(), io::stderr()))),
            bar,
        }
    }

    fn progress(&self, verbosity: Verbosity) -> ProgressReporter {
        match (&self.bar, verbosity) {
            (Some(bar), _) => ProgressReporter::bar(bar.clone()),
            (None, Verbosity::Quiet) => ProgressReporter::lines(Box::new(io::sink())),
            (None, _) => {
                ProgressReporter::lines(Box::new(SinkWriter::new(Arc::clone(&self.stderr))))
            }
        }
    }
}

/// What `replay cache` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheAction {
    /// Print entries, bytes and counters.
    Stats,
    /// Evict down to the cap; drop unreferenced blobs.
    Gc,
    /// Rehash every blob; evict what does not match.
    Verify,
    /// Remove everything.
    Clear,
}

/// Why a session did not succeed: what, and what the user can do
/// ([`SessionError::hint`]), with the exit code it ends in
/// ([`SessionError::code`]).
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The command line was incomplete.
    #[error("{0}")]
    Usage(String),
    /// The log, the root or the policy path is unusable.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The policy does not load.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The check pass could not judge the log.
    #[error(transparent)]
    Audit(AuditError),
    /// `replay check`: the policy refused the log (the findings said why).
    #[error("the policy refused the log")]
    CheckRefused,
    /// `check --here`: inputs are missing (and nothing else is wrong).
    #[error("{0} input(s) of the log are missing here: neither in the work root nor made by an earlier command (see above)")]
    InputsMissing(u64),
    /// A run: the policy refused the log, so nothing ran.
    #[error("the policy refused the log: nothing ran")]
    Refused,
    /// The policy requires a sandbox layer this machine cannot apply.
    #[error("the policy requires the sandbox layer `{layer}`, which this machine cannot apply ({reason}): nothing ran")]
    LayerMissing {
        /// The layer.
        layer: String,
        /// Why the probe found it missing.
        reason: String,
    },
    /// Another run holds the work root.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// The signal handlers could not be installed.
    #[error("cannot handle signals")]
    Signals(#[source] io::Error),
    /// The launcher binary could not be found.
    #[error("cannot find the replay binary to launch tools")]
    Launcher(#[source] io::Error),
    /// The `--report` file could not be made.
    #[error("cannot write the report")]
    ReportFile(#[source] OwnFileError),
    /// `replay worker` stopped (its `worker::serve::WorkerError`, boxed:
    /// the worker runs its leases through this module, not the reverse).
    #[cfg(feature = "remote-cache")]
    #[error(transparent)]
    Worker(Box<dyn std::error::Error + Send + Sync + 'static>),
    /// A reporter could not write.
    #[error("cannot write the report")]
    Report(#[source] io::Error),
    /// The run could not go on.
    #[error(transparent)]
    Execute(ExecuteError),
    /// A tool failed.
    #[error("a tool failed; the outputs it was writing were not kept")]
    ToolFailed,
    /// A limit stopped a tool.
    #[error("a limit stopped a tool (see its row above)")]
    LimitHit,
    /// A signal asked `replay` to stop.
    #[error("interrupted: the running tool was stopped and its outputs discarded")]
    Interrupted,
    /// The action cache cannot be opened.
    #[error("cannot use the action cache")]
    CacheOpen(#[source] replay_cache::OpenError),
    /// A `replay cache` action failed.
    #[error("the action cache could not be maintained")]
    CacheMaint(#[source] replay_cache::MaintError),
    /// `import`: the database could not be imported.
    #[error(transparent)]
    Import(#[from] replay_import::ImportError),
    /// `import`: the log could not be created.
    #[error("cannot write the imported log")]
    ImportLog(#[source] OwnFileError),
    /// `drive`: the work root is unusable.
    #[error("the work root `{}` is not usable", path.display())]
    Root {
        /// The root as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// `drive`: no producer was given.
    #[error("no producer given after `--`")]
    NoProducer,
    /// `drive`: the producer could not be run or its log kept.
    #[error(transparent)]
    Drive(#[from] DriveError),
    /// `explain`: no rule has this id.
    #[error("no rule is called `{rule}`")]
    UnknownRule {
        /// The id given.
        rule: String,
        /// Rule ids close to it.
        close: Vec<&'static str>,
    },
    /// `policy lint`: the policy loads, with warnings (printed).
    #[error("the policy has {0} warning(s)")]
    PolicyWarnings(usize),
    /// `drive`: the producer succeeded without writing a log.
    #[error("the producer `{program}` exited 0 without writing a log to the descriptor in `REPLAY_LOG_FD`: nothing ran")]
    NoLog {
        /// The producer.
        program: String,
    },
    /// `drive`: the producer failed, so its log is not trusted.
    #[error("{message}")]
    ProducerFailed {
        /// The exit code `replay` ends in.
        code: i32,
        /// What happened to it.
        message: String,
    },
}

impl SessionError {
    /// The exit code this ends `replay` in ([`ReplayExitCode`]).
    pub fn code(&self) -> i32 {
        match self {
            SessionError::CheckRefused
            | SessionError::Refused
            | SessionError::LayerMissing { .. }
            | SessionError::Execute(ExecuteError::Changed { .. }) => ReplayExitCode::DENIED,
            SessionError::ToolFailed | SessionError::PolicyWarnings(_) => {
                ReplayExitCode::TOOL_FAILED
            }
            SessionError::LimitHit => ReplayExitCode::LIMIT,
            SessionError::Interrupted => ReplayExitCode::INTERRUPTED,
            SessionError::ProducerFailed { code, .. } => *code,
            _ => ReplayExitCode::BAD_INPUT,
        }
    }

    /// Whether the reporters already said all there is (nothing to print).
    pub fn is_quiet(&self) -> bool {
        matches!(self, SessionError::CheckRefused)
    }

    /// What the user can do about it, if there is something to say.
    pub fn hint(&self) -> Option<String> {
        let hint = match self {
            SessionError::Job(error) => job_hint(error),
            SessionError::Policy(_) => "fix the policy, or start from one of `policies/*.toml`",
            SessionError::Refused => "see the refusals above (`replay explain RULE` says what a rule refuses and how to allow what is safe); `replay check` audits without running",
            SessionError::InputsMissing(_) => "run the commands or the build step that make them, or fix their paths in the log",
            SessionError::LayerMissing { .. } => "run where the layer is available (e.g. where unprivileged user namespaces are allowed), or drop it from `require_sandbox`",
            SessionError::Lock(error) => return Some(error.hint()),
            #[cfg(feature = "remote-cache")]
            SessionError::Worker(_) => "check the `--server` URL and that the farm serves the Bots API (`!execution` in BuildGrid), and that `--root` is a directory you can write to",
            SessionError::ReportFile(_) => "pass `--report` a path in a directory you can write to",
            SessionError::Execute(ExecuteError::Journal(error)) => return Some(error.hint()),
            SessionError::Execute(ExecuteError::Lock(error)) => return Some(error.hint()),
            SessionError::CacheOpen(_) | SessionError::Execute(ExecuteError::Cache(_)) => {
                "make it a directory of yours that no one else can write to (`chmod go-w`), or pass `--cache DIR` or `--no-cache`"
            }
            SessionError::CacheMaint(_) => "check the cache directory's permissions, or remove it: it holds nothing that cannot be rebuilt",
            SessionError::Execute(_) => {
                "outputs of commands that finished are in place; `--resume` continues"
            }
            SessionError::ToolFailed => {
                "fix the cause, then rerun with `--resume` to skip what finished"
            }
            SessionError::LimitHit => {
                "raise the limit in the policy, or loosen `--timeout`/`--max-rss`"
            }
            SessionError::Interrupted => "rerun with `--resume` to continue",
            SessionError::Root { .. } => "pass an existing directory with `--root`",
            SessionError::Import(_) => {
                "fix the database (or regenerate it: `cmake -DCMAKE_EXPORT_COMPILE_COMMANDS=ON`, `ninja -t compdb`, `bear --`)"
            }
            SessionError::ImportLog(_) => "pass `-o` a path in a directory you can write to",
            SessionError::ProducerFailed { .. } => {
                "fix the producer's error above (or what killed it); its log is not trusted"
            }
            SessionError::UnknownRule { close, .. } if !close.is_empty() => {
                return Some(format!(
                    "did you mean {}? `replay explain` lists every rule",
                    close
                        .iter()
                        .map(|r| format!("`{r}`"))
                        .collect::<Vec<_>>()
                        .join(" or ")
                ))
            }
            SessionError::UnknownRule { .. } => "`replay explain` lists every rule",
            SessionError::NoLog { .. } => "does the producer support driver mode? it must write one v1 log to the descriptor `REPLAY_LOG_FD` names, its paths relative to `REPLAY_ROOT` (`aotc` does, see `docs/aotc.md`); a build tool that cannot is recorded and imported instead (`replay import compdb`)",
            SessionError::Drive(DriveError::Spawn { source, .. })
                if source.kind() == io::ErrorKind::NotFound =>
            {
                "no such program: give its path, or the name of a program on `PATH` (e.g. `replay drive --policy policies/linux.toml -- aotc in.ll -o prog`)"
            }
            SessionError::PolicyWarnings(_) => "see the warnings above, each with its policy key",
            SessionError::Usage(_)
            | SessionError::Audit(_)
            | SessionError::CheckRefused
            | SessionError::Signals(_)
            | SessionError::Launcher(_)
            | SessionError::Report(_)
            | SessionError::NoProducer
            | SessionError::Drive(_) => return None,
        };
        Some(hint.to_owned())
    }
}

fn job_hint(error: &JobError) -> &'static str {
    match error {
        JobError::Log { .. } => "check the path of LOG",
        JobError::Policy { .. } => "pass an existing policy, e.g. `--policy policies/linux.toml`",
        JobError::Root { .. } => "pass an existing directory with `--root`",
        JobError::Snapshot { .. } => {
            "free space there, or set `TMPDIR` to a directory with room for a copy of the log"
        }
        JobError::Malformed { source, .. } => match source.problem {
            Problem::Truncated => "the producer may have died while writing it; regenerate the log",
            Problem::Io(_) => "check that LOG is a readable file",
            _ => "the log is not one this version reads: fix or regenerate it (see `docs/log-v1.schema.json`)",
        },
    }
}

impl From<AuditError> for SessionError {
    fn from(error: AuditError) -> Self {
        match error {
            AuditError::Job(error) => SessionError::Job(error),
            other => SessionError::Audit(other),
        }
    }
}

/// How `replay check` judges and prints.
#[derive(Debug, Clone, Copy)]
pub struct CheckSettings {
    /// Refuse what cannot be verified on this machine.
    pub strict: bool,
    /// Judge as a run here would (`--here`): binaries resolve on this
    /// machine, every input exists or is made by an earlier command, and
    /// the whole-log rules spill as early as a run's.
    pub here: bool,
    /// How the verdicts are printed.
    pub format: Format,
}

/// `replay check`: judges every command of `log`, prints the verdicts on
/// `console.stdout`, runs nothing. `Err(CheckRefused)` if refused; with
/// `here`, `Err(InputsMissing)` if the only refusals are missing inputs
/// (bad input, not the policy's verdict).
pub fn check(
    target: &Target,
    log: &Path,
    settings: CheckSettings,
    console: &Console,
) -> Result<Checked, SessionError> {
    // The document is begun first, so that an unreadable log or policy
    // still leaves one (saying the check did not finish) for CI to read.
    let out = SinkWriter::new(Arc::clone(&console.stdout));
    let reporter = settings
        .format
        .reporter(out, Document::Check, log)
        .map_err(SessionError::Report)?;
    let job = Job::new(log, target.root.as_deref(), &target.policy)?;
    let policy = Policy::load(&job.policy)?;
    let mut counted = MissingInputs {
        inner: reporter,
        missing: 0,
        other: 0,
    };
    // `--here` judges as a run's first pass would, in as little memory.
    let (mode, strict, footprint) = match settings.here {
        true => (Mode::Run, true, Footprint::Lean),
        false => (Mode::Audit, settings.strict, Footprint::Fast),
    };
    let checked = check_pass(&job, &policy, mode, strict, footprint, &mut counted)?;
    if checked.status() == Status::Refused {
        if settings.here && counted.missing > 0 && counted.other == 0 {
            return Err(SessionError::InputsMissing(counted.missing));
        }
        return Err(SessionError::CheckRefused);
    }
    Ok(checked)
}

/// Passes events on, counting the refusals shown: missing inputs, and
/// the rest (`check --here` tells bad input from a refusal by them).
struct MissingInputs {
    inner: Box<dyn Reporter>,
    missing: u64,
    other: u64,
}

impl Reporter for MissingInputs {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::Finding { finding, .. } = event {
            match (finding.rule, finding.status) {
                ("inputs.missing", _) => self.missing += 1,
                (_, Status::Refused) => self.other += 1,
                _ => {}
            }
        }
        self.inner.event(event)
    }
}

/// `replay explain [RULE]`: what `rule` refuses, why, and how to allow
/// what is safe, with its policy keys; without a rule, every rule's id and
/// what it refuses.
pub fn explain(rule: Option<&str>, console: &Console) -> Result<(), SessionError> {
    use policy::explain;
    let mut out = SinkWriter::new(Arc::clone(&console.stdout));
    let text = match rule {
        None => explain::RULES
            .iter()
            .map(|e| format!("{:<30} {}\n", e.rule, e.refuses))
            .collect::<String>(),
        Some(id) => {
            let Some(e) = explain::rule(id) else {
                let mut close: Vec<(usize, &'static str)> = explain::RULES
                    .iter()
                    .map(|e| (strsim::levenshtein(id, e.rule), e.rule))
                    .filter(|(distance, rule)| *distance <= 3 || rule.contains(id))
                    .collect();
                close.sort();
                return Err(SessionError::UnknownRule {
                    rule: id.to_owned(),
                    close: close.into_iter().take(3).map(|(_, r)| r).collect(),
                });
            };
            let keys = if e.keys.is_empty() {
                "(none: no policy key widens it)".to_owned()
            } else {
                e.keys
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            format!(
                "[{}]\n\nrefuses: {}\nwhy:     {}\nallow:   {}\nkeys:    {keys}\n",
                e.rule, e.refuses, e.why, e.allow
            )
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(SessionError::Report)
}

/// `replay policy show FILE`: the policy after `extends`, as TOML.
pub fn policy_show(path: &Path, console: &Console) -> Result<(), SessionError> {
    let policy = Policy::load(path)?;
    let mut out = SinkWriter::new(Arc::clone(&console.stdout));
    out.write_all(policy.to_toml().as_bytes())
        .and_then(|()| out.flush())
        .map_err(SessionError::Report)
}

/// `replay policy lint FILE`: loads the policy (an error if it does not)
/// and prints its warnings; `Err(PolicyWarnings)` if there are any.
pub fn policy_lint(path: &Path, console: &Console) -> Result<(), SessionError> {
    let policy = Policy::load(path)?;
    let lints = policy.lint();
    let mut out = SinkWriter::new(Arc::clone(&console.stdout));
    let mut text = String::new();
    for lint in &lints {
        text.push_str(&format!(
            "warning: `{}`: `{}`: {}\n",
            path.display(),
            lint.key,
            lint.message
        ));
    }
    if lints.is_empty() {
        text.push_str(&format!("`{}`: no warnings\n", path.display()));
    }
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(SessionError::Report)?;
    if lints.is_empty() {
        Ok(())
    } else {
        Err(SessionError::PolicyWarnings(lints.len()))
    }
}

/// `replay --policy FILE LOG`: checks the whole log, then, only if every
/// command passed, runs it. Takes the root's lock first.
pub fn run(
    target: &Target,
    log: &Path,
    settings: &RunSettings,
    console: &Console,
) -> Result<(), SessionError> {
    let job = Job::new(log, target.root.as_deref(), &target.policy)?;
    // One run per root: taken first, so a second run writes nothing (not
    // even its report) while another runs.
    let root_lock = Arc::new(RootLock::acquire(&job.root)?);
    let mut reporters = reporters(settings, console, log)?;
    run_job(&job, settings, console, &mut reporters, root_lock)
}

/// `replay drive -- PROGRAM ARGS`: starts the producer with a pipe for its
/// log, then checks and runs what it logged, as [`run`] does.
pub fn drive(
    target: &Target,
    program: &[OsString],
    settings: &RunSettings,
    console: &Console,
) -> Result<(), SessionError> {
    let root = target.root.clone().unwrap_or_else(|| PathBuf::from("."));
    let root = root
        .canonicalize()
        .map_err(|source| SessionError::Root { path: root, source })?;
    // Fail on a bad policy before the (expensive) producer runs.
    Policy::load(&target.policy)?;
    let Some((program, rest)) = program.split_first() else {
        return Err(SessionError::NoProducer);
    };
    // One run per root, from before the producer writes the log there.
    let root_lock = Arc::new(RootLock::acquire(&root)?);
    let log = root.join(DRIVE_LOG);
    let mut reporters = reporters(settings, console, &log)?;
    let produced = crate::drive::produce(
        program,
        rest,
        &root,
        &log,
        cmdlog::Limits::default().max_log_bytes,
    )?;
    reporters
        .event(&Event::Producer(&produced))
        .map_err(SessionError::Report)?;
    if !produced.exit.success() {
        let (code, message) = crate::drive::producer_failure(&produced.program, produced.exit);
        return Err(SessionError::ProducerFailed { code, message });
    }
    if produced.log_bytes == 0 {
        return Err(SessionError::NoLog {
            program: produced.program.clone(),
        });
    }
    let job = Job::new(&log, Some(&root), &target.policy)?;
    run_job(&job, settings, console, &mut reporters, root_lock)
}

/// What `replay import compdb` imports, and where it writes.
#[derive(Debug, Clone)]
pub struct ImportSettings {
    /// The JSON Compilation Database.
    pub database: PathBuf,
    /// The log to write [default: `replay.log.json` in the root].
    pub log: Option<PathBuf>,
    /// The work root [default: the database's directory].
    pub root: Option<PathBuf>,
    /// A policy to check the imported log with, if any.
    pub policy: Option<PathBuf>,
}

/// The log `replay import` writes by default, in the work root.
pub const IMPORT_LOG: &str = "replay.log.json";

/// `replay import compdb`: writes the database's commands as a v1 log,
/// prints what was left out on `console.stdout`, and with a policy checks
/// the log (`Err(CheckRefused)` if it would refuse a command: the log is
/// written all the same, for the user to read).
pub fn import(settings: &ImportSettings, console: &Console) -> Result<(), SessionError> {
    let root = match &settings.root {
        Some(root) => root.clone(),
        None => settings
            .database
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    };
    let root = root
        .canonicalize()
        .map_err(|source| SessionError::Root { path: root, source })?;
    let log = settings
        .log
        .clone()
        .unwrap_or_else(|| root.join(IMPORT_LOG));
    // Fail on a bad policy before anything is written.
    let policy = settings.policy.as_deref().map(Policy::load).transpose()?;
    let log_in_root = log
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| Path::new(".").canonicalize(), Path::canonicalize)
        .ok()
        .and_then(|dir| {
            let name = log.file_name()?;
            let rel = dir
                .join(name)
                .strip_prefix(&root)
                .ok()?
                .to_str()?
                .to_owned();
            Some(rel)
        });
    let options = replay_import::Options {
        root: root.clone(),
        log: log_in_root,
    };
    let imported = replay_import::import_file(&settings.database, &options)?;
    let file = crate::ownfile::create_fresh(&log).map_err(SessionError::ImportLog)?;
    replay_import::write_log(&imported, io::BufWriter::new(file))?;
    let mut out = SinkWriter::new(Arc::clone(&console.stdout));
    crate::import::describe(&imported, &log.display().to_string(), &mut out)
        .map_err(SessionError::Report)?;
    let (Some(policy), Some(policy_path)) = (policy, &settings.policy) else {
        return Ok(());
    };
    let job = Job::new(&log, Some(&root), policy_path)?;
    // Ungrouped: the entry names are printed between findings.
    let mut human = HumanReporter::new(SinkWriter::new(Arc::clone(&console.stdout))).ungrouped();
    let mut named = crate::import::EntryNames {
        out: SinkWriter::new(Arc::clone(&console.stdout)),
        inner: &mut human,
        sources: &imported.sources,
        writes: imported
            .commands
            .iter()
            .map(|c| c.outputs.last().cloned().unwrap_or_default())
            .collect(),
        named: std::collections::HashSet::new(),
    };
    let checked = check_pass(
        &job,
        &policy,
        Mode::Audit,
        false,
        Footprint::Fast,
        &mut named,
    )?;
    if checked.status() == Status::Refused {
        return Err(SessionError::CheckRefused);
    }
    Ok(())
}

/// `replay cache ACTION`: prints what the action cache holds, or maintains
/// it, on `console.stdout`.
pub fn cache(
    action: CacheAction,
    options: &CacheOptions,
    console: &Console,
) -> Result<(), SessionError> {
    use replay_cache::Store;
    let store = Store::open(&options.dir, options.max_size).map_err(SessionError::CacheOpen)?;
    let mut out = SinkWriter::new(Arc::clone(&console.stdout));
    let dir = options.dir.display();
    let text = match action {
        CacheAction::Stats => {
            let stats = store.stats().map_err(SessionError::CacheMaint)?;
            format!(
                "cache `{dir}`: {} entries, {} (cap {})\n\
                 {} hits, {} misses, {} evictions; hits saved {} of outputs and {} of tool time\n\
                 remote: {} hits, {} misses, {} uploads; {} downloaded, {} uploaded\n",
                stats.entries,
                crate::report::bytes(stats.bytes),
                crate::report::bytes(options.max_size),
                stats.hits,
                stats.misses,
                stats.evictions,
                crate::report::bytes(stats.bytes_saved),
                crate::report::seconds(stats.ms_saved),
                stats.remote.remote_hits,
                stats.remote.remote_misses,
                stats.remote.remote_uploads,
                crate::report::bytes(stats.remote.remote_bytes_down),
                crate::report::bytes(stats.remote.remote_bytes_up),
            )
        }
        CacheAction::Gc => {
            let gc = store.gc().map_err(SessionError::CacheMaint)?;
            format!(
                "cache `{dir}`: evicted {} entries, removed {} blobs; {} now\n",
                gc.evicted,
                gc.blobs_removed,
                crate::report::bytes(gc.bytes)
            )
        }
        CacheAction::Verify => {
            let verify = store.verify().map_err(SessionError::CacheMaint)?;
            let mut text = format!(
                "cache `{dir}`: checked {} blobs, {} bad (removed), {} entries evicted\n",
                verify.checked,
                verify.bad.len(),
                verify.evicted
            );
            for bad in &verify.bad {
                text.push_str(&format!("  bad: {}\n", bad.display()));
            }
            text
        }
        CacheAction::Clear => {
            store.clear().map_err(SessionError::CacheMaint)?;
            format!("cache `{dir}`: cleared\n")
        }
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(SessionError::Report)
}

/// The reporters of a run: progress, the report for people on stderr,
/// and each `--report` file in its format (about `log`).
fn reporters(
    settings: &RunSettings,
    console: &Console,
    log: &Path,
) -> Result<Reporters, SessionError> {
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(console.progress(settings.verbosity)),
        Box::new(
            HumanReporter::new(SinkWriter::new(Arc::clone(&console.stderr)))
                .with_verbosity(settings.verbosity),
        ),
    ];
    for (path, format) in &settings.report {
        // A name planted there (a link to a file elsewhere, a FIFO) is
        // unlinked, never written through.
        let file = crate::ownfile::create_fresh(path).map_err(SessionError::ReportFile)?;
        reporters.push(
            format
                .reporter(file, Document::Run, log)
                .map_err(SessionError::Report)?,
        );
    }
    Ok(Reporters(reporters))
}

/// The check pass, told to `reporter` from its first finding to its end.
fn check_pass(
    job: &Job,
    policy: &Policy,
    mode: Mode,
    strict: bool,
    footprint: Footprint,
    reporter: &mut dyn Reporter,
) -> Result<Checked, SessionError> {
    let mut checked = audit::audit(job, policy, mode, strict, footprint, reporter)?;
    checked.replay_peak_rss = crate::run::trace::own_peak_rss();
    reporter
        .event(&Event::Checked(&checked))
        .map_err(|e| SessionError::Audit(AuditError::Output(e)))?;
    Ok(checked)
}

/// Validates the whole log, then runs it: the heart of a run.
fn run_job(
    job: &Job,
    settings: &RunSettings,
    console: &Console,
    reporters: &mut Reporters,
    root_lock: Arc<RootLock>,
) -> Result<(), SessionError> {
    let policy = Policy::load(&job.policy)?;
    // Both passes read a private copy: a tool may write in the root.
    let (job, _snapshot) = job.snapshot()?;
    let checked = check_pass(&job, &policy, Mode::Run, true, Footprint::Lean, reporters)?;
    if checked.status() != Status::Allowed {
        return Err(SessionError::Refused);
    }
    // Held until the run ends: a worker runs one session per lease, and
    // handlers left behind would pile up with every lease.
    let stops = StopSignals::register().map_err(SessionError::Signals)?;
    let options = execute_options(&policy, settings, console, root_lock, stops.flag())?;
    let (status, _) = execute(&job, &policy, &options, reporters, checked.commands)
        .map_err(SessionError::Execute)?;
    match status {
        RunStatus::Success => Ok(()),
        RunStatus::ToolFailed => Err(SessionError::ToolFailed),
        RunStatus::LimitHit => Err(SessionError::LimitHit),
        RunStatus::Interrupted => Err(SessionError::Interrupted),
    }
}

/// The signals that stop a run, handled for as long as this lives: each
/// sets [`StopSignals::flag`]. SIGHUP (a closed terminal) and SIGQUIT too:
/// by default they would kill replay with a tool's temporaries and
/// backups still in place.
struct StopSignals {
    flag: Arc<AtomicBool>,
    ids: Vec<signal_hook::SigId>,
}

impl StopSignals {
    /// Starts handling SIGINT, SIGTERM, SIGHUP and SIGQUIT.
    fn register() -> Result<StopSignals, io::Error> {
        let mut stops = StopSignals {
            flag: Arc::new(AtomicBool::new(false)),
            ids: Vec::new(),
        };
        for signal in [
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
            signal_hook::consts::SIGHUP,
            signal_hook::consts::SIGQUIT,
        ] {
            // Pushed as registered: a failure drops those made so far.
            let id = signal_hook::flag::register(signal, Arc::clone(&stops.flag))?;
            stops.ids.push(id);
        }
        Ok(stops)
    }

    /// Set once one of the signals arrived.
    fn flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.flag)
    }
}

impl Drop for StopSignals {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}

/// The run's decisions before its first tool: the sandbox layers the
/// policy requires (refused if this machine lacks one), the subreaper, the
/// launcher; `interrupted` is the flag the stop signals set.
fn execute_options(
    policy: &Policy,
    settings: &RunSettings,
    console: &Console,
    root_lock: Arc<RootLock>,
    interrupted: Arc<AtomicBool>,
) -> Result<ExecuteOptions, SessionError> {
    // A layer the policy requires but this machine cannot apply: refuse
    // before anything runs, rather than run weaker. (Probed first: the
    // probe forks and reaps its own child.)
    let required = policy.required_layers();
    if !required.is_empty() {
        let probe = crate::sandbox::probe();
        let missing = probe
            .skipped
            .iter()
            .find(|skipped| required.iter().any(|r| *r == skipped.layer.to_string()));
        if let Some(skipped) = missing {
            return Err(SessionError::LayerMissing {
                layer: skipped.layer.to_string(),
                reason: skipped.reason.clone(),
            });
        }
    }
    let want = |layer: &str| {
        if required.iter().any(|r| r == layer) {
            Want::Required
        } else {
            Want::IfAvailable
        }
    };
    // Orphaned grandchildren of a tool come back to replay to be reaped.
    let _ = crate::run::become_subreaper();
    // The remote cache as the policy allows it (a log names none).
    let mut cache = settings.cache.clone();
    if let Some(options) = cache.as_mut() {
        if let Some(remote) = &options.remote {
            options.remote = Some(
                remote
                    .judge(policy)
                    .map_err(|e| SessionError::Usage(e.to_string()))?,
            );
        }
        if let Some(executor) = &options.executor {
            options.executor = executor
                .judge_executor(policy)
                .map_err(|e| SessionError::Usage(e.to_string()))?;
        }
    }
    let launcher = match &settings.launcher {
        Some(launcher) => launcher.clone(),
        None => crate::run::current_launcher().map_err(SessionError::Launcher)?,
    };
    Ok(ExecuteOptions {
        keep_going: settings.keep_going,
        resume: settings.resume,
        sample_interval: settings.sample_interval.max(Duration::from_millis(1)),
        timeout: settings.timeout,
        max_rss: settings.max_rss,
        grace: settings.grace,
        launcher,
        stdout: Arc::clone(&console.stdout),
        stderr: Arc::clone(&console.stderr),
        interrupted,
        landlock: want("landlock"),
        network: want("network"),
        root_lock: Some(root_lock),
        cache,
        jobs: settings.jobs,
        memory_budget: settings.memory_budget,
        predict: settings.predict.clone(),
    })
}

/// Output written around the progress bar so neither tears: whole lines
/// only, each with the bar hidden, then the bar drawn again below it. A
/// line comes in pieces (a tool's `[id tool]` prefix, then its text), and
/// the bar redrawn between two pieces would wipe the first.
struct BarWriter<W: Write> {
    bar: Option<indicatif::ProgressBar>,
    out: W,
    /// The line begun and not yet ended (with a bar only).
    pending: Vec<u8>,
}

impl<W: Write> BarWriter<W> {
    fn new(bar: Option<indicatif::ProgressBar>, out: W) -> Self {
        BarWriter {
            bar,
            out,
            pending: Vec::new(),
        }
    }

    /// Writes the first `upto` bytes held, with the bar hidden.
    fn write_held(&mut self, upto: usize) -> io::Result<()> {
        let lines: Vec<u8> = self.pending.drain(..upto).collect();
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.write_all(&lines).and_then(|()| self.out.flush())),
            None => self.out.write_all(&lines),
        }
    }
}

impl<W: Write> Write for BarWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.bar.is_none() {
            return self.out.write(buf);
        }
        self.pending.extend_from_slice(buf);
        if let Some(end) = self.pending.iter().rposition(|b| *b == b'\n') {
            self.write_held(end + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // A line not ended yet stays held: flushing it alone would let the
        // bar be drawn after it, on its line.
        self.out.flush()
    }
}

impl<W: Write> Drop for BarWriter<W> {
    fn drop(&mut self) {
        let held = self.pending.len();
        if held > 0 {
            let _ = self.write_held(held);
        }
    }
}

/// A [`Sink`] as a plain `Write` for `replay`'s own lines: each whole
/// line is written under one lock, so a tool's output never cuts it.
struct SinkWriter(Sink, Vec<u8>);

impl SinkWriter {
    fn new(sink: Sink) -> SinkWriter {
        SinkWriter(sink, Vec::new())
    }

    fn write_out(&mut self, upto: usize) -> io::Result<()> {
        let line: Vec<u8> = self.1.drain(..upto).collect();
        self.0
            .lock()
            .map_err(|_| io::Error::other("an output stream's writer panicked"))?
            .write_all(&line)
    }
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.1.extend_from_slice(buf);
        if let Some(end) = self.1.iter().rposition(|b| *b == b'\n') {
            self.write_out(end + 1)?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let all = self.1.len();
        if all > 0 {
            self.write_out(all)?;
        }
        self.0
            .lock()
            .map_err(|_| io::Error::other("an output stream's writer panicked"))?
            .flush()
    }
}

impl Drop for SinkWriter {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's stop signals are handled while it lasts and no longer: a
    /// worker runs a session per lease, and would otherwise keep every
    /// lease's handlers.
    #[test]
    fn stop_signals_are_handled_only_while_the_run_lasts() {
        // SIGQUIT: no other test here handles it. The live registration
        // keeps signal_hook's handler installed across the raise, so the
        // signal cannot take its default action on the test process.
        let live = StopSignals::register().unwrap();
        let ended = StopSignals::register().unwrap();
        let stale = ended.flag();
        drop(ended);
        signal_hook::low_level::raise(signal_hook::consts::SIGQUIT).unwrap();
        assert!(live.flag().load(std::sync::atomic::Ordering::SeqCst));
        assert!(
            !stale.load(std::sync::atomic::Ordering::SeqCst),
            "an ended run's handler still ran"
        );
    }

    /// Records each write as it reaches the terminal.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>);

    impl Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if let Ok(mut writes) = self.0.lock() {
                writes.push(buf.to_vec());
            }
            Ok(buf.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn with_a_bar_a_tool_line_reaches_the_terminal_whole_with_its_prefix() {
        // Regression: the capture writes a line's `[id tool]` prefix, then
        // its text, then maybe a newline; each write was made with the bar
        // hidden and drawn again after it, so the bar's redraw, on the
        // line where the prefix stood, wiped the prefix.
        let writes = Writes::default();
        let sink: crate::run::capture::Sink = Arc::new(Mutex::new(BarWriter::new(
            Some(indicatif::ProgressBar::hidden()),
            writes.clone(),
        )));
        crate::run::capture::replay(b"hello\nworld", "[3 opt] ", &sink);
        let seen = writes.0.lock().map(|w| w.clone()).unwrap_or_default();
        assert_eq!(
            seen,
            vec![b"[3 opt] hello\n".to_vec(), b"[3 opt] world\n".to_vec()]
        );
    }

    #[test]
    fn a_line_not_ended_is_written_when_the_writer_goes() {
        let writes = Writes::default();
        {
            let mut writer = BarWriter::new(Some(indicatif::ProgressBar::hidden()), writes.clone());
            writer.write_all(b"no newline").unwrap();
            writer.flush().unwrap();
            assert!(writes.0.lock().unwrap().is_empty());
        }
        assert_eq!(*writes.0.lock().unwrap(), vec![b"no newline".to_vec()]);
    }
}
