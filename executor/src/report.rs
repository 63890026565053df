//! Reporting: the runner emits [`Event`]s; reporters turn them into a human
//! summary table, a JSON report, or a progress bar. Each reporter writes to
//! a `Write`, so tests can read exactly what a user would see.

use std::io::{self, Write};
use std::time::Duration;

use crate::run::trace::ExitStatus;
use crate::run::watch::Stop;
use crate::run::ToolOutcome;

/// What happened to one command.
#[derive(Debug, Clone, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// It ran and succeeded.
    Ok,
    /// It ran and failed.
    Failed {
        /// How it ended.
        exit: ExitStatus,
    },
    /// A limit stopped it.
    Stopped {
        /// Which limit.
        stop: Stop,
    },
    /// It could not be run (sandbox, missing input, missing output).
    Error {
        /// Why.
        message: String,
    },
    /// The sandbox stopped it doing what its command did not declare (a
    /// program the policy does not let its tool run): its tree was killed
    /// and its outputs discarded.
    Denied {
        /// What it tried (`exec`).
        action: String,
        /// The binary or path it named.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// `--resume` found it done.
    Resumed,
    /// An input it needs came from a command that failed (`--keep-going`).
    Blocked {
        /// The input.
        input: String,
    },
}

impl Status {
    /// A short word for the table.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed { .. } => "FAILED",
            Status::Stopped { .. } => "STOPPED",
            Status::Error { .. } => "ERROR",
            Status::Denied { .. } => "DENIED",
            Status::Resumed => "resumed",
            Status::Blocked { .. } => "blocked",
        }
    }

    /// True for outcomes that leave the run successful.
    pub fn is_good(&self) -> bool {
        matches!(self, Status::Ok | Status::Resumed)
    }
}

/// One command's line of the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandRecord {
    /// The command's id.
    pub id: u64,
    /// Its tool kind.
    pub tool: String,
    /// What happened.
    #[serde(flatten)]
    pub status: Status,
    /// The run, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ToolOutcome>,
    /// Files the tool wrote in its staging that no output declares
    /// (root-relative): never committed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub discarded: Vec<String>,
}

/// How many of a command's refused actions the human report prints.
const SHOWN_DENIALS: usize = 5;

/// The whole run's totals.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Totals {
    /// Commands in the log.
    pub commands: u64,
    /// Commands that ran.
    pub ran: u64,
    /// Commands that ran and succeeded.
    pub succeeded: u64,
    /// Wall time of the whole run, in milliseconds.
    pub wall_ms: u64,
    /// The largest single-process peak RSS of any tool, in bytes.
    pub peak_rss: u64,
    /// The command that had it.
    pub peak_rss_command: Option<u64>,
    /// The largest sampled tree RSS of any tool, in bytes.
    pub peak_tree_rss_sampled: u64,
    /// User + system CPU of all tools, in milliseconds.
    pub cpu_ms: u64,
    /// `replay`'s own peak RSS (its `VmHWM`), in bytes: the driver's cost.
    pub replay_peak_rss: u64,
}

impl Totals {
    /// Adds one command's record.
    pub fn add(&mut self, record: &CommandRecord) {
        if let Some(outcome) = &record.outcome {
            self.ran += 1;
            let m = &outcome.measurements;
            self.cpu_ms += m.user_ms + m.system_ms;
            self.peak_tree_rss_sampled = self.peak_tree_rss_sampled.max(m.peak_tree_rss_sampled);
            if let Some(peak) = &m.peak_process {
                if peak.bytes > self.peak_rss {
                    self.peak_rss = peak.bytes;
                    self.peak_rss_command = Some(record.id);
                }
            }
        }
        if matches!(record.status, Status::Ok) {
            self.succeeded += 1;
        }
    }
}

