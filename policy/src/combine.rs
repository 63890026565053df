//! Combining the plugins' verdicts with the rules': a policy's
//! `[[plugin]]`s judge after the TOML rules, all commands in one request
//! each (ABI v1), and can only restrict. [`judge`] runs every plugin on the
//! commands the rules judged, moves each command a plugin refuses to the
//! refused count of the [`Tally`], and returns the findings to show, in
//! order, for the caller to print like the rules' own. Fail closed: a
//! plugin that cannot load or answer is a `plugin.failed` finding that
//! refuses every command.

use std::collections::HashSet;

use cmdlog::{Command, Platform, ToolKind};

use crate::plugin::{HostError, PluginHost, PluginSpec};
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

/// Runs every plugin of `specs` on all `kept` commands (with the status the
/// rules gave each), folds their refusals into `tally`, and returns their
/// findings in the order they were made.
pub fn judge(
    specs: &[PluginSpec],
    platform: &Platform,
    kept: &[(Command, Status)],
    tally: &mut Tally,
) -> Result<Vec<PluginFinding>, CombineError> {
    let host = PluginHost::new(PluginHost::default_cache_dir()).map_err(CombineError::Host)?;
    let commands: Vec<Command> = kept.iter().map(|(c, _)| c.clone()).collect();
    let mut refused: HashSet<u64> = kept
        .iter()
        .filter(|(_, status)| *status == Status::Refused)
        .map(|(c, _)| c.id)
        .collect();
    let mut out = Vec::new();
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
                out.push(PluginFinding {
                    tool: None,
                    finding,
                });
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
            out.push(PluginFinding {
                tool: Some(command.tool.clone()),
                finding,
            });
            if refused.insert(command.id) {
                move_to_refused(tally, *status);
            }
        }
    }
    Ok(out)
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
