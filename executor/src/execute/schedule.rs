//! `-j N`: several tools at once, under a memory budget.
//!
//! The log is still read streaming, into a window of at most [`WINDOW`]
//! commands not yet finished. A command may start when no earlier
//! unfinished command conflicts with it (one writes what the other reads
//! or writes), when fewer than N tools run, and when its predicted peak
//! ([`super::predict`]) fits in what the running tools' predictions leave
//! of the budget; the earliest ready command goes first, and a later one
//! never overtakes it for memory (so a large command is not starved). A
//! command with no prediction, or one predicted above the budget, runs
//! alone. Paths are compared as the file system resolves them when the
//! command is read (a symlinked input is its target), and the window is
//! scanned again only when something changed.
//!
//! With `--remote-executor`, a command that misses every cache is sent to
//! the build farm from a thread of its own: it holds one of the N slots
//! but none of the memory budget (it neither counts in the sums below nor
//! waits for memory, and a command that runs alone here runs alone among
//! local tools only); what later commands read of its outputs waits for
//! it as for a local tool's. Its result is restored and committed on
//! this thread as a cache hit's; if the farm fails, the command waits at
//! its place to run here.
//!
//! Judging, staging, the cache, committing and journaling stay on this
//! thread, in log order of readiness; each tool runs on a thread of its
//! own, which is its tracer (waits are per thread, `__WNOTHREAD`). Every
//! tick the scheduler sums the running tools' sampled tree RSS; if the sum
//! passes the budget with more than one running, the last one started is
//! stopped (SIGKILL: a traced tool cannot be frozen by SIGSTOP, its tracer
//! resumes group stops), its outputs discarded, and it runs again alone.

use std::collections::{HashSet, VecDeque};
use std::ops::ControlFlow;
use std::path::Path;
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
        footprint: Footprint,
        /// It was stopped for the budget once: it runs alone.
        alone: bool,
    },
    /// Prepared (judged, staged) and waiting for memory.
    Ready {
        position: u64,
        prepared: Box<Prepared>,
        footprint: Footprint,
        prediction: Prediction,
        profile: Profile,
        alone: bool,
    },
}

/// The files a command reads and writes, as the file system resolves
/// them (symlinks followed through the part that exists), for ordering.
#[derive(Debug, Clone, Default)]
struct Footprint {
    reads: Vec<String>,
    writes: Vec<String>,
}

impl Footprint {
    /// `command`'s paths under `root`, resolved now (no command can make
    /// a symlink: outputs are regular files).
    fn of(command: &Command, root: &Path) -> Footprint {
        let resolve = |p: &String| resolve_in(root, &super::normalized(p));
        Footprint {
            reads: command.inputs.iter().map(resolve).collect(),
            writes: command.outputs.iter().map(resolve).collect(),
        }
    }

    /// Whether it must wait for a command that reads `reads` and writes
    /// `writes` (earlier in the log, not finished).
    fn waits_for(&self, reads: &HashSet<String>, writes: &HashSet<String>) -> bool {
        self.reads.iter().any(|r| writes.contains(r))
            || self
                .writes
                .iter()
                .any(|w| writes.contains(w) || reads.contains(w))
    }

    /// Adds its paths to `reads` and `writes`.
    fn claim(&self, reads: &mut HashSet<String>, writes: &mut HashSet<String>) {
        reads.extend(self.reads.iter().cloned());
        writes.extend(self.writes.iter().cloned());
    }
}

/// `path` (root-relative, normalized) as the file system resolves it:
/// the longest part that exists made canonical, the rest appended.
fn resolve_in(root: &Path, path: &str) -> String {
    let full = root.join(path);
    let mut rest = Vec::new();
    let mut at = full.as_path();
    loop {
        if let Ok(canonical) = std::fs::canonicalize(at) {
            let mut resolved = canonical;
            for part in rest.iter().rev() {
                resolved.push(part);
            }
            return resolved.display().to_string();
        }
        match (at.file_name(), at.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_owned());
                at = parent;
            }
            _ => return full.display().to_string(),
        }
    }
}

impl Waiting {
    fn footprint(&self) -> &Footprint {
        match self {
            Waiting::Read { footprint, .. } | Waiting::Ready { footprint, .. } => footprint,
        }
    }

    fn position(&self) -> u64 {
        match self {
            Waiting::Read { position, .. } | Waiting::Ready { position, .. } => *position,
        }
    }
}

