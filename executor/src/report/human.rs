//! The report for people: the check pass's findings (identical ones
//! grouped, one block naming every command) and tally, warnings, what the
//! sandbox refused, then the commands' table and the totals when the run
//! is done: every command for a short log or `-v`, the failures only
//! otherwise, and with `-q` the failures and nothing else.

use std::io::{self, Write};

use cmdlog::text::{printable, MAX_PRINTED_CHARS};
use cmdlog::ToolKind;
use policy::report::write_finding;
use policy::Finding;

use super::{bytes, describe_stop, seconds, Verbosity};
use crate::event::{CommandRecord, Event, Reporter, Status, SHOWN_PER_RULE};
use crate::run::trace::ExitStatus;

/// How many of a command's refused actions the report prints.
const SHOWN_DENIALS: usize = 5;

/// Rows the human table shows at most; the JSON report has them all.
pub const TABLE_ROWS: usize = 200;

/// Up to this many commands, a log is short: its table shows every
/// command (longer ones, only failures, unless `-v`).
pub const SHORT_LOG: u64 = 20;

/// Command ids a grouped finding names before `and N more`.
const GROUP_IDS: usize = 10;

/// A summary table for people, printed when the run is done.
pub struct HumanReporter<W: Write> {
    out: W,
    rows: Vec<CommandRecord>,
    hidden: u64,
    producer: Option<crate::drive::Produced>,
    verbosity: Verbosity,
    /// Findings held until the check pass ends, identical ones together
    /// (`None`: printed as they come). At most [`SHOWN_PER_RULE`] a rule
    /// reach a reporter, so this is bounded.
    groups: Option<Vec<Group>>,
}

/// Findings that differ only in their command.
struct Group {
    tool: Option<ToolKind>,
    finding: Finding,
    ids: Vec<u64>,
}

impl<W: Write> HumanReporter<W> {
    /// A reporter printing to `out`, grouping identical findings.
    pub fn new(out: W) -> Self {
        HumanReporter {
            out,
            rows: Vec::new(),
            hidden: 0,
            producer: None,
            verbosity: Verbosity::Normal,
            groups: Some(Vec::new()),
        }
    }

    /// The same, printing `verbosity`'s share.
    pub fn with_verbosity(mut self, verbosity: Verbosity) -> Self {
        self.verbosity = verbosity;
        self
    }

    /// The same, printing each finding as it comes (for a caller that
    /// writes its own lines between them).
    pub fn ungrouped(mut self) -> Self {
        self.groups = None;
        self
    }

    fn finding(&mut self, tool: Option<&ToolKind>, finding: &Finding) -> io::Result<()> {
        if self.verbosity == Verbosity::Quiet && finding.status != policy::Status::Refused {
            return Ok(());
        }
        let Some(groups) = &mut self.groups else {
            return write_finding(&mut self.out, tool, finding);
        };
        let same = groups.iter_mut().find(|g| {
            g.finding.id.is_some()
                && finding.id.is_some()
                && g.finding.rule == finding.rule
                && g.finding.message == finding.message
                && g.finding.hint == finding.hint
                && g.finding.status == finding.status
                && g.tool.as_ref().map(ToolKind::name) == tool.map(ToolKind::name)
        });
        match (same, finding.id) {
            (Some(group), Some(id)) => group.ids.push(id),
            _ => groups.push(Group {
                tool: tool.cloned(),
                finding: finding.clone(),
                ids: finding.id.into_iter().collect(),
            }),
        }
        Ok(())
    }

    /// Prints the findings held, each group once.
    fn flush_groups(&mut self) -> io::Result<()> {
        let Some(groups) = self.groups.as_mut().map(std::mem::take) else {
            return Ok(());
        };
        for group in groups {
            if group.ids.len() < 2 {
                write_finding(&mut self.out, group.tool.as_ref(), &group.finding)?;
                continue;
            }
            let mut ids: Vec<String> = group
                .ids
                .iter()
                .take(GROUP_IDS)
                .map(u64::to_string)
                .collect();
            if group.ids.len() > GROUP_IDS {
                ids.push(format!("and {} more", group.ids.len() - GROUP_IDS));
            }
            let tool = group
                .tool
                .as_ref()
                .map(|t| format!(" ({t})"))
                .unwrap_or_default();
            let f = &group.finding;
            writeln!(
                self.out,
                "{}: commands {}{}: {} [{}]",
                f.status.as_str(),
                ids.join(", "),
                printable(&tool, MAX_PRINTED_CHARS),
                printable(&f.message, MAX_PRINTED_CHARS),
                f.rule
            )?;
            if !f.hint.is_empty() {
                writeln!(
                    self.out,
                    "  hint: {}",
                    printable(&f.hint, MAX_PRINTED_CHARS)
                )?;
            }
        }
        Ok(())
    }

