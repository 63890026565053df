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

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Write};
use std::ops::ControlFlow;

use cmdlog::{Command, Header, LogReader, Visit};
use policy::plugin::{PluginHost, PluginSpec};
use policy::report::{write_finding, write_verdict, Tally};
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

/// The options the checker gets for `job`: its log, its journal, and every
/// file of the policy (the ones it extends and its plugins' modules too)
/// are protected from being written by any command.
pub fn check_options(job: &Job, policy: &Policy, mode: Mode, strict: bool) -> CheckOptions {
    let mut protected = vec![
        job.log.clone(),
        job.policy.clone(),
        crate::journal::path_for(&job.log),
        job.root.join(crate::staging::STAGE_DIR),
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
    let host = PluginHost::new(PluginHost::default_cache_dir()).map_err(AuditError::PluginHost)?;
    let commands: Vec<Command> = kept.iter().map(|(c, _)| c.clone()).collect();
    let mut refused: HashSet<u64> = kept
        .iter()
        .filter(|(_, status)| *status == Status::Refused)
        .map(|(c, _)| c.id)
        .collect();
    for spec in specs {
        let verdicts = host
            .load(spec)
            .map_err(|e| crate::report::one_line(&e))
            .and_then(|plugin| {
                plugin
                    .evaluate(platform, &commands)
                    .map_err(|e| crate::report::one_line(&e))
            });
        let verdicts = match verdicts {
            Ok(verdicts) => verdicts,
            Err(message) => {
                // Fail closed: a plugin that cannot judge refuses the log,
                // and every command counts as refused.
                let named = format!("plugin `{}` failed", spec.name);
                let message = if message.starts_with(&named) {
                    message
                } else {
                    format!("{named}, so every command is refused: {message}")
                };
                for (command, status) in kept {
                    if refused.insert(command.id) {
                        move_to_refused(tally, *status);
                    }
                }
                let finding = Finding {
                    id: None,
                    rule: "plugin.failed",
                    subject: spec.name.clone(),
                    message,
                    hint: "fix or unpin the plugin; a plugin that cannot answer never allows"
                        .into(),
                    status: Status::Refused,
                };
                tally.add_log(std::slice::from_ref(&finding));
                printer.finding(None, &finding);
                continue;
            }
        };
        for (verdict, (command, status)) in verdicts.iter().zip(kept) {
            if verdict.allow {
                continue;
            }
            let finding = Finding {
                id: Some(verdict.id),
                rule: "plugin.refused",
                subject: spec.name.clone(),
                message: format!(
                    "plugin `{}`: {}",
                    spec.name,
                    verdict
                        .reason
                        .as_deref()
                        .unwrap_or("refused (no reason given)")
                ),
                hint: format!("see the rules of plugin `{}` in the policy", spec.name),
                status: Status::Refused,
            };
            printer.finding(Some(&command.tool), &finding);
            if refused.insert(command.id) {
                move_to_refused(tally, *status);
            }
        }
    }
    Ok(())
}

/// Recounts a command the rules gave `status` as refused.
fn move_to_refused(tally: &mut Tally, status: Status) {
    match status {
        Status::Allowed => tally.allowed -= 1,
        Status::Unverified => tally.unverified -= 1,
        Status::Refused => return,
    }
    tally.refused += 1;
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

/// Writes findings as they come, in either format; the first write error
/// is kept and stops the pass.
struct Printer<'w> {
    out: &'w mut dyn Write,
    format: Format,
    first: bool,
    error: Option<io::Error>,
}

impl Printer<'_> {
    fn begin(&mut self) -> io::Result<()> {
        match self.format {
            Format::Human => Ok(()),
            Format::Json => self.out.write_all(b"{\"findings\":["),
        }
    }

    fn verdict(&mut self, verdict: &Verdict) {
        let result = match self.format {
            Format::Human => write_verdict(self.out, verdict),
            Format::Json => verdict
                .findings
                .iter()
                .try_for_each(|f| self.json_finding(Some(verdict), f)),
        };
        self.keep(result);
    }

    fn finding(&mut self, tool: Option<&cmdlog::ToolKind>, finding: &Finding) {
        let result = match self.format {
            Format::Human => write_finding(self.out, tool, finding),
            Format::Json => self.json_finding(None, finding),
        };
        self.keep(result);
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
            Format::Human => writeln!(self.out, "{tally}"),
            Format::Json => {
                self.out.write_all(b"\n],\"status\":")?;
                serde_json::to_writer(&mut *self.out, &tally.status()).map_err(io::Error::from)?;
                self.out.write_all(b",\"tally\":")?;
                serde_json::to_writer(&mut *self.out, tally).map_err(io::Error::from)?;
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
