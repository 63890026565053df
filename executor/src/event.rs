//! The events of a session, and the one trait every reporter implements.
//!
//! Both passes speak through [`Event`]: the check pass ([`crate::audit`])
//! emits each finding it shows (with where its command begins in the
//! log), each command's verdict, and its tally; the run pass
//! ([`crate::execute`]) emits each command's start and record and the
//! totals. Reporters ([`crate::report`]) consume the events of both, each
//! writing to its own `Write`, so a test feeds events and reads exactly
//! what a user would see, as cargo-nextest's reporters do.

use std::io;
use std::time::Duration;

use cmdlog::{Position, ToolKind};
use policy::report::Tally;
use policy::Finding;

use crate::run::trace::ExitStatus;
use crate::run::watch::Stop;
use crate::run::ToolOutcome;

/// What happened to one command.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Status {
    /// It ran and succeeded.
    Ok,
    /// It ran and failed.
    Failed {
        /// How it ended.
        exit: ExitStatus,
    },
    /// A limit stopped it.
    Stopped {
        /// Which limit.
        stop: Stop,
    },
    /// It could not be run (sandbox, missing input, missing output).
    Error {
        /// Why.
        message: String,
    },
    /// The sandbox stopped it doing what its command did not declare (a
    /// program the policy does not let its tool run): its tree was killed
    /// and its outputs discarded.
    Denied {
        /// What it tried (`exec`).
        action: String,
        /// The binary or path it named.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// `--resume` found it done.
    Resumed,
    /// The action cache had its result: outputs restored, output replayed.
    Cached,
    /// An input it needs came from a command that failed (`--keep-going`).
    Blocked {
        /// The input.
        input: String,
    },
}

impl Status {
    /// A short word for the table.
    pub fn word(&self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Failed { .. } => "FAILED",
            Status::Stopped { .. } => "STOPPED",
            Status::Error { .. } => "ERROR",
            Status::Denied { .. } => "DENIED",
            Status::Resumed => "resumed",
            Status::Cached => "cached",
            Status::Blocked { .. } => "blocked",
        }
    }

    /// True for outcomes that leave the run successful.
    pub fn is_good(&self) -> bool {
        matches!(self, Status::Ok | Status::Resumed | Status::Cached)
    }
}

/// One command's line of the report.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct CommandRecord {
    /// The command's id.
    pub id: u64,
    /// Its tool kind.
    pub tool: String,
    /// What happened.
    #[serde(flatten)]
    pub status: Status,
    /// The run, if it ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outcome: Option<ToolOutcome>,
    /// Files the tool wrote in its staging that no output declares
    /// (root-relative): never committed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discarded: Vec<String>,
    /// Files inside the work root it read without declaring them
    /// (root-relative), as the tracer saw.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undeclared_reads: Vec<String>,
    /// What the action cache did for it, when the run has a cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<crate::cached::CacheRecord>,
    /// When it started and ended, and the memory admitted for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<Timing>,
}

/// When a command ran within the run, and what memory it was admitted
/// with (a parallel run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Timing {
    /// Its start, in milliseconds after the run's.
    pub started_ms: u64,
    /// Its end, likewise.
    pub ended_ms: u64,
    /// The peak predicted (and admitted under the budget), in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admitted: Option<u64>,
}

impl Timing {
    /// From `started` to `ended` after the run's start.
    pub fn between(started: Duration, ended: Duration, admitted: Option<u64>) -> Timing {
        Timing {
            started_ms: started.as_millis() as u64,
            ended_ms: ended.as_millis() as u64,
            admitted,
        }
    }
}

/// The whole run's totals.
#[derive(Debug, Clone, Default, serde::Serialize, schemars::JsonSchema)]
pub struct Totals {
    /// Commands in the log.
    pub commands: u64,
    /// Commands that ran.
    pub ran: u64,
    /// Commands that succeeded: ran, or restored from the action cache.
    pub succeeded: u64,
    /// Wall time of the whole run, in milliseconds.
    pub wall_ms: u64,
    /// The largest single-process peak RSS of any tool, in bytes.
    pub peak_rss: u64,
    /// The command that had it.
    pub peak_rss_command: Option<u64>,
    /// The largest sampled tree RSS of any tool, in bytes.
    pub peak_tree_rss_sampled: u64,
    /// User + system CPU of all tools, in milliseconds.
    pub cpu_ms: u64,
    /// `replay`'s own peak RSS (its `VmHWM`), in bytes: the driver's cost.
    pub replay_peak_rss: u64,
    /// Commands the action cache restored.
    pub cache_hits: u64,
    /// Commands it was asked for and did not have.
    pub cache_misses: u64,
    /// The tools' wall time the hits saved, in milliseconds.
    pub cache_saved_ms: u64,
    /// Of the hits, those the remote cache had (`--remote-cache`).
    pub remote_hits: u64,
    /// Results uploaded to the remote cache.
    pub remote_uploads: u64,
    /// Commands a build farm's worker ran (`--remote-executor`): they
    /// ran, so they are not counted as cache hits.
    pub farm_ran: u64,
    /// Tools run at once at most (`-j`).
    pub jobs: usize,
    /// The memory budget of a parallel run, in bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_budget: Option<u64>,
    /// The largest sum of the running tools' sampled tree RSS, in bytes.
    pub peak_sum_rss: u64,
}

