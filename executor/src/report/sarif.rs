//! SARIF 2.1.0 for code scanning (GitHub, GitLab, Azure DevOps): each
//! finding of the check pass is a `result` with its rule id, pointing at
//! the log file and the line and column where its command begins, so the
//! finding shows on the log itself. A run adds a result for each command
//! that failed, was stopped by a limit or refused by the sandbox. It
//! validates against OASIS's schema (`docs/vendor/sarif-schema-2.1.0.json`).
//!
//! Results are streamed as they come; the rules they used, known only at
//! the end, are written after them (a JSON object's members have no
//! order), so memory stays flat in the log's length.

use std::io::{self, Write};
use std::path::Path;

use policy::{Finding, Status as Verdict};
use serde_json::json;

use super::{describe_exit, describe_stop, Document};
use crate::event::{CommandRecord, Event, Reporter, Status, SHOWN_PER_RULE};
use crate::run::watch::Stop;

/// The schema a SARIF 2.1.0 log names.
pub const SARIF_SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// Writes one SARIF log to `out`.
pub struct SarifReporter<W: Write> {
    out: W,
    document: Document,
    /// The log's URI, as results name it.
    uri: String,
    /// Rule ids in order of first use; a result's `ruleIndex` is its place.
    rules: Vec<String>,
    first: bool,
    closed: bool,
    /// Rules with findings past those shown, and how many.
    not_shown: Vec<(String, u64)>,
}

impl<W: Write> SarifReporter<W> {
    /// Starts a SARIF log about the log at `log` (as the user named it:
    /// relative paths stay relative, to the directory code scanning
    /// resolves them against).
    pub fn new(mut out: W, document: Document, log: &Path) -> io::Result<Self> {
        write!(
            out,
            "{{\"$schema\":\"{SARIF_SCHEMA}\",\"version\":\"2.1.0\",\"runs\":[{{\"columnKind\":\"unicodeCodePoints\",\"results\":["
        )?;
        Ok(SarifReporter {
            out,
            document,
            uri: uri(log),
            rules: Vec::new(),
            first: true,
            closed: false,
            not_shown: Vec::new(),
        })
    }

    fn rule_index(&mut self, rule: &str) -> usize {
        match self.rules.iter().position(|r| r == rule) {
            Some(at) => at,
            None => {
                self.rules.push(rule.to_owned());
                self.rules.len() - 1
            }
        }
    }

    fn result(&mut self, value: &serde_json::Value) -> io::Result<()> {
        if !self.first {
            self.out.write_all(b",")?;
        }
        self.first = false;
        self.out.write_all(b"\n")?;
        serde_json::to_writer(&mut self.out, value).map_err(io::Error::from)
    }

    fn location(&self, at: Option<cmdlog::Position>) -> serde_json::Value {
        let mut physical = json!({ "artifactLocation": { "uri": self.uri, "index": 0 } });
        if let Some(at) = at {
            physical["region"] = json!({ "startLine": at.line, "startColumn": at.column });
        }
        json!({ "physicalLocation": physical })
    }

    fn finding(
        &mut self,
        tool: Option<&cmdlog::ToolKind>,
        finding: &Finding,
        at: Option<cmdlog::Position>,
    ) -> io::Result<()> {
        let index = self.rule_index(finding.rule);
        let mut text = match (finding.id, tool) {
            (Some(id), Some(tool)) => {
                format!("command {id} ({}): {}", tool.name(), finding.message)
            }
            (Some(id), None) => format!("command {id}: {}", finding.message),
            (None, _) => finding.message.clone(),
        };
        if !finding.hint.is_empty() {
            text.push_str("\nhint: ");
            text.push_str(&finding.hint);
        }
        let mut result = json!({
            "ruleId": finding.rule,
            "ruleIndex": index,
            "level": match finding.status {
                Verdict::Refused => "error",
                Verdict::Unverified | Verdict::Allowed => "warning",
            },
            "message": { "text": text },
            "locations": [self.location(at)],
            "properties": { "subject": finding.subject, "status": finding.status },
        });
        if let Some(id) = finding.id {
            result["properties"]["command"] = id.into();
        }
        self.result(&result)
    }

    fn finished(&mut self, record: &CommandRecord) -> io::Result<()> {
        let (rule, text) = match &record.status {
            Status::Failed { exit } => ("run.tool-failed", describe_exit(exit)),
            Status::Stopped { stop } => (
                match stop {
                    Stop::Interrupted { .. } => "run.interrupted",
                    _ => "run.limit",
                },
                describe_stop(stop),
            ),
            Status::Denied {
                action,
                path,
                reason,
            } => (
                "run.sandbox-denied",
                format!("the sandbox refused {action} `{path}`: {reason}"),
            ),
            Status::Error { message } => ("run.error", message.clone()),
            Status::Ok | Status::Resumed | Status::Cached | Status::Blocked { .. } => return Ok(()),
        };
        let index = self.rule_index(rule);
        let result = json!({
            "ruleId": rule,
            "ruleIndex": index,
            "level": "error",
            "message": { "text": format!("command {} ({}): {text}", record.id, record.tool) },
            "locations": [self.location(None)],
            "properties": { "command": record.id },
        });
        self.result(&result)
    }

