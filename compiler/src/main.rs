//! The `aotc` command line: a thin clap layer over the `aotc` library.

use std::path::PathBuf;
use std::process::ExitCode;

use aotc::{Emit, LogDest, OptLevel, Options, Partitions};
use clap::{Parser, ValueEnum};
use cmdlog::exit_codes::ReplayExitCode;

/// Compile LLVM IR to a replay command log instead of running the tools.
///
/// The inputs are linked into one module, split into partitions, and each
/// partition's bitcode is written under the work root (the directory of
/// LOG). The log lists, for each partition, `opt` then `llc`, then one link
/// into OUTPUT. Nothing runs unless `--exec` is given.
#[derive(Debug, Parser)]
#[command(name = "aotc", version)]
struct Cli {
    /// LLVM IR (`.ll`) or bitcode (`.bc`) files, linked in this order.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,

    /// The file the link produces; it must lie under the work root.
    #[arg(short = 'o', value_name = "OUTPUT")]
    output: PathBuf,

    /// Where to write the command log; its directory is the work root.
    /// Not needed in driver mode (`REPLAY_LOG_FD` and `REPLAY_ROOT` set).
    #[arg(long, value_name = "LOG")]
    log: Option<PathBuf>,

    /// Optimization level for `opt` and `llc` (`-O0` to `-O3`).
    #[arg(short = 'O', value_name = "LEVEL", default_value = "2", value_parser = parse_opt_level)]
    opt_level: OptLevel,

    /// What the link produces.
    #[arg(long, value_enum, default_value = "exe")]
    emit: EmitArg,

    /// A library to link (`-l NAME`), repeatable.
    #[arg(short = 'l', value_name = "NAME")]
    libs: Vec<String>,

    /// A directory to search for libraries (`-L DIR`), repeatable.
    #[arg(short = 'L', value_name = "DIR")]
    lib_dirs: Vec<PathBuf>,

    /// The platform whose toolchain the log names (default: this one).
    #[arg(long, value_enum)]
    target_os: Option<OsArg>,

    /// How many partitions: a number, or `auto` to choose from the size.
    #[arg(long, value_name = "N|auto", default_value = "auto", value_parser = parse_partitions)]
    partitions: Partitions,

    /// The directory of LLVM 14's tools (default: `llvm-config --bindir`).
    #[arg(long, value_name = "DIR")]
    llvm_bin: Option<PathBuf>,

    /// Also run the logged commands, from inside `aotc` (the baseline that
    /// driver mode is measured against).
    #[arg(long)]
    exec: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum EmitArg {
    Exe,
    Shared,
    Obj,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum OsArg {
    Linux,
    Macos,
    Windows,
}

fn parse_opt_level(s: &str) -> Result<OptLevel, String> {
    s.parse::<u8>()
        .ok()
        .and_then(OptLevel::new)
        .ok_or_else(|| format!("`{s}` is not 0, 1, 2 or 3"))
}

fn parse_partitions(s: &str) -> Result<Partitions, String> {
    s.parse()
}

/// Prints `error: ...`, the causes, then the hint.
fn report(error: &dyn std::error::Error, hint: Option<String>) {
    eprintln!("error: {error}");
    let mut source = error.source();
    while let Some(cause) = source {
        eprintln!("  caused by: {cause}");
        source = cause.source();
    }
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

fn options(cli: Cli) -> Result<Options, (String, String)> {
    let driver = aotc::sink::driver_from_env().map_err(|e| (e.to_string(), e.hint().to_owned()))?;
    let log = match (driver, cli.log) {
        (Some((fd, root)), log) => {
            if let Some(log) = log {
                eprintln!(
                    "warning: driver mode (`{}` is set): the log goes to descriptor {fd}, not `{}`",
                    aotc::sink::LOG_FD_VAR,
                    log.display()
                );
            }
            LogDest::Driver { fd, root }
        }
        (None, Some(log)) => LogDest::File(log),
        (None, None) => {
            return Err((
                "no log destination: `--log` is missing and `REPLAY_LOG_FD` is not set".to_owned(),
                "pass `--log LOG`, or run under `replay drive`".to_owned(),
            ))
        }
    };
    let target_os = match cli.target_os {
        Some(OsArg::Linux) => cmdlog::Os::Linux,
        Some(OsArg::Macos) => cmdlog::Os::Macos,
        Some(OsArg::Windows) => cmdlog::Os::Windows,
        None => cmdlog::Os::host().ok_or_else(|| {
            (
                format!(
                    "this platform (`{}`) has no toolchain in `aotc`",
                    std::env::consts::OS
                ),
                "pass `--target-os linux|macos|windows`".to_owned(),
            )
        })?,
    };
    Ok(Options {
        inputs: cli.inputs,
        output: cli.output,
        log,
        opt_level: cli.opt_level,
        emit: match cli.emit {
            EmitArg::Exe => Emit::Exe,
            EmitArg::Shared => Emit::Shared,
            EmitArg::Obj => Emit::Obj,
        },
        libs: cli.libs,
        lib_dirs: cli.lib_dirs,
        target_os,
        partitions: cli.partitions,
        llvm_bin: cli.llvm_bin,
        exec: cli.exec,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let options = match options(cli) {
        Ok(o) => o,
        Err((message, hint)) => {
            eprintln!("error: {message}\nhint: {hint}");
            return ExitCode::from(ReplayExitCode::BAD_INPUT as u8);
        }
    };
    match aotc::run(&options) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e, e.hint());
            let code = if e.is_tool_failure() {
                ReplayExitCode::TOOL_FAILED
            } else {
                ReplayExitCode::BAD_INPUT
            };
            ExitCode::from(code as u8)
        }
    }
}