impl Totals {
    /// Adds one command's record.
    pub fn add(&mut self, record: &CommandRecord) {
        if let Some(outcome) = &record.outcome {
            self.ran += 1;
            let m = &outcome.measurements;
            self.cpu_ms += m.user_ms + m.system_ms;
            self.peak_tree_rss_sampled = self.peak_tree_rss_sampled.max(m.peak_tree_rss_sampled);
            if let Some(peak) = &m.peak_process {
                if peak.bytes > self.peak_rss {
                    self.peak_rss = peak.bytes;
                    self.peak_rss_command = Some(record.id);
                }
            }
        }
        if matches!(record.status, Status::Ok | Status::Cached) {
            self.succeeded += 1;
        }
        if let Some(cache) = &record.cache {
            let on_farm = cache.ran_on.as_deref().is_some_and(|w| w != "local")
                && cache.remote_execution.as_deref() != Some(SERVED_BY_FARM_CACHE);
            if cache.hit && on_farm {
                self.farm_ran += 1;
            } else if cache.hit {
                self.cache_hits += 1;
                self.cache_saved_ms += cache.saved_ms;
            } else if cache.miss.is_some() {
                self.cache_misses += 1;
            }
            match cache.remote.as_deref() {
                Some("hit") if cache.hit => self.remote_hits += 1,
                Some("uploaded") => self.remote_uploads += 1,
                _ => {}
            }
        }
    }
}

/// What a command's `remote_execution` says when the farm's action cache
/// had its result: a hit, not a run.
pub const SERVED_BY_FARM_CACHE: &str = "served from the farm's action cache, not run again";

/// Findings of one rule the check pass shows; the rest are counted in
/// [`Checked::not_shown`] ("and N more").
pub const SHOWN_PER_RULE: u64 = 20;

/// The check pass's result: what reporters print after its findings.
#[derive(Debug, Clone, Default)]
pub struct Checked {
    /// Verdicts counted by status.
    pub tally: Tally,
    /// Commands judged.
    pub commands: u64,
    /// Rules with more findings than were shown, and how many were not.
    pub not_shown: Vec<(&'static str, u64)>,
    /// `replay`'s own peak RSS when the pass ended, in bytes.
    pub replay_peak_rss: u64,
}

impl Checked {
    /// The log's overall status.
    pub fn status(&self) -> policy::Status {
        self.tally.status()
    }
}

/// What the passes tell reporters.
#[derive(Debug)]
pub enum Event<'a> {
    /// Driver mode: the producer exited; its log comes next.
    Producer(&'a crate::drive::Produced),
    /// The check pass found something to show: a command's (`tool` is its
    /// kind) or the log's (`tool` is `None`). Capped per rule at the
    /// source: a reporter shows every finding it is given.
    Finding {
        /// The kind of the command it is about, if it is about one.
        tool: Option<&'a ToolKind>,
        /// The finding, its subject quoted short.
        finding: &'a Finding,
        /// Where its command begins in the log, when the pass knows (a
        /// whole-log rule's finding has none).
        at: Option<Position>,
    },
    /// The check pass judged one command (after the findings it showed
    /// for it). A plugin may still refuse it later, with a finding.
    Judged {
        /// The command's id.
        id: u64,
        /// Its tool kind.
        tool: &'a ToolKind,
        /// What the rules said.
        status: policy::Status,
        /// Where it begins in the log.
        at: Position,
    },
    /// The check pass is over.
    Checked(&'a Checked),
    /// Every command passed the policy; `commands` will be considered.
    Validated {
        /// How many.
        commands: u64,
    },
    /// A command is about to run.
    Started {
        /// Its id.
        id: u64,
        /// Its tool kind.
        tool: &'a str,
        /// Its 1-based position in the log.
        position: u64,
    },
    /// A command is done (or skipped).
    Finished(&'a CommandRecord),
    /// The run is over.
    Done(&'a Totals),
    /// Something the user should know that does not stop the run (e.g. a
    /// journal with lines that are not entries): one line, lowercase.
    Warning(&'a str),
}

/// Consumes the events of a session.
pub trait Reporter {
    /// Handles one event.
    fn event(&mut self, event: &Event<'_>) -> io::Result<()>;
}

/// Several reporters as one.
#[derive(Default)]
pub struct Reporters(pub Vec<Box<dyn Reporter>>);

impl Reporter for Reporters {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        for reporter in &mut self.0 {
            reporter.event(event)?;
        }
        Ok(())
    }
}
