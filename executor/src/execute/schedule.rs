//! `-j N`: several tools at once, under a memory budget.
//!
//! The log is still read streaming, into a window of at most [`WINDOW`]
//! commands not yet finished. A command may start when no earlier
//! unfinished command conflicts with it (one writes what the other reads
//! or writes), when fewer than N tools run, and when its predicted peak
//! ([`super::predict`]) fits in what the running tools' predictions leave
//! of the budget; the earliest ready command goes first, and a later one
//! never overtakes it for memory (so a large command is not starved). A
//! command with no prediction is given the whole budget: it runs alone.
//!
//! Judging, staging, the cache, committing and journaling stay on this
//! thread, in log order of readiness; each tool runs on a thread of its
//! own, which is its tracer (waits are per thread, `__WNOTHREAD`). Every
//! tick the scheduler sums the running tools' sampled tree RSS; if the sum
//! passes the budget with more than one running, the last one started is
//! stopped (SIGKILL: a traced tool cannot be frozen by SIGSTOP, its tracer
//! resumes group stops), its outputs discarded, and it runs again alone.

use std::collections::VecDeque;
use std::ops::ControlFlow;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmdlog::Command;

use super::predict::{Basis, Prediction, Predictor, Subject};
use super::{worst, Next, Prepared, RunStatus, Runner};
use crate::event::{CommandRecord, Event, Timing};
use crate::run::watch::{Gauge, Stop};
use crate::run::{run_tool, RunError, ToolOutcome};

/// Commands read ahead of the oldest unfinished one, at most.
pub const WINDOW: usize = 512;

/// How often the scheduler looks at the running tools' memory.
const TICK: Duration = Duration::from_millis(10);

/// A command read and not finished.
enum Waiting {
    /// Not yet prepared: its inputs may not be made yet.
    Read {
        position: u64,
        command: Command,
        /// It was stopped for the budget once: it runs alone.
        alone: bool,
    },
    /// Prepared (judged, staged) and waiting for memory.
    Ready {
        position: u64,
        prepared: Box<Prepared>,
        prediction: Prediction,
        alone: bool,
    },
}

impl Waiting {
    fn command(&self) -> &Command {
        match self {
            Waiting::Read { command, .. } => command,
            Waiting::Ready { prepared, .. } => &prepared.command,
        }
    }

    fn position(&self) -> u64 {
        match self {
            Waiting::Read { position, .. } | Waiting::Ready { position, .. } => *position,
        }
    }
}

/// A tool running on its own thread.
struct Slot {
    number: u64,
    position: u64,
    prepared: Box<Prepared>,
    prediction: Prediction,
    gauge: Arc<Gauge>,
    started: Instant,
    alone: bool,
    evicted: bool,
}

/// What a tool's thread sends back.
type Done = (u64, Result<ToolOutcome, RunError>);

/// The state of a parallel run.
pub(super) struct Parallel {
    jobs: usize,
    budget: u64,
    waiting: VecDeque<Waiting>,
    running: Vec<Slot>,
    sender: Sender<Done>,
    receiver: Receiver<Done>,
    next_slot: u64,
    /// No more starts: a failure (without `--keep-going`), an error, or
    /// an interrupt. What runs finishes.
    stopping: bool,
    /// The largest sum of the running tools' sampled RSS.
    pub(super) peak_sum: u64,
    predictor: Predictor,
    said_cold: bool,
}

impl Parallel {
    /// A parallel run of up to `jobs` tools within `budget` bytes.
    pub(super) fn new(jobs: usize, budget: u64, predictor: Predictor) -> Parallel {
        let (sender, receiver) = channel();
        Parallel {
            jobs: jobs.max(1),
            budget,
            waiting: VecDeque::new(),
            running: Vec::new(),
            sender,
            receiver,
            next_slot: 0,
            stopping: false,
            peak_sum: 0,
            predictor,
            said_cold: false,
        }
    }

    /// Saves what the run learned for the next one's predictions.
    pub(super) fn save(&self) -> std::io::Result<()> {
        self.predictor.save()
    }
}

