//! Combining the plugins' verdicts with the rules': a policy's
//! `[[plugin]]`s judge after the TOML rules and can only restrict.
//! [`PluginJudge`] takes each command as the rules judged it, in log order:
//! an ABI v2 plugin gets it at once (through its [`Session`], a batch at a
//! time) and its verdicts come back as the log streams; an ABI v1 plugin
//! sees the whole log in one request when the log ends, so for it the
//! commands are kept. Each command a plugin refuses moves to the refused
//! count of the [`Tally`], and the findings to show come back, in order,
//! for the caller to print like the rules' own. Fail closed: a plugin that
//! cannot load or answer is a `plugin.failed` finding that refuses every
//! command of the log, those judged before and those after.

use std::collections::VecDeque;

use cmdlog::{Command, Platform, ToolKind};

use crate::plugin::{HostError, LoadedPlugin, PluginHost, PluginSpec, PluginVerdict, Session};
use crate::report::Tally;
use crate::verdict::{Finding, Status};

/// Why the plugins could not judge at all.
#[derive(Debug, thiserror::Error)]
pub enum CombineError {
    /// The wasm engine could not start.
    #[error("cannot start the plugin host")]
    Host(#[source] HostError),
}

/// A finding of the plugins, with the tool of the command it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginFinding {
    /// The command's tool kind, or `None` for a finding about the whole log.
    pub tool: Option<ToolKind>,
    /// What the plugin decided, or how it failed.
    pub finding: Finding,
}

/// One plugin of the policy, as far as it got.
enum Judging {
    /// ABI v2: commands go in as they come.
    Streaming(Session),
    /// ABI v1: the commands, kept for the one request at the end.
    Whole {
        plugin: Box<LoadedPlugin>,
        commands: Vec<Command>,
    },
    /// It failed: it refused every command.
    Failed,
}

struct Entry {
    name: String,
    judging: Judging,
    /// How many commands (from the first of the log) it gave verdicts on.
    judged: u64,
}

/// A command the rules judged whose plugin verdicts are not all in.
struct Pending {
    tool: ToolKind,
    status: Status,
    /// Whether it already counts as refused.
    refused: bool,
}

/// Every plugin of a policy judging one log as it streams.
pub struct PluginJudge {
    platform: Platform,
    plugins: Vec<Entry>,
    /// Commands not yet judged by every plugin, in log order.
    pending: VecDeque<Pending>,
    /// The position in the log of `pending`'s first command.
    front: u64,
    /// A plugin failed: every command of the log is refused.
    all_refused: bool,
    /// Commands taken so far that count as allowed and as unverified.
    counted: Counted,
    // Keeps the engine (and its deadline ticker) alive while plugins run.
    _host: PluginHost,
}

impl std::fmt::Debug for PluginJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginJudge")
            .field("plugins", &self.plugins.len())
            .field("pending", &self.pending.len())
            .finish_non_exhaustive()
    }
}

impl PluginJudge {
    /// Loads every plugin of `specs` for a log of `platform` and starts the
    /// streaming ones; returns the findings of those that failed already
    /// (they refuse every command, counted in `tally` as commands come).
    pub fn start(
        specs: &[PluginSpec],
        platform: &Platform,
        tally: &mut Tally,
    ) -> Result<(PluginJudge, Vec<PluginFinding>), CombineError> {
        let host = PluginHost::new(PluginHost::default_cache_dir()).map_err(CombineError::Host)?;
        let mut judge = PluginJudge {
            platform: platform.clone(),
            plugins: Vec::with_capacity(specs.len()),
            pending: VecDeque::new(),
            front: 0,
            all_refused: false,
            counted: Counted::default(),
            _host: host,
        };
        let mut out = Vec::new();
        for spec in specs {
            let started = judge
                ._host
                .load(spec)
                .map_err(|e| crate::report::one_line(&e))
                .and_then(|plugin| match plugin.session(platform) {
                    Some(session) => session
                        .map(Judging::Streaming)
                        .map_err(|e| crate::report::one_line(&e)),
                    None => Ok(Judging::Whole {
                        plugin: Box::new(plugin),
                        commands: Vec::new(),
                    }),
                });
            judge.plugins.push(Entry {
                name: spec.name.clone(),
                judging: Judging::Failed,
                judged: 0,
            });
            let at = judge.plugins.len() - 1;
            match started {
                Ok(judging) => judge.plugins[at].judging = judging,
                Err(message) => out.push(judge.fail(at, message, tally)),
            }
        }
        Ok((judge, out))
    }

    /// Takes the next command of the log with the status the rules gave it
    /// (already counted in `tally`); returns the plugins' findings that
    /// came in meanwhile.
    pub fn command(
        &mut self,
        command: &Command,
        status: Status,
        tally: &mut Tally,
    ) -> Vec<PluginFinding> {
        let refused = status == Status::Refused || self.all_refused;
        if self.all_refused {
            move_to_refused(tally, status);
        } else {
            self.counted.add(status);
        }
        self.pending.push_back(Pending {
            tool: command.tool.clone(),
            status,
            refused,
        });
        let mut out = Vec::new();
        for at in 0..self.plugins.len() {
            let pushed = match &mut self.plugins[at].judging {
                Judging::Streaming(session) => session.push(command),
                Judging::Whole { commands, .. } => {
                    commands.push(command.clone());
                    Ok(Vec::new())
                }
                Judging::Failed => Ok(Vec::new()),
            };
            match pushed {
                Ok(verdicts) => self.apply(at, &verdicts, tally, &mut out),
                Err(error) => {
                    let message = crate::report::one_line(&error);
                    out.push(self.fail(at, message, tally));
                }
            }
        }
        self.settle();
        out
    }

