//! The validation pass: every command of a log judged by the policy, all of
//! them (it does not stop at the first refusal), streaming, so memory stays
//! flat in the log's length. `replay check` is this pass alone; `replay
//! --policy` runs it first and runs nothing unless it passes.
//!
//! A policy's `[[plugin]]`s judge after the TOML rules
//! ([`combine::PluginJudge`]): an ABI v2 plugin as the log streams, a batch
//! at a time; an ABI v1 plugin in one request at the end, so for it the
//! commands are kept in memory. Plugins only restrict: a command passes if the rules
//! and every plugin allow it, and a plugin that fails in any way (trap,
//! deadline, bad output, pin mismatch) refuses the whole log.

use std::fs::File;
use std::io;
use std::ops::ControlFlow;

use cmdlog::{Command, Header, LogReader, Position, ToolKind, Visit};
use policy::combine;
use policy::plugin::PluginSpec;
use policy::report::Tally;
use policy::{CheckOptions, Checker, CheckerError, Finding, Mode, Policy, Verdict};

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

/// How much memory a pass may spend on the whole-log rules for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Footprint {
    /// `replay check`: the tables grow to a few MiB before they spill.
    Fast,
    /// A run's first pass, beside the tools it starts: they spill early.
    Lean,
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
    footprint: Footprint,
    reporter: &mut dyn Reporter,
) -> Result<Checked, AuditError> {
    // Nothing here runs a command: its verdicts need not say how.
    let mut checker = Checker::new(policy, &job.root, check_options(job, policy, mode, strict))
        .map_err(AuditError::Checker)?
        .judge_only();
    if footprint == Footprint::Lean {
        checker = checker.spill_after(policy::LEAN_SPILL_AFTER, policy::LEAN_RUN_RECORDS);
    }
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
        specs: &specs,
        plugins: None,
        plugin_error: None,
        places: std::collections::VecDeque::new(),
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
        plugins,
        plugin_error,
        places,
        ..
    } = visit;
    if let Some(error) = plugin_error {
        return Err(AuditError::PluginHost(error));
    }
    // The end of the log: findings about it, and (for a log whose paths
    // were spilled) the whole-log rules' findings about commands, which
    // move those commands to the refused count.
    let end = checker.finish(&mut |tool, finding| {
        if finding.id.is_none() {
            tally.add_log(std::slice::from_ref(&finding));
        }
        shown.finding(tool, &finding, None);
    });
    tally.allowed = tally.allowed.saturating_sub(end.recount.allowed);
    tally.unverified = tally.unverified.saturating_sub(end.recount.unverified);
    tally.refused += end.recount.allowed + end.recount.unverified;
    if let Some(plugins) = plugins {
        for found in &plugins.finish(&mut tally) {
            shown.finding(
                found.tool.as_ref(),
                &found.finding,
                place_of(&places, found.finding.id),
            );
        }
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

/// How many commands' places a plugin pass keeps, the latest: a plugin's
/// verdicts come back within a batch or two of their command.
const PLACES_KEPT: usize = 65_536;

/// Where the command `id` begins, if it is among the places kept.
fn place_of(
    places: &std::collections::VecDeque<(u64, Position)>,
    id: Option<u64>,
) -> Option<Position> {
    let id = id?;
    // Ids strictly increase, so the places are sorted by id.
    let (front, back) = places.as_slices();
    front
        .binary_search_by_key(&id, |(id, _)| *id)
        .ok()
        .map(|at| front[at].1)
        .or_else(|| {
            back.binary_search_by_key(&id, |(id, _)| *id)
                .ok()
                .map(|at| back[at].1)
        })
}

/// The visitor of the pass: judges, counts, tells.
struct Judge<'p, 'o, 'w> {
    checker: Checker<'p>,
    tally: Tally,
    commands: u64,
    shown: &'o mut Shown<'w>,
    /// The policy's plugins.
    specs: &'o [PluginSpec],
    /// The plugins judging the log (started at its header), if any.
    plugins: Option<combine::PluginJudge>,
    /// Why the plugins could not start.
    plugin_error: Option<policy::plugin::HostError>,
    /// Where the latest commands begin, by id (only with plugins), for
    /// the plugins' findings.
    places: std::collections::VecDeque<(u64, Position)>,
}

impl Visit for Judge<'_, '_, '_> {
    fn header(&mut self, header: &Header) -> ControlFlow<()> {
        let findings = self.checker.header(header);
        self.tally.add_log(&findings);
        for finding in &findings {
            self.shown.finding(None, finding, None);
        }
        if !self.specs.is_empty() {
            match combine::PluginJudge::start(self.specs, &header.platform, &mut self.tally) {
                Ok((plugins, found)) => {
                    for found in &found {
                        self.shown
                            .finding(found.tool.as_ref(), &found.finding, None);
                    }
                    self.plugins = Some(plugins);
                }
                Err(combine::CombineError::Host(error)) => {
                    self.plugin_error = Some(error);
                    return ControlFlow::Break(());
                }
            }
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
        if let Some(plugins) = &mut self.plugins {
            if self.places.len() >= PLACES_KEPT {
                self.places.pop_front();
            }
            self.places.push_back((command.id, at));
            for found in &plugins.command(&command, verdict.status, &mut self.tally) {
                let at = place_of(&self.places, found.finding.id);
                self.shown.finding(found.tool.as_ref(), &found.finding, at);
            }
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
    use policy::Status;

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
