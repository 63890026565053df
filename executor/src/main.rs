//! The `replay` command line: parses arguments with clap, calls the `replay`
//! library, and turns its errors into messages and exit codes
//! ([`ReplayExitCode`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use cmdlog::Problem;
use policy::{Mode, Policy, Status};
use replay::audit::{self, AuditError};
use replay::drive::Produced;
use replay::execute::{execute, ExecuteOptions, RunStatus};
use replay::job::{Job, JobError};
use replay::lock::{LockError, RootLock};
use replay::report::{Event, HumanReporter, JsonReporter, ProgressReporter, Reporter, Reporters};
use replay::run;
use replay::run::trace::ExitStatus;
use replay::sandbox::Want;
use replay::ReplayExitCode;

/// Check the tool commands a compiler logged against an allowlist policy,
/// then run them one at a time, sandboxed and measured.
///
/// `replay --policy FILE LOG` checks every command of LOG and, only if all
/// pass, runs them. Paths in LOG are relative to its work root: the
/// directory that holds LOG, or `--root`.
#[derive(Debug, Parser)]
#[command(
    name = "replay",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = EXIT_CODES_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    #[command(flatten)]
    run: RunArgs,
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  a tool failed
  2  bad input or usage (unreadable or malformed log or policy), or another
     run holds the work root
  3  denied by policy: nothing ran
  4  a limit (time, memory, output) stopped a tool
  5  drive: a signal killed the producer: nothing ran
130  interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT): the running tool was stopped";

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate every command of a log against a policy and run nothing
    /// (audit).
    Check(CheckArgs),
    /// Start a compiler with a pipe for its log, then check and run what it
    /// logged (driver mode).
    Drive(DriveArgs),
}

/// Where a log's paths are resolved and which policy judges it.
#[derive(Debug, Args)]
struct Target {
    /// The policy file (TOML) that judges the log.
    #[arg(long, value_name = "FILE", required = true)]
    policy: Option<PathBuf>,

    /// The work root that paths in the log are relative to [default: the
    /// directory that holds LOG].
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    #[command(flatten)]
    target: Target,

    #[command(flatten)]
    running: Running,

    /// The command log (JSON, format `replay-log` version 1).
    #[arg(value_name = "LOG", required = true)]
    log: Option<PathBuf>,
}

/// How tools run: shared by the default command and `drive`.
#[derive(Debug, Args)]
struct Running {
    /// After a tool fails, run the commands that do not depend on its
    /// outputs (default: stop at the first failure).
    #[arg(long)]
    keep_going: bool,

    /// Skip commands that the journal (`LOG.journal`) shows finished with
    /// their outputs unchanged; run the rest.
    #[arg(long)]
    resume: bool,

    /// Also write the report, with every measurement, as JSON to FILE.
    #[arg(long, value_name = "FILE")]
    report: Option<PathBuf>,

    /// Stop any tool that runs longer (seconds; tightens the policy's).
    #[arg(long, value_name = "SECONDS", value_parser = seconds_arg)]
    timeout: Option<f64>,

    /// Stop any tool whose process tree holds more resident memory
    /// (bytes, or with a K/M/G suffix; tightens the policy's).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_rss: Option<u64>,

    /// Time between SIGTERM and SIGKILL when a tool times out (seconds).
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = seconds_arg)]
    grace: f64,

    /// How often each tool's process tree is sampled (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    sample_interval: u64,
}

/// `1024`, `64K`, `512M`, `2G` (powers of 1024).
fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (digits, shift) = match text.char_indices().last() {
        Some((at, 'k' | 'K')) => (&text[..at], 10),
        Some((at, 'm' | 'M')) => (&text[..at], 20),
        Some((at, 'g' | 'G')) => (&text[..at], 30),
        _ => (text, 0),
    };
    digits
        .trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1u64 << shift))
        .ok_or_else(|| format!("`{text}` is not a size: use bytes, or a number with K, M or G"))
}

#[derive(Debug, Args)]
struct CheckArgs {
    #[command(flatten)]
    target: Target,

    /// How to print the verdicts.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    format: Format,

    /// Treat what cannot be verified on this machine (a binary of a log
    /// recorded on another platform) as refused.
    #[arg(long)]
    strict: bool,

    /// The command log (JSON, format `replay-log` version 1).
    #[arg(value_name = "LOG")]
    log: PathBuf,
}

#[derive(Debug, Args)]
struct DriveArgs {
    #[command(flatten)]
    target: Target,

    #[command(flatten)]
    running: Running,

    /// The producer to start, and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    program: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Format {
    /// Text for people.
    Human,
    /// One JSON document, for CI.
    Json,
}

