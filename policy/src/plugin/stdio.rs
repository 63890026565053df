//! A plugin's stdin, stdout and stderr, served by the host itself: `fd_read`
//! and `fd_write` shadow WASI's own, so every byte a plugin writes is
//! counted as it is written and a bound stops it at once (a trap), instead
//! of a pipe that fills and then refuses writes the plugin may ignore.
//!
//! [`Stdio`] is the state of one evaluation: in ABI v1 ([`Stdio::whole`])
//! the request is in memory and stdout is kept (never more than the output
//! cap); in ABI v2 ([`Stdio::stream`]) stdin is the batches the host sends
//! through a channel and stdout is parsed a line at a time into verdicts,
//! checked against the commands the plugin has read (see [`Stream`]).
//! Host memory for a plugin's output is the cap (v1) or one line (v2), plus
//! a constant.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use wasmtime::{Caller, Extern};

use super::error::Failure;
use super::sandbox::{LimitHit, State, STDERR_CAP};
use super::{abi, clean_reason, PluginVerdict};

/// WASI errno `EBADF`: bad file descriptor.
const ERRNO_BADF: i32 = 8;
/// WASI errno `EFAULT`: a pointer outside the plugin's memory.
const ERRNO_FAULT: i32 = 21;
/// WASI errno `EINVAL`: an invalid argument (here, an iovec count).
const ERRNO_INVAL: i32 = 28;

/// The most iovecs one `fd_read` or `fd_write` takes (Linux's `IOV_MAX`);
/// a larger or negative count is `EINVAL`, so one host call is bounded
/// whatever the plugin's memory holds.
pub const MAX_IOVS: u32 = 1024;

/// Inside one host call, the deadlines and the host's stop are checked
/// every this many iovecs (no epoch tick reaches a host call).
const IOVS_PER_CHECK: u32 = 64;

/// The longest verdict line a v2 plugin may write, newline excluded; a
/// reason is cut at [`super::MAX_REASON_CHARS`] anyway.
pub const MAX_VERDICT_LINE: usize = 64 * 1024;

/// What the host sends a v2 plugin's thread.
pub(crate) enum ToGuest {
    /// The next batch: JSON Lines (the header first, in the first batch)
    /// and the ids of its commands, in order.
    Batch {
        /// The bytes the plugin reads.
        bytes: Vec<u8>,
        /// The ids of the commands in `bytes`.
        ids: Vec<u64>,
    },
    /// No more commands: the plugin reads end of input.
    End,
}

/// What a v2 plugin's thread sends the host.
pub(crate) enum ToHost {
    /// The verdicts on the last batch sent, one per command, in order.
    Verdicts(Vec<PluginVerdict>),
    /// The plugin stopped: how, the verdicts it gave since the last
    /// [`ToHost::Verdicts`] (if it ended well), and the end of its stderr.
    Done {
        /// The verdicts not yet sent, or why the plugin failed.
        outcome: Result<Vec<PluginVerdict>, Failure>,
        /// What the plugin wrote to stderr.
        stderr: Vec<u8>,
    },
}

/// Which fuel budget binds a v2 plugin now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FuelBound {
    /// The total for the log.
    Total,
    /// The batch's own.
    Batch,
}

/// A v2 plugin's time and fuel: per batch and in total. Time counts only
/// while the plugin has work (not while it waits for the host's next
/// batch).
pub(crate) struct Budget {
    /// The deadline of the whole log (the plugin's busy time).
    pub(crate) total_timeout: Duration,
    /// The deadline of one batch, from when the plugin gets it.
    pub(crate) batch_timeout: Duration,
    /// Busy time before the current stretch.
    busy_before: Duration,
    /// When the current stretch of work began; `None` while waiting.
    busy_since: Option<Instant>,
    /// When the current batch (or the start) began.
    batch_started: Instant,
    /// The fuel of one batch, if bounded.
    pub(crate) batch_fuel: Option<u64>,
    /// Fuel of the whole log left when the store's fuel was last set.
    fuel_left: u64,
    /// What the store's fuel was last set to.
    fuel_set: u64,
    /// Which budget the store's fuel stands for.
    pub(crate) fuel_bound: FuelBound,
}

