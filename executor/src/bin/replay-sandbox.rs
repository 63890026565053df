//! `replay`'s sandbox launcher on its own: what `replay` re-executes
//! between itself and each tool. The same code as `replay __sandbox-child`,
//! in a binary that links nothing else, so it starts in a fraction of the
//! time (fewer pages to map and relocations to apply per command).

use std::process::ExitCode;

fn main() -> ExitCode {
    if std::env::args_os().nth(1).as_deref() == Some(replay::sandbox::CHILD_ARG.as_ref()) {
        return replay::sandbox::child_main();
    }
    eprintln!(
        "error: `replay-sandbox` is internal to `replay`: it is the launcher `replay` starts each tool through; run `replay` instead"
    );
    ExitCode::from(2)
}
