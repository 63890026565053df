//! Imports a JSON Compilation Database (as CMake, Bear and `ninja -t
//! compdb` write it) as a replay command log, version 1.
//!
//! Each entry (`directory`, `file`, `arguments` or `command`, `output`)
//! becomes one or more commands: a `command` string is split as a POSIX
//! shell would split it ([`shell`]), and the `&&` chains CMake writes for
//! links and archives (`: && clang ... && :`, `cmake -E rm -f x.a &&
//! llvm-ar qc x.a ... && llvm-ranlib x.a`) become the tool commands in them.
//! `cwd` and every path are made relative to the work root; what reaches
//! outside it (other than system directories), or cannot be expressed as
//! a tool command, is left out and reported in [`Import::left_out`],
//! never rewritten or run by a shell. Commands are ordered so that the
//! producer of every input comes first.

mod convert;
mod converted;
mod entry;
mod fileops;
mod order;
pub mod paths;
pub mod shell;

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use cmdlog::{Command, Header, LogWriter, Os, Platform, Producer};

pub use entry::Entry;

/// The producer name imported logs carry.
pub const PRODUCER: &str = "replay-import";

/// Why a database could not be imported at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The database could not be read.
    #[error("cannot read the database `{path}`: {source}")]
    Read {
        /// The database's path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The database is not JSON.
    #[error("the database is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),
    /// The database is JSON but not an array of entries.
    #[error("the database is not a JSON array of entries")]
    NotAnArray,
    /// An entry is malformed.
    #[error("entry {index}: field `{field}`: {problem}")]
    Entry {
        /// The entry's index in the database, from 0.
        index: usize,
        /// The field at fault.
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The work root cannot be resolved.
    #[error("the work root `{path}`: {source}")]
    Root {
        /// The root as given.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The log could not be written.
    #[error("cannot write the log: {0}")]
    Write(#[from] cmdlog::WriteError),
}

/// How to import.
#[derive(Debug, Clone)]
pub struct Options {
    /// The work root every path is made relative to (canonicalized).
    pub root: PathBuf,
    /// Root-relative path of the log that will be written: no declared
    /// input directory may hold it.
    pub log: Option<String>,
}

/// What the importer did with part of the database, for the user to see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remark {
    /// The entry's index in the database, from 0.
    pub entry: usize,
    /// What it is about: the command (or part of a chain) as written.
    pub subject: String,
    /// What happened and why.
    pub reason: String,
}

/// An imported database: the commands of the log, and what was left out.
#[derive(Debug, Clone, Default)]
pub struct Import {
    /// The commands, in an order where producers come first; ids from 1.
    pub commands: Vec<Command>,
    /// Index in the database of the entry each command came from.
    pub sources: Vec<usize>,
    /// What was left out and why: it will not run.
    pub left_out: Vec<Remark>,
    /// What was changed or dropped without losing anything (a `ranlib`
    /// folded into `ar`'s `s`, a `cmake -E rm` of an output replay
    /// writes fresh, a duplicate entry), for the record.
    pub notes: Vec<Remark>,
}

/// Reads and imports the database at `path`.
pub fn import_file(path: &Path, options: &Options) -> Result<Import, ImportError> {
    let text = std::fs::read(path).map_err(|source| ImportError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let base = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    import(&text, &base, options)
}

/// Imports the database `json`; relative `directory` fields are taken
/// from `base` (the database's directory).
pub fn import(json: &[u8], base: &Path, options: &Options) -> Result<Import, ImportError> {
    let root = std::fs::canonicalize(&options.root).map_err(|source| ImportError::Root {
        path: options.root.clone(),
        source,
    })?;
    // Relative `directory` fields are taken from the database's
    // directory, made absolute from the current one.
    let base = std::path::absolute(base)
        .map(|b| paths::lexical(&b))
        .map_err(|source| ImportError::Root {
            path: base.to_path_buf(),
            source,
        })?;
    let base = base.as_path();
    let entries = entry::parse(json)?;
    let mut result = Import::default();
    // Duplicates (Bear's `--append`, or CMake's list and ninja's): the last
    // entry for a file and output wins.
    let mut last: HashMap<(PathBuf, PathBuf, Option<PathBuf>), usize> = HashMap::new();
    for (at, e) in entries.iter().enumerate() {
        last.insert(e.key(base), at);
    }
    let mut converted: Vec<converted::Converted> = Vec::new();
    for (at, e) in entries.iter().enumerate() {
        let kept = last.get(&e.key(base)).copied();
        if kept != Some(at) {
            result.notes.push(Remark {
                entry: e.index,
                subject: e.file.clone(),
                reason: format!(
                    "a duplicate: entry {} names the same file and output, and the last one is kept",
                    kept.map_or(e.index, |k| entries[k].index)
                ),
            });
            continue;
        }
        let out = convert::entry(e, base, &root, &mut result);
        converted.extend(out);
    }
    // One writer per output: the last entry that writes it wins.
    let mut writer: HashMap<String, usize> = HashMap::new();
    // (A `rename`'s source and a `remove`'s paths are taken away, not
    // written: they do not compete.)
    for (at, c) in converted.iter().enumerate() {
        for o in fileops::made(c) {
            writer.insert(o.clone(), at);
        }
    }
    let mut unique = Vec::with_capacity(converted.len());
    for (at, c) in converted.into_iter().enumerate() {
        if let Some(other) = fileops::made(&c)
            .iter()
            .find(|o| writer.get(*o) != Some(&at))
        {
            let by = writer.get(other).copied().unwrap_or(at);
            result.left_out.push(Remark {
                entry: c.entry,
                subject: c.shown(),
                reason: format!("its output `{other}` is also written by a later command (number {by} in the chain order), which is kept"),
            });
            continue;
        }
        unique.push(c);
    }
    let held: Vec<String> = unique
        .iter()
        .flat_map(|c| c.outputs.iter().cloned())
        .chain(options.log.clone())
        .collect();
    let held: Vec<&str> = held.iter().map(String::as_str).collect();
    for c in &mut unique {
        c.add_source_dirs(&held, &root);
    }
    let ordered = order::producers_first(unique, &mut result.left_out);
    let ordered = fileops::no_link_renamed(ordered, &root, &mut result.left_out);
    for (at, c) in ordered.into_iter().enumerate() {
        result.sources.push(c.entry);
        result.commands.push(Command {
            id: at as u64 + 1,
            tool: c.tool,
            program: c.program,
            args: c.args,
            cwd: c.cwd,
            env: BTreeMap::new(),
            inputs: c.inputs,
            outputs: c.outputs,
            cache_key: None,
        });
    }
    Ok(result)
}

/// Writes `import`'s commands as a v1 log on `out`.
pub fn write_log<W: Write>(import: &Import, out: W) -> Result<W, ImportError> {
    let header = Header {
        producer: Producer {
            name: PRODUCER.to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            llvm: None,
        },
        platform: Platform {
            os: Os::host().unwrap_or(Os::Linux),
            arch: std::env::consts::ARCH.to_owned(),
        },
    };
    let mut writer = LogWriter::new(out, &header)?;
    for command in &import.commands {
        writer.write_command(command)?;
    }
    Ok(writer.finish()?)
}

#[cfg(test)]
mod tests;