    /// The log ended: the last verdicts of the streaming plugins, and the
    /// whole-log request of the v1 ones; returns their findings.
    pub fn finish(mut self, tally: &mut Tally) -> Vec<PluginFinding> {
        let mut out = Vec::new();
        for at in 0..self.plugins.len() {
            let judging = std::mem::replace(&mut self.plugins[at].judging, Judging::Failed);
            let finished = match judging {
                Judging::Streaming(session) => session.finish(),
                Judging::Whole { plugin, commands } => plugin.evaluate(&self.platform, &commands),
                Judging::Failed => continue,
            };
            match finished {
                Ok(verdicts) => self.apply(at, &verdicts, tally, &mut out),
                Err(error) => {
                    let message = crate::report::one_line(&error);
                    out.push(self.fail(at, message, tally));
                }
            }
        }
        out
    }

    /// Applies plugin `at`'s next `verdicts` (in log order, from the first
    /// command it has not judged).
    fn apply(
        &mut self,
        at: usize,
        verdicts: &[PluginVerdict],
        tally: &mut Tally,
        out: &mut Vec<PluginFinding>,
    ) {
        let name = self.plugins[at].name.clone();
        for verdict in verdicts {
            let position = self.plugins[at].judged;
            self.plugins[at].judged += 1;
            if verdict.allow {
                continue;
            }
            let Some(pending) = position
                .checked_sub(self.front)
                .and_then(|i| usize::try_from(i).ok())
                .and_then(|i| self.pending.get_mut(i))
            else {
                continue;
            };
            out.push(PluginFinding {
                tool: Some(pending.tool.clone()),
                finding: Finding {
                    id: Some(verdict.id),
                    rule: "plugin.refused",
                    subject: name.clone(),
                    message: format!(
                        "plugin `{name}`: {}",
                        verdict
                            .reason
                            .as_deref()
                            .unwrap_or("refused (no reason given)")
                    ),
                    hint: format!("see the rules of plugin `{name}` in the policy"),
                    status: Status::Refused,
                },
            });
            if !pending.refused {
                pending.refused = true;
                move_to_refused(tally, pending.status);
                self.counted.remove(pending.status);
            }
        }
    }

    /// Forgets the commands every plugin has judged.
    fn settle(&mut self) {
        let judged = self
            .plugins
            .iter()
            .filter(|p| !matches!(p.judging, Judging::Failed))
            .map(|p| p.judged)
            .min()
            .unwrap_or(u64::MAX);
        while self.front < judged && self.pending.pop_front().is_some() {
            self.front += 1;
        }
    }

    /// Plugin `at` failed with `message`: it refuses every command of the
    /// log (those counted so far now, the rest as they come).
    fn fail(&mut self, at: usize, message: String, tally: &mut Tally) -> PluginFinding {
        let name = self.plugins[at].name.clone();
        self.plugins[at].judging = Judging::Failed;
        let named = format!("plugin `{name}` failed");
        let message = if message.starts_with(&named) {
            message
        } else {
            format!("{named}, so every command is refused: {message}")
        };
        if !self.all_refused {
            self.all_refused = true;
            let Counted {
                allowed,
                unverified,
            } = std::mem::take(&mut self.counted);
            tally.allowed = tally.allowed.saturating_sub(allowed);
            tally.unverified = tally.unverified.saturating_sub(unverified);
            tally.refused += allowed + unverified;
            for pending in &mut self.pending {
                pending.refused = true;
            }
        }
        let finding = Finding {
            id: None,
            rule: "plugin.failed",
            subject: name,
            message,
            hint: "fix or unpin the plugin; a plugin that cannot answer never allows".into(),
            status: Status::Refused,
        };
        tally.add_log(std::slice::from_ref(&finding));
        PluginFinding {
            tool: None,
            finding,
        }
    }
}

/// Runs every plugin of `specs` on all `kept` commands (with the status the
/// rules gave each, already counted in `tally`), folds their refusals into
/// `tally`, and returns their findings in the order they were made.
pub fn judge(
    specs: &[PluginSpec],
    platform: &Platform,
    kept: &[(Command, Status)],
    tally: &mut Tally,
) -> Result<Vec<PluginFinding>, CombineError> {
    let (mut judge, mut out) = PluginJudge::start(specs, platform, tally)?;
    for (command, status) in kept {
        out.extend(judge.command(command, *status, tally));
    }
    out.extend(judge.finish(tally));
    Ok(out)
}

/// How many of the commands taken so far count as allowed, and as
/// unverified: what a plugin's failure moves to refused.
#[derive(Debug, Default)]
struct Counted {
    allowed: u64,
    unverified: u64,
}

impl Counted {
    fn add(&mut self, status: Status) {
        match status {
            Status::Allowed => self.allowed += 1,
            Status::Unverified => self.unverified += 1,
            Status::Refused => {}
        }
    }

    fn remove(&mut self, status: Status) {
        match status {
            Status::Allowed => self.allowed = self.allowed.saturating_sub(1),
            Status::Unverified => self.unverified = self.unverified.saturating_sub(1),
            Status::Refused => {}
        }
    }
}

/// Recounts a command the rules gave `status` as refused.
fn move_to_refused(tally: &mut Tally, status: Status) {
    match status {
        Status::Allowed => tally.allowed = tally.allowed.saturating_sub(1),
        Status::Unverified => tally.unverified = tally.unverified.saturating_sub(1),
        Status::Refused => return,
    }
    tally.refused += 1;
}
