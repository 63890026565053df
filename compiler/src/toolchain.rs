//! Finding the programs the log names: LLVM's `opt` and `llc` in the
//! directory `llvm-config --bindir` reports (or `--llvm-bin DIR`), the C
//! compiler driver beside them, and the platform linker.
//!
//! Paths are recorded as found, not canonicalized: the policy resolves and
//! pins them. Logs for macOS and Windows are for auditing with those
//! platforms' policies and are not run here; nothing on this host says where
//! that platform installs its tools, so they name bare programs (`opt`,
//! `llc`, `ld64.lld`; `opt.exe`, `llc.exe`, `lld-link.exe`), which the policy
//! resolves in its own directories.

use std::path::{Path, PathBuf};
use std::process::Command;

use cmdlog::Os;

use crate::options::Emit;

/// Why the tools could not be found.
#[derive(Debug, thiserror::Error)]
pub enum ToolchainError {
    /// No `llvm-config` for LLVM 14 answered.
    #[error("cannot find LLVM 14's tools: neither `llvm-config-14` nor `llvm-config` (version 14) answered `--bindir`")]
    NoLlvmConfig,
    /// A program the log needs is not where LLVM's tools are.
    #[error("cannot find `{name}` in `{dir}`")]
    Missing {
        /// The program.
        name: String,
        /// Where it was looked for.
        dir: PathBuf,
    },
    /// A program needed from `PATH` is not on it.
    #[error("cannot find `{name}` on `PATH`")]
    NotOnPath {
        /// The program.
        name: String,
    },
}

impl ToolchainError {
    /// What the user can do about it.
    pub fn hint(&self) -> &'static str {
        match self {
            ToolchainError::NoLlvmConfig | ToolchainError::Missing { .. } => {
                "install LLVM 14 (`apt install llvm-14 clang-14`) or pass `--llvm-bin DIR`"
            }
            ToolchainError::NotOnPath { .. } => "install binutils (`apt install binutils`)",
        }
    }
}

/// The programs of one run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toolchain {
    /// LLVM's optimizer.
    pub opt: PathBuf,
    /// LLVM's code generator.
    pub llc: PathBuf,
    /// The link step's program (a C driver or a linker), if the run links.
    pub link: Option<PathBuf>,
    /// The LLVM version `llvm-config` reported, if it was asked.
    pub llvm_version: Option<String>,
}

fn llvm_config(program: &str, arg: &str) -> Option<String> {
    let out = Command::new(program).arg(arg).output().ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Finds LLVM 14's bin directory and its version with `llvm-config-14`, then
/// `llvm-config` if it reports version 14.
fn find_bindir() -> Result<(PathBuf, Option<String>), ToolchainError> {
    for program in ["llvm-config-14", "llvm-config"] {
        let Some(version) = llvm_config(program, "--version") else {
            continue;
        };
        if !version.starts_with("14.") {
            continue;
        }
        if let Some(dir) = llvm_config(program, "--bindir") {
            return Ok((PathBuf::from(dir), Some(version)));
        }
    }
    Err(ToolchainError::NoLlvmConfig)
}

/// The first of `names` that is a file in `dir`.
fn in_dir(dir: &Path, names: &[&str]) -> Result<PathBuf, ToolchainError> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ToolchainError::Missing {
            name: names.first().copied().unwrap_or_default().to_owned(),
            dir: dir.to_owned(),
        })
}

/// `name` resolved on `PATH`.
fn on_path(name: &str) -> Result<PathBuf, ToolchainError> {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .ok_or_else(|| ToolchainError::NotOnPath {
            name: name.to_owned(),
        })
}

impl Toolchain {
    /// Finds the programs for `os` and `emit`, in `llvm_bin` if given.
    pub fn find(
        llvm_bin: Option<&Path>,
        os: Os,
        emit: Emit,
        link: bool,
    ) -> Result<Toolchain, ToolchainError> {
        let foreign = |opt: &str, llc: &str, linker: &str| Toolchain {
            opt: PathBuf::from(opt),
            llc: PathBuf::from(llc),
            link: link.then(|| PathBuf::from(linker)),
            llvm_version: None,
        };
        match os {
            Os::Macos => return Ok(foreign("opt", "llc", "ld64.lld")),
            Os::Windows => return Ok(foreign("opt.exe", "llc.exe", "lld-link.exe")),
            Os::Linux => {}
        }
        let (dir, llvm_version) = match llvm_bin {
            Some(dir) => {
                let version = llvm_config(&dir.join("llvm-config").to_string_lossy(), "--version");
                (dir.to_owned(), version)
            }
            None => find_bindir()?,
        };
        let opt = in_dir(&dir, &["opt"])?;
        let llc = in_dir(&dir, &["llc"])?;
        let link = if !link {
            None
        } else if emit == Emit::Obj {
            Some(on_path("ld")?)
        } else {
            Some(in_dir(&dir, &["clang-14", "clang"])?)
        };
        Ok(Toolchain {
            opt,
            llc,
            link,
            llvm_version,
        })
    }
}