impl Budget {
    /// A budget whose clock starts now.
    pub(crate) fn new(
        total_timeout: Duration,
        batch_timeout: Duration,
        total_fuel: Option<u64>,
        batch_fuel: Option<u64>,
    ) -> Budget {
        let now = Instant::now();
        Budget {
            total_timeout,
            batch_timeout,
            busy_before: Duration::ZERO,
            busy_since: Some(now),
            batch_started: now,
            batch_fuel,
            fuel_left: total_fuel.unwrap_or(u64::MAX),
            fuel_set: 0,
            fuel_bound: FuelBound::Total,
        }
    }

    /// The fuel to give the store for the next stretch, given what is left
    /// in it now (`in_store`), and which budget it stands for.
    pub(crate) fn next_fuel(&mut self, in_store: u64) -> u64 {
        let used = self.fuel_set.saturating_sub(in_store);
        self.fuel_left = self.fuel_left.saturating_sub(used);
        let (fuel, bound) = match self.batch_fuel {
            Some(batch) if batch < self.fuel_left => (batch, FuelBound::Batch),
            _ => (self.fuel_left, FuelBound::Total),
        };
        self.fuel_set = fuel;
        self.fuel_bound = bound;
        fuel
    }

    /// The plugin waits for the host.
    fn pause(&mut self, now: Instant) {
        if let Some(since) = self.busy_since.take() {
            self.busy_before += now.saturating_duration_since(since);
        }
    }

    /// The plugin got a batch.
    fn resume(&mut self, now: Instant) {
        self.busy_since = Some(now);
        self.batch_started = now;
    }

    /// The deadline passed at `now`, if one did.
    pub(crate) fn overrun(&self, now: Instant) -> Option<Failure> {
        let since = self.busy_since?;
        let busy = self.busy_before + now.saturating_duration_since(since);
        if busy > self.total_timeout {
            return Some(Failure::Deadline {
                timeout: self.total_timeout,
            });
        }
        if now.saturating_duration_since(self.batch_started) > self.batch_timeout {
            return Some(Failure::BatchDeadline {
                timeout: self.batch_timeout,
            });
        }
        None
    }
}

/// A v2 plugin's side of the stream: the batch it reads, the verdicts it
/// wrote, and the checks on them.
pub(crate) struct Stream {
    to_host: mpsc::Sender<ToHost>,
    from_host: mpsc::Receiver<ToGuest>,
    /// The current batch and how much of it the plugin read.
    batch: Vec<u8>,
    at: usize,
    /// The ids of the current batch's commands.
    ids: Vec<u64>,
    /// Lines of the current batch before its first command (the header).
    header_lines: usize,
    /// Newlines of the current batch the plugin has read.
    lines_read: usize,
    /// Whether a batch was received whose verdicts the host waits for.
    owed: bool,
    /// Whether any batch was received.
    had_batch: bool,
    /// The verdicts on the current batch so far.
    answered: Vec<PluginVerdict>,
    /// The verdict line being written.
    line: Vec<u8>,
    /// Whether the plugin was told end of input.
    ended: bool,
    /// Time and fuel.
    pub(crate) budget: Budget,
    /// Set when the host stops waiting for the plugin.
    cancel: Arc<AtomicBool>,
}

impl Stream {
    /// The plugin's side of a stream over these channels; `cancel` is set
    /// when the host stops waiting.
    pub(crate) fn new(
        to_host: mpsc::Sender<ToHost>,
        from_host: mpsc::Receiver<ToGuest>,
        budget: Budget,
        cancel: Arc<AtomicBool>,
    ) -> Stream {
        Stream {
            to_host,
            from_host,
            cancel,
            batch: Vec::new(),
            at: 0,
            ids: Vec::new(),
            header_lines: 1,
            lines_read: 0,
            owed: false,
            had_batch: false,
            answered: Vec::new(),
            line: Vec::new(),
            ended: false,
            budget,
        }
    }

