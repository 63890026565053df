//! The command line's types: what `replay` accepts, parsed by clap, and
//! its conversion into the library's options ([`RunSettings`],
//! [`CacheOptions`]). Each option is validated once, here, at parse time.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use replay::cached::CacheOptions;
use replay::session::{RunSettings, SessionError};

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
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,

    #[command(flatten)]
    pub(crate) run: RunArgs,
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success
  1  a tool failed; policy lint: the policy has warnings
  2  bad input or usage (unreadable or malformed log or policy), another
     run holds the work root, or check --here: inputs are missing
  3  denied by policy: nothing ran
  4  a limit (time, memory, output) stopped a tool
  5  drive: a signal killed the producer: nothing ran
130  interrupted (SIGINT, SIGTERM, SIGHUP or SIGQUIT): the running tool was stopped";

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Validate every command of a log against a policy and run nothing
    /// (audit).
    Check(CheckArgs),
    /// Start a compiler with a pipe for its log, then check and run what it
    /// logged (driver mode).
    Drive(DriveArgs),
    /// Inspect or maintain the action cache.
    Cache(CacheArgs),
    /// Write a log from a build recorded by another tool (a compilation
    /// database), reporting what cannot be imported.
    Import(ImportArgs),
    /// Say what a policy rule refuses, why, and how to allow what is safe
    /// (without RULE: list every rule).
    Explain(ExplainArgs),
    /// Show a policy as `replay` enforces it, or lint it.
    Policy(PolicyArgs),
    /// Print a completion script for a shell (e.g. `replay completions
    /// bash > /etc/bash_completion.d/replay`).
    Completions(CompletionsArgs),
    /// Print the manual page, in roff (`replay man > replay.1`).
    Man,
    /// Serve a build farm's leases (the Bots API): each checked against
    /// this worker's own policy, then run sandboxed and measured.
    #[cfg(feature = "remote-cache")]
    Worker(WorkerArgs),
}

/// `replay worker`.
#[cfg(feature = "remote-cache")]
#[derive(Debug, Args)]
pub(crate) struct WorkerArgs {
    /// The farm's endpoint (Bots, CAS, ByteStream): grpc://HOST:PORT or
    /// grpcs://HOST:PORT.
    #[arg(long, value_name = "URL", value_parser = parse_remote_url)]
    pub(crate) server: String,

    /// The worker's own policy: every lease is judged by it, whatever the
    /// client's policy allowed.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: PathBuf,

    /// Where lease roots and the worker's blob store are kept.
    #[arg(long, value_name = "DIR", default_value = "replay-worker")]
    pub(crate) root: PathBuf,

    /// The bot id the farm knows this worker by [default: worker-PID].
    #[arg(long, value_name = "ID")]
    pub(crate) bot_id: Option<String>,

    /// Leases run at once, each in its own root and mount namespace (the
    /// capacity the worker tells the farm).
    #[arg(short = 'j', long = "jobs", value_name = "N", default_value = "1",
          value_parser = clap::value_parser!(u16).range(1..=256))]
    pub(crate) jobs: u16,

    /// The farm's instance name [default: none].
    #[arg(
        long,
        value_name = "NAME",
        default_value = "",
        hide_default_value = true
    )]
    pub(crate) remote_instance: String,

    /// gRPC metadata sent with every call; repeat for more.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_header)]
    pub(crate) remote_header: Vec<(String, String)>,

    /// PEM roots a grpcs:// farm's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub(crate) remote_ca: Option<PathBuf>,

    /// The longest one call to the farm may take (seconds).
    #[arg(long, value_name = "SECONDS", default_value = "60", value_parser = seconds_arg)]
    pub(crate) remote_timeout: Duration,
}

