//! The watcher: a thread that samples a running tool's process tree and
//! enforces its limits.
//!
//! Every interval it sums the resident set of the tree's live processes
//! (`/proc/PID/statm`) and keeps the peak of that sum: the memory the machine
//! had to hold for the tool at once. It kills the whole tree as soon as the
//! sum crosses the memory limit, and on timeout sends SIGTERM to the group,
//! then SIGKILL after a grace period (as nextest does). A request to stop
//! from outside (SIGINT/SIGTERM to `replay`) is handled the same way.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::trace::Tree;

/// The limits one tool runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ToolLimits {
    /// Wall time before SIGTERM.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Resident bytes of the whole tree at once.
    pub max_rss: Option<u64>,
    /// Bytes the tool may print (stdout and stderr together).
    pub max_output: Option<u64>,
}

/// Which limit stopped a tool, by how much, after how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Stop {
    /// It ran past its timeout.
    Timeout {
        /// The limit, in milliseconds.
        limit_ms: u64,
        /// When it was stopped, in milliseconds after the start.
        after_ms: u64,
    },
    /// Its tree's resident set crossed the limit.
    Memory {
        /// The limit, in bytes.
        limit: u64,
        /// The sampled tree RSS that crossed it, in bytes.
        observed: u64,
        /// When, in milliseconds after the start.
        after_ms: u64,
    },
    /// It printed more than allowed.
    Output {
        /// The limit, in bytes.
        limit: u64,
        /// When, in milliseconds after the start.
        after_ms: u64,
    },
    /// A file it wrote reached the policy's `max_output` (the kernel's
    /// file-size limit killed it with `SIGXFSZ`).
    FileSize {
        /// The limit, in bytes.
        limit: u64,
        /// When, in milliseconds after the start.
        after_ms: u64,
    },
    /// `replay` itself was asked to stop.
    Interrupted {
        /// When, in milliseconds after the start.
        after_ms: u64,
    },
    /// The tools running at once held more than the run's memory budget,
    /// and this one, the last started, was stopped to make room: it runs
    /// again alone, so this is not its result.
    Budget {
        /// The run's budget, in bytes.
        budget: u64,
        /// When, in milliseconds after the start.
        after_ms: u64,
    },
}

/// What a tool's watcher shares with the scheduler of a parallel run: its
/// latest sample of the tree's RSS, and a request to stop it to keep the
/// run under its memory budget.
#[derive(Debug, Default)]
pub struct Gauge {
    rss: std::sync::atomic::AtomicU64,
    evict: std::sync::atomic::AtomicU64,
    /// The tool's stopper, once its watcher runs: an eviction acts at
    /// once, not at the next sample.
    stopper: Mutex<Option<Stopper>>,
}

impl Gauge {
    /// The tree's resident bytes at the last sample.
    pub fn rss(&self) -> u64 {
        self.rss.load(Ordering::SeqCst)
    }

    /// Asks the watcher to stop the tool (SIGKILL) because the run went
    /// over `budget`.
    pub fn evict(&self, budget: u64) {
        self.evict.store(budget.max(1), Ordering::SeqCst);
        if let Ok(stopper) = self.stopper.lock() {
            if let Some(stopper) = stopper.as_ref() {
                stopper.stop(|after_ms| Stop::Budget { budget, after_ms }, true);
            }
        }
    }

    /// Lets [`Gauge::evict`] stop the tool itself (its watcher's stopper).
    pub(crate) fn attach(&self, stopper: Stopper) {
        if let Ok(mut slot) = self.stopper.lock() {
            *slot = Some(stopper);
        }
    }
}

/// What the watcher saw.
#[derive(Debug, Clone, Copy, Default)]
pub struct Watched {
    /// The largest sum of the tree's RSS seen at one sample, in bytes.
    pub peak_tree_rss: u64,
    /// How many samples were taken.
    pub samples: u64,
    /// The limit that stopped the tool, if one did.
    pub stop: Option<Stop>,
}

/// A handle to stop a tool from elsewhere (output limit, interrupts).
#[derive(Debug, Clone)]
pub struct Stopper {
    tree: Tree,
    pgid: i32,
    start: Instant,
    grace: Duration,
    stop: Arc<Mutex<Option<Stop>>>,
    term_sent: Arc<Mutex<Option<Instant>>>,
}