/// What the history knows a command by, taken once when it is predicted
/// and used again to learn from its run.
#[derive(Debug, Clone, Default)]
struct Profile {
    /// Its binary's key ([`program_key`]).
    program: Option<String>,
    /// The summed size of its declared input files.
    input_bytes: u64,
}

/// A tool running on its own thread.
struct Slot {
    number: u64,
    position: u64,
    prepared: Box<Prepared>,
    footprint: Footprint,
    prediction: Prediction,
    profile: Profile,
    gauge: Arc<Gauge>,
    started: Instant,
    alone: bool,
    evicted: bool,
    /// Sent to the build farm: no local tool, no memory here.
    remote: bool,
}

impl Slot {
    /// What the history learns its run under.
    fn subject(&self) -> Subject<'_> {
        Subject {
            kind: self.prepared.command.tool.name(),
            program: self.profile.program.as_deref(),
            input_bytes: self.profile.input_bytes,
            cached_peak: None,
            limit: None,
        }
    }
}

/// What a slot's thread sends back.
type Done = (u64, Ended);

/// How a slot's work ended.
pub(super) enum Ended {
    /// Its tool ran here (boxed: an outcome is large, and travels once).
    Tool(Box<Result<ToolOutcome, RunError>>),
    /// The build farm answered (its result, if any, is in the store).
    Farm(crate::remote::Remotely),
}

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
    /// Something changed since the window was last scanned.
    dirty: bool,
}

impl Parallel {
    /// Queues `waiting` at its place in log order (nothing later
    /// overtakes it), for the window to scan again.
    fn wait_in_order(&mut self, waiting: Waiting) {
        let position = waiting.position();
        let place = self
            .waiting
            .iter()
            .position(|w| w.position() > position)
            .unwrap_or(self.waiting.len());
        self.waiting.insert(place, waiting);
        self.dirty = true;
    }

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
            dirty: true,
        }
    }

    /// Saves what the run learned for the next one's predictions.
    pub(super) fn save(&self) -> std::io::Result<()> {
        self.predictor.save()
    }
}

impl Runner<'_, '_> {
    /// Takes `command` into the window, then runs what can run until the
    /// window has room to read more.
    pub(super) fn take(&mut self, command: Command) -> ControlFlow<()> {
        self.position += 1;
        let position = self.position;
        let footprint = Footprint::of(&command, &self.job.root);
        if let Some(parallel) = &mut self.parallel {
            parallel.waiting.push_back(Waiting::Read {
                position,
                command,
                footprint,
                alone: false,
            });
            parallel.dirty = true;
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
                self.abandon_remote();
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
                if parallel.stopping || self.error.is_some() {
                    return ControlFlow::Break(());
                }
                if parallel.waiting.is_empty() || (room > 0 && parallel.waiting.len() < room) {
                    return ControlFlow::Continue(());
                }
                // An empty machine admits the first waiting command: scan
                // again (whatever left the window unscanned), never return
                // with commands unrun.
                if let Some(parallel) = &mut self.parallel {
                    parallel.dirty = true;
                }
                continue;
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
    /// turn has come and whose memory fits (when something changed).
    fn start_what_fits(&mut self) {
        match &mut self.parallel {
            Some(parallel) if parallel.dirty => parallel.dirty = false,
            _ => return,
        }
        // What earlier commands still waiting, and those running, read
        // and write: a later command touching it waits for them.
        let (mut reads, mut writes) = (HashSet::new(), HashSet::new());
        if let Some(parallel) = &self.parallel {
            for slot in &parallel.running {
                slot.footprint.claim(&mut reads, &mut writes);
            }
        }
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
            if candidate.footprint().waits_for(&reads, &writes) {
                candidate.footprint().claim(&mut reads, &mut writes);
                at += 1;
                continue;
            }
            let Some(waiting) = self.parallel.as_mut().and_then(|p| p.waiting.remove(at)) else {
                return;
            };
            let (position, prepared, footprint, (prediction, profile), alone) = match waiting {
                Waiting::Ready {
                    position,
                    prepared,
                    footprint,
                    prediction,
                    profile,
                    alone,
                } => (position, prepared, footprint, (prediction, profile), alone),
                Waiting::Read {
                    position,
                    command,
                    footprint,
                    alone,
                } => {
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
                        Next::Run(prepared) if prepared.remote.is_some() => {
                            footprint.claim(&mut reads, &mut writes);
                            self.send_to_farm(position, prepared, footprint);
                            continue;
                        }
                        Next::Run(prepared) => {
                            let predicted = self.predict(&prepared);
                            (position, prepared, footprint, predicted, alone)
                        }
                    }
                }
            };
            let Some(parallel) = &mut self.parallel else {
                return;
            };
            // Nothing known, or more than the budget: it runs alone.
            let alone =
                alone || prediction.basis == Basis::Unknown || prediction.bytes > parallel.budget;
            // Commands on the farm hold no memory here.
            let local = || parallel.running.iter().filter(|s| !s.remote);
            let admitted: u64 = local().map(|s| s.prediction.bytes).sum();
            let fits = local().next().is_none()
                || (!alone && admitted.saturating_add(prediction.bytes) <= parallel.budget);
            if !fits {
                // It waits, prepared, at its place; nothing later overtakes
                // it for memory.
                parallel.waiting.insert(
                    at,
                    Waiting::Ready {
                        position,
                        prepared,
                        footprint,
                        prediction,
                        profile,
                        alone,
                    },
                );
                return;
            }
            if prediction.basis == Basis::Unknown && parallel.jobs > 1 && !parallel.said_cold {
                parallel.said_cold = true;
                let message = format!(
                    "command {} has no measured or given memory figure, so it runs alone (as does every such command); a warm cache, a policy `max_rss`, or `--predict {}=SIZE`, lets commands run in parallel",
                    prepared.command.id,
                    prepared.command.tool.name()
                );
                self.warn(&message);
            } else if prediction.basis != Basis::Unknown
                && prediction.bytes > self.parallel.as_ref().map_or(0, |p| p.budget)
            {
                let message = format!(
                    "command {} is predicted to need more than the memory budget; it runs alone",
                    prepared.command.id
                );
                self.warn(&message);
            }
            footprint.claim(&mut reads, &mut writes);
            self.launch(position, prepared, footprint, (prediction, profile), alone);
        }
    }

