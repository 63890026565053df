//! JUnit XML for CI test views (Jenkins, GitLab, GitHub's test reporters):
//! one `<testcase>` per command. The check pass is the suite `check` (a
//! refused command is a failure, one `<failure>` per finding); a run adds
//! the suite `run` (a failed, stopped or denied command is a failure, with
//! the tool's output in `system-out` and `system-err`). It validates
//! against the Jenkins xunit plugin's `junit-10.xsd` (`docs/vendor/`).
//!
//! A `<testsuite>` carries its counts before its cases, so cases are
//! spooled (in memory, then in a temporary file past 1 MiB) and the
//! document is written when the session ends, however it ends: a session
//! cut short adds a case `replay` with an `<error>` saying so.

use std::fmt::Write as _;
use std::io::{self, Seek, Write};
use std::path::Path;

use policy::{Finding, Status as Verdict};
use tempfile::SpooledTempFile;

use super::{describe_exit, describe_stop, printable, Document};
use crate::event::{CommandRecord, Event, Reporter, Status, SHOWN_PER_RULE};
use crate::run::watch::Stop;

/// Bytes of spooled cases kept in memory before a temporary file.
const SPOOL_IN_MEMORY: usize = 1 << 20;

/// Writes one JUnit document to `out` when the session ends.
pub struct JunitReporter<W: Write> {
    out: Option<W>,
    document: Document,
    /// The log's file name, naming the suites.
    log: String,
    check: Suite,
    run: Suite,
    /// Findings of the command being judged (its `Judged` comes next).
    pending: Vec<(Finding, Option<cmdlog::Position>)>,
    /// The last command judged.
    last_judged: u64,
}

/// One `<testsuite>`'s spooled cases and counts.
struct Suite {
    cases: SpooledTempFile,
    tests: u64,
    failures: u64,
    errors: u64,
    skipped: u64,
    time_ms: u64,
}

impl Suite {
    fn new() -> Suite {
        Suite {
            cases: tempfile::spooled_tempfile(SPOOL_IN_MEMORY),
            tests: 0,
            failures: 0,
            errors: 0,
            skipped: 0,
            time_ms: 0,
        }
    }

    /// Appends one case: `body` holds its children, already escaped.
    fn case(&mut self, name: &str, class: &str, time_ms: u64, body: &str) -> io::Result<()> {
        self.tests += 1;
        self.time_ms += time_ms;
        write!(
            self.cases,
            "    <testcase name=\"{}\" classname=\"{class}\" time=\"{}\">\n{body}    </testcase>\n",
            escape(name),
            time(time_ms)
        )
    }

    /// Writes the suite, its counts first, then its cases.
    fn write(&mut self, out: &mut dyn Write, name: &str) -> io::Result<()> {
        writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{}\" errors=\"{}\" skipped=\"{}\" time=\"{}\">",
            escape(name),
            self.tests,
            self.failures,
            self.errors,
            self.skipped,
            time(self.time_ms)
        )?;
        self.cases.rewind()?;
        io::copy(&mut self.cases, out)?;
        writeln!(out, "  </testsuite>")
    }
}

impl<W: Write> JunitReporter<W> {
    /// A reporter of `document` for the log at `log`.
    pub fn new(out: W, document: Document, log: &Path) -> io::Result<Self> {
        Ok(JunitReporter {
            out: Some(out),
            document,
            log: log
                .file_name()
                .map_or_else(|| log.display().to_string(), |n| n.to_string_lossy().into()),
            check: Suite::new(),
            run: Suite::new(),
            pending: Vec::new(),
            last_judged: 0,
        })
    }

    fn finding(&mut self, finding: &Finding, at: Option<cmdlog::Position>) -> io::Result<()> {
        match finding.id {
            // Its command's verdict comes next.
            Some(id) if id > self.last_judged => {
                self.pending.push((finding.clone(), at));
                Ok(())
            }
            // The header's, a whole-log rule's, or a plugin's (after every
            // command was judged): a case of its own.
            id => {
                let name = match id {
                    Some(id) => format!("command {id}: [{}]", finding.rule),
                    None => format!("log: [{}]", finding.rule),
                };
                let body = failure_of(finding, at);
                self.count_finding(finding.status);
                self.check.case(&name, "replay.check", 0, &body)
            }
        }
    }

    fn count_finding(&mut self, status: Verdict) {
        match status {
            Verdict::Refused => self.check.failures += 1,
            Verdict::Unverified => self.check.skipped += 1,
            Verdict::Allowed => {}
        }
    }

    fn judged(&mut self, id: u64, tool: &str, status: Verdict) -> io::Result<()> {
        self.last_judged = id;
        let mut body = String::new();
        for (finding, at) in self.pending.drain(..) {
            body.push_str(&failure_of(&finding, at));
        }
        // Past the findings shown per rule, a refused command has none
        // here: it still fails, saying where its findings are counted.
        if body.is_empty() && status != Verdict::Allowed {
            let element = match status {
                Verdict::Refused => "failure",
                _ => "skipped",
            };
            let _ = writeln!(
                body,
                "      <{element} type=\"{}\" message=\"its findings are among those not shown (the first {SHOWN_PER_RULE} of each rule are); `replay check --format json` counts them\"/>",
                status.as_str()
            );
        }
        self.count_finding(status);
        self.check
            .case(&format!("command {id} ({tool})"), "replay.check", 0, &body)
    }

