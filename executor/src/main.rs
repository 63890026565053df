//! The `replay` command line: parses arguments with clap ([`cli`]), calls
//! the `replay` library's sessions, and turns their errors into messages
//! and exit codes ([`replay::ReplayExitCode`]). Every decision of a run is
//! the library's ([`replay::session`]).

mod cli;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use cli::{CacheAction, CacheDir, Cli, Command, ImportFrom, PolicyAction, Target};
use replay::session::{self, Console, SessionError};

fn main() -> ExitCode {
    // The sandbox child of a tool (a double spawn): before anything else runs.
    #[cfg(target_os = "linux")]
    if std::env::args_os().nth(1).as_deref() == Some(replay::sandbox::CHILD_ARG.as_ref()) {
        return replay::sandbox::child_main();
    }
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(message) = cli::preflight(&args) {
        let _ = std::io::stderr().write_all(message.as_bytes());
        return ExitCode::from(u8::try_from(replay::ReplayExitCode::BAD_INPUT).unwrap_or(2));
    }
    let cli = Cli::parse_from(args);
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
        Some(Command::Check(args)) => session::check(
            &target(&args.target)?,
            &args.log,
            session::CheckSettings {
                strict: args.strict,
                here: args.here,
                format: args.format.into(),
            },
            &console,
        )
        .map(drop),
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
        Some(Command::Import(args)) => match args.from {
            ImportFrom::Compdb(args) => session::import(
                &session::ImportSettings {
                    database: args.database,
                    log: args.log,
                    root: args.root,
                    policy: args.policy,
                },
                &console,
            ),
        },
        Some(Command::Explain(args)) => session::explain(args.rule.as_deref(), &console),
        Some(Command::Policy(args)) => match args.action {
            PolicyAction::Show { file } => session::policy_show(&file, &console),
            PolicyAction::Lint { file } => session::policy_lint(&file, &console),
        },
        Some(Command::Completions(args)) => {
            cli::completions(args.shell, &mut std::io::stdout());
            Ok(())
        }
        Some(Command::Man) => cli::man(&mut std::io::stdout()).map_err(SessionError::Report),
        #[cfg(feature = "remote-cache")]
        Some(Command::Worker(args)) => replay::worker::serve::serve(
            &args.settings(),
            std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
        )
        .map_err(|error| SessionError::Worker(Box::new(error))),
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