    /// Whether a row of the table is shown.
    fn shows(&self, row: &CommandRecord, commands: u64) -> bool {
        let all = match self.verbosity {
            Verbosity::Quiet => false,
            Verbosity::Normal => commands <= SHORT_LOG,
            Verbosity::Verbose => true,
        };
        all || !row.status.is_good()
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
                for file in record.undeclared_reads.iter().take(SHOWN_DENIALS) {
                    writeln!(
                        self.out,
                        "replay: command {} ({}) read `{file}`, which it does not declare",
                        record.id, record.tool
                    )?;
                }
                if record.undeclared_reads.len() > SHOWN_DENIALS {
                    writeln!(
                        self.out,
                        "replay: command {} ({}): ... and {} more undeclared reads (see --report)",
                        record.id,
                        record.tool,
                        record.undeclared_reads.len() - SHOWN_DENIALS
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
                if self.verbosity == Verbosity::Quiet {
                    return Ok(());
                }
                writeln!(
                    self.out,
                    "replay: producer `{}` exited {}, peak RSS {}; {} bytes of log in `{}`",
                    produced.program,
                    match produced.exit {
                        ExitStatus::Code(code) => format!("with {code}"),
                        ExitStatus::Signal(signal) =>
                            format!("on signal {signal} ({})", crate::drive::signal_name(signal)),
                    },
                    bytes(produced.peak_rss.unwrap_or(produced.ru_maxrss)),
                    produced.log_bytes,
                    produced.log.display()
                )?;
                Ok(())
            }
            Event::Finding { tool, finding, .. } => self.finding(*tool, finding),
            Event::Checked(checked) => {
                self.flush_groups()?;
                if self.verbosity == Verbosity::Quiet {
                    return self.out.flush();
                }
                for (rule, more) in &checked.not_shown {
                    writeln!(
                        self.out,
                        "and {more} more finding{} of [{rule}] not shown (the first {SHOWN_PER_RULE} are)",
                        if *more == 1 { "" } else { "s" }
                    )?;
                }
                writeln!(self.out, "{}", checked.tally)?;
                self.out.flush()
            }
            Event::Warning(message) => writeln!(self.out, "warning: {message}"),
            Event::Done(totals) => {
                let quiet = self.verbosity == Verbosity::Quiet;
                if let (Some(p), false) = (&self.producer, quiet) {
                    writeln!(
                        self.out,
                        "producer `{}`: wall {}, peak RSS {} (its memory was returned before any tool ran)",
                        p.program,
                        seconds(p.wall_ms),
                        bytes(p.peak_rss.unwrap_or(p.ru_maxrss)),
                    )?;
                }
                let rows: Vec<&CommandRecord> = self
                    .rows
                    .iter()
                    .filter(|row| self.shows(row, totals.commands))
                    .collect();
                if !rows.is_empty() {
                    writeln!(
                        self.out,
                        "{:>6}  {:<10} {:>9} {:>11} {:>11}  status",
                        "id", "tool", "wall", "peak RSS", "tree RSS"
                    )?;
                }
                for row in &rows {
                    write_row(&mut self.out, row)?;
                }
                if quiet {
                    return self.out.flush();
                }
                let omitted = self.rows.len() - rows.len();
                if omitted > 0 {
                    writeln!(
                        self.out,
                        "   ({omitted} commands that succeeded not listed: `-v` lists every command)"
                    )?;
                }
                if self.hidden > 0 {
                    writeln!(self.out, "   ... {} more (see --report)", self.hidden)?;
                }
                // Each line of the summary fits 100 columns.
                writeln!(
                    self.out,
                    "total: {} commands, {} ran, {} ok; wall {}, tools' CPU {}",
                    totals.commands,
                    totals.ran,
                    totals.succeeded,
                    seconds(totals.wall_ms),
                    seconds(totals.cpu_ms),
                )?;
                writeln!(
                    self.out,
                    "memory: largest peak RSS {}{}, replay itself {}",
                    bytes(totals.peak_rss),
                    totals
                        .peak_rss_command
                        .map(|id| format!(" (command {id})"))
                        .unwrap_or_default(),
                    bytes(totals.replay_peak_rss)
                )?;
                if totals.farm_ran > 0 {
                    writeln!(
                        self.out,
                        "build farm: {} commands ran on its workers",
                        totals.farm_ran
                    )?;
                }
                if totals.cache_hits + totals.cache_misses > 0 {
                    writeln!(
                        self.out,
                        "cache: {} hits, {} misses; hits saved {} of tool time",
                        totals.cache_hits,
                        totals.cache_misses,
                        seconds(totals.cache_saved_ms)
                    )?;
                    if totals.remote_hits + totals.remote_uploads > 0 {
                        writeln!(
                            self.out,
                            "remote cache: {} of the hits, {} results uploaded",
                            totals.remote_hits, totals.remote_uploads
                        )?;
                    }
                }
                self.out.flush()
            }
            Event::Validated { .. } | Event::Started { .. } | Event::Judged { .. } => Ok(()),
        }
    }
}

