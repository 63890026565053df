//! A command converted from a database entry, before ids and ordering,
//! and the input directories its sources may include from.

use std::path::Path;

use cmdlog::ToolKind;

use crate::paths::{is_under, parent};

/// A command converted from an entry, before ids and ordering.
#[derive(Debug, Clone)]
pub(crate) struct Converted {
    pub entry: usize,
    pub tool: ToolKind,
    pub program: String,
    pub args: Vec<String>,
    pub cwd: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    /// Directories of the sources it compiles (root-relative): declared
    /// as input directories unless they hold an output or the log.
    pub source_dirs: Vec<String>,
}

impl Converted {
    /// The command as one line, for reports.
    pub fn shown(&self) -> String {
        std::iter::once(self.program.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Declares, for each source, the largest directory around it that
    /// holds none of `held` (every output of the log, and the log) as an
    /// input directory: sources include headers relative to themselves,
    /// also from sibling directories (`#include "../x/y.h"`). In each
    /// directory above it (or from the source's own, when even that holds
    /// outputs: a build directory inside the source tree), the sources and
    /// headers are declared one by one, never the directory.
    pub fn add_source_dirs(&mut self, held: &[&str], root: &Path) {
        let clean = |d: &str| !held.iter().any(|h| is_under(h, d));
        for dir in std::mem::take(&mut self.source_dirs) {
            let mut widest = None;
            let mut at = dir.clone();
            while clean(&at) {
                widest = Some(at.clone());
                if at == "." {
                    break;
                }
                at = parent(&at).to_owned();
            }
            if let Some(widest) = &widest {
                if !self.inputs.contains(widest) {
                    self.inputs.push(widest.clone());
                }
                if widest == "." {
                    continue;
                }
            }
            loop {
                for file in includable(root, &at) {
                    if !self.inputs.contains(&file) && !held.contains(&file.as_str()) {
                        self.inputs.push(file);
                    }
                }
                if at == "." {
                    break;
                }
                at = parent(&at).to_owned();
            }
        }
    }
}

/// Extensions of the files a compile may include besides sources.
const HEADER_EXTENSIONS: &[&str] = &["h", "hh", "hpp", "hxx", "inc", "def"];

/// The sources and headers directly in root-relative `dir`
/// (root-relative, sorted): regular files only, never through a symlink.
fn includable(root: &Path, dir: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|name| {
            name.rsplit_once('.').is_some_and(|(_, ext)| {
                HEADER_EXTENSIONS.contains(&ext) || SOURCE_EXTENSIONS.contains(&ext)
            })
        })
        .map(|name| {
            if dir == "." {
                name
            } else {
                format!("{dir}/{name}")
            }
        })
        .collect();
    found.sort();
    found
}

/// Extensions of sources a compiler compiles (not links).
pub(crate) const SOURCE_EXTENSIONS: &[&str] = &[
    "c", "i", "s", "S", "sx", "cc", "cpp", "cxx", "C", "ll", "bc", "m",
];
