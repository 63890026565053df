//! The JSON documents for CI, written as events come, so memory stays flat
//! in the log's length: `replay check --format json`'s verdict document,
//! and `--report FILE`'s run report, which carries the same check section.

use std::io::{self, Write};

use policy::Finding;

use super::schema::FindingRecord;
use crate::event::{Checked, Event, Reporter};

/// Which document a [`JsonReporter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Document {
    /// `replay check`: `{"findings":[...],"status":..,"tally":{..},
    /// "not_shown":{..},"replay_peak_rss":N}`, closed when the check
    /// pass ends.
    Check,
    /// `--report FILE`: `{"producer":{..},"check":{"findings":[...],
    /// "status":..,"tally":{..}},"commands":[...],"totals":{..}}`
    /// (`producer` in driver mode only), closed when the run is done.
    Run,
}

/// Where the check part of the document stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Not begun.
    Before,
    /// Its findings array is open.
    Open,
    /// Written.
    Done,
}

/// Writes one [`Document`] to `out`.
pub struct JsonReporter<W: Write> {
    out: W,
    document: Document,
    check: Section,
    commands_open: bool,
    first: bool,
    /// Whether the document is closed.
    closed: bool,
}

impl<W: Write> JsonReporter<W> {
    /// Starts `document` on `out`.
    pub fn new(mut out: W, document: Document) -> io::Result<Self> {
        let format = match document {
            Document::Check => super::schema::CHECK_FORMAT,
            Document::Run => super::schema::RUN_FORMAT,
        };
        write!(
            out,
            "{{\"format\":\"{format}\",\"version\":{},",
            super::schema::VERSION
        )?;
        Ok(JsonReporter {
            out,
            document,
            check: Section::Before,
            commands_open: false,
            first: true,
            closed: false,
        })
    }

    fn open_check(&mut self) -> io::Result<()> {
        if self.check == Section::Before {
            match self.document {
                Document::Check => self.out.write_all(b"\"findings\":[")?,
                Document::Run => self.out.write_all(b"\"check\":{\"findings\":[")?,
            }
            self.check = Section::Open;
            self.first = true;
        }
        Ok(())
    }

    fn finding(
        &mut self,
        tool: Option<&cmdlog::ToolKind>,
        finding: &Finding,
        at: Option<cmdlog::Position>,
    ) -> io::Result<()> {
        self.open_check()?;
        self.item()?;
        let record = FindingRecord {
            id: finding.id,
            tool: tool.map(|t| t.name()),
            status: finding.status,
            rule: finding.rule,
            subject: &finding.subject,
            message: &finding.message,
            hint: &finding.hint,
            line: at.map(|at| at.line),
            column: at.map(|at| at.column),
        };
        serde_json::to_writer(&mut self.out, &record).map_err(io::Error::from)
    }

    fn checked(&mut self, checked: &Checked) -> io::Result<()> {
        self.open_check()?;
        self.out.write_all(b"\n],\"status\":")?;
        serde_json::to_writer(&mut self.out, &checked.tally.status()).map_err(io::Error::from)?;
        self.out.write_all(b",\"tally\":")?;
        serde_json::to_writer(&mut self.out, &checked.tally).map_err(io::Error::from)?;
        if !checked.not_shown.is_empty() {
            let hidden: serde_json::Map<String, serde_json::Value> = checked
                .not_shown
                .iter()
                .map(|(rule, more)| ((*rule).to_owned(), (*more).into()))
                .collect();
            self.out.write_all(b",\"not_shown\":")?;
            serde_json::to_writer(&mut self.out, &hidden).map_err(io::Error::from)?;
        }
        self.check = Section::Done;
        match self.document {
            Document::Check => {
                // The audit's own cost, as the run report gives a run's.
                writeln!(
                    self.out,
                    ",\"replay_peak_rss\":{}}}",
                    checked.replay_peak_rss
                )?;
                self.closed = true;
            }
            Document::Run => self.out.write_all(b"},\n")?,
        }
        self.out.flush()
    }

    /// Separates an array's items, one a line.
    fn item(&mut self) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\n")
    }

    fn open_commands(&mut self) -> io::Result<()> {
        if self.check == Section::Open {
            self.out.write_all(b"\n]},\n")?;
            self.check = Section::Done;
        }
        if !self.commands_open {
            self.out.write_all(b"\"commands\":[")?;
            self.commands_open = true;
            self.first = true;
        }
        Ok(())
    }
}

