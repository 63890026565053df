//! The report for people: the check pass's findings and tally as they
//! come, warnings, what the sandbox refused, then one table of every
//! command's figures when the run is done.

use std::io::{self, Write};

use policy::report::write_finding;

use super::{bytes, describe_stop, seconds};
use crate::event::{CommandRecord, Event, Reporter, Status, SHOWN_PER_RULE};
use crate::run::trace::ExitStatus;

/// How many of a command's refused actions the report prints.
const SHOWN_DENIALS: usize = 5;

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
                self.producer = Some((*produced).clone());
                Ok(())
            }
            Event::Finding { tool, finding } => write_finding(&mut self.out, *tool, finding),
            Event::Checked(checked) => {
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
                        Status::Ok | Status::Resumed | Status::Cached => String::new(),
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
            Event::Validated { .. } | Event::Started { .. } => Ok(()),
        }
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
    }
}