/// An error on its way to the user: the message chain, a hint, an exit code.
struct Failure {
    code: i32,
    error: Option<anyhow::Error>,
    hint: Option<String>,
}

impl Failure {
    /// An exit code whose reason was already printed.
    fn quiet(code: i32) -> Failure {
        Failure {
            code,
            error: None,
            hint: None,
        }
    }

    fn new(code: i32, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: Some(error.into()),
            hint: None,
        }
    }

    fn hint(mut self, hint: impl Into<String>) -> Failure {
        self.hint = Some(hint.into());
        self
    }
}

impl From<JobError> for Failure {
    fn from(error: JobError) -> Failure {
        let hint = match &error {
            JobError::Log { .. } => "check the path of LOG",
            JobError::Policy { .. } => {
                "pass an existing policy, e.g. `--policy policies/linux.toml`"
            }
            JobError::Root { .. } => "pass an existing directory with `--root`",
            JobError::Snapshot { .. } => {
                "free space there, or set `TMPDIR` to a directory with room for a copy of the log"
            }
            JobError::Malformed { source, .. } => match source.problem {
                Problem::Truncated => {
                    "the producer may have died while writing it; regenerate the log"
                }
                Problem::Io(_) => "check that LOG is a readable file",
                _ => "the log is not one this version reads: fix or regenerate it (see `docs/log-v1.schema.json`)",
            },
        };
        Failure::new(ReplayExitCode::BAD_INPUT, error).hint(hint)
    }
}

fn main() -> ExitCode {
    // The sandbox child of a tool (a double spawn): before anything else runs.
    #[cfg(target_os = "linux")]
    if std::env::args_os().nth(1).as_deref() == Some(replay::sandbox::CHILD_ARG.as_ref()) {
        return replay::sandbox::child_main();
    }
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            report(&failure);
            ExitCode::from(u8::try_from(failure.code).unwrap_or(u8::MAX))
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    match cli.command {
        Some(Command::Check(args)) => check(args),
        Some(Command::Drive(args)) => drive(args),
        None => run_log(cli.run),
    }
}

fn job(target: &Target, log: &std::path::Path) -> Result<Job, Failure> {
    let policy = target.policy.as_deref().ok_or_else(|| {
        Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::anyhow!("no `--policy` given"),
        )
    })?;
    Ok(Job::new(log, target.root.as_deref(), policy)?)
}

fn load_policy(path: &Path) -> Result<Policy, Failure> {
    Policy::load(path).map_err(|error| {
        Failure::new(ReplayExitCode::BAD_INPUT, error)
            .hint("fix the policy, or start from one of `policies/*.toml`")
    })
}

fn audit_failure(error: AuditError) -> Failure {
    match error {
        AuditError::Job(error) => error.into(),
        other => Failure::new(ReplayExitCode::BAD_INPUT, other),
    }
}

fn check(args: CheckArgs) -> Result<(), Failure> {
    let job = job(&args.target, &args.log)?;
    let policy = load_policy(&job.policy)?;
    let format = match args.format {
        Format::Human => audit::Format::Human,
        Format::Json => audit::Format::Json,
    };
    let mut stdout = std::io::stdout().lock();
    let result = audit::audit(&job, &policy, Mode::Audit, args.strict, format, &mut stdout)
        .map_err(audit_failure)?;
    if result.status() == Status::Refused {
        return Err(Failure::quiet(ReplayExitCode::DENIED));
    }
    Ok(())
}

/// A command-line duration in seconds that a `Duration` can hold: a
/// usage error at parse time, before anything is read or run.
fn seconds_arg(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map(|_| value)
        .map_err(|_| format!("`{text}` must be a number of seconds from 0 to about 10^19"))
}

fn run_log(args: RunArgs) -> Result<(), Failure> {
    let log = args
        .log
        .ok_or_else(|| Failure::new(ReplayExitCode::BAD_INPUT, anyhow::anyhow!("no LOG given")))?;
    let job = job(&args.target, &log)?;
    // One run per root: taken first, so a second run writes nothing (not
    // even its report) while another runs.
    let root_lock = Arc::new(RootLock::acquire(&job.root).map_err(lock_failure)?);
    run_job(&job, &args.running, None, Some(root_lock))
}

