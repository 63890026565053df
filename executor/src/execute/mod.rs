//! Running a validated log: the second pass over the log, one command at a
//! time, in order.
//!
//! The log is read twice, streaming, rather than held: the first pass
//! ([`crate::audit`]) judges everything and must pass before anything runs;
//! this second pass judges each command again just before it runs (so a log
//! or binary changed in between is caught, and the policy's resolution of
//! binary, arguments and environment is fresh), checks its inputs exist,
//! stages its outputs, runs it in its sandbox, and journals it.

use std::fs::File;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cmdlog::path_ids::{PathId, PathIdSet, PathIds};
use cmdlog::{Command, LogReader, Visit};
use policy::{Checker, Mode, Policy, Status as Judged};

mod predict;
mod schedule;

use crate::audit::check_options;
use crate::cached::{CacheOptions, CacheRecord, RunCache};
use crate::event::{CommandRecord, Event, Reporter, Status, Timing, Totals};
use crate::job::{Job, JobError};
use crate::journal::{self, Entry, Journal, JournalError};
use crate::run::capture::Sink;
use crate::run::trace::ExitStatus;
use crate::run::watch::{Stop, ToolLimits};
use crate::run::{run_tool, RunOptions};
use crate::sandbox::{SandboxSpec, Want};
use crate::staging::{StageBase, Staging, StagingError};

/// How to run a log, beyond what the policy says.
#[derive(Clone)]
pub struct ExecuteOptions {
    /// Run what does not depend on a failed command's outputs.
    pub keep_going: bool,
    /// Skip commands the journal shows done with their outputs unchanged.
    pub resume: bool,
    /// How often the watcher samples each tool's tree.
    pub sample_interval: Duration,
    /// A timeout tighter than the policy's.
    pub timeout: Option<Duration>,
    /// A memory limit tighter than the policy's.
    pub max_rss: Option<u64>,
    /// Time between SIGTERM and SIGKILL on timeout.
    pub grace: Duration,
    /// The `replay` binary, re-executed as each tool's sandbox launcher.
    pub launcher: PathBuf,
    /// Where tools' stdout goes.
    pub stdout: Sink,
    /// Where tools' stderr goes.
    pub stderr: Sink,
    /// Set when `replay` is asked to stop.
    pub interrupted: Arc<AtomicBool>,
    /// How much of the sandbox is wanted (policies may require more).
    pub landlock: Want,
    /// Whether to cut tools off the network.
    pub network: Want,
    /// The lock on the work root, if the caller took it already (driver
    /// mode takes it before the producer starts); else the run takes it.
    pub root_lock: Option<Arc<crate::lock::RootLock>>,
    /// The action cache, if the run uses one.
    pub cache: Option<CacheOptions>,
    /// Tools run at once at most (`-j`); 1 runs one at a time, in order.
    pub jobs: usize,
    /// The memory the tools running at once may hold together, in bytes
    /// (a parallel run); `None`: 80% of `MemAvailable` at the start.
    pub memory_budget: Option<u64>,
    /// Per tool kind, the peak to assume when nothing was measured.
    pub predict: std::collections::BTreeMap<String, u64>,
}

/// How the run ended, worst first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunStatus {
    /// Every command succeeded (or was already done).
    Success,
    /// A tool failed, or could not be run.
    ToolFailed,
    /// A limit stopped a tool.
    LimitHit,
    /// `replay` was interrupted.
    Interrupted,
}