    /// Why the plugin must stop at `now`, if it must: the host stopped
    /// waiting, or a deadline passed.
    pub(crate) fn overrun(&self, now: Instant) -> Option<Failure> {
        if self.cancel.load(Ordering::SeqCst) {
            return Some(Failure::Cancelled);
        }
        self.budget.overrun(now)
    }

    /// Commands of the current batch whose line the plugin has read whole.
    fn commands_read(&self) -> usize {
        self.lines_read.saturating_sub(self.header_lines)
    }

    /// Checks one verdict line and keeps the verdict.
    fn verdict_line(&mut self) -> Result<(), Failure> {
        let verdict: abi::Verdict =
            serde_json::from_slice(&self.line).map_err(|source| Failure::MalformedVerdict {
                after: self.answered.last().map(|v| v.id),
                source,
            })?;
        self.line.clear();
        let at = self.answered.len();
        if at >= self.commands_read() {
            return Err(if self.ended {
                Failure::ExtraVerdict { id: verdict.id }
            } else {
                Failure::EarlyVerdict { id: verdict.id }
            });
        }
        let expected = self.ids[at];
        if verdict.id != expected {
            return Err(Failure::OutOfOrder {
                expected,
                got: verdict.id,
            });
        }
        self.answered.push(PluginVerdict {
            id: verdict.id,
            allow: verdict.allow,
            reason: if verdict.allow {
                None
            } else {
                verdict.reason.as_deref().and_then(clean_reason)
            },
        });
        Ok(())
    }

    /// Takes `bytes` of stdout: complete lines become verdicts.
    fn write(&mut self, mut bytes: &[u8]) -> Result<(), Failure> {
        while !bytes.is_empty() {
            let (part, rest, complete) = match bytes.iter().position(|b| *b == b'\n') {
                Some(at) => (&bytes[..at], &bytes[at + 1..], true),
                None => (bytes, &[][..], false),
            };
            if self.line.len() + part.len() > MAX_VERDICT_LINE {
                return Err(Failure::VerdictTooLong {
                    limit: MAX_VERDICT_LINE,
                });
            }
            self.line.extend_from_slice(part);
            if complete {
                self.verdict_line()?;
            }
            bytes = rest;
        }
        Ok(())
    }

    /// Whether a read must wait for the host's next batch: the plugin has
    /// read every byte it was sent, and the end of input was not told yet
    /// (after it, reads return 0 at once and start no new batch, so they
    /// refill no batch fuel).
    fn wants_batch(&self) -> bool {
        !self.ended && self.at >= self.batch.len()
    }

    /// The plugin read the whole batch and asks for more: hands its
    /// verdicts to the host and waits for the next batch (or the end).
    fn refill(&mut self) -> Result<(), Failure> {
        if self.ended {
            return Ok(());
        }
        if self.owed {
            if self.answered.len() < self.ids.len() {
                return Err(Failure::ReadAhead {
                    id: self.ids[self.answered.len()],
                });
            }
            let verdicts = std::mem::take(&mut self.answered);
            self.to_host
                .send(ToHost::Verdicts(verdicts))
                .map_err(|_| Failure::Cancelled)?;
            self.owed = false;
            self.ids.clear();
            self.lines_read = 0;
        }
        self.budget.pause(Instant::now());
        match self.from_host.recv() {
            Ok(ToGuest::Batch { bytes, ids }) => {
                // The header leads the first batch only.
                self.header_lines = usize::from(!self.had_batch);
                self.had_batch = true;
                self.batch = bytes;
                self.at = 0;
                self.ids = ids;
                self.lines_read = 0;
                self.owed = true;
                self.budget.resume(Instant::now());
                Ok(())
            }
            Ok(ToGuest::End) => {
                self.ended = true;
                self.batch = Vec::new();
                self.at = 0;
                self.budget.resume(Instant::now());
                Ok(())
            }
            Err(_) => Err(Failure::Cancelled),
        }
    }