/// Validates the whole log, then runs it: the heart of `replay --policy`.
fn run_job(
    job: &Job,
    running: &Running,
    produced: Option<Produced>,
    root_lock: Option<Arc<RootLock>>,
) -> Result<(), Failure> {
    let policy = load_policy(&job.policy)?;
    // Both passes read a private copy: a tool may write in the root.
    let (job, _snapshot) = job.snapshot()?;
    let job = &job;
    let mut stderr = std::io::stderr();
    let verdict = audit::audit(
        job,
        &policy,
        Mode::Run,
        true,
        audit::Format::Human,
        &mut stderr,
    )
    .map_err(audit_failure)?;
    if verdict.status() != Status::Allowed {
        return Err(Failure::new(
            ReplayExitCode::DENIED,
            anyhow::anyhow!("the policy refused the log: nothing ran"),
        )
        .hint("see the refusals above; `replay check` audits without running"));
    }
    run_validated(job, &policy, running, verdict.commands, produced, root_lock)
}

fn run_validated(
    job: &Job,
    policy: &Policy,
    running: &Running,
    commands: u64,
    produced: Option<Produced>,
    root_lock: Option<Arc<RootLock>>,
) -> Result<(), Failure> {
    let bad_flag = |name: &str| {
        Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::anyhow!("`{name}` must be a number of seconds from 0 to about 10^19"),
        )
    };
    // `try_from`: a huge value (`1e300`) is an error, not a panic.
    let seconds =
        |value: f64, name: &str| Duration::try_from_secs_f64(value).map_err(|_| bad_flag(name));
    let timeout = running
        .timeout
        .map(|t| seconds(t, "--timeout"))
        .transpose()?;
    let grace = seconds(running.grace, "--grace")?;
    // A layer the policy requires but this machine cannot apply: refuse
    // before anything runs, rather than run weaker. (Probed first: the
    // probe forks and reaps its own child.)
    let required = policy.required_layers();
    if !required.is_empty() {
        let probe = replay::sandbox::probe();
        let missing = probe
            .skipped
            .iter()
            .find(|skipped| required.iter().any(|r| *r == skipped.layer.to_string()));
        if let Some(skipped) = missing {
            return Err(Failure::new(
                ReplayExitCode::DENIED,
                anyhow::anyhow!(
                    "the policy requires the sandbox layer `{}`, which this machine cannot apply ({}): nothing ran",
                    skipped.layer,
                    skipped.reason
                ),
            )
            .hint("run where the layer is available (e.g. where unprivileged user namespaces are allowed), or drop it from `require_sandbox`"));
        }
    }
    let want = |layer: &str| {
        if required.iter().any(|r| r == layer) {
            Want::Required
        } else {
            Want::IfAvailable
        }
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    // SIGHUP (a closed terminal) and SIGQUIT too: by default they would
    // kill replay with a tool's temporaries and backups still in place.
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&interrupted)).map_err(|e| {
            Failure::new(
                ReplayExitCode::BAD_INPUT,
                anyhow::Error::new(e).context("cannot handle signals"),
            )
        })?;
    }
    // Orphaned grandchildren of a tool come back to replay to be reaped.
    let _ = run::become_subreaper();
    let launcher = run::current_launcher().map_err(|e| {
        Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::Error::new(e).context("cannot find the replay binary to launch tools"),
        )
    })?;
    let progress = ProgressReporter::new();
    let bar = progress.bar();
    let options = ExecuteOptions {
        keep_going: running.keep_going,
        resume: running.resume,
        sample_interval: Duration::from_millis(running.sample_interval.max(1)),
        timeout,
        max_rss: running.max_rss,
        grace,
        launcher,
        stdout: Arc::new(Mutex::new(BarWriter {
            bar: bar.clone(),
            out: std::io::stdout(),
        })),
        stderr: Arc::new(Mutex::new(BarWriter {
            bar,
            out: std::io::stderr(),
        })),
        interrupted,
        landlock: want("landlock"),
        network: want("network"),
        root_lock,
    };
    let mut reporters: Vec<Box<dyn Reporter>> = vec![
        Box::new(progress),
        Box::new(HumanReporter::new(std::io::stderr())),
    ];
    if let Some(path) = &running.report {
        // A name planted there (a link to a file elsewhere, a FIFO) is
        // unlinked, never written through.
        let file = replay::ownfile::create_fresh(path).map_err(|e| {
            Failure::new(
                ReplayExitCode::BAD_INPUT,
                anyhow::Error::new(e).context("cannot write the report"),
            )
            .hint("pass `--report` a path in a directory you can write to")
        })?;
        let json = JsonReporter::new(std::io::BufWriter::new(file)).map_err(|e| {
            Failure::new(
                ReplayExitCode::BAD_INPUT,
                anyhow::Error::new(e).context("cannot write the report"),
            )
        })?;
        reporters.push(Box::new(json));
    }
    let mut reporters = Reporters(reporters);
    if let Some(produced) = &produced {
        reporters
            .event(&Event::Producer(produced))
            .map_err(|e| Failure::new(ReplayExitCode::BAD_INPUT, e))?;
    }
    let (status, _) = execute(job, policy, &options, &mut reporters, commands).map_err(|e| {
        use replay::execute::ExecuteError;
        // A command the policy refuses when its turn comes is a denial.
        let code = match e {
            ExecuteError::Changed { .. } => ReplayExitCode::DENIED,
            _ => ReplayExitCode::BAD_INPUT,
        };
        let hint = match &e {
            ExecuteError::Journal(error) => error.hint(),
            ExecuteError::Lock(error) => error.hint(),
            _ => "outputs of commands that finished are in place; `--resume` continues".into(),
        };
        Failure::new(code, e).hint(hint)
    })?;
    match status {
        RunStatus::Success => Ok(()),
        RunStatus::ToolFailed => Err(Failure::new(
            ReplayExitCode::TOOL_FAILED,
            anyhow::anyhow!("a tool failed; the outputs it was writing were not kept"),
        )
        .hint("fix the cause, then rerun with `--resume` to skip what finished")),
        RunStatus::LimitHit => Err(Failure::new(
            ReplayExitCode::LIMIT,
            anyhow::anyhow!("a limit stopped a tool (see its row above)"),
        )
        .hint("raise the limit in the policy, or loosen `--timeout`/`--max-rss`")),
        RunStatus::Interrupted => Err(Failure::new(
            ReplayExitCode::INTERRUPTED,
            anyhow::anyhow!("interrupted: the running tool was stopped and its outputs discarded"),
        )
        .hint("rerun with `--resume` to continue")),
    }
}