    /// Tells the reporters `command`'s tool starts (a command resumed or
    /// restored from the cache is never told as started).
    fn started(&mut self, command: &Command, position: u64) {
        if let Err(error) = self.reporter.event(&Event::Started {
            id: command.id,
            tool: command.tool.name(),
            position,
        }) {
            self.error.get_or_insert(super::ExecuteError::Report(error));
        }
    }

    /// The memory to admit for `prepared`, and what it was predicted by.
    fn predict(&self, prepared: &Prepared) -> (Prediction, Profile) {
        let profile = Profile {
            program: program_key(self.cache.as_ref(), &prepared.resolved.program),
            input_bytes: input_bytes(&prepared.resolved),
        };
        let Some(parallel) = &self.parallel else {
            let unknown = Prediction {
                bytes: 0,
                basis: Basis::Unknown,
            };
            return (unknown, profile);
        };
        let cached_peak = match (&self.cache, &prepared.key) {
            (Some(cache), Some(key)) => cache.peak(key),
            _ => None,
        };
        let prediction = parallel.predictor.predict(&Subject {
            kind: prepared.command.tool.name(),
            program: profile.program.as_deref(),
            input_bytes: profile.input_bytes,
            cached_peak,
            limit: prepared.run_options.limits.max_rss,
        });
        (prediction, profile)
    }