/// What the runner tells reporters.
#[derive(Debug)]
pub enum Event<'a> {
    /// Driver mode: the producer exited and its log will be checked.
    Producer(&'a crate::drive::Produced),
    /// Every command passed the policy; `commands` will be considered.
    Validated {
        /// How many.
        commands: u64,
    },
    /// A command is about to run.
    Started {
        /// Its id.
        id: u64,
        /// Its tool kind.
        tool: &'a str,
        /// Its 1-based position in the log.
        position: u64,
    },
    /// A command is done (or skipped).
    Finished(&'a CommandRecord),
    /// The run is over.
    Done(&'a Totals),
    /// Something the user should know that does not stop the run (e.g. a
    /// journal with lines that are not entries): one line, lowercase.
    Warning(&'a str),
}

/// Consumes the runner's events.
pub trait Reporter {
    /// Handles one event.
    fn event(&mut self, event: &Event<'_>) -> io::Result<()>;
}

/// Rows the human table shows at most; the JSON report has them all.
pub const TABLE_ROWS: usize = 200;

/// A summary table for people, printed when the run is done.
pub struct HumanReporter<W> {
    out: W,
    rows: Vec<CommandRecord>,
    hidden: u64,
    producer: Option<crate::drive::Produced>,
}

impl<W: Write> HumanReporter<W> {
    /// A reporter printing to `out`.
    pub fn new(out: W) -> Self {
        HumanReporter {
            out,
            rows: Vec::new(),
            hidden: 0,
            producer: None,
        }
    }
}

/// An error and its causes on one line (`what: why: why`), for a report
/// row or a finding.
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
        Stop::Interrupted { after_ms } => {
            format!(
                "interrupted: replay was asked to stop after {}",
                seconds(after_ms)
            )
        }
    }
}

impl<W: Write> Reporter for HumanReporter<W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        match event {
            Event::Finished(record) => {
                let denied = record.outcome.as_ref().map_or(&[][..], |o| &o.denied[..]);
                for denial in denied.iter().take(SHOWN_DENIALS) {
                    writeln!(
                        self.out,
                        "replay: command {} ({}): the sandbox refused: {}",
                        record.id, record.tool, denial.detail
                    )?;
                }
                if denied.len() > SHOWN_DENIALS {
                    writeln!(
                        self.out,
                        "replay: command {} ({}): ... and {} more refused (see --report)",
                        record.id,
                        record.tool,
                        denied.len() - SHOWN_DENIALS
                    )?;
                }
                for file in &record.discarded {
                    writeln!(
                        self.out,
                        "replay: command {} ({}) wrote `{file}`, which it does not declare: discarded",
                        record.id, record.tool
                    )?;
                }
                if self.rows.len() < TABLE_ROWS {
                    // The table needs the figures, not the output tails
                    // (up to 32 KiB a command, already passed through).
                    let mut row = (*record).clone();
                    if let Some(outcome) = &mut row.outcome {
                        outcome.stdout_tail = String::new();
                        outcome.stderr_tail = String::new();
                        outcome.measurements.processes = Vec::new();
                    }
                    self.rows.push(row);
                } else {
                    self.hidden += 1;
                }
                Ok(())
            }
            Event::Producer(produced) => {
                self.producer = Some((*produced).clone());
                Ok(())
            }
            Event::Warning(message) => writeln!(self.out, "warning: {message}"),
            Event::Done(totals) => {
                if let Some(p) = &self.producer {
                    writeln!(
                        self.out,
                        "producer `{}`: wall {}, peak RSS {} (its memory was returned before any tool ran)",
                        p.program,
                        seconds(p.wall_ms),
                        bytes(p.peak_rss.unwrap_or(p.ru_maxrss)),
                    )?;
                }
                writeln!(
                    self.out,
                    "{:>6}  {:<10} {:>9} {:>11} {:>11}  status",
                    "id", "tool", "wall", "peak RSS", "tree RSS"
                )?;
                for row in &self.rows {
                    let (wall, peak, tree) = match &row.outcome {
                        Some(o) => (
                            seconds(o.measurements.wall_ms),
                            bytes(o.measurements.peak_process.as_ref().map_or(0, |p| p.bytes)),
                            bytes(o.measurements.peak_tree_rss_sampled),
                        ),
                        None => ("-".into(), "-".into(), "-".into()),
                    };
                    let detail = match &row.status {
                        Status::Failed {
                            exit: ExitStatus::Code(code),
                        } => format!(" (exit {code})"),
                        Status::Failed {
                            exit: ExitStatus::Signal(signal),
                        } => {
                            format!(" (signal {signal})")
                        }
                        Status::Stopped { stop } => format!(" ({})", describe_stop(stop)),
                        Status::Error { message } => format!(" ({message})"),
                        Status::Denied { reason, .. } => format!(" ({reason})"),
                        Status::Blocked { input } => format!(" (needs `{input}`, not built)"),
                        Status::Ok | Status::Resumed => String::new(),
                    };
                    writeln!(
                        self.out,
                        "{:>6}  {:<10} {:>9} {:>11} {:>11}  {}{}",
                        row.id,
                        row.tool,
                        wall,
                        peak,
                        tree,
                        row.status.word(),
                        detail
                    )?;
                }
                if self.hidden > 0 {
                    writeln!(self.out, "   ... {} more (see --report)", self.hidden)?;
                }
                writeln!(
                    self.out,
                    "total: {} commands, {} ran, {} ok; wall {}, largest peak RSS {}{}, tools' CPU {}, replay itself {}",
                    totals.commands,
                    totals.ran,
                    totals.succeeded,
                    seconds(totals.wall_ms),
                    bytes(totals.peak_rss),
                    totals
                        .peak_rss_command
                        .map(|id| format!(" (command {id})"))
                        .unwrap_or_default(),
                    seconds(totals.cpu_ms),
                    bytes(totals.replay_peak_rss)
                )?;
                self.out.flush()
            }
            Event::Validated { .. } | Event::Started { .. } => Ok(()),
        }
    }
}

