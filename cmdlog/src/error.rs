//! What can be wrong with a log, and where: [`ReadError`] for readers,
//! [`WriteError`] for producers.

use std::fmt;
use std::io;

use crate::limits::Limit;
use crate::path::PathProblem;
use crate::text::{printable, MAX_PRINTED_CHARS};

/// A place in the document, as the reader last saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// 1-based line, or 0 where the parser gave none.
    pub line: usize,
    /// 1-based column within the line, or 0 where the parser gave none.
    pub column: usize,
    /// Bytes read from the input when the error was found; the parser reads
    /// a few bytes ahead, so this may be a little past the error.
    pub offset: u64,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "line {}, column {}", self.line, self.column)
        } else {
            write!(f, "byte {}", self.offset)
        }
    }
}

/// A field of the document: `version`, `producer`, or a command's
/// `args[3]`, `env.CC`, `outputs[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// The field's name as it appears in the document.
    pub name: &'static str,
    /// The element of a list, or the key of a map, if the error is in one.
    pub item: Option<Item>,
}

/// An element of a list field or an entry of a map field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// The index in a list.
    Index(u64),
    /// The key in a map.
    Key(String),
}

impl Field {
    /// The whole field `name`.
    pub fn named(name: &'static str) -> Field {
        Field { name, item: None }
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.item {
            None => f.write_str(self.name),
            Some(Item::Index(i)) => write!(f, "{}[{i}]", self.name),
            Some(Item::Key(k)) => write!(f, "{}.{}", self.name, printable(k, 200)),
        }
    }
}

/// What is wrong, without where.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// Reading the bytes failed.
    #[error("cannot read the log")]
    Io(#[source] io::Error),
    /// The document ended before it was complete.
    #[error("the log ends too early: it is truncated (a producer that died, or a partial copy)")]
    Truncated,
    /// Not JSON.
    #[error("not valid JSON: {0}")]
    Syntax(String),
    /// JSON of the wrong shape (a number where a string goes, and so on).
    #[error("{0}")]
    Shape(String),
    /// More bytes after the document's closing brace.
    #[error("unexpected data after the end of the log")]
    TrailingData,
    /// A field this version does not know.
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A field that must be present is not.
    #[error("missing field `{0}`")]
    MissingField(&'static str),
    /// A field given twice in one object.
    #[error("field `{0}` is given twice")]
    DuplicateField(&'static str),
    /// An environment variable given twice.
    #[error("variable `{0}` is given twice")]
    DuplicateKey(String),
    /// `format` is not `replay-log`.
    #[error("`format` is `{0}`, expected `replay-log`: this is not a replay command log")]
    WrongFormat(String),
    /// `version` is not one this reader understands.
    #[error("unsupported version {0}: this reader understands version 1")]
    WrongVersion(u64),
    /// `commands` came before a header field it needs.
    #[error("`commands` must come after `format`, `version`, `producer` and `platform`, but `{0}` was not given before it (a JSON writer that sorts keys puts `commands` first: write the header fields first)")]
    CommandsBeforeHeader(&'static str),
    /// An id equal to an earlier command's.
    #[error("duplicate id {0}")]
    DuplicateId(u64),
    /// An id lower than the previous command's.
    #[error("id {id} comes after id {previous}: ids must strictly increase")]
    IdNotIncreasing {
        /// This command's id.
        id: u64,
        /// The previous command's id.
        previous: u64,
    },
    /// A string holds a NUL byte, which no argv, path or variable may.
    #[error("contains a NUL byte")]
    NulByte,
    /// A string that must not be empty is.
    #[error("must not be empty")]
    Empty,
    /// An environment variable name with `=` in it.
    #[error("`{0}` is not a valid environment variable name (it contains `=`)")]
    BadEnvName(String),
    /// A path that must be relative to the work root is absolute.
    #[error("`{0}` is absolute; it must be relative to the work root")]
    AbsolutePath(String),
    /// A path climbs out of the work root with `..`.
    #[error("`{0}` leaves the work root with `..`")]
    EscapingPath(String),
    /// A size limit was exceeded.
    #[error("too many {limit}: the limit is {max}")]
    TooLarge {
        /// Which limit.
        limit: Limit,
        /// Its value.
        max: u64,
    },
}

impl Problem {
    pub(crate) fn from_path(problem: PathProblem, path: &str) -> Problem {
        match problem {
            PathProblem::Empty => Problem::Empty,
            PathProblem::Absolute => Problem::AbsolutePath(path.to_owned()),
            PathProblem::Escapes => Problem::EscapingPath(path.to_owned()),
        }
    }
}

/// The command an error was found in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommandRef {
    /// 1-based position of the command in the log.
    pub position: u64,
    /// Its id, if the reader had read it when the error was found.
    pub id: Option<u64>,
}

/// A log that cannot be read, with where: location, command and field.
#[derive(Debug)]
pub struct ReadError {
    /// What is wrong.
    pub problem: Problem,
    /// Where in the document.
    pub location: Location,
    /// The command it is in, if any.
    pub command: Option<CommandRef>,
    /// The field it is in, if known.
    pub field: Option<Field>,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.command {
            Some(CommandRef {
                id: Some(id),
                position,
            }) => write!(f, "command {id} (the {} in the log)", Ordinal(position))?,
            Some(CommandRef { id: None, position }) => {
                write!(f, "the {} command (its id not yet read)", Ordinal(position))?
            }
            None => f.write_str("log")?,
        }
        if let Some(field) = &self.field {
            write!(f, ", field `{field}`")?;
        }
        // The problem quotes the log's own text: print it defanged.
        let problem = self.problem.to_string();
        write!(
            f,
            ": {} (at {})",
            printable(&problem, MAX_PRINTED_CHARS),
            self.location
        )
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match &self.problem {
            Problem::Io(e) => Some(e),
            _ => None,
        }
    }
}

/// Why a producer could not write a command or the log.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// The sink failed.
    #[error("cannot write the log")]
    Io(#[from] io::Error),
    /// The command is one a reader would refuse.
    #[error("command {id}, field `{field}`: {problem}")]
    Invalid {
        /// The command's id.
        id: u64,
        /// The offending field.
        field: Field,
        /// What is wrong with it.
        problem: Problem,
    },
    /// The command, or the log with it, passes a size limit of the reader.
    #[error("command {id}: {problem}")]
    TooLarge {
        /// The command's id.
        id: u64,
        /// Which limit ([`Problem::TooLarge`]).
        problem: Problem,
    },
    /// [`crate::ToolKind::Other`] with the name of a known kind, which a
    /// reader would read back as that kind.
    #[error(
        "command {id}: tool `{name}` is a known kind; use its own variant, not `ToolKind::Other`"
    )]
    OtherNamesKnownKind {
        /// The command's id.
        id: u64,
        /// The name given.
        name: String,
    },
    /// The header is one a reader would refuse.
    #[error("header field `{field}`: {problem}")]
    InvalidHeader {
        /// The offending field.
        field: Field,
        /// What is wrong with it.
        problem: Problem,
    },
}

/// `1st`, `2nd`, `3rd`, `4th`, ...
struct Ordinal(u64);

impl fmt::Display for Ordinal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0;
        let suffix = match (n % 10, n % 100) {
            (1, 11) | (2, 12) | (3, 13) => "th",
            (1, _) => "st",
            (2, _) => "nd",
            (3, _) => "rd",
            _ => "th",
        };
        write!(f, "{n}{suffix}")
    }
}