impl Stopper {
    /// Records `stop` (the first one wins) and sends SIGTERM to the tree,
    /// or SIGKILL at once where `hard`.
    pub fn stop(&self, make: impl FnOnce(u64) -> Stop, hard: bool) {
        let after_ms = self.start.elapsed().as_millis() as u64;
        if let Ok(mut stop) = self.stop.lock() {
            if stop.is_none() {
                *stop = Some(make(after_ms));
            }
        }
        if hard {
            self.tree.kill(self.pgid, Signal::SIGKILL);
        } else {
            if let Ok(mut sent) = self.term_sent.lock() {
                sent.get_or_insert_with(Instant::now);
            }
            self.tree.kill(self.pgid, Signal::SIGTERM);
        }
    }

    /// SIGKILL if a SIGTERM was sent more than the grace period ago.
    fn escalate(&self) {
        let due = self
            .term_sent
            .lock()
            .ok()
            .and_then(|sent| *sent)
            .is_some_and(|sent| sent.elapsed() >= self.grace);
        if due {
            self.tree.kill(self.pgid, Signal::SIGKILL);
        }
    }

    fn stopped(&self) -> Option<Stop> {
        self.stop.lock().ok().and_then(|stop| *stop)
    }
}

/// A running watcher thread.
pub struct Watcher {
    done: Arc<AtomicBool>,
    handle: thread::JoinHandle<Watched>,
    stopper: Stopper,
    hand_back: HandBack,
}

/// The CPUs to hand back to the tree when its time on one CPU ends
/// ([`super::affinity`]).
type HandBack = Arc<std::sync::Mutex<Option<super::affinity::Shared>>>;

impl Watcher {
    /// Starts watching `tree` (process group `pgid`) under `limits`,
    /// sampling every `interval`; `interrupted` is set by `replay`'s signal
    /// handler.
    pub fn start(
        tree: Tree,
        pgid: i32,
        limits: ToolLimits,
        interval: Duration,
        interrupted: Arc<AtomicBool>,
        gauge: Option<Arc<Gauge>>,
    ) -> std::io::Result<Watcher> {
        let done = Arc::new(AtomicBool::new(false));
        let stopper = Stopper {
            tree: tree.clone(),
            pgid,
            start: Instant::now(),
            grace: limits.grace,
            stop: Arc::default(),
            term_sent: Arc::default(),
        };
        let thread_done = Arc::clone(&done);
        let thread_stopper = stopper.clone();
        let hand_back = HandBack::default();
        let thread_hand_back = Arc::clone(&hand_back);
        let handle = thread::Builder::new()
            .name("replay-watch".into())
            .spawn(move || {
                watch(
                    tree,
                    limits,
                    interval,
                    thread_done,
                    interrupted,
                    thread_stopper,
                    gauge,
                    thread_hand_back,
                )
            })?;
        Ok(Watcher {
            done,
            handle,
            stopper,
            hand_back,
        })
    }

    /// Gives the tree's tasks and the tracer their CPUs back when `shared`
    /// ends (each still on the shared CPU), at the first sample past then.
    pub fn hand_back(&self, shared: super::affinity::Shared) {
        if let Ok(mut slot) = self.hand_back.lock() {
            *slot = Some(shared);
        }
        self.handle.thread().unpark();
    }

    /// A handle for other threads to stop the tool.
    pub fn stopper(&self) -> Stopper {
        self.stopper.clone()
    }

    /// Ends the watch (the tool has exited) and returns what was seen.
    pub fn finish(self) -> Watched {
        self.done.store(true, Ordering::SeqCst);
        // Wake it from its wait between samples, however long the
        // interval: ending a tool's watch must not wait for the next one.
        self.handle.thread().unpark();
        let mut watched = self.handle.join().unwrap_or_default();
        if watched.stop.is_none() {
            watched.stop = self.stopper.stopped();
        }
        watched
    }
}