/// One row of the table.
fn write_row(out: &mut dyn Write, row: &CommandRecord) -> io::Result<()> {
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
        } => format!(" (signal {signal})"),
        Status::Stopped { stop } => format!(" ({})", describe_stop(stop)),
        Status::Error { message } => format!(" ({message})"),
        Status::Denied { reason, .. } => format!(" ({reason})"),
        Status::Blocked { input } => format!(" (needs `{input}`, not built)"),
        Status::Ok | Status::Resumed | Status::Cached => String::new(),
    };
    writeln!(
        out,
        "{:>6}  {:<10} {:>9} {:>11} {:>11}  {}{}",
        row.id,
        row.tool,
        wall,
        peak,
        tree,
        row.status.word(),
        detail
    )
}

impl<W: Write> Drop for HumanReporter<W> {
    /// A check pass cut short still shows the findings it had.
    fn drop(&mut self) {
        let _ = self.flush_groups().and_then(|()| self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use policy::report::Tally;
    use policy::{Finding, Status as Judged};

    use super::*;
    use crate::event::{Checked, Totals};

    fn finding(id: u64) -> Finding {
        Finding {
            id: Some(id),
            rule: "args.unknown-flag",
            subject: "-x".into(),
            message: "`-x` is not a flag the policy lists".into(),
            hint: "remove it".into(),
            status: Judged::Refused,
        }
    }

    #[test]
    fn both_passes_print_to_one_stream_findings_first_then_the_table() {
        let mut out = Vec::new();
        let mut human = HumanReporter::new(&mut out);
        let tool = cmdlog::ToolKind::Other("opt".into());
        human
            .event(&Event::Finding {
                tool: Some(&tool),
                finding: &finding(3),
                at: None,
            })
            .unwrap();
        let checked = Checked {
            tally: Tally {
                allowed: 1,
                refused: 1,
                ..Tally::default()
            },
            commands: 2,
            not_shown: vec![("args.unknown-flag", 4)],
            replay_peak_rss: 0,
        };
        human.event(&Event::Checked(&checked)).unwrap();
        let record = CommandRecord {
            id: 1,
            tool: "opt".into(),
            status: Status::Blocked {
                input: "a.bc".into(),
            },
            outcome: None,
            discarded: vec!["stray.o".into()],
            undeclared_reads: vec!["inc/x.h".into()],
            cache: None,
            timing: None,
        };
        human.event(&Event::Finished(&record)).unwrap();
        human
            .event(&Event::Warning("the journal has 1 bad line"))
            .unwrap();
        human
            .event(&Event::Done(&Totals {
                commands: 2,
                ..Totals::default()
            }))
            .unwrap();
        drop(human);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "refused: command 3 (opt): `-x` is not a flag the policy lists [args.unknown-flag]",
                "  hint: remove it",
                "and 4 more findings of [args.unknown-flag] not shown (the first 20 are)",
                "refused: 1 allowed, 0 unverified, 1 refused",
            ],
            "{text}"
        );
        assert!(
            text.contains(
                "replay: command 1 (opt) wrote `stray.o`, which it does not declare: discarded"
            ),
            "{text}"
        );
        assert!(
            text.contains("warning: the journal has 1 bad line"),
            "{text}"
        );
        assert!(text.contains("blocked (needs `a.bc`, not built)"), "{text}");
        assert!(text.ends_with("replay itself -\n"), "{text}");
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    }

