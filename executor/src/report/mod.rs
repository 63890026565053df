//! Reporters: each turns the [`Event`](crate::event::Event)s of a session
//! (both passes) into what one audience reads, writing to its own `Write`:
//! [`HumanReporter`] (findings, then a table for people), [`JsonReporter`]
//! (one JSON document for CI) and [`ProgressReporter`] (a bar, or a line
//! per command). The helpers here format figures the same way for all.

use std::time::Duration;

use crate::run::watch::Stop;

mod human;
mod json;
mod progress;

pub use human::{HumanReporter, TABLE_ROWS};
pub use json::{Document, JsonReporter};
pub use progress::ProgressReporter;

pub use policy::report::one_line;

/// `12.3 MiB`, `512 KiB`, `-`.
pub fn bytes(n: u64) -> String {
    match n {
        0 => "-".into(),
        n if n >= 1 << 30 => format!("{:.2} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n => format!("{} KiB", n.div_ceil(1024)),
    }
}

/// `1.234s`.
pub fn seconds(ms: u64) -> String {
    format!("{:.3}s", Duration::from_millis(ms).as_secs_f64())
}

/// A sentence for a limit that stopped a tool.
pub fn describe_stop(stop: &Stop) -> String {
    match *stop {
        Stop::Timeout { limit_ms, after_ms } => format!(
            "timeout: limit {}, stopped after {}",
            seconds(limit_ms),
            seconds(after_ms)
        ),
        Stop::Memory {
            limit,
            observed,
            after_ms,
        } => format!(
            "memory: limit {}, tree reached {} ({} over) after {}",
            bytes(limit),
            bytes(observed),
            bytes(observed.saturating_sub(limit)),
            seconds(after_ms)
        ),
        Stop::Output { limit, after_ms } => format!(
            "output: limit {} printed, stopped after {}",
            bytes(limit),
            seconds(after_ms)
        ),
        Stop::FileSize { limit, after_ms } => format!(
            "output file size: a file reached the limit of {} (`max_output`) after {}",
            bytes(limit),
            seconds(after_ms)
        ),
        Stop::Budget { budget, after_ms } => format!(
            "memory budget: the tools running at once passed {}; stopped after {} to run again alone",
            bytes(budget),
            seconds(after_ms)
        ),
        Stop::Interrupted { after_ms } => {
            format!(
                "interrupted: replay was asked to stop after {}",
                seconds(after_ms)
            )
        }
    }
}
