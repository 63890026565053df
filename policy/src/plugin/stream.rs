//! ABI v2: one plugin instance judges a whole log as it streams.
//! [`Session`] is the host's side: it writes commands as JSON Lines into a
//! batch, hands each full batch to the plugin's own thread (where its
//! [`Store`](wasmtime::Store) lives, blocked in `fd_read` between
//! batches), and takes back one verdict per command, in order. The host
//! holds at most two batches (the one the plugin judges and the one being
//! filled), never the log.
//!
//! Bounds: the output cap and the memory cap as in v1; time and fuel per
//! batch and for the whole log (see [`super::stdio::Budget`]). An epoch
//! callback checks the deadlines every tick; the host also stops waiting
//! for a batch's verdicts a little after the batch deadline, in case the
//! plugin's thread is stuck where no tick reaches it. Dropping a session
//! stops its plugin and joins its thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use cmdlog::{Command, Platform};
use wasmtime::UpdateDeadline;

use super::error::{EvalError, Failure};
use super::sandbox::{self, printable_tail};
use super::stdio::{Budget, FuelBound, Stdio, Stream, ToGuest, ToHost};
use super::{abi, LoadedPlugin, PluginVerdict};

/// Commands in a batch, at most.
pub const BATCH_COMMANDS: usize = 1024;

/// Bytes of commands in a batch, about: a batch is sent once it holds this
/// much (one command may make it larger).
pub const BATCH_BYTES: usize = 1024 * 1024;

/// How long past the batch deadline the host waits for a batch's verdicts
/// before it gives up on the plugin's thread (which the deadline should
/// have stopped already).
const HOST_GRACE: Duration = Duration::from_secs(2);

/// The host's side of a v2 evaluation: push commands, get verdicts back in
/// order, then [`Session::finish`].
pub struct Session {
    name: String,
    to_guest: Option<mpsc::SyncSender<ToGuest>>,
    from_guest: mpsc::Receiver<ToHost>,
    cancel: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
    /// The batch being filled: JSON Lines and the ids in it.
    batch: Vec<u8>,
    ids: Vec<u64>,
    /// Whether the header was sent (it leads the first batch).
    header_sent: bool,
    /// The ids of the batch the plugin has, whose verdicts are owed.
    in_flight: Option<Vec<u64>>,
    /// Whether the plugin has ended (well).
    ended: bool,
    /// How long to wait for one batch's verdicts.
    wait: Duration,
    /// A failure already seen: every later call returns it again.
    failed: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("name", &self.name)
            .field("queued", &self.ids.len())
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Starts `plugin` (a v2 module) on its own thread, for a log of
    /// `platform`.
    pub(crate) fn start(plugin: &LoadedPlugin, platform: &Platform) -> Result<Session, EvalError> {
        let spec = plugin.spec.clone();
        let fail = |failure| EvalError {
            plugin: spec.name.clone(),
            failure,
            stderr: String::new(),
        };
        let mut batch = Vec::with_capacity(4096);
        serde_json::to_writer(
            &mut batch,
            &abi::v2::HeaderRef {
                abi: abi::v2::ABI_VERSION,
                platform,
                config: &spec.config,
            },
        )
        .map_err(|source| fail(Failure::Request { source }))?;
        batch.push(b'\n');
        let (to_guest, from_host) = mpsc::sync_channel::<ToGuest>(1);
        let (to_host, from_guest) = mpsc::channel::<ToHost>();
        let cancel = Arc::new(AtomicBool::new(false));
        let budget = Budget::new(spec.timeout, spec.batch_timeout, spec.fuel, spec.batch_fuel);
        let stream = Stream::new(to_host.clone(), from_host, budget, Arc::clone(&cancel));
        let pre = plugin.pre.clone();
        let engine = plugin.engine.clone();
        let ticker = Arc::clone(&plugin._ticker);
        let guest_spec = spec.clone();
        let thread = thread::Builder::new()
            .name(format!("replay-plugin-{}", spec.name))
            .spawn(move || {
                let _ticker = ticker;
                run_guest(&engine, &pre, &guest_spec, stream, &to_host);
            })
            .map_err(|source| fail(Failure::Thread { source }))?;
        Ok(Session {
            name: spec.name.clone(),
            to_guest: Some(to_guest),
            from_guest,
            cancel,
            thread: Some(thread),
            batch,
            ids: Vec::new(),
            header_sent: false,
            in_flight: None,
            ended: false,
            wait: spec.batch_timeout.saturating_add(HOST_GRACE),
            failed: false,
        })
    }