    fn record(id: u64, status: Status) -> CommandRecord {
        CommandRecord {
            id,
            tool: "opt".into(),
            status,
            outcome: None,
            discarded: Vec::new(),
            undeclared_reads: Vec::new(),
            cache: None,
            timing: None,
        }
    }

    fn run_of(commands: u64, verbosity: Verbosity) -> String {
        let mut out = Vec::new();
        {
            let mut human = HumanReporter::new(&mut out).with_verbosity(verbosity);
            for id in 1..=commands {
                let status = if id == 2 {
                    Status::Failed {
                        exit: ExitStatus::Code(1),
                    }
                } else {
                    Status::Ok
                };
                human.event(&Event::Finished(&record(id, status))).unwrap();
            }
            human
                .event(&Event::Done(&Totals {
                    commands,
                    ..Totals::default()
                }))
                .unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn identical_findings_are_one_block_naming_every_command() {
        // Regression: one line and one hint per command, so a flag the
        // policy refuses in 300 compiles printed 600 lines.
        let mut out = Vec::new();
        {
            let mut human = HumanReporter::new(&mut out);
            let tool = cmdlog::ToolKind::Other("opt".into());
            for id in [3, 5, 9] {
                human
                    .event(&Event::Finding {
                        tool: Some(&tool),
                        finding: &finding(id),
                        at: None,
                    })
                    .unwrap();
            }
            let other = Finding {
                message: "`-y` is not a flag the policy lists".into(),
                ..finding(4)
            };
            human
                .event(&Event::Finding {
                    tool: Some(&tool),
                    finding: &other,
                    at: None,
                })
                .unwrap();
            human.event(&Event::Checked(&Checked::default())).unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[..4],
            [
                "refused: commands 3, 5, 9 (opt): `-x` is not a flag the policy lists [args.unknown-flag]",
                "  hint: remove it",
                "refused: command 4 (opt): `-y` is not a flag the policy lists [args.unknown-flag]",
                "  hint: remove it",
            ],
            "{text}"
        );
    }

    #[test]
    fn a_short_log_lists_every_command_a_long_one_its_failures() {
        let short = run_of(3, Verbosity::Normal);
        assert!(short.contains("     1  opt"), "{short}");
        assert!(short.contains("     2  opt") && short.contains("FAILED (exit 1)"));
        let long = run_of(SHORT_LOG + 5, Verbosity::Normal);
        assert!(!long.contains("     1  opt"), "{long}");
        assert!(long.contains("     2  opt"), "{long}");
        assert!(long.contains("(24 commands that succeeded not listed: `-v` lists every command)"));
        assert!(long.contains("total: 25 commands"), "{long}");
        let verbose = run_of(SHORT_LOG + 5, Verbosity::Verbose);
        assert!(verbose.contains("     1  opt"), "{verbose}");
    }

    #[test]
    fn the_summary_fits_100_columns_with_large_figures() {
        // Regression: one `total:` line held commands, wall, peak, CPU and
        // replay's own peak, 130 columns on a real build.
        let mut out = Vec::new();
        {
            let mut human = HumanReporter::new(&mut out);
            human
                .event(&Event::Done(&Totals {
                    commands: 1_000_000,
                    ran: 999_999,
                    succeeded: 999_998,
                    wall_ms: 123_456_789_000,
                    peak_rss: 123 << 30,
                    peak_rss_command: Some(999_999),
                    cpu_ms: 987_654_321_000,
                    replay_peak_rss: 81 << 20,
                    cache_hits: 500_000,
                    cache_misses: 499_999,
                    cache_saved_ms: 123_456_789_000,
                    ..Totals::default()
                }))
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("total: 1000000 commands"), "{text}");
        for line in text.lines() {
            assert!(
                line.chars().count() <= 100,
                "{} columns: {line}",
                line.chars().count()
            );
        }
    }

    #[test]
    fn quiet_prints_only_the_failures() {
        let quiet = run_of(3, Verbosity::Quiet);
        let lines: Vec<&str> = quiet.lines().collect();
        assert_eq!(lines.len(), 2, "{quiet}");
        assert!(lines[1].contains("FAILED (exit 1)"), "{quiet}");
        assert_eq!(run_of(1, Verbosity::Quiet), "");
    }
}