    /// Copies what is left of the batch into `into`; how many bytes.
    fn read(&mut self, into: &mut [u8]) -> usize {
        let n = into.len().min(self.batch.len() - self.at);
        let taken = &self.batch[self.at..self.at + n];
        into[..n].copy_from_slice(taken);
        self.lines_read += taken.iter().filter(|b| **b == b'\n').count();
        self.at += n;
        n
    }

    /// The plugin exited 0: its last verdicts, or what is wrong with how it
    /// ended.
    pub(crate) fn finish(&mut self) -> Result<Vec<PluginVerdict>, Failure> {
        if !self.line.is_empty() {
            return Err(Failure::UnfinishedLine {
                after: self.answered.last().map(|v| v.id),
            });
        }
        if self.answered.len() < self.ids.len() {
            let missing = &self.ids[self.answered.len()..];
            return Err(Failure::MissingVerdicts {
                count: missing.len(),
                first: missing.iter().take(5).copied().collect(),
            });
        }
        Ok(std::mem::take(&mut self.answered))
    }

    /// Sends the host how the plugin ended.
    pub(crate) fn done(&self, outcome: Result<Vec<PluginVerdict>, Failure>, stderr: Vec<u8>) {
        // The host may have gone (it stopped waiting): nothing to tell.
        let _ = self.to_host.send(ToHost::Done { outcome, stderr });
    }
}

/// How the plugin's stdin and stdout are served.
pub(crate) enum Mode {
    /// ABI v1: the whole request in memory, stdout kept whole.
    Whole {
        /// The request.
        request: Vec<u8>,
        /// How much of it the plugin read.
        at: usize,
        /// What it wrote to stdout (at most the cap).
        stdout: Vec<u8>,
    },
    /// ABI v2: batches in, verdict lines out.
    Stream(Box<Stream>),
}

/// One evaluation's stdio.
pub(crate) struct Stdio {
    /// v1 or v2.
    pub(crate) mode: Mode,
    /// What the plugin wrote to stderr: the last [`STDERR_CAP`] bytes (one
    /// instance judges a whole v2 log: its final message is the one worth
    /// keeping).
    pub(crate) stderr: VecDeque<u8>,
    /// Bytes written to stdout so far (ABI v2: since the current batch
    /// began).
    stdout_bytes: u64,
    /// The output cap.
    max_output: u64,
    /// ABI v1: when the evaluation's deadline passes, and the deadline.
    deadline: Option<(Instant, Duration)>,
}

impl Stdio {
    /// ABI v1: `request` on stdin, for an evaluation whose deadline
    /// (`timeout`) starts now.
    pub(crate) fn whole(request: Vec<u8>, max_output: u64, timeout: Duration) -> Stdio {
        Stdio {
            mode: Mode::Whole {
                request,
                at: 0,
                stdout: Vec::new(),
            },
            stderr: VecDeque::new(),
            stdout_bytes: 0,
            max_output,
            deadline: Instant::now()
                .checked_add(timeout)
                .map(|when| (when, timeout)),
        }
    }

    /// ABI v2: `stream` on stdin and stdout.
    pub(crate) fn stream(stream: Stream, max_output: u64) -> Stdio {
        Stdio {
            mode: Mode::Stream(Box::new(stream)),
            stderr: VecDeque::new(),
            stdout_bytes: 0,
            max_output,
            deadline: None,
        }
    }

    /// Why the plugin must stop at `now`, if it must (checked inside host
    /// calls, where no epoch tick reaches).
    pub(crate) fn overrun(&self, now: Instant) -> Option<Failure> {
        match &self.mode {
            Mode::Stream(stream) => stream.overrun(now),
            Mode::Whole { .. } => match self.deadline {
                Some((when, timeout)) if now > when => Some(Failure::Deadline { timeout }),
                _ => None,
            },
        }
    }