    /// Closes the results, then writes the rules, the artifact and the
    /// invocation.
    fn close(&mut self, successful: bool, note: Option<&str>) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        self.closed = true;
        let rules: Vec<serde_json::Value> = self
            .rules
            .iter()
            .map(|id| {
                let mut rule = json!({ "id": id });
                if let Some(explained) = policy::explain::rule(id) {
                    rule["shortDescription"] = json!({ "text": explained.refuses });
                    rule["fullDescription"] = json!({ "text": explained.why });
                    rule["help"] = json!({ "text": explained.allow });
                }
                rule
            })
            .collect();
        let mut invocation = json!({ "executionSuccessful": successful });
        let mut notes: Vec<serde_json::Value> = self
            .not_shown
            .iter()
            .map(|(rule, more)| {
                json!({ "level": "note", "message": { "text": format!(
                    "{more} more findings of [{rule}] not shown (the first {SHOWN_PER_RULE} are)"
                ) } })
            })
            .collect();
        if let Some(note) = note {
            notes.push(json!({ "level": "error", "message": { "text": note } }));
        }
        if !notes.is_empty() {
            invocation["toolExecutionNotifications"] = notes.into();
        }
        self.out.write_all(b"\n],\"tool\":")?;
        let tool = json!({ "driver": {
            "name": "replay",
            "version": env!("CARGO_PKG_VERSION"),
            "rules": rules,
        }});
        serde_json::to_writer(&mut self.out, &tool).map_err(io::Error::from)?;
        self.out.write_all(b",\"artifacts\":")?;
        serde_json::to_writer(&mut self.out, &json!([{ "location": { "uri": self.uri } }]))
            .map_err(io::Error::from)?;
        self.out.write_all(b",\"invocations\":")?;
        serde_json::to_writer(&mut self.out, &json!([invocation])).map_err(io::Error::from)?;
        self.out.write_all(b"}]}\n")?;
        self.out.flush()
    }
}

impl<W: Write> Reporter for SarifReporter<W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if self.closed {
            return Ok(());
        }
        match event {
            Event::Finding { tool, finding, at } => self.finding(*tool, finding, *at),
            Event::Checked(checked) => {
                self.not_shown = checked
                    .not_shown
                    .iter()
                    .map(|(rule, more)| ((*rule).to_owned(), *more))
                    .collect();
                match self.document {
                    Document::Check => self.close(true, None),
                    Document::Run => Ok(()),
                }
            }
            Event::Finished(record) => self.finished(record),
            Event::Done(_) => self.close(true, None),
            Event::Judged { .. }
            | Event::Producer(_)
            | Event::Validated { .. }
            | Event::Started { .. }
            | Event::Warning(_) => Ok(()),
        }
    }
}

impl<W: Write> Drop for SarifReporter<W> {
    /// A session that ends early (an error, a refused run, a signal)
    /// still leaves a valid log, its invocation marked unsuccessful.
    fn drop(&mut self) {
        let what = match self.document {
            Document::Check => "the check",
            Document::Run => "the run",
        };
        let _ = self.close(
            false,
            Some(&format!(
                "{what} stopped before it finished; replay's standard error says why"
            )),
        );
    }
}

/// A path as a URI reference: relative stays relative (with `/`), absolute
/// becomes `file://`; bytes outside RFC 3986's unreserved set and `/` are
/// percent-encoded.
pub fn uri(path: &Path) -> String {
    let text = path.to_string_lossy();
    let text = text.strip_prefix("./").unwrap_or(&text);
    let mut out = String::new();
    if path.is_absolute() {
        out.push_str("file://");
    }
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                out.push(b as char)
            }
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_become_uri_references() {
        assert_eq!(uri(Path::new("./build/a log.json")), "build/a%20log.json");
        assert_eq!(uri(Path::new("/tmp/x#y.json")), "file:///tmp/x%23y.json");
    }

    #[test]
    fn a_finding_points_at_its_command_on_the_log() {
        let mut out = Vec::new();
        {
            let mut sarif =
                SarifReporter::new(&mut out, Document::Check, Path::new("log.json")).unwrap();
            let finding = Finding {
                id: Some(4),
                rule: "args.forbidden-flag",
                subject: "-load=x.so".into(),
                message: "`-load=x.so` loads a shared object".into(),
                hint: "remove it".into(),
                status: Verdict::Refused,
            };
            sarif
                .event(&Event::Finding {
                    tool: None,
                    finding: &finding,
                    at: Some(cmdlog::Position { line: 9, column: 3 }),
                })
                .unwrap();
            sarif
                .event(&Event::Checked(&crate::event::Checked {
                    not_shown: vec![("args.forbidden-flag", 7)],
                    ..crate::event::Checked::default()
                }))
                .unwrap();
        }
        let log: serde_json::Value = serde_json::from_slice(&out).unwrap();
        let run = &log["runs"][0];
        let result = &run["results"][0];
        assert_eq!(result["ruleId"], "args.forbidden-flag");
        assert_eq!(result["level"], "error");
        let location = &result["locations"][0]["physicalLocation"];
        assert_eq!(location["artifactLocation"]["uri"], "log.json");
        assert_eq!(location["region"]["startLine"], 9);
        assert_eq!(location["region"]["startColumn"], 3);
        assert_eq!(
            run["tool"]["driver"]["rules"][0]["id"],
            "args.forbidden-flag"
        );
        assert_eq!(run["invocations"][0]["executionSuccessful"], true);
        assert_eq!(
            run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"],
            "7 more findings of [args.forbidden-flag] not shown (the first 20 are)"
        );
    }
}