/// Why the run could not proceed at all.
#[derive(Debug, thiserror::Error)]
pub enum ExecuteError {
    /// Reading the log failed.
    #[error(transparent)]
    Job(#[from] JobError),
    /// The checker could not start.
    #[error("cannot check the log")]
    Checker(#[source] policy::CheckerError),
    /// The journal could not be written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// Another run holds the work root.
    #[error(transparent)]
    Lock(#[from] crate::lock::LockError),
    /// A command passed the first pass but not the second: the log, a
    /// binary or the root changed while `replay` ran.
    #[error("command {id} passed validation but is refused now: {reason}; nothing more runs")]
    Changed {
        /// The command.
        id: u64,
        /// The first finding.
        reason: String,
    },
    /// The action cache could not be opened.
    #[error("cannot use the action cache")]
    Cache(#[source] crate::cached::RunCacheError),
    /// The staging directory of the run could not be made.
    #[error("cannot prepare the outputs' staging")]
    Stage(#[source] StagingError),
    /// A reporter failed to write.
    #[error("cannot write the report")]
    Report(#[source] std::io::Error),
    /// The job reads the log itself, not a snapshot: tools could change
    /// what the second pass reads after the first judged it.
    #[error("the log `{}` must be run from a snapshot (Job::snapshot)", log.display())]
    NotSnapshot {
        /// The log.
        log: std::path::PathBuf,
    },
}

/// Runs every command of `job`'s log, which the first pass has passed on
/// the same snapshot ([`Job::snapshot`]: `job` must read from one).
pub fn execute(
    job: &Job,
    policy: &Policy,
    options: &ExecuteOptions,
    reporter: &mut dyn Reporter,
    commands: u64,
) -> Result<(RunStatus, Totals), ExecuteError> {
    let started = Instant::now();
    if job.read_from == job.log {
        return Err(ExecuteError::NotSnapshot {
            log: job.log.clone(),
        });
    }
    release_freed_memory();
    let journal_path = journal::path_for(&job.log);
    let _lock = crate::lock::RootLock::hold_for_run(&job.root, options.root_lock.as_ref())?;
    let (journal, done, ignored) = journal::open_for_run(&journal_path, options.resume)?;
    // The first pass judged the whole log on these same bytes (a private
    // snapshot): this pass re-judges each command against the files as
    // they are now, and keeps nothing per output while tools run.
    let checker = Checker::new(
        policy,
        &job.root,
        check_options(job, policy, Mode::Run, true),
    )
    .map_err(ExecuteError::Checker)?
    .whole_log_judged();
    let stage = StageBase::open(&job.root).map_err(ExecuteError::Stage)?;
    let cache = options
        .cache
        .as_ref()
        .map(RunCache::open)
        .transpose()
        .map_err(ExecuteError::Cache)?;
    let budget = options.memory_budget.unwrap_or_else(default_budget);
    let parallel = (options.jobs > 1).then(|| {
        let predictor = predict::Predictor::new(
            budget,
            options.predict.clone(),
            options.cache.as_ref().map(|c| c.dir.as_path()),
        );
        schedule::Parallel::new(options.jobs, budget, predictor)
    });
    reporter
        .event(&Event::Validated { commands })
        .map_err(ExecuteError::Report)?;
    if let Some(warning) = journal::ignored_warning(&journal_path, ignored) {
        reporter
            .event(&Event::Warning(&warning))
            .map_err(ExecuteError::Report)?;
    }
    let mut runner = Runner {
        job,
        options,
        checker,
        journal,
        done,
        failed_outputs: PathIdSet::default(),
        rebuilt: PathIdSet::default(),
        ids: PathIds::new(),
        stage,
        cache,
        hit: None,
        parallel,
        refuse_undeclared: policy.refuses_undeclared_reads(),
        local_only: policy
            .tools()
            .filter(|tool| policy.keeps_local(tool))
            .cloned()
            .collect(),
        builtin_limits: policy.builtin_limits(),
        run_started: started,
        reporter,
        totals: Totals {
            commands,
            jobs: options.jobs.max(1),
            memory_budget: (options.jobs > 1).then_some(budget),
            ..Totals::default()
        },
        status: RunStatus::Success,
        error: None,
        position: 0,
    };
    let file = File::open(&job.read_from).map_err(|source| JobError::Log {
        path: job.log.clone(),
        source,
    })?;
    LogReader::new(file)
        .read(&mut runner)
        .map_err(|source| JobError::Malformed {
            path: job.log.clone(),
            source: Box::new(source),
        })?;
    if runner.parallel.is_some() {
        // Whatever still runs or waits, in order, to the end (or, once
        // the run stops early, only what runs).
        let _ = runner.pump(0);
        if let Some(parallel) = &runner.parallel {
            runner.totals.peak_sum_rss = parallel.peak_sum;
            if let Err(error) = parallel.save() {
                runner.warn(&format!(
                    "cannot save the memory history for the next run's predictions: {error}"
                ));
            }
        }
        if let Some(since) = crate::run::start_time(std::process::id() as i32) {
            crate::run::reap_all_orphans(since);
        }
    }
    if let Some(cache) = &runner.cache {
        cache.save_memo();
        cache.save_remote_counts();
    }
    // Every entry durable before the run says it is done.
    let synced = runner.journal.finish();
    if let Some(error) = runner.error.take() {
        return Err(error);
    }
    synced?;
    runner.totals.wall_ms = started.elapsed().as_millis() as u64;
    runner.totals.replay_peak_rss = crate::run::trace::own_peak_rss();
    let totals = runner.totals.clone();
    runner
        .reporter
        .event(&Event::Done(&totals))
        .map_err(ExecuteError::Report)?;
    Ok((runner.status, totals))
}

/// Gives the pages the first pass freed (its whole-log tables) back to the
/// kernel before tools run: a glibc heap keeps freed memory below its top,
/// and replay's footprint while tools run is what a driver is for.
fn release_freed_memory() {
    // SAFETY: `malloc_trim` takes no pointer and touches no live
    // allocation: under the allocator's own lock it returns whole free
    // pages of the heap to the kernel. Rust's global allocator here is
    // that same malloc, so nothing else tracks those pages.
    #[cfg(target_env = "gnu")]
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What [`Runner::prepare`] leaves for a command.
enum Next {
    /// Nothing to run: its record is final (skipped, blocked, restored,
    /// or failed before its tool could start).
    Done(Box<CommandRecord>),
    /// Its tool is ready to run.
    Run(Box<Prepared>),
}

/// A command staged and ready to run, with all that
/// [`Runner::complete`] needs once its tool has exited.
struct Prepared {
    command: Command,
    resolved: policy::Resolved,
    staging: Staging,
    spec: SandboxSpec,
    run_options: RunOptions,
    inputs_before: Vec<(String, String)>,
    key: Option<replay_cache::ActionKey>,
    cache_record: Option<CacheRecord>,
    /// In a parallel run, a miss bound for the build farm: the scheduler
    /// sends it on a thread of its own, holding a slot but no memory.
    remote: Option<crate::cached::RemoteJob>,
}

/// The second pass's visitor.
struct Runner<'a, 'p> {
    job: &'a Job,
    options: &'a ExecuteOptions,
    checker: Checker<'p>,
    journal: Journal,
    done: std::collections::HashMap<u64, Entry>,
    /// Outputs of commands that failed (`--keep-going`), as [`key`]s.
    failed_outputs: PathIdSet,
    /// Outputs of commands that ran and succeeded in this run, as [`key`]s
    /// (kept only with `--resume`, the one mode that asks).
    rebuilt: PathIdSet,
    /// Identities of paths in `failed_outputs` and `rebuilt`: 8 bytes per
    /// output ([`cmdlog::path_ids`]).
    ids: PathIds,
    /// `-j N` with N > 1: the scheduler's state. Declared before `stage`
    /// so it drops first: a waiting command's staging is removed before
    /// the run's staging base is.
    parallel: Option<schedule::Parallel>,
    /// This run's `.replay-stage`: each command's private staging.
    stage: StageBase,
    /// The action cache, if the run uses one.
    cache: Option<RunCache>,
    /// The hit [`Runner::look_up`] found, until it is restored.
    hit: Option<replay_cache::Hit>,
    /// The policy's `refuse_undeclared_reads`.
    refuse_undeclared: bool,
    /// The tools the policy keeps off a build farm (`local_only`).
    local_only: Vec<cmdlog::ToolKind>,
    /// The policy's `[limits]`, for built-in operations.
    builtin_limits: policy::ToolLimits,
    /// When the run started.
    run_started: Instant,
    reporter: &'a mut dyn Reporter,
    totals: Totals,
    status: RunStatus,
    error: Option<ExecuteError>,
    position: u64,
}

impl Runner<'_, '_> {
    /// The identity of a path in `rebuilt` and `failed_outputs`.
    fn key(&self, path: &str) -> PathId {
        self.ids.of(&normalized(path))
    }

    /// Whether this run rebuilt any of `inputs` (a resumed run tracks it).
    fn any_rebuilt(&self, inputs: &[String]) -> bool {
        inputs
            .iter()
            .any(|input| self.rebuilt.contains(&self.key(input)))
    }

    /// The identities of `command`'s outputs.
    fn output_ids(&self, command: &Command) -> Vec<PathId> {
        command.outputs.iter().map(|o| self.key(o)).collect()
    }

    fn finish(&mut self, record: CommandRecord) -> ControlFlow<()> {
        self.totals.add(&record);
        let bad = !record.status.is_good();
        if bad {
            let worse = match &record.status {
                Status::Stopped {
                    stop: crate::run::watch::Stop::Interrupted { .. },
                } => RunStatus::Interrupted,
                Status::Stopped { .. } => RunStatus::LimitHit,
                _ => RunStatus::ToolFailed,
            };
            self.status = worst(self.status, worse);
        }
        if let Err(error) = self.reporter.event(&Event::Finished(&record)) {
            self.error = Some(ExecuteError::Report(error));
            return ControlFlow::Break(());
        }
        let interrupted = self.options.interrupted.load(Ordering::SeqCst);
        if interrupted {
            // Regression: a signal between two tools stopped the run with
            // commands unrun, yet it exited 0.
            self.status = worst(self.status, RunStatus::Interrupted);
            return ControlFlow::Break(());
        }
        if bad && !self.options.keep_going {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    /// Everything before a command's tool runs: judged again, skipped
    /// (resumed, blocked), restored from the action cache, or staged and
    /// ready to run.
    fn prepare(&mut self, command: &Command) -> Next {
        let record = |status| CommandRecord {
            id: command.id,
            tool: command.tool.name().to_owned(),
            status,
            outcome: None,
            discarded: Vec::new(),
            undeclared_reads: Vec::new(),
            cache: None,
            timing: None,
        };
        let root = &self.job.root;
        // Judge first, always, even a command skipped below: the files may
        // have changed since the first pass.
        let verdict = self.checker.command(command);
        let builtin = command.tool.is_builtin();
        let resolved = match (verdict.status, verdict.resolved) {
            (Judged::Allowed, Some(resolved)) => Some(resolved),
            // A built-in runs no program: nothing to resolve.
            (Judged::Allowed, None) if builtin => None,
            _ => {
                let reason = verdict
                    .findings
                    .first()
                    .map(|f| f.message.clone())
                    .unwrap_or_else(|| "its binary could not be resolved".into());
                self.error = Some(ExecuteError::Changed {
                    id: command.id,
                    reason,
                });
                return Next::Done(Box::new(record(Status::Error {
                    message: "refused on the second pass".into(),
                })));
            }
        };
        // A command whose inputs were rebuilt in this run is not done, even
        // if its own outputs are unchanged.
        if self.options.resume && !self.any_rebuilt(&command.inputs) {
            if let Some(entry) = self.done.get(&command.id) {
                if journal::still_done(entry, command, root) {
                    return Next::Done(Box::new(record(Status::Resumed)));
                }
            }
        }
        if let Some(input) = command
            .inputs
            .iter()
            .find(|input| self.failed_outputs.contains(&self.key(input)))
        {
            self.failed_outputs.extend(self.output_ids(command));
            return Next::Done(Box::new(record(Status::Blocked {
                input: input.clone(),
            })));
        }
        if let Some(problem) = command
            .inputs
            .iter()
            .find_map(|input| input_problem(root, input))
        {
            self.failed_outputs.extend(self.output_ids(command));
            return Next::Done(Box::new(record(Status::Error { message: problem })));
        }
        let Some(resolved) = resolved else {
            return Next::Done(Box::new(self.builtin(command, record(Status::Ok))));
        };
        // What the linker reads from the root is what the policy allowed:
        // objects, not scripts. Earlier commands may have made or changed
        // those files since the check, so look again now.
        if let Err(reason) = resolved.verify_linker_reads(root) {
            self.error = Some(ExecuteError::Changed {
                id: command.id,
                reason,
            });
            return Next::Done(Box::new(record(Status::Error {
                message: "refused before it ran".into(),
            })));
        }
        let (args, mut staging) = match Staging::plan(
            &self.stage,
            &command.cwd,
            &resolved.args,
            &command.outputs,
            command.id,
        ) {
            Ok(planned) => planned,
            Err(error) => {
                return Next::Done(Box::new(record(Status::Error {
                    message: error.to_string(),
                })))
            }
        };
        // clang (and clang++) names a dependency file's target after `-o`: pin it to the
        // value as written, after staging (which would rewrite it too).
        let mut args = args;
        if matches!(command.tool, cmdlog::ToolKind::Cc | cmdlog::ToolKind::Cxx) {
            if let Some(pin) = crate::staging::dependency_target(&resolved.args) {
                args.splice(0..0, pin);
            }
            // Likewise the `.dwo` name the object records: clang derives
            // it from the (staged) `-o`; pinned to the name as written,
            // while the file itself is still written beside the staged
            // object. Added by replay, after the policy judged the log's
            // own arguments (a log may not pass `-Xclang`).
            if let Some(dwo) = policy::split_dwarf_file(&resolved.args) {
                args.extend(["-Xclang", "-split-dwarf-file", "-Xclang"].map(str::to_owned));
                args.push(dwo);
            }
        }
        if let Err(error) = staging.prepare() {
            return Next::Done(Box::new(record(Status::Error {
                message: crate::report::one_line(&error),
            })));
        }
        let mut spec = SandboxSpec::new(
            resolved.program.clone(),
            resolved.argv0.clone(),
            args,
            resolved.env.clone(),
            root.join(&command.cwd),
            root,
        );
        crate::confine::confine(&mut spec, &resolved, &staging);
        spec.landlock = self.options.landlock;
        spec.network = self.options.network;
        spec.rlimits.fsize = resolved.limits.max_output;
        spec.rlimits.nofile = Some(open_files_limit());
        let limits = ToolLimits {
            timeout: tighter(resolved.limits.timeout, self.options.timeout),
            grace: self.options.grace,
            max_rss: tighter(resolved.limits.max_rss, self.options.max_rss),
            max_output: None,
        };
        let mut run_options = RunOptions {
            launcher: self.options.launcher.clone(),
            limits,
            sample_interval: self.options.sample_interval,
            prefix: format!("[{} {}] ", command.id, command.tool),
            stdout: Arc::clone(&self.options.stdout),
            stderr: Arc::clone(&self.options.stderr),
            interrupted: Arc::clone(&self.options.interrupted),
            trace: true,
            may_exec: Some(crate::confine::exec_rules(&resolved)),
            gauge: None,
            on_read: None,
        };
        // What the tool read is what the journal must record: hashed
        // before it starts, compared after it exits (see `commit`).
        let inputs_before = journal::input_hashes(command, root);
        let (key, mut cache_record) = self.look_up(command, &resolved, &staging, &spec.readable);
        let farm = self.for_the_farm(command, key.as_ref(), &mut cache_record);
        // A parallel run sends it from the scheduler (up to `-j N` at
        // once); one at a time, it goes now and this waits for it.
        let remote = match (farm, &self.parallel, &self.cache, &key) {
            (true, Some(_), Some(cache), Some(key)) => cache.remote_job(
                key,
                &resolved,
                &staging,
                &spec.readable,
                &self.job.root,
                farm_wait(&resolved),
            ),
            _ => None,
        };
        let (cache_record, refused) = if farm && remote.is_none() {
            self.run_remotely(
                command,
                &resolved,
                &staging,
                &spec.readable,
                key.as_ref(),
                cache_record,
            )
        } else {
            (cache_record, None)
        };
        if let Some(message) = refused {
            let mut failed = record(Status::Error { message });
            failed.cache = cache_record;
            return Next::Done(Box::new(failed));
        }
        if cache_record.as_ref().is_some_and(|c| c.hit) {
            return Next::Done(Box::new(self.restored(
                command,
                staging,
                inputs_before,
                &run_options,
                cache_record,
            )));
        }
        if let (Some(cache), Some(_)) = (&self.cache, &key) {
            run_options.on_read = cache.read_hook(root);
        }
        Next::Run(Box::new(Prepared {
            command: command.clone(),
            resolved,
            staging,
            spec,
            run_options,
            inputs_before,
            key,
            cache_record,
            remote,
        }))
    }

    /// Everything after a prepared command's tool ran (`result`): its
    /// status, its outputs committed or discarded, the cache told.
    fn complete(
        &mut self,
        prepared: Prepared,
        result: Result<crate::run::ToolOutcome, crate::run::RunError>,
    ) -> CommandRecord {
        let Prepared {
            command,
            resolved,
            staging,
            spec,
            run_options: _,
            inputs_before,
            key,
            mut cache_record,
            remote: _,
        } = prepared;
        let command = &command;
        let root = &self.job.root;
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => {
                staging.abort();
                self.failed_outputs.extend(self.output_ids(command));
                return CommandRecord {
                    id: command.id,
                    tool: command.tool.name().to_owned(),
                    status: Status::Error {
                        message: crate::report::one_line(&error),
                    },
                    outcome: None,
                    discarded: Vec::new(),
                    undeclared_reads: Vec::new(),
                    cache: cache_record,
                    timing: None,
                };
            }
        };
        let file_size_limit = spec.rlimits.fsize;
        let killed = outcome.denied.iter().find(|d| d.by == "tracer");
        let status = if let Some(denial) = killed {
            Status::Denied {
                action: denial.action.to_owned(),
                path: denial.path.clone(),
                reason: denial.detail.clone(),
            }
        } else if let Some(stop) = outcome.stop {
            Status::Stopped { stop }
        } else if let (Some(limit), ExitStatus::Signal(signal)) = (file_size_limit, outcome.exit) {
            if signal == libc::SIGXFSZ {
                Status::Stopped {
                    stop: Stop::FileSize {
                        limit,
                        after_ms: outcome.measurements.wall_ms,
                    },
                }
            } else {
                Status::Failed { exit: outcome.exit }
            }
        } else if !outcome.exit.success() {
            Status::Failed { exit: outcome.exit }
        } else {
            Status::Ok
        };
        // Before the abort below frees what the tool wrote: a full disk?
        let status = crate::space::explain(status, root, &command.outputs);
        let mut discarded = Vec::new();
        // The read set (every file read, hashed) is only worth taking for
        // a result the cache may store; the undeclared reads are listed
        // in every case.
        let reads = match (&self.cache, &status) {
            (Some(cache), Status::Ok) => Some(cache.reads(&outcome, &resolved, root, &staging)),
            _ => None,
        };
        let undeclared_reads = match &reads {
            Some(reads) => reads.undeclared.clone(),
            None => crate::cached::undeclared(&outcome, &resolved, root, &staging),
        };
        // The policy may make reading what the command did not declare a
        // failure, not only a line of the report.
        let status = match (&status, undeclared_reads.first()) {
            (Status::Ok, Some(first)) if self.refuse_undeclared => Status::Denied {
                action: "read".into(),
                path: first.clone(),
                reason: format!(
                    "it read `{first}`, which its command does not declare, and the policy refuses undeclared reads (`refuse_undeclared_reads`)"
                ),
            },
            _ => status,
        };
        let status = if matches!(status, Status::Ok) {
            // Lent to the closure while `commit` borrows the runner.
            let cache = self.cache.take();
            let store = |staging: &Staging| {
                let (Some(cache), Some(key), Some(reads), Some(record)) =
                    (cache.as_ref(), key.as_ref(), reads, cache_record.as_mut())
                else {
                    return;
                };
                let stored = reads
                    .read_set
                    .and_then(|read_set| cache.store(key, &outcome, staging, read_set));
                match stored {
                    Ok(remote) => {
                        record.stored = true;
                        record.remote = remote.or(record.remote.take());
                    }
                    Err(why) => record.not_stored = Some(why),
                }
            };
            let committed = self.commit(command, staging, inputs_before, false, store);
            self.cache = cache;
            self.warn_remote();
            match committed {
                Ok(committed) => {
                    discarded = committed.discarded;
                    Status::Ok
                }
                Err(message) => Status::Error { message },
            }
        } else {
            staging.abort();
            status
        };
        self.settle(command, matches!(status, Status::Ok));
        CommandRecord {
            id: command.id,
            tool: command.tool.name().to_owned(),
            status,
            outcome: Some(outcome),
            discarded,
            undeclared_reads,
            cache: cache_record,
            timing: None,
        }
    }

    /// The command's key and, if the cache had it, its outputs restored
    /// into `staging` (`hit`); `(None, None)` without a cache. `readable`:
    /// what the command's sandbox lets its tool read.
    fn look_up(
        &mut self,
        command: &Command,
        resolved: &policy::Resolved,
        staging: &Staging,
        readable: &[std::path::PathBuf],
    ) -> (Option<replay_cache::ActionKey>, Option<CacheRecord>) {
        let Some(cache) = &self.cache else {
            return (None, None);
        };
        let key = match cache.key(command, resolved, &self.job.root) {
            Ok(key) => key,
            Err(why) => {
                return (
                    None,
                    Some(CacheRecord {
                        not_stored: Some(why),
                        ..CacheRecord::default()
                    }),
                )
            }
        };
        let mut record = CacheRecord {
            key: Some(key.action.hash.clone()),
            ..CacheRecord::default()
        };
        let looked = cache.lookup(&key, staging, readable, &self.job.root);
        record.remote = looked.remote;
        match looked.lookup {
            Ok(replay_cache::Lookup::Hit(hit)) => {
                record.hit = true;
                record.saved_ms = hit.entry.cost.wall_ms;
                self.hit = Some(hit);
            }
            Ok(replay_cache::Lookup::Miss(reason)) => {
                if matches!(
                    reason,
                    replay_cache::MissReason::Corrupt { .. }
                        | replay_cache::MissReason::MissingBlob { .. }
                ) {
                    self.warn(&format!(
                        "command {}: the action cache's entry was damaged and is evicted: {reason}",
                        command.id
                    ));
                }
                record.miss = Some(reason.to_string());
            }
            Err(error) => {
                self.warn(&format!(
                    "command {}: cannot read the action cache, running it: {}",
                    command.id,
                    crate::report::one_line(&error)
                ));
                record.miss = Some("the cache could not be read".into());
            }
        }
        self.warn_remote();
        (Some(key), Some(record))
    }

    /// Whether `command`, with `key` and its cache `record` (a miss of
    /// every cache), goes to the build farm: the run has one, and the
    /// policy does not keep its tool here (then the record says so).
    fn for_the_farm(
        &self,
        command: &Command,
        key: Option<&replay_cache::ActionKey>,
        record: &mut Option<CacheRecord>,
    ) -> bool {
        let (Some(cache), Some(_), Some(record)) = (&self.cache, key, record.as_mut()) else {
            return false;
        };
        if record.hit || !cache.has_executor() || self.hit.is_some() {
            return false;
        }
        if self.local_only.contains(&command.tool) {
            record.ran_on = Some("local".into());
            record.remote_execution = Some(format!(
                "the policy keeps `{}` on this machine (`local_only`)",
                command.tool
            ));
            return false;
        }
        true
    }

    /// A command that missed every cache, sent to the build farm (see
    /// [`Runner::for_the_farm`]) and waited for: its result restored into
    /// `staging` as a hit's (the record says where it ran and the
    /// worker's peak), or the farm's refusal (the command fails with it),
    /// or nothing (it runs here).
    fn run_remotely(
        &mut self,
        command: &Command,
        resolved: &policy::Resolved,
        staging: &Staging,
        readable: &[std::path::PathBuf],
        key: Option<&replay_cache::ActionKey>,
        record: Option<CacheRecord>,
    ) -> (Option<CacheRecord>, Option<String>) {
        let (Some(cache), Some(key)) = (&self.cache, key) else {
            return (record, None);
        };
        let Some((remotely, lookup)) = cache.execute_remotely(
            key,
            resolved,
            staging,
            readable,
            &self.job.root,
            farm_wait(resolved),
        ) else {
            return (record, None);
        };
        self.remote_outcome(command, remotely, lookup, record)
    }

    /// What became of a command the farm was sent (`remotely`, and the
    /// `lookup` that restored its stored result): its cache `record`
    /// completed (a hit to restore, `ran_on`), and the farm's refusal if
    /// it refused it.
    fn remote_outcome(
        &mut self,
        command: &Command,
        remotely: crate::remote::Remotely,
        lookup: Option<Result<replay_cache::Lookup, replay_cache::LookupError>>,
        record: Option<CacheRecord>,
    ) -> (Option<CacheRecord>, Option<String>) {
        let Some(mut record) = record else {
            return (None, None);
        };
        let warning = self
            .cache
            .as_ref()
            .and_then(RunCache::take_executor_warning);
        if let Some(warning) = warning {
            self.warn(&warning);
        }
        let mut refused = None;
        match remotely {
            crate::remote::Remotely::Stored {
                worker,
                peak,
                cached,
            } => match lookup {
                Some(Ok(replay_cache::Lookup::Hit(hit))) => {
                    record.hit = true;
                    record.miss = None;
                    record.ran_on = Some(worker);
                    record.worker_peak_rss_bytes = peak;
                    if cached {
                        record.remote_execution = Some(crate::event::SERVED_BY_FARM_CACHE.into());
                    }
                    self.hit = Some(hit);
                }
                Some(Ok(replay_cache::Lookup::Miss(reason))) => {
                    record.ran_on = Some("local".into());
                    record.remote_execution = Some(format!("its result was not used: {reason}"));
                }
                Some(Err(error)) => {
                    record.ran_on = Some("local".into());
                    record.remote_execution = Some(format!(
                        "its result was not used: {}",
                        crate::report::one_line(&error)
                    ));
                }
                None => record.ran_on = Some("local".into()),
            },
            crate::remote::Remotely::Refused(finding) => {
                record.remote_execution = Some(finding.clone());
                refused = Some(format!(
                    "command {}: the build farm refused it: {finding}",
                    command.id
                ));
            }
            crate::remote::Remotely::Local(why) => {
                record.ran_on = Some("local".into());
                record.remote_execution = why;
            }
        }
        (Some(record), refused)
    }

    /// A hit: the tool's output replayed, its restored outputs committed
    /// from `staging` and journaled as a run's are.
    fn restored(
        &mut self,
        command: &Command,
        staging: Staging,
        inputs: Vec<(String, String)>,
        run_options: &RunOptions,
        cache: Option<CacheRecord>,
    ) -> CommandRecord {
        if let Some(hit) = self.hit.take() {
            crate::run::capture::replay(&hit.stdout, &run_options.prefix, &run_options.stdout);
            crate::run::capture::replay(&hit.stderr, &run_options.prefix, &run_options.stderr);
        }
        let (status, discarded) = match self.commit(command, staging, inputs, true, |_| {}) {
            Ok(committed) => (Status::Cached, committed.discarded),
            Err(message) => (Status::Error { message }, Vec::new()),
        };
        self.settle(command, matches!(status, Status::Cached));
        CommandRecord {
            id: command.id,
            tool: command.tool.name().to_owned(),
            status,
            outcome: None,
            discarded,
            undeclared_reads: Vec::new(),
            cache,
            timing: None,
        }
    }

    /// Performs the built-in file operation `command` (judged allowed),
    /// committing and journaling what it made as a tool's outputs are;
    /// `record` is its record, to complete.
    fn builtin(&mut self, command: &Command, mut record: CommandRecord) -> CommandRecord {
        let root = &self.job.root;
        // A copy hashes its source as it reads it (`Done::Copied`): not
        // read a second time here.
        let inputs = if command.tool == cmdlog::ToolKind::Copy {
            Vec::new()
        } else {
            journal::input_hashes(command, root)
        };
        let policy = self.builtin_limits;
        let limits = crate::builtin::Limits {
            max_output: policy.max_output,
            timeout: tighter(policy.timeout, self.options.timeout),
            interrupted: Arc::clone(&self.options.interrupted),
        };
        let done = match crate::builtin::perform(command, root, &self.stage, &limits) {
            Err(crate::builtin::BuiltinError::Stopped { stop, .. }) => {
                // Its partial output went with its staging.
                record.status = Status::Stopped { stop };
                self.settle(command, false);
                return record;
            }
            // Interrupted once it was done: nothing is committed or
            // journaled after the signal (a staged output is dropped).
            Ok(crate::builtin::Done::Staged(_) | crate::builtin::Done::Copied { .. })
                if self.options.interrupted.load(Ordering::SeqCst) =>
            {
                record.status = Status::Stopped {
                    stop: crate::run::watch::Stop::Interrupted { after_ms: 0 },
                };
                self.settle(command, false);
                return record;
            }
            done => done,
        };
        let done = done
            .map_err(|e| crate::report::one_line(&e))
            .and_then(|done| match done {
                crate::builtin::Done::Staged(staging) => self
                    .commit(command, staging, inputs, false, |_| {})
                    .map(|_| ()),
                crate::builtin::Done::Copied { staging, source } => self
                    .commit_checked(command, staging, vec![source], false)
                    .map(|_| ()),
                crate::builtin::Done::Moved(outputs) => {
                    let entry = Entry {
                        id: command.id,
                        command: journal::command_hash(command),
                        outputs,
                        inputs,
                        cached: false,
                    };
                    self.journal
                        .record(&entry)
                        .map_err(|e| crate::report::one_line(&e))
                }
            });
        if let Err(message) = done {
            record.status = Status::Error { message };
        }
        self.settle(command, matches!(record.status, Status::Ok));
        record
    }

    /// Notes `command`'s outputs as made (`good`) or not: what was rebuilt
    /// (only a resumed run asks: a run from the start does not pay a set
    /// entry per output for it), or what later commands cannot use.
    fn settle(&mut self, command: &Command, good: bool) {
        if good {
            if self.options.resume {
                self.rebuilt.extend(self.output_ids(command));
            }
        } else {
            self.failed_outputs.extend(self.output_ids(command));
        }
    }

    /// Tells the reporters something that does not stop the run.
    /// Warns of the remote cache's failure, once (the first time).
    fn warn_remote(&mut self) {
        let warning = self.cache.as_ref().and_then(RunCache::take_remote_warning);
        if let Some(warning) = warning {
            self.warn(&warning);
        }
    }

    fn warn(&mut self, message: &str) {
        if let Err(error) = self.reporter.event(&Event::Warning(message)) {
            self.error.get_or_insert(ExecuteError::Report(error));
        }
    }

    /// Moves the outputs into place, then journals them, durably, with
    /// `inputs` (hashed before the tool started) unless an input changed
    /// while it ran: then its outputs are discarded and it fails.
    /// `before_move` sees the staged outputs once the inputs are known
    /// unchanged (the action cache stores them then).
    fn commit(
        &mut self,
        command: &Command,
        staging: Staging,
        inputs: Vec<(String, String)>,
        cached: bool,
        before_move: impl FnOnce(&Staging),
    ) -> Result<crate::staging::Committed, String> {
        let now = journal::input_hashes(command, &self.job.root);
        if let Some(changed) = journal::changed_input(command, &inputs, &now) {
            staging.abort();
            return Err(journal::changed_input_message(changed));
        }
        before_move(&staging);
        self.commit_checked(command, staging, inputs, cached)
    }

    /// [`Runner::commit`] once the inputs are known unchanged.
    fn commit_checked(
        &mut self,
        command: &Command,
        staging: Staging,
        inputs: Vec<(String, String)>,
        cached: bool,
    ) -> Result<crate::staging::Committed, String> {
        // Hashed from the staged files before they moved: what was
        // committed, not what is in place by the time it is read again.
        let committed = staging.commit().map_err(|e| crate::report::one_line(&e))?;
        let entry = Entry {
            id: command.id,
            command: journal::command_hash(command),
            outputs: committed.hashes.clone(),
            inputs,
            cached,
        };
        self.journal
            .record(&entry)
            .map_err(|e| crate::report::one_line(&e))?;
        Ok(committed)
    }
}

impl Visit for Runner<'_, '_> {
    fn header(&mut self, header: &cmdlog::Header) -> ControlFlow<()> {
        let refused = self
            .checker
            .header(header)
            .into_iter()
            .find(|f| f.status == Judged::Refused);
        if let Some(finding) = refused {
            self.error = Some(ExecuteError::Changed {
                id: 0,
                reason: finding.message,
            });
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn command(&mut self, command: Command) -> ControlFlow<()> {
        if self.options.interrupted.load(Ordering::SeqCst) {
            self.status = worst(self.status, RunStatus::Interrupted);
            return ControlFlow::Break(());
        }
        if self.parallel.is_some() {
            return self.take(command);
        }
        self.position += 1;
        let began = self.run_started.elapsed();
        // Only a command whose tool runs is told as started: one resumed
        // or restored from the cache is not "running".
        let mut record = match self.prepare(&command) {
            Next::Done(record) => *record,
            Next::Run(prepared) => {
                if let Err(error) = self.reporter.event(&Event::Started {
                    id: command.id,
                    tool: command.tool.name(),
                    position: self.position,
                }) {
                    self.error = Some(ExecuteError::Report(error));
                    return ControlFlow::Break(());
                }
                let result = run_tool(&prepared.spec, &prepared.run_options);
                self.complete(*prepared, result)
            }
        };
        record.timing = Some(Timing::between(began, self.run_started.elapsed(), None));
        self.totals.peak_sum_rss = self.totals.peak_sum_rss.max(
            record
                .outcome
                .as_ref()
                .map_or(0, |o| o.measurements.peak_tree_rss_sampled),
        );
        if self.error.is_some() {
            return ControlFlow::Break(());
        }
        self.finish(record)
    }
}

/// How long a command sent to the farm is waited for: its worker enforces
/// the policy's time limit itself, this bounds the wait for its answer
/// (queueing included).
fn farm_wait(resolved: &policy::Resolved) -> Duration {
    resolved
        .limits
        .timeout
        .unwrap_or(Duration::from_secs(3600))
        .saturating_add(Duration::from_secs(300))
}

/// 80% of `MemAvailable` now, or 1 GiB if `/proc/meminfo` cannot say.
fn default_budget() -> u64 {
    let available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix("MemAvailable:"))
                .and_then(|rest| {
                    rest.trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
        });
    available.map_or(1 << 30, |kib| kib * 1024 / 10 * 8)
}

/// A path as the run compares them: `./out/p.o` and `out/p.o` are one file.
fn normalized(path: &str) -> String {
    cmdlog::path::normalize_under(".", path).unwrap_or_else(|| path.to_owned())
}

/// Why `input` cannot be read as an input right now: missing, or not a
/// regular file or directory (a FIFO would block the tool; a device or a
/// socket is no build input).
fn input_problem(root: &Path, input: &str) -> Option<String> {
    use std::os::unix::fs::FileTypeExt;
    let path = if cmdlog::path::is_absolute(input) {
        PathBuf::from(input)
    } else {
        root.join(input)
    };
    let kind = match std::fs::metadata(&path) {
        Ok(meta) => meta.file_type(),
        Err(_) => return Some(format!("input `{input}` does not exist")),
    };
    let what = if kind.is_file() || kind.is_dir() {
        return None;
    } else if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_socket() {
        "a socket"
    } else {
        "a device"
    };
    Some(format!(
        "input `{input}` is {what}, not a regular file; it is not read"
    ))
}

fn tighter<T: Ord + Copy>(policy: Option<T>, cli: Option<T>) -> Option<T> {
    match (policy, cli) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn worst(a: RunStatus, b: RunStatus) -> RunStatus {
    let rank = |s| match s {
        RunStatus::Success => 0,
        RunStatus::ToolFailed => 1,
        RunStatus::LimitHit => 2,
        RunStatus::Interrupted => 3,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// The open-files limit each tool gets: enough for a link of thousands of
/// objects, never more than this process may grant (its hard limit).
fn open_files_limit() -> u64 {
    const TOOL_NOFILE: u64 = 4096;
    match nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE) {
        Ok((_, hard)) => TOOL_NOFILE.min(hard),
        Err(_) => TOOL_NOFILE,
    }
}