    /// ABI v2: the plugin got a new batch (or the end of input): the output
    /// cap counts from here, so it bounds what one batch's verdicts may
    /// take, not the whole log's.
    fn new_batch(&mut self) {
        self.stdout_bytes = 0;
    }

    /// The v2 stream, if this is one.
    pub(crate) fn as_stream(&mut self) -> Option<&mut Stream> {
        match &mut self.mode {
            Mode::Stream(stream) => Some(stream),
            Mode::Whole { .. } => None,
        }
    }

    /// Takes `bytes` written to stdout; an error stops the plugin.
    fn stdout(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stdout_bytes = self.stdout_bytes.saturating_add(bytes.len() as u64);
        if self.stdout_bytes > self.max_output {
            return Err(Failure::OutputTooLarge {
                limit: self.max_output,
            });
        }
        match &mut self.mode {
            Mode::Whole { stdout, .. } => {
                // Grow by doubling, but never past the cap: what is kept
                // stays within the cap whatever the writes' sizes.
                let needed = stdout.len() + bytes.len();
                if needed > stdout.capacity() {
                    let cap = usize::try_from(self.max_output).unwrap_or(usize::MAX);
                    let target = needed.max(stdout.capacity().saturating_mul(2)).min(cap);
                    stdout.reserve_exact(target - stdout.len());
                }
                stdout.extend_from_slice(bytes);
                Ok(())
            }
            Mode::Stream(stream) => stream.write(bytes),
        }
    }

    /// Takes `bytes` written to stderr: the last [`STDERR_CAP`] bytes
    /// written are kept, older ones dropped (work bounded by the cap, not
    /// by the write).
    fn stderr(&mut self, bytes: &[u8]) {
        let bytes = &bytes[bytes.len().saturating_sub(STDERR_CAP)..];
        let excess = (self.stderr.len() + bytes.len()).saturating_sub(STDERR_CAP);
        self.stderr.drain(..excess);
        self.stderr.extend(bytes);
    }

    /// Takes what the plugin wrote to stderr (its end).
    pub(crate) fn take_stderr(&mut self) -> Vec<u8> {
        Vec::from(std::mem::take(&mut self.stderr))
    }
}

/// A `(pointer, length)` region of `memory`, if it is inside it.
fn region(memory: &[u8], ptr: u32, len: u32) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(ptr).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    (end <= memory.len()).then_some(start..end)
}

