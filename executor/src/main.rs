//! The `replay` command line: parses arguments with clap, calls the `replay`
//! library, and turns its errors into messages and exit codes
//! ([`ReplayExitCode`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use replay::job::{Job, JobError};
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
  2  bad input or usage (unreadable or malformed log or policy)
  3  denied by policy: nothing ran
  4  a limit (time, memory, output) stopped a tool";

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

    /// The command log (JSON, format `replay-log` version 1).
    #[arg(value_name = "LOG", required = true)]
    log: Option<PathBuf>,
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
    error: anyhow::Error,
    hint: Option<String>,
}

impl Failure {
    fn new(code: i32, error: impl Into<anyhow::Error>) -> Failure {
        Failure {
            code,
            error: error.into(),
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
            JobError::Malformed { .. } => {
                "the producer may have died while writing it; regenerate the log"
            }
        };
        Failure::new(ReplayExitCode::BAD_INPUT, error).hint(hint)
    }
}

fn main() -> ExitCode {
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

fn check(args: CheckArgs) -> Result<(), Failure> {
    let job = job(&args.target, &args.log)?;
    let summary = job.scan_log()?;
    let _ = (args.format, args.strict);
    Err(not_built(format!(
        "`replay check` read `{}` ({} commands, well-formed), but policy checks are not built yet",
        job.log.display(),
        summary.commands
    )))
}

fn run_log(args: RunArgs) -> Result<(), Failure> {
    let log = args
        .log
        .ok_or_else(|| Failure::new(ReplayExitCode::BAD_INPUT, anyhow::anyhow!("no LOG given")))?;
    let job = job(&args.target, &log)?;
    let summary = job.scan_log()?;
    Err(not_built(format!(
        "read `{}` ({} commands, well-formed), but checking and running them is not built yet: nothing ran",
        job.log.display(),
        summary.commands
    )))
}

fn drive(args: DriveArgs) -> Result<(), Failure> {
    let _ = (&args.target, &args.program);
    Err(not_built(
        "`replay drive` is not built yet: nothing ran".to_owned(),
    ))
}

fn not_built(message: String) -> Failure {
    Failure::new(ReplayExitCode::BAD_INPUT, anyhow::anyhow!(message))
        .hint("this part of replay is planned but not implemented in this version")
}

/// Prints `error: ...`, its causes, and a hint, to stderr.
fn report(failure: &Failure) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {}", failure.error);
    for cause in failure.error.chain().skip(1) {
        let _ = writeln!(err, "  caused by: {cause}");
    }
    if let Some(hint) = &failure.hint {
        let _ = writeln!(err, "hint: {hint}");
    }
}