impl<W: Write> Reporter for JsonReporter<W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match (self.document, event) {
            (_, Event::Finding { tool, finding, at }) => self.finding(*tool, finding, *at),
            (_, Event::Checked(checked)) => self.checked(checked),
            (Document::Run, Event::Producer(produced))
                if !self.commands_open && self.check == Section::Before =>
            {
                self.out.write_all(b"\"producer\":")?;
                serde_json::to_writer(&mut self.out, produced).map_err(io::Error::from)?;
                self.out.write_all(b",\n")
            }
            (Document::Run, Event::Finished(record)) => {
                self.open_commands()?;
                self.item()?;
                serde_json::to_writer(&mut self.out, record).map_err(io::Error::from)
            }
            (Document::Run, Event::Done(totals)) => {
                self.open_commands()?;
                self.out.write_all(b"\n],\"totals\":")?;
                serde_json::to_writer(&mut self.out, totals).map_err(io::Error::from)?;
                self.out.write_all(b"}\n")?;
                self.closed = true;
                self.out.flush()
            }
            (
                _,
                Event::Producer(_)
                | Event::Validated { .. }
                | Event::Judged { .. }
                | Event::Started { .. }
                | Event::Finished(_)
                | Event::Done(_)
                | Event::Warning(_),
            ) => Ok(()),
        }
    }
}

impl<W: Write> Drop for JsonReporter<W> {
    /// A session that ends early (an error, or a refused log) still leaves
    /// a valid document: what was written so far, and `"error"`.
    fn drop(&mut self) {
        if self.closed {
            return;
        }
        let result = match self.document {
            Document::Check => self.open_check().and_then(|()| {
                self.out.write_all(
                    b"\n],\"error\":\"the check stopped before it finished; replay's standard error says why\"}\n",
                )
            }),
            Document::Run => self.open_commands().and_then(|()| {
                self.out.write_all(
                    b"\n],\"error\":\"the run stopped before it finished; replay's standard error says why\"}\n",
                )
            }),
        };
        let _ = result.and_then(|()| self.out.flush());
    }
}

#[cfg(test)]
mod tests {
    use policy::report::Tally;
    use policy::{Finding, Status};

    use super::*;
    use crate::event::Totals;

    fn finding() -> Finding {
        Finding {
            id: Some(2),
            rule: "args.unknown-flag",
            subject: "-x".into(),
            message: "`-x` is not a flag the policy lists".into(),
            hint: String::new(),
            status: Status::Refused,
        }
    }

    fn checked() -> Checked {
        Checked {
            tally: Tally {
                refused: 1,
                ..Tally::default()
            },
            commands: 1,
            not_shown: vec![("args.unknown-flag", 3)],
            replay_peak_rss: 4096,
        }
    }

    fn feed(document: Document, events: &[Event<'_>]) -> serde_json::Value {
        let mut out = Vec::new();
        let mut json = JsonReporter::new(&mut out, document).unwrap();
        for event in events {
            json.event(event).unwrap();
        }
        drop(json);
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn the_check_document_holds_findings_tally_and_what_was_not_shown() {
        let tool = cmdlog::ToolKind::Other("opt".into());
        let (finding, checked) = (finding(), checked());
        let doc = feed(
            Document::Check,
            &[
                Event::Finding {
                    tool: Some(&tool),
                    finding: &finding,
                    at: None,
                },
                Event::Checked(&checked),
            ],
        );
        assert_eq!(doc["format"], "replay-check");
        assert_eq!(doc["version"], 1);
        assert_eq!(doc["findings"][0]["tool"], "opt");
        assert_eq!(doc["findings"][0]["rule"], "args.unknown-flag");
        assert_eq!(doc["status"], "refused");
        assert_eq!(doc["tally"]["refused"], 1);
        assert_eq!(doc["not_shown"]["args.unknown-flag"], 3);
        assert_eq!(doc["replay_peak_rss"], 4096);
    }

    #[test]
    fn the_run_report_carries_the_check_section_then_the_commands() {
        let (finding, checked) = (finding(), checked());
        let totals = Totals {
            commands: 1,
            ..Totals::default()
        };
        let doc = feed(
            Document::Run,
            &[
                Event::Finding {
                    tool: None,
                    finding: &finding,
                    at: None,
                },
                Event::Checked(&checked),
                Event::Validated { commands: 1 },
                Event::Done(&totals),
            ],
        );
        assert_eq!(doc["check"]["findings"][0]["id"], 2);
        assert_eq!(doc["check"]["status"], "refused");
        assert_eq!(doc["commands"], serde_json::json!([]));
        assert_eq!(doc["totals"]["commands"], 1);
        assert!(doc.get("error").is_none());
    }

    #[test]
    fn a_document_cut_short_is_still_valid_json() {
        // Regression: an execution error before `Done` left `{` alone.
        let doc = feed(Document::Run, &[]);
        assert_eq!(doc["commands"], serde_json::json!([]));
        assert!(doc["error"].as_str().is_some_and(|e| e.contains("stopped")));
        let finding = finding();
        let doc = feed(
            Document::Run,
            &[Event::Finding {
                tool: None,
                finding: &finding,
                at: None,
            }],
        );
        assert_eq!(doc["check"]["findings"][0]["id"], 2);
        assert!(doc["error"].is_string());
        let doc = feed(Document::Check, &[]);
        assert_eq!(doc["findings"], serde_json::json!([]));
        assert!(doc["error"].is_string());
    }
}
