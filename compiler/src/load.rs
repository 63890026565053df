//! Loading an input file (LLVM IR text or bitcode) into a verified module.

use std::path::{Path, PathBuf};

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;

/// Why an input could not become a verified module.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {message}")]
    Read {
        /// The input file.
        path: PathBuf,
        /// LLVM's message.
        message: String,
    },
    /// The file is neither valid IR text nor bitcode.
    #[error("cannot parse `{path}`: {message}")]
    Parse {
        /// The input file.
        path: PathBuf,
        /// LLVM's message, with the line and column where it gives them.
        message: String,
    },
    /// The module parsed but is not valid IR.
    #[error("`{path}` is not valid LLVM IR: {message}")]
    Verify {
        /// The input file.
        path: PathBuf,
        /// LLVM's verifier output.
        message: String,
    },
}

/// Reads `path` (`.ll` text or `.bc` bitcode) into `context` and verifies it.
pub fn load<'ctx>(context: &'ctx Context, path: &Path) -> Result<Module<'ctx>, LoadError> {
    let buffer = MemoryBuffer::create_from_file(path).map_err(|e| LoadError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let module = context
        .create_module_from_ir(buffer)
        .map_err(|e| LoadError::Parse {
            path: path.to_owned(),
            message: e.to_string().trim().to_owned(),
        })?;
    module.verify().map_err(|e| LoadError::Verify {
        path: path.to_owned(),
        message: e.to_string().trim().to_owned(),
    })?;
    Ok(module)
}