#[cfg(feature = "remote-cache")]
impl WorkerArgs {
    /// The library's settings for these arguments.
    pub(crate) fn settings(&self) -> replay::worker::serve::WorkerSettings {
        replay::worker::serve::WorkerSettings {
            remote: replay_cache::remote::RemoteConfig {
                url: self.server.clone(),
                instance: self.remote_instance.clone(),
                headers: self.remote_header.clone(),
                ca: self.remote_ca.clone(),
                timeout: self.remote_timeout,
                mode: replay_cache::remote::Mode::ReadWrite,
            },
            policy: self.policy.clone(),
            root: self.root.clone(),
            bot_id: self
                .bot_id
                .clone()
                .unwrap_or_else(|| format!("worker-{}", std::process::id())),
            jobs: usize::from(self.jobs),
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// A rule's id, as findings name it (e.g. `args.unknown-flag`).
    #[arg(value_name = "RULE")]
    pub(crate) rule: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct PolicyArgs {
    #[command(subcommand)]
    pub(crate) action: PolicyAction,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyAction {
    /// Print the policy after `extends`, merged, as TOML.
    Show {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
    /// Load the policy and warn about entries that never take effect or
    /// allow more than they seem to. Exits 1 if it warns, 2 if the policy
    /// does not load.
    Lint {
        /// The policy file.
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell.
    #[arg(value_name = "SHELL", value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// What clap cannot say about a command line, because the root takes a
/// LOG where a subcommand could be: a subcommand after the root's options
/// (`replay --policy p.toml check log.json`), or a mistyped one
/// (`replay chek ...`). The message, in clap's words, if so.
pub(crate) fn preflight(args: &[OsString]) -> Option<String> {
    use clap::CommandFactory;
    let command = Cli::command();
    let names: Vec<&str> = command.get_subcommands().map(|c| c.get_name()).collect();
    let takes_value = |flag: &str| {
        command.get_arguments().any(|a| {
            a.get_action().takes_values()
                && (a.get_long().is_some_and(|l| flag == format!("--{l}"))
                    || a.get_short().is_some_and(|s| flag == format!("-{s}")))
        })
    };
    let mut at = 1;
    while let Some(arg) = args.get(at) {
        let text = arg.to_str()?;
        if text == "--" {
            return None;
        }
        if text.starts_with('-') {
            at += if !text.contains('=') && takes_value(text) {
                2
            } else {
                1
            };
            continue;
        }
        if names.contains(&text) {
            if at == 1 {
                return None;
            }
            let before: Vec<&str> = args[1..at].iter().filter_map(|a| a.to_str()).collect();
            return Some(format!(
                "error: `{text}` is a subcommand, so its options go after it: `replay {text} {} ...`\n\nFor more information, try '--help'.\n",
                before.join(" ")
            ));
        }
        // A LOG that does not exist and looks like a subcommand's name.
        if at == 1 && !std::path::Path::new(text).exists() {
            let close = names
                .iter()
                .find(|name| strsim::damerau_levenshtein(text, name) <= 2)?;
            return Some(format!(
                "error: unrecognized subcommand '{text}'\n\n  tip: a similar subcommand exists: '{close}'\n\nUsage: replay [OPTIONS] --policy <FILE> <LOG>\n       replay <COMMAND>\n\nFor more information, try '--help'.\n"
            ));
        }
        return None;
    }
    None
}

/// Writes the completion script for `shell` to `out`.
pub(crate) fn completions(shell: clap_complete::Shell, out: &mut dyn std::io::Write) {
    use clap::CommandFactory;
    clap_complete::generate(shell, &mut Cli::command(), "replay", out);
}

/// Writes the manual page (roff) to `out`.
pub(crate) fn man(out: &mut dyn std::io::Write) -> std::io::Result<()> {
    use clap::CommandFactory;
    clap_mangen::Man::new(Cli::command()).render(out)
}

#[derive(Debug, Args)]
pub(crate) struct ImportArgs {
    #[command(subcommand)]
    pub(crate) from: ImportFrom,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ImportFrom {
    /// A JSON Compilation Database, as CMake
    /// (`-DCMAKE_EXPORT_COMPILE_COMMANDS=ON`), Bear and `ninja -t compdb`
    /// write it. Exits 3 if `--policy` would refuse a command (the log is
    /// written all the same).
    Compdb(CompdbArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CompdbArgs {
    /// The log to write [default: replay.log.json in the work root].
    #[arg(short = 'o', long = "output", value_name = "LOG")]
    pub(crate) log: Option<PathBuf>,

    /// The work root every path is made relative to; entries that reach
    /// outside it are left out [default: the directory that holds FILE].
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,

    /// Also check the imported log against this policy, naming the
    /// database entry of each command it would refuse.
    #[arg(long, value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,

    /// The compilation database (`compile_commands.json`).
    #[arg(value_name = "FILE")]
    pub(crate) database: PathBuf,
}

/// Where the action cache is, and how large it may grow.
#[derive(Debug, Args)]
pub(crate) struct CacheDir {
    /// The action cache's directory [default: $XDG_CACHE_HOME/replay/actions,
    /// else ~/.cache/replay/actions].
    #[arg(long = "cache", value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,

    /// The cache's size cap (bytes, or with K, M, G, T or KiB, MiB, GiB, TiB: `512MiB`); least recently
    /// used entries are evicted past it.
    #[arg(long, value_name = "SIZE", default_value = "5G", value_parser = parse_size)]
    pub(crate) cache_max_size: u64,
}

#[derive(Debug, Args)]
pub(crate) struct CacheArgs {
    #[command(subcommand)]
    pub(crate) action: CacheAction,

    /// The action cache's directory [default: $XDG_CACHE_HOME/replay/actions,
    /// else ~/.cache/replay/actions].
    #[arg(long = "cache", value_name = "DIR", global = true)]
    pub(crate) dir: Option<PathBuf>,

    /// The cache's size cap (bytes, or with K, M, G, T or KiB, MiB, GiB, TiB: `512MiB`), for `gc`.
    #[arg(long, value_name = "SIZE", default_value = "5G", value_parser = parse_size, global = true)]
    pub(crate) cache_max_size: u64,
}

#[derive(Debug, Clone, Copy, Subcommand)]
pub(crate) enum CacheAction {
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
pub(crate) struct Target {
    /// The policy file (TOML) that judges the log.
    #[arg(long, value_name = "FILE", required = true)]
    pub(crate) policy: Option<PathBuf>,

    /// The work root that paths in the log are relative to [default: the
    /// directory that holds LOG; for `drive`, the current directory].
    #[arg(long, value_name = "DIR")]
    pub(crate) root: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub(crate) target: Target,

    #[command(flatten)]
    pub(crate) running: Running,

    /// The command log (JSON, format `replay-log` version 1).
    #[arg(value_name = "LOG", required = true)]
    pub(crate) log: Option<PathBuf>,
}

/// How tools run: shared by the default command and `drive`.
#[derive(Debug, Args)]
pub(crate) struct Running {
    /// After a tool fails, run the commands that do not depend on its
    /// outputs (default: stop at the first failure).
    #[arg(long)]
    pub(crate) keep_going: bool,

    /// Skip commands that the journal (`LOG.journal`; for `drive`,
    /// `replay-drive.log.json.journal` in the work root) shows finished
    /// with their outputs unchanged; run the rest.
    #[arg(long)]
    pub(crate) resume: bool,

    /// Also write a report to FILE: every command's status, sandbox
    /// layers and measurements (JSON), or in `--report-format`; repeat
    /// for several.
    #[arg(long, value_name = "FILE")]
    pub(crate) report: Vec<PathBuf>,

    /// The format of a `--report`: the Nth `--report-format` is the Nth
    /// `--report`'s; a report without one is JSON.
    #[arg(long, value_name = "FORMAT", value_enum)]
    pub(crate) report_format: Vec<Format>,

    /// Stop any tool that runs longer (seconds, or `1500ms`, `5m`, `1h`;
    /// tightens the policy's).
    #[arg(long, value_name = "SECONDS", value_parser = seconds_arg)]
    pub(crate) timeout: Option<Duration>,

    /// Stop any tool whose process tree holds more resident memory
    /// (bytes, or with K, M, G, T or KiB, MiB, GiB, TiB: `512MiB`;
    /// tightens the policy's).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_rss: Option<u64>,

    /// Time between SIGTERM and SIGKILL when a tool times out (seconds, or
    /// `500ms`).
    #[arg(long, value_name = "SECONDS", default_value = "2", value_parser = seconds_arg)]
    pub(crate) grace: Duration,

    /// How often each tool's process tree is sampled (milliseconds).
    #[arg(long, value_name = "MS", default_value_t = 5)]
    pub(crate) sample_interval: u64,

    /// Run up to N tools at once, each when the commands that make its
    /// inputs are done (0: one per CPU; 1: one at a time, in log order)
    /// [default: 1; 8 with `--remote-executor`, whose commands take a
    /// slot each but no local memory].
    #[arg(short = 'j', long = "jobs", value_name = "N",
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    pub(crate) jobs: Option<u16>,

    /// With -j: the memory the tools running at once may hold together
    /// (bytes, or with K, M, G, T or KiB, MiB, GiB, TiB: `512MiB`) [default: 80% of MemAvailable].
    #[arg(long, value_name = "SIZE", value_parser = parse_budget)]
    pub(crate) memory_budget: Option<u64>,

    /// With -j: the peak to assume for a tool kind that the cache and the
    /// history have not measured yet (e.g. `cc=300M`); repeat for kinds.
    #[arg(long, value_name = "KIND=SIZE", value_parser = parse_prediction)]
    pub(crate) predict: Vec<(String, u64)>,

    #[command(flatten)]
    pub(crate) cache: CacheDir,

    /// Run every command, neither restoring from nor storing in the
    /// action cache (also: REPLAY_NO_CACHE=1 in the environment, unless
    /// `--cache DIR` is given).
    #[arg(long, conflicts_with = "dir")]
    pub(crate) no_cache: bool,

    /// List every command in the final table, however long the log
    /// (default: every command of a log of at most 20, else the failures).
    #[arg(short = 'v', long, conflicts_with = "quiet")]
    pub(crate) verbose: bool,

    /// Print only failures: refusals, failed commands, errors.
    #[arg(short = 'q', long)]
    pub(crate) quiet: bool,

    #[command(flatten)]
    pub(crate) remote: Box<RemoteArgs>,
}

/// The remote action cache (REAPI v2): asked on a local miss, given what
/// ran here when the policy trusts it; and the build farm that runs what
/// misses every cache.
#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("remote_url").multiple(true))]
pub(crate) struct RemoteArgs {
    /// A REAPI v2 remote action cache: grpc://HOST:PORT or grpcs://HOST:PORT
    /// (BuildGrid, Buildbarn, NativeLink, bazel-remote...).
    #[arg(long, value_name = "URL", value_parser = parse_remote_url, conflicts_with = "no_cache", group = "remote_url")]
    pub(crate) remote_cache: Option<String>,

    /// A REAPI v2 build farm (BuildGrid...): grpc://HOST:PORT or
    /// grpcs://HOST:PORT. A command the policy allowed that misses every
    /// cache runs there, unless the policy keeps it here.
    #[arg(long, value_name = "URL", value_parser = parse_remote_url, conflicts_with = "no_cache", group = "remote_url")]
    pub(crate) remote_executor: Option<String>,

    /// The remote's instance name [default: none].
    #[arg(
        long,
        value_name = "NAME",
        default_value = "",
        hide_default_value = true,
        requires = "remote_url"
    )]
    pub(crate) remote_instance: String,

    /// gRPC metadata sent with every remote call, e.g.
    /// `authorization=Bearer TOKEN`; repeat for more.
    #[arg(long, value_name = "KEY=VALUE", value_parser = parse_header, requires = "remote_url")]
    pub(crate) remote_header: Vec<(String, String)>,

    /// PEM file of the roots a grpcs:// remote's certificate must chain
    /// to [default: the system's roots].
    #[arg(long, value_name = "FILE", requires = "remote_url")]
    pub(crate) remote_ca: Option<PathBuf>,

    /// `read` looks up only; `read-write` also uploads what ran here,
    /// which the policy must allow (`remote_cache_writers`) [default:
    /// read-write if the policy names the remote a writer, else read].
    #[arg(long, value_enum, value_name = "MODE", requires = "remote_cache")]
    pub(crate) remote_cache_mode: Option<RemoteModeArg>,

    /// The longest a remote lookup or upload may take (seconds); a remote
    /// that fails or overruns is not asked again in the run.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = seconds_arg, requires = "remote_url")]
    pub(crate) remote_timeout: Duration,
}

/// `--remote-cache-mode`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum RemoteModeArg {
    /// Look up only; upload nothing.
    Read,
    /// Look up, and upload results made here.
    ReadWrite,
}

/// A remote URL: grpc:// or grpcs://, with a host.
fn parse_remote_url(text: &str) -> Result<String, String> {
    // Credentials in the URL would be repeated in every warning, report
    // and `Debug` that names the remote: refused, without echoing them.
    let authority = text.split_once("://").map_or(text, |(_, rest)| rest);
    let authority = authority.split('/').next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "a remote URL cannot hold credentials (`USER:PASSWORD@`): they would be printed \
             in warnings and reports; pass them as `--remote-header authorization=...`"
                .to_owned(),
        );
    }
    let rest = text
        .strip_prefix("grpc://")
        .or_else(|| text.strip_prefix("grpcs://"))
        .ok_or_else(|| format!("`{text}` is not grpc://HOST:PORT or grpcs://HOST:PORT"))?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err(format!("`{text}` names no host"));
    }
    Ok(text.to_owned())
}

/// `KEY=VALUE` for gRPC metadata: a lowercase name.
fn parse_header(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KEY=VALUE (e.g. `authorization=Bearer TOKEN`)"))?;
    let key = key.trim().to_ascii_lowercase();
    if key.is_empty()
        || !key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!("`{key}` is not a gRPC metadata name"));
    }
    if !value.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(format!("the value of `{key}` must be printable ASCII"));
    }
    Ok((key, value.to_owned()))
}

impl RemoteArgs {
    /// The build farm's options: the same instance, headers, CA and
    /// timeout (each call's bound) as the remote cache's.
    fn executor_options(&self) -> Option<replay::remote::RemoteOptions> {
        Some(replay::remote::RemoteOptions {
            url: self.remote_executor.clone()?,
            instance: self.remote_instance.clone(),
            headers: self.remote_header.clone(),
            ca: self.remote_ca.clone(),
            timeout: self.remote_timeout,
            mode: None,
        })
    }

    fn options(&self) -> Option<replay::remote::RemoteOptions> {
        let url = self.remote_cache.clone()?;
        Some(replay::remote::RemoteOptions {
            url,
            instance: self.remote_instance.clone(),
            headers: self.remote_header.clone(),
            ca: self.remote_ca.clone(),
            timeout: self.remote_timeout,
            mode: self.remote_cache_mode.map(|m| match m {
                RemoteModeArg::Read => replay::remote::RemoteMode::Read,
                RemoteModeArg::ReadWrite => replay::remote::RemoteMode::ReadWrite,
            }),
        })
    }
}

/// A size as policies write one: `1024`, `64K`, `512MiB`, `2G`, `8 GiB`
/// (powers of 1024; a lowercase unit too, `512m`).
fn parse_size(text: &str) -> Result<u64, String> {
    let upper = |t: &str| {
        let at = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let (digits, unit) = t.split_at(at);
        let mut unit = unit.to_owned();
        if let Some(first) = unit.get(..1) {
            unit.replace_range(..1, &first.to_ascii_uppercase());
        }
        format!("{digits}{unit}")
    };
    policy::parse_size(text)
        .or_else(|| policy::parse_size(&upper(text.trim())))
        .ok_or_else(|| {
            format!("`{text}` is not a size: use bytes, or a whole number with K, M, G or T (or KiB, MiB, GiB, TiB), e.g. `512MiB`")
        })
}

/// A memory budget: a size of at least 1 MiB (no tool runs in less).
fn parse_budget(text: &str) -> Result<u64, String> {
    let size = parse_size(text)?;
    if size < 1 << 20 {
        return Err(format!(
            "`{text}` is too small a memory budget: give at least 1M"
        ));
    }
    Ok(size)
}

/// `KIND=SIZE`, as `--predict` takes it.
fn parse_prediction(text: &str) -> Result<(String, u64), String> {
    let (kind, size) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}` is not KIND=SIZE (e.g. `cc=300M`)"))?;
    if kind.is_empty() {
        return Err(format!("`{text}` names no tool kind (e.g. `cc=300M`)"));
    }
    Ok((kind.to_owned(), parse_size(size)?))
}

#[derive(Debug, Args)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) target: Target,

    /// How to print the verdicts: text, or a document for CI.
    #[arg(long, value_enum, default_value_t = Format::Human)]
    pub(crate) format: Format,

    /// Treat what cannot be verified on this machine (a binary of a log
    /// recorded on another platform) as refused.
    #[arg(long)]
    pub(crate) strict: bool,

    /// Judge as a run here would, running nothing: every binary resolves
    /// on this machine and every input exists or is made by an earlier
    /// command. Missing inputs alone exit 2 (bad input), not 3.
    #[arg(long)]
    pub(crate) here: bool,

    /// The command log (JSON, format `replay-log` version 1).
    #[arg(value_name = "LOG")]
    pub(crate) log: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct DriveArgs {
    #[command(flatten)]
    pub(crate) target: Target,

    #[command(flatten)]
    pub(crate) running: Running,

    /// The producer to start, and its arguments (after `--`).
    #[arg(last = true, required = true, value_name = "PROGRAM")]
    pub(crate) program: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum Format {
    /// Text for people.
    Human,
    /// One JSON document (`docs/report-v1.schema.json`).
    Json,
    /// JUnit XML: a test case per command.
    Junit,
    /// SARIF 2.1.0: findings on the log's lines, for code scanning.
    Sarif,
}

impl From<Format> for replay::report::Format {
    fn from(format: Format) -> Self {
        match format {
            Format::Human => replay::report::Format::Human,
            Format::Json => replay::report::Format::Json,
            Format::Junit => replay::report::Format::Junit,
            Format::Sarif => replay::report::Format::Sarif,
        }
    }
}

impl Running {
    pub(crate) fn settings(&self) -> Result<RunSettings, SessionError> {
        if self.report_format.len() > self.report.len() {
            return Err(SessionError::Usage(format!(
                "{} `--report-format` given for {} `--report`: give each format after its `--report FILE`",
                self.report_format.len(),
                self.report.len()
            )));
        }
        let formats = self
            .report_format
            .iter()
            .map(|f| (*f).into())
            .chain(std::iter::repeat(replay::report::Format::Json));
        Ok(RunSettings {
            keep_going: self.keep_going,
            resume: self.resume,
            report: self.report.iter().cloned().zip(formats).collect(),
            timeout: self.timeout,
            max_rss: self.max_rss,
            grace: self.grace,
            sample_interval: Duration::from_millis(self.sample_interval),
            launcher: None,
            jobs: match self.jobs {
                Some(0) => std::thread::available_parallelism().map_or(1, usize::from),
                Some(n) => usize::from(n),
                None if self.remote.remote_executor.is_some() => REMOTE_JOBS,
                None => 1,
            },
            memory_budget: self.memory_budget,
            predict: self.predict.iter().cloned().collect(),
            verbosity: match (self.verbose, self.quiet) {
                (true, _) => replay::report::Verbosity::Verbose,
                (_, true) => replay::report::Verbosity::Quiet,
                _ => replay::report::Verbosity::Normal,
            },
            cache: if self.no_cache || (no_cache_env() && self.cache.dir.is_none()) {
                if self.remote.remote_cache.is_some() {
                    return Err(SessionError::Usage(
                        "`--remote-cache` needs the local action cache, which REPLAY_NO_CACHE=1 turns off; pass `--cache DIR` too".into(),
                    ));
                }
                None
            } else {
                let mut options = self.cache.options()?;
                options.remote = self.remote.options();
                options.executor = self.remote.executor_options();
                Some(options)
            },
        })
    }
}

/// `-j` when `--remote-executor` is given without one: executions the
/// farm runs at once for this client (each holds a slot, no memory here).
const REMOTE_JOBS: usize = 8;

/// Whether the environment turns the action cache off (`REPLAY_NO_CACHE=1`).
fn no_cache_env() -> bool {
    std::env::var_os("REPLAY_NO_CACHE").is_some_and(|v| v == "1")
}

impl CacheDir {
    pub(crate) fn options(&self) -> Result<CacheOptions, SessionError> {
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
            remote: None,
            executor: None,
        })
    }
}

/// A command-line duration as policies write one (`90`, `1500ms`, `30s`,
/// `5m`, `1h`), or seconds with a fraction (`0.5`): a usage error at parse
/// time, before anything is read or run.
fn seconds_arg(text: &str) -> Result<Duration, String> {
    if let Some(duration) = policy::parse_duration(text) {
        return Ok(duration);
    }
    let value: f64 = text.trim().parse().map_err(|_| {
        format!("`{text}` is not a duration: use seconds (`90`, `0.5`), or a whole number with ms, s, m or h (`5m`)")
    })?;
    Duration::try_from_secs_f64(value)
        .map_err(|_| format!("`{text}` must be a number of seconds from 0 to about 10^19"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_in_policies() {
        assert_eq!(parse_size("512MiB"), Ok(512 << 20));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("2 GiB"), Ok(2 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("1.5G").is_err());
        assert!(parse_size("lots").is_err());
        assert_eq!(seconds_arg("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(seconds_arg("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(seconds_arg("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(seconds_arg("2"), Ok(Duration::from_secs(2)));
        assert!(seconds_arg("5 minutes").is_err());
    }

    #[test]
    fn a_remote_url_with_credentials_is_refused_without_repeating_them() {
        assert_eq!(
            parse_remote_url("grpcs://farm.example:443"),
            Ok("grpcs://farm.example:443".to_owned())
        );
        for url in [
            "grpc://alice:s3cret@farm.example:50051",
            "grpcs://token@farm.example:443/x",
            "http://alice:s3cret@farm.example",
        ] {
            let said = parse_remote_url(url).unwrap_err();
            assert!(said.contains("cannot hold credentials"), "{said}");
            assert!(
                !said.contains("s3cret") && !said.contains("token"),
                "{said}"
            );
        }
        assert!(
            parse_remote_url("grpc://host:1/a@b").is_ok(),
            "an @ in the path"
        );
    }
}
