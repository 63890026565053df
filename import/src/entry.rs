//! The entries of a JSON Compilation Database, checked field by field.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::paths::lexical;
use crate::ImportError;

/// One entry of the database, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its index in the database, from 0.
    pub index: usize,
    /// The directory the command ran in.
    pub directory: String,
    /// The main source (or first input) the command processes.
    pub file: String,
    /// The command: `arguments` as given, or `command` to be split.
    pub command: Invocation,
    /// The output it names, if any.
    pub output: Option<String>,
}

/// How an entry gives its command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invocation {
    /// `arguments`: the argv, already split.
    Arguments(Vec<String>),
    /// `command`: one string, split as a POSIX shell would.
    Command(String),
}

impl Entry {
    /// The directory, absolute (a relative one is taken from `base`).
    pub fn directory(&self, base: &Path) -> PathBuf {
        lexical(&base.join(&self.directory))
    }

    /// What makes two entries the same compile: directory, file, output.
    pub(crate) fn key(&self, base: &Path) -> (PathBuf, PathBuf, Option<PathBuf>) {
        let dir = self.directory(base);
        (
            dir.clone(),
            lexical(&dir.join(&self.file)),
            self.output.as_ref().map(|o| lexical(&dir.join(o))),
        )
    }
}

/// Parses the database, refusing a malformed entry by index and field.
pub(crate) fn parse(json: &[u8]) -> Result<Vec<Entry>, ImportError> {
    let value: Value = serde_json::from_slice(json).map_err(ImportError::Json)?;
    let Value::Array(items) = value else {
        return Err(ImportError::NotAnArray);
    };
    items
        .into_iter()
        .enumerate()
        .map(|(index, item)| one(index, item))
        .collect()
}

fn one(index: usize, item: Value) -> Result<Entry, ImportError> {
    let bad = |field: &'static str, problem: &str| ImportError::Entry {
        index,
        field,
        problem: problem.to_owned(),
    };
    let Value::Object(mut fields) = item else {
        return Err(bad("(entry)", "an entry must be a JSON object"));
    };
    let mut string = |field: &'static str, required: bool| -> Result<Option<String>, ImportError> {
        match fields.remove(field) {
            None | Some(Value::Null) if !required => Ok(None),
            None | Some(Value::Null) => Err(bad(field, "missing")),
            Some(Value::String(s)) if s.contains('\0') => Err(bad(field, "holds a NUL byte")),
            Some(Value::String(s)) if s.is_empty() && field != "command" => {
                Err(bad(field, "is empty"))
            }
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(bad(field, "must be a string")),
        }
    };
    let directory = string("directory", true)?.unwrap_or_default();
    let file = string("file", true)?.unwrap_or_default();
    let output = string("output", false)?;
    let command = string("command", false)?;
    let arguments = match fields.remove("arguments") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) => Some(
            items
                .into_iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) if !s.contains('\0') => Ok(s),
                    _ => Err(ImportError::Entry {
                        index,
                        field: "arguments",
                        problem: format!("item {i} must be a string without NUL bytes"),
                    }),
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(bad("arguments", "must be an array of strings")),
    };
    let command = match (arguments, command) {
        (Some(args), _) => Invocation::Arguments(args),
        (None, Some(command)) => Invocation::Command(command),
        (None, None) => {
            return Err(bad(
                "arguments",
                "missing: an entry gives `arguments` or `command`",
            ))
        }
    };
    Ok(Entry {
        index,
        directory,
        file,
        command,
        output,
    })
}
