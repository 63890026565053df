//! The validation pass: every command of a log judged by the policy, all of
//! them (it does not stop at the first refusal), streaming, so memory stays
//! flat in the log's length. `replay check` is this pass alone; `replay
//! --policy` runs it first and runs nothing unless it passes.
//!
//! A policy's `[[plugin]]`s judge after the TOML rules, all commands in one
//! request each (ABI v1), so with plugins the commands are kept in memory
//! for that request. Plugins only restrict: a command passes if the rules
//! and every plugin allow it, and a plugin that fails in any way (trap,
//! deadline, bad output, pin mismatch) refuses the whole log.

use std::fs::File;
use std::io::{self, Write};
use std::ops::ControlFlow;

use cmdlog::{Command, Header, LogReader, Visit};
use policy::combine;
use policy::plugin::PluginSpec;
use policy::report::{write_finding, Tally};
use policy::{CheckOptions, Checker, CheckerError, Finding, Mode, Policy, Status, Verdict};

use crate::job::{Job, JobError};
#[cfg(target_os = "linux")]
use crate::run::trace::own_peak_rss;

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
    /// A `[[plugin]]` entry of the policy is malformed.
    #[error("bad plugin entry in the policy")]
    PluginSpec(#[source] policy::plugin::SpecError),
    /// The wasm engine could not start.
    #[error("cannot start the plugin host")]
    PluginHost(#[source] policy::plugin::HostError),
}

/// How verdicts are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// One line per finding, with a hint, then a tally.
    Human,
    /// One JSON document: `{"findings": [...], "status", "tally", "replay_peak_rss"}`.
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

/// The options the checker gets for `job`: its log, its journal, the
/// root's lock file, and every file of the policy (the ones it extends and
/// its plugins' modules too) are protected from being written by any
/// command.
pub fn check_options(job: &Job, policy: &Policy, mode: Mode, strict: bool) -> CheckOptions {
    let mut protected = vec![
        job.log.clone(),
        job.policy.clone(),
        crate::journal::path_for(&job.log),
        job.root.join(crate::staging::STAGE_DIR),
        // A command that replaced the lock file would let a second run
        // lock a new one while this run holds the old.
        job.root.join(crate::lock::LOCK_FILE),
    ];
    protected.extend(policy.own_files());
    CheckOptions {
        mode,
        strict,
        protected,
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
    let checker = Checker::new(policy, &job.root, check_options(job, policy, mode, strict))
        .map_err(AuditError::Checker)?;
    let mut printer = Printer {
        out,
        format,
        first: true,
        error: None,
        per_rule: Vec::new(),
    };
    printer.begin().map_err(AuditError::Output)?;
    let specs = policy
        .plugins()
        .iter()
        .map(PluginSpec::from_table)
        .collect::<Result<Vec<_>, _>>()
        .map_err(AuditError::PluginSpec)?;
    let mut visit = Judge {
        checker,
        tally: Tally::default(),
        commands: 0,
        printer: &mut printer,
        kept: (!specs.is_empty()).then(Vec::new),
        platform: None,
    };
    let file = File::open(&job.read_from).map_err(|source| JobError::Log {
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
        kept,
        platform,
    } = visit;
    let end = checker.finish();
    tally.add_log(&end);
    for finding in &end {
        printer.finding(None, finding);
    }
    if let (Some(kept), Some(platform)) = (kept, platform) {
        judge_with_plugins(&specs, &platform, &kept, &mut tally, printer)?;
    }
    if let Some(error) = printer.error.take() {
        return Err(AuditError::Output(error));
    }
    printer.end(&tally).map_err(AuditError::Output)?;
    Ok(Audit { tally, commands })
}

/// Runs every plugin on all `kept` commands (with the status the rules
/// gave each) and folds their refusals into `tally`, printing them like the
/// rules' own.
fn judge_with_plugins(
    specs: &[PluginSpec],
    platform: &cmdlog::Platform,
    kept: &[(Command, Status)],
    tally: &mut Tally,
    printer: &mut Printer<'_>,
) -> Result<(), AuditError> {
    let findings = combine::judge(specs, platform, kept, tally).map_err(|e| match e {
        combine::CombineError::Host(e) => AuditError::PluginHost(e),
    })?;
    for found in &findings {
        printer.finding(found.tool.as_ref(), &found.finding);
    }
    Ok(())
}

/// The visitor of the pass: judges, counts, prints.
struct Judge<'p, 'o, 'w> {
    checker: Checker<'p>,
    tally: Tally,
    commands: u64,
    printer: &'o mut Printer<'w>,
    /// Commands and their rules' status, kept for the plugins (if any).
    kept: Option<Vec<(Command, Status)>>,
    /// The log's platform, for the plugins' request.
    platform: Option<cmdlog::Platform>,
}

impl Visit for Judge<'_, '_, '_> {
    fn header(&mut self, header: &Header) -> ControlFlow<()> {
        self.platform = Some(header.platform.clone());
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
        if let Some(kept) = &mut self.kept {
            kept.push((command, verdict.status));
        }
        if self.printer.error.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Findings shown per rule; the rest are counted ("and N more").
pub const SHOWN_PER_RULE: u64 = 20;

/// Characters of an argument (a finding's subject) a finding quotes; a
/// longer one is cut, with an ellipsis and its length.
pub const QUOTED_CHARS: usize = 200;

/// Writes findings as they come, in either format; the first write error
/// is kept and stops the pass. A hostile log can break one rule millions
/// of times with 10 KB arguments: each rule shows its first
/// [`SHOWN_PER_RULE`] findings, each quoting at most [`QUOTED_CHARS`]
/// characters of its subject.
struct Printer<'w> {
    out: &'w mut dyn Write,
    format: Format,
    first: bool,
    error: Option<io::Error>,
    /// Findings seen per rule, in the order rules first appeared.
    per_rule: Vec<(&'static str, u64)>,
}

/// `finding`, quoting at most [`QUOTED_CHARS`] characters of its subject
/// (in the subject and wherever the message quotes it).
pub fn capped(finding: &Finding) -> std::borrow::Cow<'_, Finding> {
    let Some((cut, _)) = finding.subject.char_indices().nth(QUOTED_CHARS) else {
        return std::borrow::Cow::Borrowed(finding);
    };
    let short = format!(
        "{}… ({} bytes in all)",
        &finding.subject[..cut],
        finding.subject.len()
    );
    std::borrow::Cow::Owned(Finding {
        message: finding.message.replace(&finding.subject, &short),
        subject: short,
        ..finding.clone()
    })
}

impl Printer<'_> {
    fn begin(&mut self) -> io::Result<()> {
        match self.format {
            Format::Human => Ok(()),
            Format::Json => self.out.write_all(b"{\"findings\":["),
        }
    }

    fn verdict(&mut self, verdict: &Verdict) {
        for finding in &verdict.findings {
            if !self.admit(finding.rule) {
                continue;
            }
            let finding = capped(finding);
            let result = match self.format {
                Format::Human => write_finding(self.out, Some(&verdict.tool), &finding),
                Format::Json => self.json_finding(Some(verdict), &finding),
            };
            self.keep(result);
        }
    }

    fn finding(&mut self, tool: Option<&cmdlog::ToolKind>, finding: &Finding) {
        if !self.admit(finding.rule) {
            return;
        }
        let finding = capped(finding);
        let result = match self.format {
            Format::Human => write_finding(self.out, tool, &finding),
            Format::Json => self.json_finding(None, &finding),
        };
        self.keep(result);
    }

    /// Counts a finding of `rule`; whether it is among the shown.
    fn admit(&mut self, rule: &'static str) -> bool {
        let at = match self.per_rule.iter().position(|(r, _)| *r == rule) {
            Some(at) => at,
            None => {
                self.per_rule.push((rule, 0));
                self.per_rule.len() - 1
            }
        };
        self.per_rule[at].1 += 1;
        self.per_rule[at].1 <= SHOWN_PER_RULE
    }

    /// The rules with findings not shown, and how many.
    fn hidden(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.per_rule
            .iter()
            .filter(|(_, n)| *n > SHOWN_PER_RULE)
            .map(|(rule, n)| (*rule, n - SHOWN_PER_RULE))
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
            Format::Human => {
                let hidden: Vec<_> = self.hidden().collect();
                for (rule, more) in hidden {
                    writeln!(
                        self.out,
                        "and {more} more finding{} of [{rule}] not shown (the first {SHOWN_PER_RULE} are)",
                        if more == 1 { "" } else { "s" }
                    )?;
                }
                writeln!(self.out, "{tally}")
            }
            Format::Json => {
                self.out.write_all(b"\n],\"status\":")?;
                serde_json::to_writer(&mut *self.out, &tally.status()).map_err(io::Error::from)?;
                self.out.write_all(b",\"tally\":")?;
                serde_json::to_writer(&mut *self.out, tally).map_err(io::Error::from)?;
                let hidden: serde_json::Map<String, serde_json::Value> = self
                    .hidden()
                    .map(|(rule, more)| (rule.to_owned(), more.into()))
                    .collect();
                if !hidden.is_empty() {
                    self.out.write_all(b",\"not_shown\":")?;
                    serde_json::to_writer(&mut *self.out, &hidden).map_err(io::Error::from)?;
                }
                // The audit's own cost, as `replay --report` gives a run's.
                let peak = own_peak_rss();
                writeln!(self.out, ",\"replay_peak_rss\":{peak}}}")
            }
        }?;
        self.out.flush()
    }
}