    fn error(&mut self, failure: Failure, stderr: &[u8]) -> EvalError {
        self.failed = true;
        self.stop();
        EvalError {
            plugin: self.name.clone(),
            failure,
            stderr: printable_tail(stderr),
        }
    }

    /// Queues `command`; returns the verdicts that came back meanwhile (on
    /// earlier commands, in log order). An error means the plugin denies
    /// every command of the log.
    pub fn push(&mut self, command: &Command) -> Result<Vec<PluginVerdict>, EvalError> {
        if self.failed {
            return Err(self.error(Failure::Cancelled, &[]));
        }
        if let Err(source) = serde_json::to_writer(&mut self.batch, command) {
            return Err(self.error(Failure::Request { source }, &[]));
        }
        self.batch.push(b'\n');
        self.ids.push(command.id);
        if self.ids.len() >= BATCH_COMMANDS || self.batch.len() >= BATCH_BYTES {
            return self.flush();
        }
        Ok(Vec::new())
    }

    /// Sends the batch being filled, after taking the verdicts on the one
    /// before (so the plugin judges one batch while the host fills the
    /// next).
    fn flush(&mut self) -> Result<Vec<PluginVerdict>, EvalError> {
        let verdicts = self.collect()?;
        let bytes = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH_BYTES / 4));
        let ids = std::mem::take(&mut self.ids);
        self.header_sent = true;
        if self.ended {
            // It ended before it read these.
            return Err(self.missing(&ids));
        }
        let sent = self.to_guest.as_ref().is_some_and(|to| {
            to.send(ToGuest::Batch {
                bytes,
                ids: ids.clone(),
            })
            .is_ok()
        });
        if !sent {
            return Err(self.gone(&ids));
        }
        self.in_flight = Some(ids);
        Ok(verdicts)
    }

    fn missing(&mut self, ids: &[u64]) -> EvalError {
        self.error(
            Failure::MissingVerdicts {
                count: ids.len(),
                first: ids.iter().take(5).copied().collect(),
            },
            &[],
        )
    }

    /// The plugin's thread is gone: what it said when it ended, if it did.
    fn gone(&mut self, ids: &[u64]) -> EvalError {
        match self.from_guest.try_recv() {
            Ok(ToHost::Done {
                outcome: Err(failure),
                stderr,
            }) => self.error(failure, &stderr),
            _ => self.missing(ids),
        }
    }

    /// Waits for the verdicts on the batch in flight, if there is one.
    fn collect(&mut self) -> Result<Vec<PluginVerdict>, EvalError> {
        let Some(ids) = self.in_flight.take() else {
            return Ok(Vec::new());
        };
        let verdicts = match self.from_guest.recv_timeout(self.wait) {
            Ok(ToHost::Verdicts(verdicts)) => verdicts,
            Ok(ToHost::Done { outcome, stderr }) => match outcome {
                Ok(verdicts) => {
                    self.ended = true;
                    verdicts
                }
                Err(failure) => return Err(self.error(failure, &stderr)),
            },
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let failure = Failure::BatchDeadline {
                    timeout: self.wait.saturating_sub(HOST_GRACE),
                };
                return Err(self.error(failure, &[]));
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let failure = Failure::Host {
                    message: "the plugin's thread ended without an answer".into(),
                };
                return Err(self.error(failure, &[]));
            }
        };
        // The plugin's side checked order and count; a mismatch here is
        // the host's own bug, and denies all the same.
        let matches = verdicts.len() == ids.len()
            && verdicts
                .iter()
                .zip(&ids)
                .all(|(verdict, id)| verdict.id == *id);
        if !matches {
            return Err(self.missing(&ids[verdicts.len().min(ids.len())..]));
        }
        Ok(verdicts)
    }

    /// Sends what is left, tells the plugin the log ended, and returns the
    /// last verdicts once it exited 0.
    pub fn finish(mut self) -> Result<Vec<PluginVerdict>, EvalError> {
        if self.failed {
            return Err(self.error(Failure::Cancelled, &[]));
        }
        let mut verdicts = Vec::new();
        if !self.ids.is_empty() || !self.header_sent {
            verdicts = self.flush()?;
        }
        verdicts.extend(self.collect()?);
        if !self.ended {
            let told = self
                .to_guest
                .as_ref()
                .is_some_and(|to| to.send(ToGuest::End).is_ok());
            match self.from_guest.recv_timeout(self.wait) {
                Ok(ToHost::Done {
                    outcome: Ok(last), ..
                }) if told => {
                    if let Some(extra) = last.first() {
                        return Err(self.error(Failure::ExtraVerdict { id: extra.id }, &[]));
                    }
                }
                Ok(ToHost::Done {
                    outcome: Err(failure),
                    stderr,
                }) => return Err(self.error(failure, &stderr)),
                Ok(_) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let failure = Failure::Host {
                        message: "the plugin's thread ended without an answer".into(),
                    };
                    return Err(self.error(failure, &[]));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let failure = Failure::BatchDeadline {
                        timeout: self.wait.saturating_sub(HOST_GRACE),
                    };
                    return Err(self.error(failure, &[]));
                }
            }
        }
        self.stop();
        Ok(verdicts)
    }

    /// Stops the plugin (if it still runs) and joins its thread.
    fn stop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        drop(self.to_guest.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The plugin's thread: instantiates the module in a fresh store and runs
/// `_start`, then tells the host how it ended.
fn run_guest(
    engine: &wasmtime::Engine,
    pre: &wasmtime::InstancePre<sandbox::State>,
    spec: &super::PluginSpec,
    mut stream: Stream,
    to_host: &mpsc::Sender<ToHost>,
) {
    let memory_cap = usize::try_from(spec.max_memory).unwrap_or(usize::MAX);
    let fuel = stream.budget.next_fuel(0);
    let stdio = Stdio::stream(stream, spec.max_output);
    let mut store = match sandbox::new_store(engine, &spec.name, stdio, memory_cap, fuel) {
        Ok(store) => store,
        Err(error) => {
            let _ = to_host.send(ToHost::Done {
                outcome: Err(Failure::Instantiate {
                    source: error.into(),
                }),
                stderr: Vec::new(),
            });
            return;
        }
    };
    // Checked every tick: the host stopped waiting, or a deadline passed.
    store.set_epoch_deadline(1);
    store.epoch_deadline_callback(move |mut context| {
        let state = context.data_mut();
        match state.stdio.overrun(Instant::now()) {
            Some(failure) => {
                state.limiter.record(failure);
                Ok(UpdateDeadline::Interrupt)
            }
            None => Ok(UpdateDeadline::Continue(1)),
        }
    });
    let outcome = super::run_start(&mut store, pre, spec.timeout, spec.fuel);
    let state = store.data_mut();
    let stderr = state.stdio.take_stderr();
    let Some(stream) = state.stdio.as_stream() else {
        return;
    };
    let outcome = match outcome {
        Ok(()) => stream.finish(),
        Err(Failure::OutOfFuel { .. }) if stream.budget.fuel_bound == FuelBound::Batch => {
            Err(Failure::BatchOutOfFuel {
                fuel: stream.budget.batch_fuel.unwrap_or(u64::MAX),
            })
        }
        Err(failure) => Err(failure),
    };
    stream.done(outcome, stderr);
}