/// The `--report FILE` JSON: `{"producer":{...},"commands":[...],
/// "totals":{...}}` (`producer` in driver mode only), written as commands
/// finish, so its memory is flat in the log's length.
pub struct JsonReporter<W: Write> {
    out: W,
    commands_open: bool,
    first: bool,
    /// Whether `Done` closed the document.
    closed: bool,
}

impl<W: Write> JsonReporter<W> {
    /// Starts the document on `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        out.write_all(b"{")?;
        Ok(JsonReporter {
            out,
            commands_open: false,
            first: true,
            closed: false,
        })
    }

    fn open_commands(&mut self) -> io::Result<()> {
        if !self.commands_open {
            self.out.write_all(b"\"commands\":[")?;
            self.commands_open = true;
        }
        Ok(())
    }
}

impl<W: Write> Reporter for JsonReporter<W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        match event {
            Event::Producer(produced) if !self.commands_open => {
                self.out.write_all(b"\"producer\":")?;
                serde_json::to_writer(&mut self.out, produced).map_err(io::Error::from)?;
                self.out.write_all(b",\n")
            }
            Event::Finished(record) => {
                self.open_commands()?;
                if !self.first {
                    self.out.write_all(b",")?;
                }
                self.first = false;
                self.out.write_all(b"\n")?;
                serde_json::to_writer(&mut self.out, record).map_err(io::Error::from)
            }
            Event::Done(totals) => {
                self.open_commands()?;
                self.out.write_all(b"\n],\"totals\":")?;
                serde_json::to_writer(&mut self.out, totals).map_err(io::Error::from)?;
                self.out.write_all(b"}\n")?;
                self.closed = true;
                self.out.flush()
            }
            Event::Producer(_)
            | Event::Validated { .. }
            | Event::Started { .. }
            | Event::Warning(_) => Ok(()),
        }
    }
}

impl<W: Write> Drop for JsonReporter<W> {
    /// A run that ends early (an error before `Done`) still leaves a valid
    /// document: the commands so far, and `"error"` instead of totals.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let _ = self
            .open_commands()
            .and_then(|()| {
                self.out.write_all(
                    b"\n],\"error\":\"the run stopped before it finished; replay's standard error says why\"}\n",
                )
            })
            .and_then(|()| self.out.flush());
    }
}

/// A progress bar on a terminal, or one plain line per command otherwise.
pub struct ProgressReporter {
    bar: Option<indicatif::ProgressBar>,
}

impl ProgressReporter {
    /// A bar if stderr is a terminal, plain lines otherwise.
    pub fn new() -> Self {
        use std::io::IsTerminal;
        let bar = io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            if let Ok(style) =
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} {wide_msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        ProgressReporter { bar }
    }

    /// The bar, for writing tool output without tearing it.
    pub fn bar(&self) -> Option<indicatif::ProgressBar> {
        self.bar.clone()
    }
}

impl Default for ProgressReporter {
    fn default() -> Self {
        Self::new()
    }
}

impl Reporter for ProgressReporter {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        match (&self.bar, event) {
            (Some(bar), Event::Validated { commands }) => bar.set_length(*commands),
            (Some(bar), Event::Started { id, tool, .. }) => bar.set_message(format!("{id} {tool}")),
            (Some(bar), Event::Finished(_)) => bar.inc(1),
            (Some(bar), Event::Done(_)) => bar.finish_and_clear(),
            (None, Event::Started { id, tool, position }) => {
                eprintln!("replay: [{position}] running command {id} ({tool})");
            }
            (Some(_), Event::Producer(_) | Event::Warning(_)) | (None, _) => {}
        }
        Ok(())
    }
}

/// Several reporters as one.
pub struct Reporters(pub Vec<Box<dyn Reporter>>);

impl Reporter for Reporters {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        for reporter in &mut self.0 {
            reporter.event(event)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn a_report_cut_short_is_still_valid_json() {
        // Regression: an execution error before `Done` left `{` alone.
        let mut out = Vec::new();
        drop(JsonReporter::new(&mut out).unwrap());
        let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(doc["commands"], serde_json::json!([]));
        assert!(doc["error"].as_str().is_some_and(|e| e.contains("stopped")));
    }
}