#[allow(clippy::too_many_arguments)]
fn watch(
    tree: Tree,
    limits: ToolLimits,
    interval: Duration,
    done: Arc<AtomicBool>,
    interrupted: Arc<AtomicBool>,
    stopper: Stopper,
    gauge: Option<Arc<Gauge>>,
    hand_back: HandBack,
) -> Watched {
    let mut watched = Watched::default();
    while !done.load(Ordering::SeqCst) {
        let shared = hand_back.lock().ok().and_then(|slot| *slot);
        if let Some(shared) = shared.filter(|s| Instant::now() >= s.until) {
            for tid in tree.tasks() {
                shared.give_back(tid);
            }
            shared.give_back(shared.tracer);
            if let Ok(mut slot) = hand_back.lock() {
                *slot = None;
            }
        }
        let live = tree.pids();
        // A child between vfork (clang's posix_spawn) and exec runs in its
        // parent's address space: its RSS is the parent's pages, counted
        // once. Asked before the sample: a child only goes from sharing to
        // not (at its exec), so asking after could keep the parent's pages.
        let sum: u64 = live
            .iter()
            .filter(|pid| !shares_parents_memory(**pid, &live))
            .filter_map(|pid| resident_bytes(*pid))
            .sum();
        watched.samples += 1;
        watched.peak_tree_rss = watched.peak_tree_rss.max(sum);
        if let Some(gauge) = &gauge {
            gauge.rss.store(sum, Ordering::SeqCst);
            let budget = gauge.evict.load(Ordering::SeqCst);
            if budget > 0 {
                stopper.stop(|after_ms| Stop::Budget { budget, after_ms }, true);
            }
        }
        let elapsed = stopper.start.elapsed();
        if let Some(limit) = limits.max_rss {
            if sum > limit {
                stopper.stop(
                    |after_ms| Stop::Memory {
                        limit,
                        observed: sum,
                        after_ms,
                    },
                    true,
                );
            }
        }
        if let Some(timeout) = limits.timeout {
            if elapsed >= timeout {
                stopper.stop(
                    |after_ms| Stop::Timeout {
                        limit_ms: timeout.as_millis() as u64,
                        after_ms,
                    },
                    false,
                );
            }
        }
        if interrupted.load(Ordering::SeqCst) {
            stopper.stop(|after_ms| Stop::Interrupted { after_ms }, false);
        }
        stopper.escalate();
        // `finish` unparks; a spurious wake-up only samples early. The
        // hand-back is not kept waiting for a long interval.
        let until_hand_back = hand_back
            .lock()
            .ok()
            .and_then(|slot| *slot)
            .map(|s| s.until.saturating_duration_since(Instant::now()));
        thread::park_timeout(until_hand_back.map_or(interval, |left| left.min(interval)));
    }
    watched.stop = stopper.stopped();
    watched
}

/// The resident set of process `pid` in bytes, from `/proc/PID/statm` (its
/// second field, in pages): one small read a process a sample. `None` if
/// it is gone.
fn resident_bytes(pid: i32) -> Option<u64> {
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages.saturating_mul(page_size()))
}

/// The page size, asked once.
fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        // SAFETY: sysconf reads a constant of the system; no memory of ours.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        u64::try_from(size).ok().filter(|s| *s > 0).unwrap_or(4096)
    })
}

/// Whether `pid` runs in the address space of its parent, itself one of
/// `tree` (a vfork child before its exec).
fn shares_parents_memory(pid: i32, tree: &[i32]) -> bool {
    parent_of(pid)
        .filter(|p| tree.contains(p))
        .is_some_and(|parent| same_address_space(parent, pid))
}

/// Whether processes `a` and `b` run in one address space (`kcmp`).
fn same_address_space(a: i32, b: i32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp compares two kernel objects of the given pids and
    // touches no memory of ours; a gone pid or a refused permission is an
    // error return (then: not shared, so counted), never undefined
    // behaviour.
    let same = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a),
            libc::c_long::from(b),
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    same == 0
}

/// The parent of `pid` (`/proc/PID/stat`, the field after the name).
fn parent_of(pid: i32) -> Option<i32> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    rest.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_process_in_its_parents_address_space_is_left_out_of_the_sum() {
        let me = std::process::id() as i32;
        assert!(same_address_space(me, me), "kcmp answers here");
        // A child that has exec'd (posix_spawn returns after the exec)
        // has its own address space, and is counted.
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep");
        let pid = child.id() as i32;
        assert_eq!(parent_of(pid), Some(me));
        assert!(!same_address_space(me, pid));
        assert!(!shares_parents_memory(pid, &[me, pid]));
        let _ = child.kill();
        let _ = child.wait();
    }
}