/// Whether two commands touch a file in a way that orders them: one
/// writes what the other reads or writes.
fn conflict(a: &Command, b: &Command) -> bool {
    let meets = |xs: &[String], ys: &[String]| {
        xs.iter().any(|x| {
            ys.iter()
                .any(|y| super::normalized(x) == super::normalized(y))
        })
    };
    meets(&a.outputs, &b.inputs) || meets(&a.inputs, &b.outputs) || meets(&a.outputs, &b.outputs)
}

impl Runner<'_, '_> {
    /// Takes `command` into the window, then runs what can run until the
    /// window has room to read more.
    pub(super) fn take(&mut self, command: Command) -> ControlFlow<()> {
        self.position += 1;
        let position = self.position;
        if let Some(parallel) = &mut self.parallel {
            parallel.waiting.push_back(Waiting::Read {
                position,
                command,
                alone: false,
            });
        }
        self.pump(WINDOW)
    }

    /// Runs what can run, finishing what ends, until fewer than `room`
    /// commands wait (`0`: until all are done). `Break` once the run
    /// stops early and nothing runs any more.
    pub(super) fn pump(&mut self, room: usize) -> ControlFlow<()> {
        loop {
            if self.options.interrupted.load(Ordering::SeqCst) {
                self.status = worst(self.status, RunStatus::Interrupted);
                self.stop();
            }
            // What ended while the log was read.
            while let Some((slot, result)) = self
                .parallel
                .as_ref()
                .and_then(|p| p.receiver.try_recv().ok())
            {
                self.ended(slot, result);
            }
            self.start_what_fits();
            let Some(parallel) = &self.parallel else {
                return ControlFlow::Break(());
            };
            if parallel.running.is_empty() {
                // An empty machine admits the first waiting command, so
                // nothing waits here unless the run is stopping.
                return if parallel.stopping || self.error.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                };
            }
            if !parallel.stopping && room > 0 && parallel.waiting.len() < room {
                return ControlFlow::Continue(());
            }
            match parallel.receiver.recv_timeout(TICK) {
                Ok((slot, result)) => self.ended(slot, result),
                Err(RecvTimeoutError::Timeout) => self.watch_memory(),
                Err(RecvTimeoutError::Disconnected) => return ControlFlow::Break(()),
            }
        }
    }

    /// No more starts; what runs finishes.
    fn stop(&mut self) {
        if let Some(parallel) = &mut self.parallel {
            parallel.stopping = true;
        }
    }

    /// Prepares and starts, in log order, every waiting command whose
    /// turn has come and whose memory fits.
    fn start_what_fits(&mut self) {
        let mut at = 0;
        loop {
            let Some(parallel) = &self.parallel else {
                return;
            };
            if parallel.stopping || self.error.is_some() {
                self.stop();
                return;
            }
            if parallel.running.len() >= parallel.jobs
                || parallel.running.iter().any(|slot| slot.alone)
            {
                return;
            }
            let Some(candidate) = parallel.waiting.get(at) else {
                return;
            };
            let command = candidate.command();
            let blocked = parallel
                .waiting
                .iter()
                .take(at)
                .any(|earlier| conflict(earlier.command(), command))
                || parallel
                    .running
                    .iter()
                    .any(|slot| conflict(&slot.prepared.command, command));
            if blocked {
                at += 1;
                continue;
            }
            let Some(waiting) = self.parallel.as_mut().and_then(|p| p.waiting.remove(at)) else {
                return;
            };
            let (position, prepared, prediction, alone) = match waiting {
                Waiting::Ready {
                    position,
                    prepared,
                    prediction,
                    alone,
                } => (position, prepared, prediction, alone),
                Waiting::Read {
                    position,
                    command,
                    alone,
                } => {
                    if let Err(error) = self.reporter.event(&Event::Started {
                        id: command.id,
                        tool: command.tool.name(),
                        position,
                    }) {
                        self.error = Some(super::ExecuteError::Report(error));
                        return;
                    }
                    let began = self.run_started.elapsed();
                    match self.prepare(&command) {
                        Next::Done(mut record) => {
                            record.timing =
                                Some(Timing::between(began, self.run_started.elapsed(), None));
                            if self.finish(*record).is_break() {
                                self.stop();
                            }
                            continue;
                        }
                        Next::Run(prepared) => {
                            let prediction = self.predict(&prepared);
                            (position, prepared, prediction, alone)
                        }
                    }
                }
            };
            let Some(parallel) = &mut self.parallel else {
                return;
            };
            let admitted: u64 = parallel.running.iter().map(|s| s.prediction.bytes).sum();
            let fits = parallel.running.is_empty()
                || (!alone && admitted.saturating_add(prediction.bytes) <= parallel.budget);
            if !fits {
                // It waits, prepared, at its place; nothing later overtakes
                // it for memory.
                parallel.waiting.insert(
                    at,
                    Waiting::Ready {
                        position,
                        prepared,
                        prediction,
                        alone,
                    },
                );
                return;
            }
            if prediction.basis == Basis::Unknown && parallel.jobs > 1 && !parallel.said_cold {
                parallel.said_cold = true;
                let message = format!(
                    "command {} has no measured or given memory figure, so it runs alone (as does every such command); a warm cache, or `--predict {}=SIZE`, lets commands run in parallel",
                    prepared.command.id,
                    prepared.command.tool.name()
                );
                self.warn(&message);
            }
            if prediction.bytes > self.parallel.as_ref().map_or(0, |p| p.budget)
                && prediction.basis != Basis::Unknown
            {
                let message = format!(
                    "command {} is predicted to need more than the memory budget; it runs alone",
                    prepared.command.id
                );
                self.warn(&message);
            }
            self.launch(position, prepared, prediction, alone);
        }
    }

    /// The memory to admit for `prepared`.
    fn predict(&self, prepared: &Prepared) -> Prediction {
        let Some(parallel) = &self.parallel else {
            return Prediction {
                bytes: 0,
                basis: Basis::Unknown,
            };
        };
        let program = self
            .cache
            .as_ref()
            .and_then(|cache| cache.program_digest(&prepared.resolved.program));
        let cached_peak = match (&self.cache, &prepared.key) {
            (Some(cache), Some(key)) => cache.peak(key),
            _ => None,
        };
        parallel.predictor.predict(&Subject {
            kind: prepared.command.tool.name(),
            program: program.as_deref(),
            input_bytes: input_bytes(&prepared.resolved),
            cached_peak,
            limit: prepared.run_options.limits.max_rss,
        })
    }

    /// Starts `prepared`'s tool on a thread of its own.
    fn launch(
        &mut self,
        position: u64,
        prepared: Box<Prepared>,
        prediction: Prediction,
        alone: bool,
    ) {
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let gauge = Arc::new(Gauge::default());
        let number = parallel.next_slot;
        parallel.next_slot += 1;
        let spec = prepared.spec.clone();
        let mut options = prepared.run_options.clone();
        options.gauge = Some(Arc::clone(&gauge));
        let sender = parallel.sender.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("replay-tool-{}", prepared.command.id))
            .spawn(move || {
                let result = run_tool(&spec, &options);
                let _ = sender.send((number, result));
            });
        if let Err(error) = spawned {
            let result = Err(RunError::Thread(error));
            let began = self.run_started.elapsed();
            let mut record = self.complete(*prepared, result);
            record.timing = Some(Timing::between(began, began, Some(prediction.bytes)));
            if self.finish(record).is_break() {
                self.stop();
            }
            return;
        }
        parallel.running.push(Slot {
            number,
            position,
            prepared,
            prediction,
            gauge,
            started: Instant::now(),
            alone,
            evicted: false,
        });
    }

    /// A tool ended: its command is completed and reported, or, stopped
    /// for the budget, queued again to run alone.
    fn ended(&mut self, number: u64, result: Result<ToolOutcome, RunError>) {
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let Some(at) = parallel.running.iter().position(|s| s.number == number) else {
            return;
        };
        let slot = parallel.running.remove(at);
        let budgeted = matches!(
            &result,
            Ok(outcome) if matches!(outcome.stop, Some(Stop::Budget { .. }))
        );
        if budgeted && !self.options.interrupted.load(Ordering::SeqCst) {
            let Slot {
                position, prepared, ..
            } = slot;
            let Prepared {
                command, staging, ..
            } = *prepared;
            staging.abort();
            let message = format!(
                "command {} ({}) was stopped to keep the tools running at once under the memory budget ({}); it runs again alone",
                command.id,
                command.tool.name(),
                crate::report::bytes(parallel.budget)
            );
            let place = parallel
                .waiting
                .iter()
                .position(|w| w.position() > position)
                .unwrap_or(parallel.waiting.len());
            parallel.waiting.insert(
                place,
                Waiting::Read {
                    position,
                    command,
                    alone: true,
                },
            );
            self.warn(&message);
            return;
        }
        let began = slot.started.duration_since(self.run_started);
        let learned = result.as_ref().ok().filter(|o| o.success()).map(|o| {
            let m = &o.measurements;
            m.peak_tree_rss_sampled
                .max(m.peak_process.as_ref().map_or(0, |p| p.bytes))
        });
        if let Some(peak) = learned {
            let program = self
                .cache
                .as_ref()
                .and_then(|cache| cache.program_digest(&slot.prepared.resolved.program));
            let bytes = input_bytes(&slot.prepared.resolved);
            if let Some(parallel) = &mut self.parallel {
                parallel.predictor.learn(
                    &Subject {
                        kind: slot.prepared.command.tool.name(),
                        program: program.as_deref(),
                        input_bytes: bytes,
                        cached_peak: None,
                        limit: None,
                    },
                    peak,
                );
            }
        }
        let admitted = slot.prediction.bytes;
        let mut record: CommandRecord = self.complete(*slot.prepared, result);
        record.timing = Some(Timing::between(
            began,
            self.run_started.elapsed(),
            Some(admitted),
        ));
        if self.finish(record).is_break() {
            self.stop();
        }
    }

    /// Sums the running tools' memory; over the budget, stops the last
    /// one started (unless it runs alone).
    fn watch_memory(&mut self) {
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let sum: u64 = parallel.running.iter().map(|s| s.gauge.rss()).sum();
        parallel.peak_sum = parallel.peak_sum.max(sum);
        if sum <= parallel.budget || parallel.running.len() < 2 {
            return;
        }
        if let Some(last) = parallel
            .running
            .iter_mut()
            .filter(|s| !s.evicted)
            .max_by_key(|s| s.started)
        {
            last.evicted = true;
            last.gauge.evict(parallel.budget);
        }
    }
}

/// The summed size of a command's declared input files.
fn input_bytes(resolved: &policy::Resolved) -> u64 {
    resolved
        .input_files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(inputs: &[&str], outputs: &[&str]) -> Command {
        Command {
            id: 1,
            tool: cmdlog::ToolKind::Other("t".into()),
            program: "t".into(),
            args: Vec::new(),
            cwd: ".".into(),
            env: Default::default(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
            cache_key: None,
        }
    }

    #[test]
    fn commands_that_share_a_file_are_ordered_and_others_are_not() {
        let opt = command(&["p0.bc"], &["p0.opt.bc"]);
        let llc = command(&["./p0.opt.bc"], &["p0.o"]);
        let other = command(&["p1.bc"], &["p1.opt.bc"]);
        let rewrite = command(&["x"], &["p0.bc"]);
        let same_output = command(&[], &["p1.opt.bc"]);
        assert!(conflict(&opt, &llc) && conflict(&llc, &opt));
        assert!(!conflict(&opt, &other));
        assert!(
            conflict(&opt, &rewrite),
            "a later command rewrites its input"
        );
        assert!(conflict(&other, &same_output));
    }
}
