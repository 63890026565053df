//! `plot`: renders the benchmark's scale figure (JSON in, SVG out). The
//! input format is documented in `replay_bench_tools::scale_plot`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;
use replay_bench_tools::scale_plot::{render_svg, ScaleFigure};

/// Render the scale figure as SVG.
#[derive(Debug, Parser)]
#[command(name = "plot")]
struct Args {
    /// The figure's data (JSON).
    #[arg(long, value_name = "scale.json")]
    input: PathBuf,
    /// Where to write the SVG.
    #[arg(long, value_name = "scale.svg")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("plot: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<()> {
    let figure = ScaleFigure::load(&args.input)?;
    let svg = render_svg(&figure)?;
    std::fs::write(&args.out, svg).with_context(|| format!("cannot write `{}`", args.out.display()))
}
