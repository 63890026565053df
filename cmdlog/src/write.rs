//! The streaming writer: a producer emits commands as it decides them.

use std::io::Write;

use serde::Serialize;

use crate::error::WriteError;
use crate::limits::Limits;
use crate::types::{Command, Header, FORMAT, VERSION};
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
        json(&mut out, &header.producer)?;
        out.write_all(b",\"platform\":")?;
        json(&mut out, &header.platform)?;
        out.write_all(b",\"commands\":[")?;
        Ok(LogWriter {
            out,
            limits: Limits::default(),
            last_id: None,
            commands: 0,
        })
    }

    /// The same writer, checking commands against other limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        LogWriter { limits, ..self }
    }

    /// Appends `command`; its id must be greater than the previous one's.
    pub fn write_command(&mut self, command: &Command) -> Result<(), WriteError> {
        validate::command(command, &self.limits, self.last_id).map_err(|(field, problem)| {
            WriteError::Invalid {
                id: command.id,
                field,
                problem,
            }
        })?;
        self.out
            .write_all(if self.commands == 0 { b"\n" } else { b",\n" })?;
        json(&mut self.out, command)?;
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
