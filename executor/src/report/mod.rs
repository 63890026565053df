//! Reporters: each turns the [`Event`](crate::event::Event)s of a session
//! (both passes) into what one audience reads, writing to its own `Write`:
//! [`HumanReporter`] (findings, then a table for people), [`JsonReporter`]
//! (one JSON document for CI), [`JunitReporter`] (JUnit XML: a test case
//! per command), [`SarifReporter`] (SARIF 2.1.0: findings on the log's
//! lines, for code scanning) and [`ProgressReporter`] (a bar, or a line
//! per command). The helpers here format figures the same way for all.

use std::time::Duration;

use crate::run::watch::Stop;

mod human;
mod json;
mod junit;
mod progress;
mod sarif;
pub mod schema;

pub use human::{HumanReporter, SHORT_LOG, TABLE_ROWS};
pub use json::{Document, JsonReporter};
pub use junit::JunitReporter;
pub use progress::ProgressReporter;
pub use sarif::SarifReporter;

/// How much the report for people says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Verbosity {
    /// Failures only (`-q`): refusals, failed commands, errors.
    Quiet,
    /// Findings, the tally, the table of a short log (else its failures),
    /// the totals.
    #[default]
    Normal,
    /// Everything, the table of every command (`-v`).
    Verbose,
}

/// The formats a report can be written in: `replay check --format`,
/// `--report-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Text for people.
    Human,
    /// One JSON document (`docs/report-v1.schema.json`).
    Json,
    /// JUnit XML: a test case per command.
    Junit,
    /// SARIF 2.1.0: the findings, on the log's lines.
    Sarif,
}

impl Format {
    /// A reporter writing `document` in this format to `out`; `log` is
    /// the log as the user named it (SARIF points at it).
    pub fn reporter<W: std::io::Write + 'static>(
        self,
        out: W,
        document: Document,
        log: &std::path::Path,
    ) -> std::io::Result<Box<dyn crate::event::Reporter>> {
        Ok(match self {
            Format::Human => Box::new(HumanReporter::new(out)),
            Format::Json => Box::new(JsonReporter::new(std::io::BufWriter::new(out), document)?),
            Format::Junit => Box::new(JunitReporter::new(out, document, log)?),
            Format::Sarif => Box::new(SarifReporter::new(
                std::io::BufWriter::new(out),
                document,
                log,
            )?),
        })
    }
}

/// Makes what a tool or a log says safe for XML 1.0 and plain text: a
/// control character (but tab and newline) becomes `\u{..}`.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let bad = |c: char| {
        (c.is_control() && c != '\n' && c != '\t') || matches!(c, '\u{fffe}' | '\u{ffff}')
    };
    if !text.chars().any(bad) {
        return std::borrow::Cow::Borrowed(text);
    }
    std::borrow::Cow::Owned(
        text.chars()
            .map(|c| {
                if bad(c) {
                    format!("\\u{{{:x}}}", c as u32)
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

pub use policy::report::one_line;

/// `12.3 MiB`, `512 KiB`, `-`.
pub fn bytes(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{} KiB", n.div_ceil(1024)),
    }
}

/// `1.234s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.3}s", Duration::from_millis(ms).as_secs_f64())
}

/// A sentence for how a failed tool ended.
pub fn describe_exit(exit: &crate::run::trace::ExitStatus) -> String {
    match *exit {
        crate::run::trace::ExitStatus::Code(code) => format!("the tool exited {code}"),
        crate::run::trace::ExitStatus::Signal(signal) => format!(
            "the tool was killed by signal {signal} ({})",
            crate::drive::signal_name(signal)
        ),
    }
}

/// A sentence for a limit that stopped a tool.
pub fn describe_stop(stop: &Stop) -> String {
    match *stop {
        Stop::Timeout { limit_ms, after_ms } => format!(
            "timeout: limit {}, stopped after {}",
            seconds(limit_ms),
            seconds(after_ms)
        ),
        Stop::Memory {
            limit,
            observed,
            after_ms,
        } => format!(
            "memory: limit {}, tree reached {} ({} over) after {}",
            bytes(limit),
            bytes(observed),
            bytes(observed.saturating_sub(limit)),
            seconds(after_ms)
        ),
        Stop::Output { limit, after_ms } => format!(
            "output: limit {} printed, stopped after {}",
            bytes(limit),
            seconds(after_ms)
        ),
        Stop::FileSize { limit, after_ms } => format!(
            "output file size: a file reached the limit of {} (`max_output`) after {}",
            bytes(limit),
            seconds(after_ms)
        ),
        Stop::Budget { budget, after_ms } => format!(
            "memory budget: the tools running at once passed {}; stopped after {} to run again alone",
            bytes(budget),
            seconds(after_ms)
        ),
        Stop::Interrupted { after_ms } => {
            format!(
                "interrupted: replay was asked to stop after {}",
                seconds(after_ms)
            )
        }
    }
}
