//! Human-readable rendering of findings and verdicts, shared by `replay
//! check` and the run's validation pass. Each writer takes `&mut dyn Write`
//! so tests can snapshot the text; JSON is the serde form of the same types.
//!
//! ```text
//! refused: command 3 (opt): `-load`: loads a shared object into the tool [args.forbidden-flag]
//!   hint: remove the flag; the policy never allows it
//! ```

use std::fmt;
use std::io::{self, Write};

use cmdlog::text::{printable, MAX_PRINTED_CHARS};
use cmdlog::ToolKind;
use serde::Serialize;

use crate::verdict::{Finding, Status, Verdict};

/// An error and its causes on one line (`what: why: why`), for a report
/// row or a finding: the one rendering every report of `replay` uses.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Writes one finding: status, where, message, rule, then a hint line.
pub fn write_finding(
    out: &mut dyn Write,
    tool: Option<&ToolKind>,
    finding: &Finding,
) -> io::Result<()> {
    let at = match (finding.id, tool) {
        (Some(id), Some(tool)) => format!("command {id} ({tool})"),
        (Some(id), None) => format!("command {id}"),
        (None, _) => "log".to_owned(),
    };
    // Messages quote the log (and plugins' reasons): a value must not
    // forge a line of this report or reach the terminal as an escape.
    writeln!(
        out,
        "{}: {}: {} [{}]",
        finding.status.as_str(),
        printable(&at, MAX_PRINTED_CHARS),
        printable(&finding.message, MAX_PRINTED_CHARS),
        finding.rule
    )?;
    if !finding.hint.is_empty() {
        writeln!(
            out,
            "  hint: {}",
            printable(&finding.hint, MAX_PRINTED_CHARS)
        )?;
    }
    Ok(())
}

/// Writes every finding of a verdict (nothing for a clean one).
pub fn write_verdict(out: &mut dyn Write, verdict: &Verdict) -> io::Result<()> {
    for finding in &verdict.findings {
        write_finding(out, Some(&verdict.tool), finding)?;
    }
    Ok(())
}

/// Counts of verdicts by status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Tally {
    /// Commands that passed.
    pub allowed: u64,
    /// Commands that passed what could be checked here.
    pub unverified: u64,
    /// Commands refused.
    pub refused: u64,
    /// Findings about the log as a whole that refuse it.
    pub log_refused: u64,
}

impl Tally {
    /// Counts a verdict.
    pub fn add(&mut self, verdict: &Verdict) {
        match verdict.status {
            Status::Allowed => self.allowed += 1,
            Status::Unverified => self.unverified += 1,
            Status::Refused => self.refused += 1,
        }
    }

    /// Counts findings about the whole log (header, end).
    pub fn add_log(&mut self, findings: &[Finding]) {
        self.log_refused += findings
            .iter()
            .filter(|f| f.status == Status::Refused)
            .count() as u64;
    }

    /// The status of the whole log.
    pub fn status(&self) -> Status {
        if self.refused > 0 || self.log_refused > 0 {
            Status::Refused
        } else if self.unverified > 0 {
            Status::Unverified
        } else {
            Status::Allowed
        }
    }
}

impl fmt::Display for Tally {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} allowed, {} unverified, {} refused",
            self.status().as_str(),
            self.allowed,
            self.unverified,
            self.refused
        )?;
        if self.log_refused > 0 {
            write!(f, ", {} log-wide problem(s)", self.log_refused)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_finding_cannot_forge_report_lines_or_terminal_escapes() {
        // Regression: a path or argument with a newline in it printed a
        // line of its own, so a log could fake "allowed" in the audit text.
        let finding = Finding {
            id: Some(3),
            rule: "paths.outside-root",
            subject: "x".into(),
            message: "`/x\nrefused: 9 allowed, 0 refused\u{1b}[31m` leaves the root".into(),
            hint: "keep\routputs in the root".into(),
            status: Status::Refused,
        };
        let mut out = Vec::new();
        write_finding(&mut out, Some(&ToolKind::Other("o\npt".into())), &finding).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert!(!text.contains('\u{1b}') && !text.contains('\r'), "{text:?}");
        assert!(text.contains(r"\nrefused: 9 allowed"), "{text}");
    }
}