/// `replay`'s own peak RSS so far: not known here.
#[cfg(not(target_os = "linux"))]
fn own_peak_rss() -> u64 {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finding(subject: &str) -> Finding {
        Finding {
            id: Some(1),
            rule: "args.unknown-flag",
            subject: subject.to_owned(),
            message: format!("`{subject}` is not a flag the policy lists"),
            hint: String::new(),
            status: Status::Refused,
        }
    }

    #[test]
    fn a_long_argument_is_quoted_cut_with_its_length() {
        let long = "x".repeat(10_000);
        let long = finding(&long);
        let shown = capped(&long);
        assert!(shown.subject.ends_with("… (10000 bytes in all)"));
        assert!(shown.message.len() < 400, "{}", shown.message);
        assert!(shown.message.contains("bytes in all)`"));
        let short = finding("-load=x.so");
        assert_eq!(*capped(&short), short);
    }

    #[test]
    fn each_rule_shows_its_first_findings_then_counts_the_rest() {
        let mut out = Vec::new();
        let mut printer = Printer {
            out: &mut out,
            format: Format::Human,
            first: true,
            error: None,
            per_rule: Vec::new(),
        };
        for _ in 0..(SHOWN_PER_RULE + 5) {
            printer.finding(None, &finding("-bad"));
        }
        printer.end(&Tally::default()).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text.matches("-bad").count() as u64,
            SHOWN_PER_RULE,
            "{text}"
        );
        assert!(
            text.contains("and 5 more findings of [args.unknown-flag] not shown"),
            "{text}"
        );
    }
}
