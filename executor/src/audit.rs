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
use std::io;
use std::ops::ControlFlow;

use cmdlog::{Command, Header, LogReader, Position, ToolKind, Visit};
use policy::combine;
use policy::plugin::PluginSpec;
use policy::report::Tally;
use policy::{CheckOptions, Checker, CheckerError, Finding, Mode, Policy, Status, Verdict};

use crate::event::{Checked, Event, Reporter, SHOWN_PER_RULE};
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
    /// A `[[plugin]]` entry of the policy is malformed.
    #[error("bad plugin entry in the policy")]
    PluginSpec(#[source] policy::plugin::SpecError),
    /// The wasm engine could not start.
    #[error("cannot start the plugin host")]
    PluginHost(#[source] policy::plugin::HostError),
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

/// Judges every command of `job`'s log against `policy`, telling
/// `reporter` each finding worth showing ([`Event::Finding`], at most
/// [`SHOWN_PER_RULE`] a rule). The caller ends the pass: it tells
/// reporters the returned [`Checked`] ([`Event::Checked`]).
pub fn audit(
    job: &Job,
    policy: &Policy,
    mode: Mode,
    strict: bool,
    reporter: &mut dyn Reporter,
) -> Result<Checked, AuditError> {
    let checker = Checker::new(policy, &job.root, check_options(job, policy, mode, strict))
        .map_err(AuditError::Checker)?;
    let mut shown = Shown {
        reporter,
        error: None,
        per_rule: Vec::new(),
    };
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
        shown: &mut shown,
        kept: (!specs.is_empty()).then(Vec::new),
        places: Vec::new(),
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
        shown,
        kept,
        places,
        platform,
    } = visit;
    let end = checker.finish();
    tally.add_log(&end);
    for finding in &end {
        shown.finding(None, finding, None);
    }
    if let (Some(kept), Some(platform)) = (kept, platform) {
        judge_with_plugins(&specs, &platform, &kept, &places, &mut tally, shown)?;
    }
    if let Some(error) = shown.error.take() {
        return Err(AuditError::Output(error));
    }
    Ok(Checked {
        tally,
        commands,
        not_shown: shown.hidden().collect(),
        replay_peak_rss: 0,
    })
}

/// Runs every plugin on all `kept` commands (with the status the rules
/// gave each) and folds their refusals into `tally`, printing them like the
/// rules' own.
fn judge_with_plugins(
    specs: &[PluginSpec],
    platform: &cmdlog::Platform,
    kept: &[(Command, Status)],
    places: &[(u64, Position)],
    tally: &mut Tally,
    shown: &mut Shown<'_>,
) -> Result<(), AuditError> {
    let findings = combine::judge(specs, platform, kept, tally).map_err(|e| match e {
        combine::CombineError::Host(e) => AuditError::PluginHost(e),
    })?;
    for found in &findings {
        // Ids strictly increase, so the places are sorted by id.
        let at = found.finding.id.and_then(|id| {
            places
                .binary_search_by_key(&id, |(id, _)| *id)
                .ok()
                .map(|at| places[at].1)
        });
        shown.finding(found.tool.as_ref(), &found.finding, at);
    }
    Ok(())
}

/// The visitor of the pass: judges, counts, tells.
struct Judge<'p, 'o, 'w> {
    checker: Checker<'p>,
    tally: Tally,
    commands: u64,
    shown: &'o mut Shown<'w>,
    /// Commands and their rules' status, kept for the plugins (if any).
    kept: Option<Vec<(Command, Status)>>,
    /// Where each kept command begins, by id (only with plugins).
    places: Vec<(u64, Position)>,
    /// The log's platform, for the plugins' request.
    platform: Option<cmdlog::Platform>,
}

impl Visit for Judge<'_, '_, '_> {
    fn header(&mut self, header: &Header) -> ControlFlow<()> {
        self.platform = Some(header.platform.clone());
        let findings = self.checker.header(header);
        self.tally.add_log(&findings);
        for finding in &findings {
            self.shown.finding(None, finding, None);
        }
        ControlFlow::Continue(())
    }

    fn command(&mut self, command: Command) -> ControlFlow<()> {
        self.command_at(command, Position::default())
    }

    fn command_at(&mut self, command: Command, at: Position) -> ControlFlow<()> {
        let verdict = self.checker.command(&command);
        self.commands += 1;
        self.tally.add(&verdict);
        self.shown.verdict(&verdict, at);
        if let Some(kept) = &mut self.kept {
            self.places.push((command.id, at));
            kept.push((command, verdict.status));
        }
        if self.shown.error.is_some() {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }
}

/// Characters of an argument (a finding's subject) a finding quotes; a
/// longer one is cut, with an ellipsis and its length.
pub const QUOTED_CHARS: usize = 200;

/// Tells the reporter findings as they come; the first write error is
/// kept and stops the pass. A hostile log can break one rule millions of
/// times with 10 KB arguments: each rule shows its first
/// [`SHOWN_PER_RULE`] findings, each quoting at most [`QUOTED_CHARS`]
/// characters of its subject.
struct Shown<'w> {
    reporter: &'w mut dyn Reporter,
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

impl Shown<'_> {
    fn verdict(&mut self, verdict: &Verdict, at: Position) {
        for finding in &verdict.findings {
            self.finding(Some(&verdict.tool), finding, Some(at));
        }
        if self.error.is_none() {
            if let Err(error) = self.reporter.event(&Event::Judged {
                id: verdict.id,
                tool: &verdict.tool,
                status: verdict.status,
                at,
            }) {
                self.error = Some(error);
            }
        }
    }

    fn finding(&mut self, tool: Option<&ToolKind>, finding: &Finding, at: Option<Position>) {
        if self.error.is_some() || !self.admit(finding.rule) {
            return;
        }
        let finding = capped(finding);
        if let Err(error) = self.reporter.event(&Event::Finding {
            tool,
            finding: &finding,
            at,
        }) {
            self.error = Some(error);
        }
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
        {
            let mut human = crate::report::HumanReporter::new(&mut out).ungrouped();
            let mut shown = Shown {
                reporter: &mut human,
                error: None,
                per_rule: Vec::new(),
            };
            for _ in 0..(SHOWN_PER_RULE + 5) {
                shown.finding(None, &finding("-bad"), None);
            }
            let checked = Checked {
                not_shown: shown.hidden().collect(),
                ..Checked::default()
            };
            human.event(&Event::Checked(&checked)).unwrap();
        }
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
