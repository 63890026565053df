//! Loading inputs (LLVM IR text or bitcode) into one verified module.
//!
//! [`load`] reads and verifies one file; [`load_all`] reads every input,
//! optionally tags their local symbols for partitioning (see
//! [`crate::partition::tag_locals`]), and links them into the first with
//! LLVM's IR linker (`Module::link_in_module`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use inkwell::context::Context;
use inkwell::memory_buffer::MemoryBuffer;
use inkwell::module::Module;

use crate::partition;

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
    /// Two inputs could not be linked (e.g. a symbol defined twice).
    #[error("cannot link `{path}` with the inputs before it: {message}")]
    Link {
        /// The input that could not be linked in.
        path: PathBuf,
        /// LLVM's linker message.
        message: String,
    },
    /// The linked module is not valid IR.
    #[error("the inputs linked together are not valid LLVM IR: {message}")]
    VerifyLinked {
        /// LLVM's verifier output.
        message: String,
    },
    /// No input was given.
    #[error("no input files")]
    NoInput,
}

impl LoadError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<&'static str> {
        match self {
            LoadError::Read { .. } => Some("check that the file exists and is readable"),
            LoadError::Parse { .. } => Some(
                "fix the IR where LLVM points; inputs must be LLVM 14 IR (`.ll`) or bitcode (`.bc`), e.g. from `clang-14 -emit-llvm -c`",
            ),
            LoadError::Verify { .. } => Some("fix the IR at the place LLVM names"),
            LoadError::Link { .. } => Some(
                "each non-static symbol may be defined in one input only; make the duplicate `static` or `weak`",
            ),
            LoadError::VerifyLinked { .. } => {
                Some("the inputs disagree about a symbol's type; declare it the same way everywhere")
            }
            LoadError::NoInput => Some("pass at least one `.ll` or `.bc` file"),
        }
    }
}

/// Reads `path` (`.ll` text or `.bc` bitcode) into `context` and verifies it.
pub fn load<'ctx>(context: &'ctx Context, path: &Path) -> Result<Module<'ctx>, LoadError> {
    let buffer = MemoryBuffer::create_from_file(path).map_err(|e| LoadError::Read {
        path: path.to_owned(),
        message: e.to_string().trim().to_owned(),
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

/// The inputs, loaded and linked.
pub struct Linked<'ctx> {
    /// The linked, verified module.
    pub module: Module<'ctx>,
    /// Instructions in the inputs' function bodies, before linking.
    pub instructions: usize,
}

/// Loads every input and links them into one verified module.
///
/// `tag` is called with the total instruction count once every input is
/// loaded and says whether to tag local symbols for partitioning (it must be
/// decided before linking, when each symbol's source module is still known);
/// `salt` goes into the tags (see [`partition::module_tag`]).
pub fn load_all<'ctx>(
    context: &'ctx Context,
    paths: &[PathBuf],
    salt: &str,
    tag: impl FnOnce(usize) -> bool,
) -> Result<Linked<'ctx>, LoadError> {
    let mut modules = Vec::with_capacity(paths.len());
    for path in paths {
        modules.push((path, load(context, path)?));
    }
    let instructions = modules
        .iter()
        .map(|(_, m)| partition::instruction_count(m))
        .sum();
    if tag(instructions) {
        let mut ranks: HashMap<String, usize> = HashMap::new();
        for (path, module) in &modules {
            let mut source = module.get_source_file_name().to_string_lossy().into_owned();
            if source.is_empty() {
                source = path.display().to_string();
            }
            let rank = ranks.entry(source.clone()).or_insert(0);
            partition::tag_locals(module, &partition::module_tag(&source, *rank, salt));
            *rank += 1;
        }
    }
    let mut modules = modules.into_iter();
    let (_, first) = modules.next().ok_or(LoadError::NoInput)?;
    for (path, module) in modules {
        first.link_in_module(module).map_err(|e| LoadError::Link {
            path: path.clone(),
            message: e.to_string().trim().to_owned(),
        })?;
    }
    first.verify().map_err(|e| LoadError::VerifyLinked {
        message: e.to_string().trim().to_owned(),
    })?;
    Ok(Linked {
        module: first,
        instructions,
    })
}