    /// Starts `prepared`'s tool on a thread of its own.
    fn launch(
        &mut self,
        position: u64,
        prepared: Box<Prepared>,
        footprint: Footprint,
        (prediction, profile): (Prediction, Profile),
        alone: bool,
    ) {
        self.started(&prepared.command, position);
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
                // A panic must still end the slot, or the run waits forever.
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_tool(&spec, &options)
                }))
                .unwrap_or_else(|_| {
                    Err(RunError::Thread(std::io::Error::other(
                        "the thread running the tool panicked",
                    )))
                });
                let _ = sender.send((number, Ended::Tool(Box::new(result))));
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
            footprint,
            prediction,
            profile,
            gauge,
            started: Instant::now(),
            alone,
            evicted: false,
            remote: false,
        });
    }

    /// Sends `prepared` (a miss bound for the farm) from a thread of its
    /// own; if no thread can start, it runs here instead.
    fn send_to_farm(&mut self, position: u64, mut prepared: Box<Prepared>, footprint: Footprint) {
        let Some(job) = prepared.remote.take() else {
            return;
        };
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let number = parallel.next_slot;
        parallel.next_slot += 1;
        let sender = parallel.sender.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("replay-farm-{}", prepared.command.id))
            .spawn(move || {
                let remotely = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job.run()))
                    .unwrap_or_else(|_| {
                        crate::remote::Remotely::Local(Some(
                            "the thread waiting for the build farm panicked".into(),
                        ))
                    });
                let _ = sender.send((number, Ended::Farm(remotely)));
            });
        let unknown = Prediction {
            bytes: 0,
            basis: Basis::Unknown,
        };
        let slot = Slot {
            number,
            position,
            prepared,
            footprint,
            prediction: unknown,
            profile: Profile::default(),
            gauge: Arc::new(Gauge::default()),
            started: Instant::now(),
            alone: false,
            evicted: false,
            remote: true,
        };
        match spawned {
            Ok(_) => parallel.running.push(slot),
            Err(error) => self.back_from_farm(
                slot,
                crate::remote::Remotely::Local(Some(format!(
                    "no thread could wait for the build farm: {error}"
                ))),
            ),
        }
    }

    /// The farm answered for `slot`: its result restored and committed as
    /// a hit's, its refusal its failure, or, when the farm gave nothing
    /// to use, the command waits at its place to run here.
    fn back_from_farm(&mut self, slot: Slot, remotely: crate::remote::Remotely) {
        let began = slot.started.duration_since(self.run_started);
        let Slot {
            position,
            prepared,
            footprint,
            ..
        } = slot;
        let mut prepared = *prepared;
        let lookup = match (&self.cache, &prepared.key) {
            (Some(cache), Some(key)) => cache.remote_lookup(&remotely, key, &prepared.staging),
            _ => None,
        };
        let record = prepared.cache_record.take();
        let (record, refused) = self.remote_outcome(&prepared.command, remotely, lookup, record);
        let finished = if let Some(message) = refused {
            let Prepared {
                command, staging, ..
            } = prepared;
            staging.abort();
            self.settle(&command, false);
            CommandRecord {
                id: command.id,
                tool: command.tool.name().to_owned(),
                status: crate::event::Status::Error { message },
                outcome: None,
                discarded: Vec::new(),
                undeclared_reads: Vec::new(),
                cache: record,
                timing: None,
            }
        } else if record.as_ref().is_some_and(|r| r.hit) {
            let Prepared {
                command,
                staging,
                inputs_before,
                run_options,
                ..
            } = prepared;
            self.restored(&command, staging, inputs_before, &run_options, record)
        } else {
            // It runs here, when its turn and its memory come.
            prepared.cache_record = record;
            let (prediction, profile) = self.predict(&prepared);
            if let Some(parallel) = &mut self.parallel {
                parallel.wait_in_order(Waiting::Ready {
                    position,
                    prepared: Box::new(prepared),
                    footprint,
                    prediction,
                    profile,
                    alone: false,
                });
            }
            return;
        };
        let mut finished = finished;
        finished.timing = Some(Timing::between(began, self.run_started.elapsed(), None));
        if self.finish(finished).is_break() {
            self.stop();
        }
    }

    /// Interrupted: the commands on the farm are not waited for (a farm
    /// answers within the policy's timeout, not at once); each is
    /// recorded as stopped, nothing of it committed.
    fn abandon_remote(&mut self) {
        loop {
            let Some(parallel) = &mut self.parallel else {
                return;
            };
            let Some(at) = parallel.running.iter().position(|s| s.remote) else {
                return;
            };
            let slot = parallel.running.remove(at);
            parallel.dirty = true;
            let after_ms = slot.started.elapsed().as_millis() as u64;
            let began = slot.started.duration_since(self.run_started);
            let Prepared {
                command,
                staging,
                cache_record,
                ..
            } = *slot.prepared;
            staging.abort();
            self.settle(&command, false);
            let record = CommandRecord {
                id: command.id,
                tool: command.tool.name().to_owned(),
                status: crate::event::Status::Stopped {
                    stop: Stop::Interrupted { after_ms },
                },
                outcome: None,
                discarded: Vec::new(),
                undeclared_reads: Vec::new(),
                cache: cache_record,
                timing: Some(Timing::between(began, self.run_started.elapsed(), None)),
            };
            let _ = self.finish(record);
        }
    }

    /// A tool ended: its command is completed and reported, or, stopped
    /// for the budget, queued again to run alone.
    fn ended(&mut self, number: u64, ended: Ended) {
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let Some(at) = parallel.running.iter().position(|s| s.number == number) else {
            return;
        };
        let slot = parallel.running.remove(at);
        parallel.dirty = true;
        let result = match ended {
            Ended::Tool(result) => *result,
            Ended::Farm(remotely) => return self.back_from_farm(slot, remotely),
        };
        let budgeted = matches!(
            &result,
            Ok(outcome) if matches!(outcome.stop, Some(Stop::Budget { .. }))
        );
        if budgeted && !self.options.interrupted.load(Ordering::SeqCst) {
            // What it held when stopped is a lower bound of its peak: the
            // next prediction for its kind is at least that.
            let Some(parallel) = &mut self.parallel else {
                return;
            };
            parallel.predictor.learn(&slot.subject(), slot.gauge.rss());
            let Slot {
                position,
                prepared,
                footprint,
                ..
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
            parallel.wait_in_order(Waiting::Read {
                position,
                command,
                footprint,
                alone: true,
            });
            self.warn(&message);
            return;
        }
        let began = slot.started.duration_since(self.run_started);
        let learned = result.as_ref().ok().filter(|o| o.success()).map(|o| {
            let m = &o.measurements;
            m.peak_tree_rss_sampled
                .max(m.peak_process.as_ref().map_or(0, |p| p.bytes))
        });
        if let (Some(peak), Some(parallel)) = (learned, &mut self.parallel) {
            parallel.predictor.learn(&slot.subject(), peak);
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
    /// one started (one at a time: a tool being stopped no longer counts,
    /// and none other is stopped until it has ended).
    fn watch_memory(&mut self) {
        let Some(parallel) = &mut self.parallel else {
            return;
        };
        let live = || parallel.running.iter().filter(|s| !s.evicted && !s.remote);
        let sum: u64 = live().map(|s| s.gauge.rss()).sum();
        parallel.peak_sum = parallel.peak_sum.max(sum);
        let stopping_one = parallel.running.iter().any(|s| s.evicted);
        if sum <= parallel.budget || live().count() < 2 || stopping_one {
            return;
        }
        if let Some(last) = parallel
            .running
            .iter_mut()
            .filter(|s| !s.evicted && !s.remote)
            .max_by_key(|s| s.started)
        {
            last.evicted = true;
            last.gauge.evict(parallel.budget);
        }
    }
}

/// What the history knows a tool's binary by: its content digest with a
/// cache, else its canonical path (this run's memory only).
fn program_key(cache: Option<&crate::cached::RunCache>, program: &Path) -> Option<String> {
    match cache {
        Some(cache) => cache.program_digest(program),
        None => Some(program.display().to_string()),
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

    fn orders(root: &Path, earlier: &Command, later: &Command) -> bool {
        let (mut reads, mut writes) = (HashSet::new(), HashSet::new());
        Footprint::of(earlier, root).claim(&mut reads, &mut writes);
        Footprint::of(later, root).waits_for(&reads, &writes)
    }

    #[test]
    fn commands_that_share_a_file_are_ordered_and_others_are_not() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let opt = command(&["p0.bc"], &["p0.opt.bc"]);
        let llc = command(&["./p0.opt.bc"], &["p0.o"]);
        let other = command(&["p1.bc"], &["p1.opt.bc"]);
        let rewrite = command(&["x"], &["p0.bc"]);
        let same_output = command(&[], &["p1.opt.bc"]);
        assert!(orders(root, &opt, &llc));
        assert!(!orders(root, &opt, &other));
        assert!(
            orders(root, &opt, &rewrite),
            "a later command rewrites its input"
        );
        assert!(orders(root, &other, &same_output));
    }

    #[test]
    fn a_symlinked_input_is_ordered_after_the_writer_of_its_target() {
        // Regression (review): `link -> a` read by a later command was
        // not ordered after the command writing `a`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        std::fs::write(root.join("a"), "old").unwrap();
        std::os::unix::fs::symlink("a", root.join("link")).unwrap();
        std::fs::create_dir(root.join("d")).unwrap();
        std::os::unix::fs::symlink("d", root.join("d2")).unwrap();
        let writer = command(&[], &["a"]);
        let reader = command(&["link"], &["b"]);
        assert!(orders(&root, &writer, &reader));
        assert!(
            orders(&root, &reader, &writer),
            "and a later write of a read target"
        );
        let into_dir = command(&[], &["d/x"]);
        let through_link = command(&["d2/x"], &["y"]);
        assert!(orders(&root, &into_dir, &through_link));
    }
}
