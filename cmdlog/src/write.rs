//! The streaming writer: a producer emits commands as it decides them.

use std::io::Write;

use serde::Serialize;

use crate::error::{Field, Problem, WriteError};
use crate::limits::{Limit, Limits, MAX_HEADER_BYTES};
use crate::types::{Command, Header, ToolKind, FORMAT, VERSION};
use crate::validate;

/// Writes a v1 log, one command at a time, header first.
///
/// Every command is checked as a reader would check it before any of it is
/// written, so a producer cannot emit a log its consumer refuses. A writer
/// dropped before [`LogWriter::finish`] leaves a truncated document, which
/// readers reject: a producer that dies half-way never yields a log that
/// looks complete.
pub struct LogWriter<W: Write> {
    out: W,
    limits: Limits,
    last_id: Option<u64>,
    commands: u64,
    /// One command's JSON, measured before it is written.
    buffer: Vec<u8>,
}

impl<W: Write> LogWriter<W> {
    /// Starts a log on `out` with `header`. Buffer `out` if it is a file.
    pub fn new(mut out: W, header: &Header) -> Result<Self, WriteError> {
        validate::header(header)
            .map_err(|(field, problem)| WriteError::InvalidHeader { field, problem })?;
        write!(
            out,
            "{{\"format\":\"{FORMAT}\",\"version\":{VERSION},\"producer\":"
        )?;
        let mut fields = Vec::new();
        json(&mut fields, &header.producer)?;
        fields.extend_from_slice(b",\"platform\":");
        json(&mut fields, &header.platform)?;
        if fields.len() as u64 + 64 > MAX_HEADER_BYTES {
            return Err(WriteError::InvalidHeader {
                field: Field::named("producer"),
                problem: Problem::TooLarge {
                    limit: Limit::HeaderBytes,
                    max: MAX_HEADER_BYTES,
                },
            });
        }
        out.write_all(&fields)?;
        out.write_all(b",\"commands\":[")?;
        Ok(LogWriter {
            out,
            limits: Limits::default(),
            last_id: None,
            commands: 0,
            buffer: Vec::new(),
        })
    }

    /// The same writer, checking commands against other limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        LogWriter { limits, ..self }
    }

    /// Appends `command`; its id must be greater than the previous one's.
    pub fn write_command(&mut self, command: &Command) -> Result<(), WriteError> {
        let id = command.id;
        validate::command(command, &self.limits, self.last_id)
            .map_err(|(field, problem)| WriteError::Invalid { id, field, problem })?;
        if let ToolKind::Other(name) = &command.tool {
            if ToolKind::from_name(name).is_known() {
                // It would read back as the known kind, not as written.
                return Err(WriteError::OtherNamesKnownKind {
                    id,
                    name: name.clone(),
                });
            }
        }
        let too_large = |limit: Limit| WriteError::TooLarge {
            id,
            problem: Problem::TooLarge {
                limit,
                max: limit.value(&self.limits),
            },
        };
        if self.commands >= self.limits.max_commands {
            return Err(too_large(Limit::Commands));
        }
        // The reader bounds the bytes of each command; so must the writer.
        self.buffer.clear();
        json(&mut self.buffer, command)?;
        if self.buffer.len() as u64 + 2 > self.limits.max_command_bytes {
            return Err(too_large(Limit::CommandBytes));
        }
        self.out
            .write_all(if self.commands == 0 { b"\n" } else { b",\n" })?;
        self.out.write_all(&self.buffer)?;
        self.last_id = Some(command.id);
        self.commands += 1;
        Ok(())
    }

    /// Flushes what has been written so far to the sink.
    pub fn flush(&mut self) -> Result<(), WriteError> {
        self.out.flush()?;
        Ok(())
    }

    /// Commands written so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    /// Closes the document, flushes, and gives the sink back.
    pub fn finish(mut self) -> Result<W, WriteError> {
        self.out.write_all(b"\n]}\n")?;
        self.out.flush()?;
        Ok(self.out)
    }
}

fn json<W: Write>(out: &mut W, value: &impl Serialize) -> std::io::Result<()> {
    serde_json::to_writer(out, value).map_err(std::io::Error::from)
}
