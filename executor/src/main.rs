//! The `replay` command line: parses arguments with clap, calls the `replay`
//! library, and turns its errors into messages and exit codes
//! ([`ReplayExitCode`]).

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use replay::cached::CacheOptions;
use replay::session::{self, CheckFormat, Console, RunSettings, SessionError};

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
    /// Inspect or maintain the action cache.
    Cache(CacheArgs),
}

/// Where the action cache is, and how large it may grow.
#[derive(Debug, Args)]
struct CacheDir {
    /// The action cache's directory [default: $XDG_CACHE_HOME/replay/actions,
    /// else ~/.cache/replay/actions].
    #[arg(long = "cache", value_name = "DIR")]
    dir: Option<PathBuf>,

    /// The cache's size cap (bytes, or with a K/M/G suffix); least recently
    /// used entries are evicted past it.
    #[arg(long, value_name = "SIZE", default_value = "5G", value_parser = parse_size)]
    cache_max_size: u64,
}

#[derive(Debug, Args)]
struct CacheArgs {
    #[command(subcommand)]
    action: CacheAction,

    /// The action cache's directory [default: $XDG_CACHE_HOME/replay/actions,
    /// else ~/.cache/replay/actions].
    #[arg(long = "cache", value_name = "DIR", global = true)]
    dir: Option<PathBuf>,

    /// The cache's size cap (bytes, or with a K/M/G suffix), for `gc`.
    #[arg(long, value_name = "SIZE", default_value = "5G", value_parser = parse_size, global = true)]
    cache_max_size: u64,
}

#[derive(Debug, Clone, Copy, Subcommand)]
enum CacheAction {
    /// Entries, bytes, hits, misses, evictions, and what hits saved.
    Stats,
    /// Evict down to the size cap and drop blobs no entry names.
    Gc,
    /// Rehash every blob; evict what no longer matches its digest.
    Verify,
    /// Remove every entry and blob.
    Clear,
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
    timeout: Option<Duration>,

    /// Stop any tool whose process tree holds more resident memory
    /// (bytes, or with a K/M/G suffix; tightens the policy's).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    max_rss: Option<u64>,

    /// Time between SIGTERM and SIGKILL when a tool times out (seconds).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = seconds_arg)]
    grace: Duration,

    /// How often each tool's process tree is sampled (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    sample_interval: u64,

    #[command(flatten)]
    cache: CacheDir,

    /// Run every command, neither restoring from nor storing in the
    /// action cache (also: REPLAY_NO_CACHE=1 in the environment, unless
    /// `--cache DIR` is given).
    #[arg(long, conflicts_with = "dir")]
    no_cache: bool,
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

impl Running {
    fn settings(&self) -> Result<RunSettings, SessionError> {
        Ok(RunSettings {
            keep_going: self.keep_going,
            resume: self.resume,
            report: self.report.clone(),
            timeout: self.timeout,
            max_rss: self.max_rss,
            grace: self.grace,
            sample_interval: Duration::from_millis(self.sample_interval),
            launcher: None,
            cache: if self.no_cache || (no_cache_env() && self.cache.dir.is_none()) {
                None
            } else {
                Some(self.cache.options()?)
            },
        })
    }
}

/// Whether the environment turns the action cache off (`REPLAY_NO_CACHE=1`).
fn no_cache_env() -> bool {
    std::env::var_os("REPLAY_NO_CACHE").is_some_and(|v| v == "1")
}

impl CacheDir {
    fn options(&self) -> Result<CacheOptions, SessionError> {
        let dir = match &self.dir {
            Some(dir) => dir.clone(),
            None => replay_cache::default_dir().ok_or_else(|| {
                SessionError::Usage(
                    "no directory for the action cache: neither XDG_CACHE_HOME nor HOME is set; pass `--cache DIR` or `--no-cache`".into(),
                )
            })?,
        };
        Ok(CacheOptions {
            dir,
            max_size: self.cache_max_size,
        })
    }
}

/// A command-line duration in seconds that a `Duration` can hold: a
/// usage error at parse time, before anything is read or run.
fn seconds_arg(text: &str) -> Result<Duration, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` must be a number of seconds from 0 to about 10^19"))
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
        Err(error) => {
            report(&error);
            ExitCode::from(u8::try_from(error.code()).unwrap_or(u8::MAX))
        }
    }
}

fn run(cli: Cli) -> Result<(), SessionError> {
    let console = Console::terminal();
    match cli.command {
        Some(Command::Check(args)) => {
            let format = match args.format {
                Format::Human => CheckFormat::Human,
                Format::Json => CheckFormat::Json,
            };
            session::check(
                &target(&args.target)?,
                &args.log,
                args.strict,
                format,
                &console,
            )
            .map(drop)
        }
        Some(Command::Drive(args)) => session::drive(
            &target(&args.target)?,
            &args.program,
            &args.running.settings()?,
            &console,
        ),
        Some(Command::Cache(args)) => {
            let action = match args.action {
                CacheAction::Stats => session::CacheAction::Stats,
                CacheAction::Gc => session::CacheAction::Gc,
                CacheAction::Verify => session::CacheAction::Verify,
                CacheAction::Clear => session::CacheAction::Clear,
            };
            let dir = CacheDir {
                dir: args.dir,
                cache_max_size: args.cache_max_size,
            };
            session::cache(action, &dir.options()?, &console)
        }
        None => {
            let args = cli.run;
            let log = args
                .log
                .ok_or_else(|| SessionError::Usage("no LOG given".into()))?;
            session::run(
                &target(&args.target)?,
                &log,
                &args.running.settings()?,
                &console,
            )
        }
    }
}

fn target(target: &Target) -> Result<session::Target, SessionError> {
    let policy = target
        .policy
        .clone()
        .ok_or_else(|| SessionError::Usage("no `--policy` given".into()))?;
    Ok(session::Target {
        policy,
        root: target.root.clone(),
    })
}

/// Prints `error: ...`, its causes, and a hint, to stderr.
fn report(error: &SessionError) {
    if error.is_quiet() {
        return;
    }
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "error: {error}");
    let mut cause = std::error::Error::source(error);
    while let Some(error) = cause {
        let _ = writeln!(err, "  caused by: {error}");
        cause = error.source();
    }
    if let Some(hint) = error.hint() {
        let _ = writeln!(err, "hint: {hint}");
    }
}