    fn finished(&mut self, record: &CommandRecord) -> io::Result<()> {
        let (element, kind, message) = match &record.status {
            Status::Ok | Status::Resumed | Status::Cached => (None, "", String::new()),
            Status::Failed { exit } => (Some("failure"), "failed", describe_exit(exit)),
            Status::Stopped { stop } => (
                Some("failure"),
                match stop {
                    Stop::Interrupted { .. } => "interrupted",
                    _ => "limit",
                },
                describe_stop(stop),
            ),
            Status::Denied {
                action,
                path,
                reason,
            } => (
                Some("failure"),
                "denied",
                format!("the sandbox refused {action} `{path}`: {reason}"),
            ),
            Status::Error { message } => (Some("error"), "error", message.clone()),
            Status::Blocked { input } => (
                Some("skipped"),
                "blocked",
                format!("its input `{input}` comes from a command that failed"),
            ),
        };
        let mut body = String::new();
        match element {
            Some("failure") => self.run.failures += 1,
            Some("error") => self.run.errors += 1,
            Some(_) => self.run.skipped += 1,
            None => {}
        }
        if let Some(element) = element {
            let _ = writeln!(
                body,
                "      <{element} type=\"{kind}\" message=\"{}\"/>",
                escape(&message)
            );
        }
        if matches!(record.status, Status::Resumed | Status::Cached) {
            let _ = writeln!(
                body,
                "      <system-out>{}</system-out>",
                escape(&format!(
                    "{} (not run: {})",
                    record.status.word(),
                    match record.status {
                        Status::Resumed => "the journal shows it done",
                        _ => "restored from the action cache",
                    }
                ))
            );
        }
        let wall = record
            .outcome
            .as_ref()
            .map_or(0, |o| o.measurements.wall_ms);
        if let Some(outcome) = &record.outcome {
            if !outcome.stdout_tail.is_empty() {
                let _ = writeln!(
                    body,
                    "      <system-out>{}</system-out>",
                    escape(&outcome.stdout_tail)
                );
            }
            if !outcome.stderr_tail.is_empty() {
                let _ = writeln!(
                    body,
                    "      <system-err>{}</system-err>",
                    escape(&outcome.stderr_tail)
                );
            }
        }
        self.run.case(
            &format!("command {} ({})", record.id, record.tool),
            "replay.run",
            wall,
            &body,
        )
    }

    /// Writes the document; `cut_short` adds the case that says the
    /// session stopped before its end.
    fn finish(&mut self, cut_short: bool) -> io::Result<()> {
        let Some(mut out) = self.out.take() else {
            return Ok(());
        };
        // Findings whose command's verdict never came (a pass cut short).
        for (finding, at) in std::mem::take(&mut self.pending) {
            let body = failure_of(&finding, at);
            self.count_finding(finding.status);
            let name = format!("command {}: [{}]", finding.id.unwrap_or(0), finding.rule);
            self.check.case(&name, "replay.check", 0, &body)?;
        }
        let suite = if self.document == Document::Run && self.run.tests + self.run.errors > 0 {
            &mut self.run
        } else {
            &mut self.check
        };
        if cut_short {
            suite.errors += 1;
            let what = match self.document {
                Document::Check => "the check",
                Document::Run => "the run",
            };
            suite.case(
                "replay",
                "replay",
                0,
                &format!("      <error type=\"stopped\" message=\"{what} stopped before it finished; replay's standard error says why\"/>\n"),
            )?;
        }
        let (tests, failures, errors) = (
            self.check.tests + self.run.tests,
            self.check.failures + self.run.failures,
            self.check.errors + self.run.errors,
        );
        let mut head = Vec::new();
        writeln!(head, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>")?;
        writeln!(
            head,
            "<testsuites name=\"replay\" tests=\"{tests}\" failures=\"{failures}\" errors=\"{errors}\" time=\"{}\">",
            time(self.check.time_ms + self.run.time_ms)
        )?;
        out.write_all(&head)?;
        let log = self.log.clone();
        self.check.write(&mut out, &format!("check {log}"))?;
        if self.document == Document::Run && self.run.tests > 0 {
            self.run.write(&mut out, &format!("run {log}"))?;
        }
        writeln!(out, "</testsuites>")?;
        out.flush()
    }
}

/// A `<failure>` (refused) or `<skipped>` (unverified) for a finding.
fn failure_of(finding: &Finding, at: Option<cmdlog::Position>) -> String {
    let element = match finding.status {
        Verdict::Unverified => "skipped",
        _ => "failure",
    };
    let mut text = finding.message.clone();
    if let Some(at) = at {
        let _ = write!(
            text,
            "\nat line {}, column {} of the log",
            at.line, at.column
        );
    }
    if !finding.hint.is_empty() {
        let _ = write!(text, "\nhint: {}", finding.hint);
    }
    format!(
        "      <{element} type=\"{}\" message=\"{}\">{}</{element}>\n",
        finding.rule,
        escape(&finding.message),
        escape(&text)
    )
}

/// Seconds with at most 3 decimals (the XSD's `SUREFIRE_TIME`).
fn time(ms: u64) -> String {
    format!("{}.{:03}", ms / 1000, ms % 1000)
}

/// Text safe in an XML 1.0 attribute or element.
fn escape(text: &str) -> String {
    let text = printable(text);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' => out.push_str("&#10;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

impl<W: Write> Reporter for JunitReporter<W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if self.out.is_none() {
            return Ok(());
        }
        match event {
            Event::Finding { finding, at, .. } => self.finding(finding, *at),
            Event::Judged {
                id, tool, status, ..
            } => self.judged(*id, tool.name(), *status),
            Event::Checked(_) if self.document == Document::Check => self.finish(false),
            Event::Finished(record) => self.finished(record),
            Event::Done(_) => self.finish(false),
            Event::Checked(_)
            | Event::Producer(_)
            | Event::Validated { .. }
            | Event::Started { .. }
            | Event::Warning(_) => Ok(()),
        }
    }
}

