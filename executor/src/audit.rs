//! The validation pass: every command of a log judged by the policy, all of
//! them (it does not stop at the first refusal), streaming, so memory stays
//! flat in the log's length. `replay check` is this pass alone; `replay
//! --policy` runs it first and runs nothing unless it passes.

use std::fs::File;
use std::io::{self, Write};
use std::ops::ControlFlow;

use cmdlog::{Command, Header, LogReader, Visit};
use policy::report::{write_finding, write_verdict, Tally};
use policy::{CheckOptions, Checker, CheckerError, Finding, Mode, Policy, Status, Verdict};

use crate::job::{Job, JobError};

/// Why the pass could not judge the log.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The log could not be read.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The checker could not start (the work root cannot be opened).
    #[error("cannot check the log")]
    Checker(#[source] CheckerError),
    /// Writing the verdicts failed.
    #[error("cannot write the verdicts")]
    Output(#[source] io::Error),
}

/// How verdicts are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per finding, with a hint, then a tally.
    Human,
    /// One JSON document: `{"status", "tally", "findings": [...]}`.
    Json,
}

/// The result of the pass.
#[derive(Debug, Clone, Copy)]
pub struct Audit {
    /// Verdicts by status, and log-wide refusals.
    pub tally: Tally,
    /// Commands judged.
    pub commands: u64,
}

impl Audit {
    /// The log's overall status.
    pub fn status(&self) -> Status {
        self.tally.status()
    }
}

/// The options the checker gets for `job`: its log, policy and journal are
/// protected from being written by any command.
pub fn check_options(job: &Job, mode: Mode, strict: bool) -> CheckOptions {
    CheckOptions {
        mode,
        strict,
        protected: vec![
            job.log.clone(),
            job.policy.clone(),
            crate::journal::path_for(&job.log),
        ],
    }
}

/// Judges every command of `job`'s log against `policy`, printing findings
/// to `out` in `format`.
pub fn audit(
    job: &Job,
    policy: &Policy,
    mode: Mode,
    strict: bool,
    format: Format,
    out: &mut dyn Write,
) -> Result<Audit, AuditError> {
    let checker = Checker::new(policy, &job.root, check_options(job, mode, strict))
        .map_err(AuditError::Checker)?;
    let mut printer = Printer {
        out,
        format,
        first: true,
        error: None,
    };
    printer.begin().map_err(AuditError::Output)?;
    let mut visit = Judge {
        checker,
        tally: Tally::default(),
        commands: 0,
        printer: &mut printer,
    };
    let file = File::open(&job.log).map_err(|source| JobError::Log {
        path: job.log.clone(),
        source,
    })?;
    LogReader::new(file)
        .read(&mut visit)
        .map_err(|source| JobError::Malformed {
            path: job.log.clone(),
            source: Box::new(source),
        })?;
    let Judge {
        checker,
        mut tally,
        commands,
        printer,
    } = visit;
    let end = checker.finish();
    tally.add_log(&end);
    for finding in &end {
        printer.finding(None, finding);
    }
    if let Some(error) = printer.error.take() {
        return Err(AuditError::Output(error));
    }
    printer.end(&tally).map_err(AuditError::Output)?;
    Ok(Audit { tally, commands })
}

/// The visitor of the pass: judges, counts, prints.
struct Judge<'p, 'o, 'w> {
    checker: Checker<'p>,
    tally: Tally,
    commands: u64,
    printer: &'o mut Printer<'w>,
}

impl Visit for Judge<'_, '_, '_> {
    fn header(&mut self, header: &Header) -> ControlFlow<()> {
        let findings = self.checker.header(header);
        self.tally.add_log(&findings);
        for finding in &findings {
            self.printer.finding(None, finding);
        }
        ControlFlow::Continue(())
    }

    fn command(&mut self, command: Command) -> ControlFlow<()> {
        let verdict = self.checker.command(&command);
        self.commands += 1;
        self.tally.add(&verdict);
        self.printer.verdict(&verdict);
        if self.printer.error.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Writes findings as they come, in either format; the first write error
/// is kept and stops the pass.
struct Printer<'w> {
    out: &'w mut dyn Write,
    format: Format,
    first: bool,
    error: Option<io::Error>,
}

impl Printer<'_> {
    fn begin(&mut self) -> io::Result<()> {
        match self.format {
            Format::Human => Ok(()),
            Format::Json => self.out.write_all(b"{\"findings\":["),
        }
    }

    fn verdict(&mut self, verdict: &Verdict) {
        let result = match self.format {
            Format::Human => write_verdict(self.out, verdict),
            Format::Json => verdict
                .findings
                .iter()
                .try_for_each(|f| self.json_finding(Some(verdict), f)),
        };
        self.keep(result);
    }

    fn finding(&mut self, tool: Option<&cmdlog::ToolKind>, finding: &Finding) {
        let result = match self.format {
            Format::Human => write_finding(self.out, tool, finding),
            Format::Json => self.json_finding(None, finding),
        };
        self.keep(result);
    }

    fn json_finding(&mut self, verdict: Option<&Verdict>, finding: &Finding) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\n")?;
        let value = serde_json::json!({
            "id": finding.id,
            "tool": verdict.map(|v| v.tool.name()),
            "status": finding.status,
            "rule": finding.rule,
            "subject": finding.subject,
            "message": finding.message,
            "hint": finding.hint,
        });
        serde_json::to_writer(&mut *self.out, &value).map_err(io::Error::from)
    }

    fn keep(&mut self, result: io::Result<()>) {
        if let (Err(error), None) = (result, &self.error) {
            self.error = Some(error);
        }
    }

    fn end(&mut self, tally: &Tally) -> io::Result<()> {
        match self.format {
            Format::Human => writeln!(self.out, "{tally}"),
            Format::Json => {
                self.out.write_all(b"\n],\"status\":")?;
                serde_json::to_writer(&mut *self.out, &tally.status()).map_err(io::Error::from)?;
                self.out.write_all(b",\"tally\":")?;
                serde_json::to_writer(&mut *self.out, tally).map_err(io::Error::from)?;
                self.out.write_all(b"}\n")
            }
        }?;
        self.out.flush()
    }
}
