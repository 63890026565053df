//! The `aotc` command line: a thin layer over the `aotc` library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Compile LLVM IR to a replay command log instead of running the tools.
#[derive(Debug, Parser)]
#[command(name = "aotc", version)]
struct Cli {
    /// LLVM IR (`.ll`) or bitcode (`.bc`) files.
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let context = inkwell::context::Context::create();
    for input in &cli.inputs {
        if let Err(e) = aotc::load::load(&context, input) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    }
    eprintln!(
        "error: `aotc` verified its inputs, but partitioning and writing the log are not built yet"
    );
    ExitCode::from(2)
}