impl<W: Write> Drop for JunitReporter<W> {
    /// A session that ends early (an error, a refused log, a signal)
    /// still leaves a whole document.
    fn drop(&mut self) {
        let _ = self.finish(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(id: Option<u64>) -> Finding {
        Finding {
            id,
            rule: "args.forbidden-flag",
            subject: "-load=x.so".into(),
            message: "`-load=x.so` loads a shared object <into> the tool".into(),
            hint: "remove it".into(),
            status: Verdict::Refused,
        }
    }

    #[test]
    fn a_refused_command_is_a_failing_case_with_its_finding_and_place() {
        let mut out = Vec::new();
        {
            let mut junit =
                JunitReporter::new(&mut out, Document::Check, Path::new("x/log.json")).unwrap();
            let tool = cmdlog::ToolKind::Other("opt".into());
            let at = cmdlog::Position { line: 3, column: 7 };
            let refused = finding(Some(2));
            for event in [
                Event::Judged {
                    id: 1,
                    tool: &tool,
                    status: Verdict::Allowed,
                    at,
                },
                Event::Finding {
                    tool: Some(&tool),
                    finding: &refused,
                    at: Some(at),
                },
                Event::Judged {
                    id: 2,
                    tool: &tool,
                    status: Verdict::Refused,
                    at,
                },
            ] {
                junit.event(&event).unwrap();
            }
            junit
                .event(&Event::Checked(&crate::event::Checked::default()))
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("<testsuite name=\"check log.json\" tests=\"2\" failures=\"1\""),
            "{text}"
        );
        assert!(
            text.contains("<testcase name=\"command 1 (opt)\""),
            "{text}"
        );
        assert!(
            text.contains("<failure type=\"args.forbidden-flag\" message=\"`-load=x.so` loads a shared object &lt;into&gt; the tool\">"),
            "{text}"
        );
        assert!(text.contains("at line 3, column 7 of the log"), "{text}");
        assert!(!text.contains("<testcase name=\"replay\""), "{text}");
    }

    #[test]
    fn a_session_cut_short_still_writes_a_document_that_says_so() {
        let mut out = Vec::new();
        {
            let mut junit =
                JunitReporter::new(&mut out, Document::Run, Path::new("log.json")).unwrap();
            junit
                .event(&Event::Finding {
                    tool: None,
                    finding: &finding(None),
                    at: None,
                })
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.ends_with("</testsuites>\n"), "{text}");
        assert!(text.contains("<testcase name=\"log: [args.forbidden-flag]\""));
        assert!(text.contains("<error type=\"stopped\""), "{text}");
    }

    #[test]
    fn a_refused_command_whose_findings_were_not_shown_still_fails() {
        let mut out = Vec::new();
        {
            let mut junit =
                JunitReporter::new(&mut out, Document::Check, Path::new("log.json")).unwrap();
            let tool = cmdlog::ToolKind::Other("opt".into());
            junit
                .event(&Event::Judged {
                    id: 30,
                    tool: &tool,
                    status: Verdict::Refused,
                    at: cmdlog::Position { line: 1, column: 1 },
                })
                .unwrap();
            junit
                .event(&Event::Checked(&crate::event::Checked::default()))
                .unwrap();
        }
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("failures=\"1\""), "{text}");
        assert!(
            text.contains(
                "<failure type=\"refused\" message=\"its findings are among those not shown"
            ),
            "{text}"
        );
    }

    #[test]
    fn control_characters_of_a_tool_are_shown_not_written() {
        assert_eq!(
            escape("a\u{1b}[31m&\"b\""),
            "a\\u{1b}[31m&amp;&quot;b&quot;"
        );
    }
}
