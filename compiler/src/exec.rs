//! `--exec`: running the logged commands from inside `aotc`, one at a time,
//! while it still holds its LLVM context and module, as a compiler that runs
//! its own tools does. It is the baseline that driver mode is measured
//! against, not a sandbox: commands run directly (never through a shell),
//! in the work root, with `aotc`'s environment plus the command's.

use std::path::{Path, PathBuf};
use std::process::ExitStatus;

use cmdlog::Command;

/// Why a command run by `--exec` failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The program could not be started.
    #[error("command {id}: cannot start `{program}`")]
    Spawn {
        /// The command's id.
        id: u64,
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and failed.
    #[error("command {id}: `{program}` failed ({status})")]
    Failed {
        /// The command's id.
        id: u64,
        /// The program.
        program: String,
        /// How it ended.
        status: ExitStatus,
    },
}

/// Runs `command` in `root` and waits for it.
pub fn run(root: &Path, command: &Command) -> Result<(), ExecError> {
    let cwd: PathBuf = root.join(&command.cwd);
    let status = std::process::Command::new(&command.program)
        .args(&command.args)
        .current_dir(cwd)
        .envs(&command.env)
        .status()
        .map_err(|source| ExecError::Spawn {
            id: command.id,
            program: command.program.clone(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(ExecError::Failed {
            id: command.id,
            program: command.program.clone(),
            status,
        })
    }
}