/// The little-endian u32 at `at` in `memory`.
fn load_u32(memory: &[u8], at: usize) -> Option<u32> {
    let bytes = memory.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// Stores `value` little-endian at `ptr` in `memory`.
fn store_u32(memory: &mut [u8], ptr: i32, value: u32) -> bool {
    let Some(range) = region(memory, ptr as u32, 4) else {
        return false;
    };
    memory[range].copy_from_slice(&value.to_le_bytes());
    true
}

/// The number of iovecs `iovs_len` stands for, if it is one the host
/// takes: 0 to [`MAX_IOVS`].
fn iov_count(iovs_len: i32) -> Option<u32> {
    u32::try_from(iovs_len).ok().filter(|n| *n <= MAX_IOVS)
}

/// Whether the host call must stop before iovec `i`: checked every
/// [`IOVS_PER_CHECK`] iovecs; records why in `state`.
fn must_stop(state: &mut State, i: u32) -> bool {
    if i == 0 || i % IOVS_PER_CHECK != 0 {
        return false;
    }
    match state.stdio.overrun(Instant::now()) {
        Some(failure) => {
            state.limiter.record(failure);
            true
        }
        None => false,
    }
}

/// The `i`-th iovec of the array at `iovs`.
fn iovec(memory: &[u8], iovs: i32, i: u32) -> Option<(u32, u32)> {
    let at = (iovs as u32 as usize).checked_add(usize::try_from(i).ok()?.checked_mul(8)?)?;
    Some((load_u32(memory, at)?, load_u32(memory, at.checked_add(4)?)?))
}

/// The plugin's exported memory, or a trap: a WASI command exports it.
fn memory(caller: &mut Caller<'_, State>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(Extern::into_memory)
        .ok_or_else(|| wasmtime::Error::msg("the module exports no `memory`"))
}

/// Records `failure` as what stopped the plugin and traps.
fn stop(caller: &mut Caller<'_, State>, failure: Failure) -> wasmtime::Error {
    caller.data_mut().limiter.record(failure);
    LimitHit.into()
}

/// WASI `fd_write`: stdout to [`Stdio`], stderr kept (capped), any other
/// descriptor `EBADF`, more than [`MAX_IOVS`] iovecs `EINVAL`.
pub(crate) fn fd_write(
    mut caller: Caller<'_, State>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nwritten: i32,
) -> wasmtime::Result<i32> {
    if fd != 1 && fd != 2 {
        return Ok(ERRNO_BADF);
    }
    let Some(count) = iov_count(iovs_len) else {
        return Ok(ERRNO_INVAL);
    };
    let memory = memory(&mut caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let mut total: u32 = 0;
    let mut failed = None;
    for i in 0..count {
        if must_stop(state, i) {
            return Err(LimitHit.into());
        }
        let Some((ptr, len)) = iovec(data, iovs, i) else {
            return Ok(ERRNO_FAULT);
        };
        let Some(range) = region(data, ptr, len) else {
            return Ok(ERRNO_FAULT);
        };
        let bytes = &data[range];
        if fd == 1 {
            if let Err(failure) = state.stdio.stdout(bytes) {
                failed = Some(failure);
                break;
            }
        } else {
            state.stdio.stderr(bytes);
        }
        total = total.saturating_add(len);
    }
    if let Some(failure) = failed {
        return Err(stop(&mut caller, failure));
    }
    if !store_u32(data, nwritten, total) {
        return Ok(ERRNO_FAULT);
    }
    Ok(0)
}

/// WASI `fd_read`: stdin from [`Stdio`] (in v2, waiting for the host's
/// next batch when the plugin has read the last), any other descriptor
/// `EBADF`, more than [`MAX_IOVS`] iovecs `EINVAL`.
pub(crate) fn fd_read(
    mut caller: Caller<'_, State>,
    fd: i32,
    iovs: i32,
    iovs_len: i32,
    nread: i32,
) -> wasmtime::Result<i32> {
    if fd != 0 {
        return Ok(ERRNO_BADF);
    }
    let Some(count) = iov_count(iovs_len) else {
        return Ok(ERRNO_INVAL);
    };
    let wants_batch = caller
        .data_mut()
        .stdio
        .as_stream()
        .is_some_and(|stream| stream.wants_batch());
    if wants_batch {
        let refilled = caller
            .data_mut()
            .stdio
            .as_stream()
            .map_or(Ok(()), Stream::refill);
        if let Err(failure) = refilled {
            return Err(stop(&mut caller, failure));
        }
        caller.data_mut().stdio.new_batch();
        // A new stretch: the batch's fuel, bounded by what is left of the
        // log's.
        let in_store = caller.get_fuel()?;
        let fuel = match caller.data_mut().stdio.as_stream() {
            Some(stream) => stream.budget.next_fuel(in_store),
            None => in_store,
        };
        caller.set_fuel(fuel)?;
    }
    let memory = memory(&mut caller)?;
    let (data, state) = memory.data_and_store_mut(&mut caller);
    let mut total: u32 = 0;
    for i in 0..count {
        if must_stop(state, i) {
            return Err(LimitHit.into());
        }
        let Some((ptr, len)) = iovec(data, iovs, i) else {
            return Ok(ERRNO_FAULT);
        };
        let Some(range) = region(data, ptr, len) else {
            return Ok(ERRNO_FAULT);
        };
        let into = &mut data[range];
        let n = match &mut state.stdio.mode {
            Mode::Whole { request, at, .. } => {
                let n = into.len().min(request.len() - *at);
                into[..n].copy_from_slice(&request[*at..*at + n]);
                *at += n;
                n
            }
            Mode::Stream(stream) => stream.read(into),
        };
        total = total.saturating_add(n as u32);
        if n < into.len() {
            break;
        }
    }
    if !store_u32(data, nread, total) {
        return Ok(ERRNO_FAULT);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_output_stays_within_the_cap_and_stops_past_it() {
        let cap = 1024 * 1024;
        let mut stdio = Stdio::whole(Vec::new(), cap, Duration::MAX);
        let chunk = vec![b'x'; 64 * 1024];
        let mut writes = 0;
        let failure = loop {
            writes += 1;
            if let Err(failure) = stdio.stdout(&chunk) {
                break failure;
            }
            assert!(writes < 1000, "the cap never stopped the writes");
        };
        assert!(matches!(failure, Failure::OutputTooLarge { limit } if limit == cap));
        // 16 writes of 64 KiB fill 1 MiB; the 17th crosses the cap.
        assert_eq!(writes, 17);
        let Mode::Whole { stdout, .. } = &stdio.mode else {
            panic!("v1 stdio")
        };
        assert!(stdout.capacity() as u64 <= cap, "{}", stdout.capacity());
    }

    #[test]
    fn iovec_counts_over_iov_max_or_negative_are_refused() {
        assert_eq!(iov_count(0), Some(0));
        assert_eq!(iov_count(1024), Some(1024));
        assert_eq!(iov_count(1025), None);
        assert_eq!(iov_count(-1), None);
        assert_eq!(iov_count(i32::MIN), None);
    }

    #[test]
    fn a_past_v1_deadline_is_seen_inside_host_calls() {
        let stdio = Stdio::whole(Vec::new(), 1, Duration::from_millis(1));
        let later = Instant::now() + Duration::from_millis(5);
        assert!(matches!(
            stdio.overrun(later),
            Some(Failure::Deadline { .. })
        ));
        assert!(stdio
            .overrun(Instant::now() - Duration::from_secs(1))
            .is_none());
    }

    #[test]
    fn stderr_is_capped() {
        let mut stdio = Stdio::whole(Vec::new(), 1, Duration::MAX);
        for _ in 0..10 {
            stdio.stderr(&[b'e'; STDERR_CAP / 4]);
        }
        assert_eq!(stdio.stderr.len(), STDERR_CAP);
    }

    #[test]
    fn stderr_keeps_the_tail() {
        let mut stdio = Stdio::whole(Vec::new(), 1, Duration::MAX);
        stdio.stderr(b"first");
        stdio.stderr(&vec![b'e'; STDERR_CAP * 3]);
        stdio.stderr(b"panicked at the end");
        let kept = stdio.take_stderr();
        assert_eq!(kept.len(), STDERR_CAP);
        assert!(kept.ends_with(b"eeepanicked at the end"));
    }

    #[test]
    fn budget_counts_busy_time_only() {
        let mut budget = Budget::new(
            Duration::from_millis(50),
            Duration::from_millis(20),
            None,
            None,
        );
        let start = Instant::now();
        budget.pause(start);
        // Waiting for the host does not count.
        assert!(budget.overrun(start + Duration::from_secs(10)).is_none());
        budget.resume(start + Duration::from_secs(10));
        assert!(matches!(
            budget.overrun(start + Duration::from_secs(10) + Duration::from_millis(30)),
            Some(Failure::BatchDeadline { .. })
        ));
    }

    #[test]
    fn fuel_is_the_batch_budget_bounded_by_the_total() {
        let mut budget = Budget::new(Duration::MAX, Duration::MAX, Some(250), Some(100));
        assert_eq!(budget.next_fuel(0), 100);
        assert_eq!(budget.fuel_bound, FuelBound::Batch);
        // 100 used, 150 left.
        assert_eq!(budget.next_fuel(0), 100);
        // 50 left of the total: it binds.
        assert_eq!(budget.next_fuel(0), 50);
        assert_eq!(budget.fuel_bound, FuelBound::Total);
    }
}