/// Tool output, written around the progress bar so neither tears.
struct BarWriter<W> {
    bar: Option<indicatif::ProgressBar>,
    out: W,
}

impl<W: Write> Write for BarWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &self.bar {
            Some(bar) => bar.suspend(|| self.out.write(buf)),
            None => self.out.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

fn drive(args: DriveArgs) -> Result<(), Failure> {
    let root = args
        .target
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let root = root.canonicalize().map_err(|e| {
        Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::Error::new(e)
                .context(format!("the work root `{}` is not usable", root.display())),
        )
        .hint("pass an existing directory with `--root`")
    })?;
    let policy = args.target.policy.as_deref().ok_or_else(|| {
        Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::anyhow!("no `--policy` given"),
        )
    })?;
    // Fail on a bad policy before the (expensive) producer runs.
    load_policy(policy)?;
    let Some((program, rest)) = args.program.split_first() else {
        return Err(Failure::new(
            ReplayExitCode::BAD_INPUT,
            anyhow::anyhow!("no producer given after `--`"),
        ));
    };
    // One run per root, from before the producer writes the log there.
    let root_lock = Arc::new(RootLock::acquire(&root).map_err(lock_failure)?);
    let log = root.join(DRIVE_LOG);
    let produced = replay::drive::produce(
        program,
        rest,
        &root,
        &log,
        cmdlog::Limits::default().max_log_bytes,
    )
    .map_err(|e| Failure::new(ReplayExitCode::BAD_INPUT, e))?;
    eprintln!(
        "replay: producer `{}` exited {}, peak RSS {}; {} bytes of log in `{}`",
        produced.program,
        match produced.exit {
            ExitStatus::Code(code) => format!("with {code}"),
            ExitStatus::Signal(signal) => format!(
                "on signal {signal} ({})",
                replay::drive::signal_name(signal)
            ),
        },
        replay::report::bytes(produced.peak_rss.unwrap_or(produced.ru_maxrss)),
        produced.log_bytes,
        log.display()
    );
    if !produced.exit.success() {
        let (code, message) = replay::drive::producer_failure(&produced.program, produced.exit);
        return Err(Failure::new(code, anyhow::anyhow!(message))
            .hint("fix the producer's error above (or what killed it); its log is not trusted"));
    }
    let job = Job::new(&log, Some(&root), policy)?;
    run_job(&job, &args.running, Some(produced), Some(root_lock))
}

fn lock_failure(error: LockError) -> Failure {
    let hint = error.hint();
    Failure::new(ReplayExitCode::BAD_INPUT, error).hint(hint)
}

/// Where driver mode keeps the producer's log, under the work root.
const DRIVE_LOG: &str = "replay-drive.log.json";

/// Prints `error: ...`, its causes, and a hint, to stderr.
fn report(failure: &Failure) {
    let Some(error) = &failure.error else {
        return;
    };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {error}");
    for cause in error.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
    if let Some(hint) = &failure.hint {
        let _ = writeln!(err, "hint: {hint}");
    }
}
