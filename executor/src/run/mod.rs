//! Running one tool: sandboxed, traced for exact memory, watched for
//! limits, its output passed through and kept.
//!
//! [`run_tool`] is the whole life of one command's process tree:
//! 1. the sandbox launcher starts `replay-sandbox` in its own process
//!    group (the double spawn; see [`crate::sandbox`]), which applies the
//!    sandbox layers and waits before it execs the tool, while the
//!    [`watch::Watcher`] starts sampling and [`capture`] threads pass the
//!    output through;
//! 2. the [`trace::Tracer`] attaches to it with ptrace, so every process of
//!    the tool's tree is followed from its first instruction;
//! 3. the launcher is told to exec the tool; the watcher enforces the
//!    limits;
//! 4. the tracer reads each process's `VmHWM` as it exits and reaps them.
//!
//! If ptrace is not permitted (some container runtimes forbid it), the tool
//! still runs, and the report says its exact peak is unavailable; what it
//! leaves running outside its process group is found through `replay`
//! being the subreaper ([`reap_orphans`]).

mod affinity;
pub mod capture;
pub mod netns;
mod observe;
pub mod trace;
pub mod watch;

use std::os::fd::AsFd;
use std::path::Path;
use std::process::Stdio;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::sandbox::{self, AppliedLayers, SandboxSpec};
use capture::{Capture, Captured, OutputBudget, Sink};
pub use observe::{Access, Denial, Stamp};
use trace::{ExecRule, ExitStatus, ProcessPeak, Tracer, Tree};
use watch::{Stop, ToolLimits, Watcher};

/// How to run one tool, beyond what the sandbox spec says.
#[derive(Clone)]
pub struct RunOptions {
    /// The `replay` binary to re-execute as the sandbox launcher.
    pub launcher: std::path::PathBuf,
    /// The limits the tool runs under.
    pub limits: ToolLimits,
    /// How often the watcher samples the tree.
    pub sample_interval: Duration,
    /// Prefix of each line of the tool's output.
    pub prefix: String,
    /// Where the tool's stdout goes.
    pub stdout: Sink,
    /// Where the tool's stderr goes.
    pub stderr: Sink,
    /// Set when `replay` is asked to stop.
    pub interrupted: Arc<AtomicBool>,
    /// Follow the tool's processes with ptrace (exact peaks, and every
    /// process known to kill). Off, or where ptrace is refused, only the
    /// sampled figures are reported and leftovers are found through
    /// [`reap_orphans`].
    pub trace: bool,
    /// When traced, the programs the tool's processes may exec after the
    /// tool itself; anything else is killed ([`trace::Tracer::seize`]).
    /// `None` judges nothing.
    pub may_exec: Option<Vec<ExecRule>>,
    /// In a parallel run: where the watcher posts the tree's RSS, and how
    /// the scheduler asks it to stop the tool for the memory budget.
    pub gauge: Option<Arc<watch::Gauge>>,
    /// When traced, told of each file the tool reads or runs as it happens
    /// (the cache hashes them while the tool runs).
    pub on_read: Option<trace::ReadHook>,
}

/// Everything measured about one tool run.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct Measurements {
    /// Wall time from launch to the last process's exit, in milliseconds.
    pub wall_ms: u64,
    /// User CPU of the tool and the children it waited for, in milliseconds.
    pub user_ms: u64,
    /// System CPU of the tool and the children it waited for, in ms.
    pub system_ms: u64,
    /// The largest process's own peak RSS (`VmHWM` at exit), if traced.
    pub peak_process: Option<ProcessPeak>,
    /// Every process's peak, if traced.
    pub processes: Vec<ProcessPeak>,
    /// The largest sampled sum of the tree's RSS, in bytes.
    pub peak_tree_rss_sampled: u64,
    /// How many samples the watcher took.
    pub samples: u64,
    /// The main process's `ru_maxrss` in bytes (inherited across exec:
    /// a cross-check only).
    pub ru_maxrss: u64,
}

/// How one tool run ended.
#[derive(Debug, Clone, serde::Serialize, schemars::JsonSchema)]
pub struct ToolOutcome {
    /// The main process's exit.
    pub exit: ExitStatus,
    /// The limit that stopped it, if one did.
    pub stop: Option<Stop>,
    /// The sandbox layers it ran under.
    pub layers: AppliedLayers,
    /// What was measured.
    pub measurements: Measurements,
    /// The tail of its stdout.
    pub stdout_tail: String,
    /// The tail of its stderr.
    pub stderr_tail: String,
    /// What the sandbox stopped its processes from doing (a program the
    /// policy does not list), as the tracer saw it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub denied: Vec<Denial>,
    /// The files its processes opened, ran or looked for: `None` when it
    /// was not traced (nothing was observed).
    #[serde(skip)]
    pub accessed: Option<trace::Accessed>,
    /// Its whole stdout, if it printed at most [`capture::WHOLE_BYTES`].
    #[serde(skip)]
    pub stdout: Option<Vec<u8>>,
    /// Its whole stderr, likewise.
    #[serde(skip)]
    pub stderr: Option<Vec<u8>>,
    /// When it was launched.
    #[serde(skip)]
    pub started_at: std::time::SystemTime,
}

impl ToolOutcome {
    /// True if the tool exited 0 and no limit stopped it.
    pub fn success(&self) -> bool {
        self.exit.success() && self.stop.is_none()
    }
}

/// Why a tool could not be run at all (as opposed to running and failing).
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The sandbox launcher could not start or set up the tool.
    #[error("cannot start the tool in its sandbox")]
    Sandbox(#[source] sandbox::SandboxError),
    /// Waiting for the tool's processes failed.
    #[error("lost track of the tool's processes")]
    Wait(#[source] std::io::Error),
    /// A helper thread could not be started.
    #[error("cannot start a thread to watch the tool")]
    Thread(#[source] std::io::Error),
}

/// Runs one tool to completion; see the module doc.
pub fn run_tool(spec: &SandboxSpec, options: &RunOptions) -> Result<ToolOutcome, RunError> {
    let _running = Running::enter();
    let started = Instant::now();
    let started_at = std::time::SystemTime::now();
    // A kept network namespace, only for a traced tool: the tracer is what
    // proves every process of the tool dead before the next one enters.
    let mut network = (options.trace && spec.network != sandbox::Want::Off)
        .then(|| netns::POOL.take())
        .flatten();
    let mut launch = sandbox::launch_joining(
        &options.launcher,
        spec,
        network.as_ref().map(AsFd::as_fd),
        Stdio::piped(),
        Stdio::piped(),
    )
    .map_err(RunError::Sandbox)?;
    let pid = launch.pid() as i32;
    // What an untraced tool leaves behind started no earlier than this.
    let launched_at = start_time(pid);
    let tree = Tree::default();
    // The launcher is known from the start: the watcher's limits reach it
    // while it sets up.
    tree.insert(pid);
    let watcher = Watcher::start(
        tree.clone(),
        pid,
        options.limits,
        options.sample_interval,
        Arc::clone(&options.interrupted),
        options.gauge.clone(),
    )
    .map_err(RunError::Thread)?;
    if let Some(gauge) = &options.gauge {
        gauge.attach(watcher.stopper());
    }
    let budget = OutputBudget::new(options.limits.max_output);
    let child = launch.child();
    let stdout = child.stdout.take();
    let stderr = child.stderr.take();
    let captures = [
        (
            stdout.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            &options.stdout,
        ),
        (
            stderr.map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            &options.stderr,
        ),
    ]
    .into_iter()
    .map(|(stream, sink)| {
        stream
            .map(|stream| {
                Capture::start(
                    stream,
                    options.prefix.clone(),
                    Arc::clone(sink),
                    budget.clone(),
                    watcher.stopper(),
                )
            })
            .transpose()
    })
    .collect::<Result<Vec<_>, _>>()
    .map_err(RunError::Thread)?;

    // The launcher sets up untraced (nothing can stop it meanwhile), and
    // the tracer attaches between its report and `go`, before the tool
    // execs. If ptrace is refused the tool runs untraced and only
    // sampled figures are reported.
    let prepared = launch.prepare();
    let mut tracer = prepared
        .is_ok()
        .then_some(options.trace)
        .filter(|trace| *trace)
        .and_then(|_| Tracer::seize(pid, tree.clone(), options.may_exec.clone()).ok())
        .map(|tracer| tracer.on_read(options.on_read.clone()));
    if tracer.is_none() {
        // Untraced, nothing proves the tool's processes gone: the
        // namespace is never handed to another tool.
        network = None;
    }
    if tracer.is_some() {
        launch.observe_calls();
    }
    // Alone, a traced tool starts on its tracer's CPU (see `affinity`;
    // the threads started above keep theirs); with other tools running,
    // each keeps the scheduler's choice.
    let shared = tracer
        .is_some()
        .then(running_alone)
        .filter(|alone| *alone)
        .and_then(|_| affinity::Shared::begin(pid));
    let _restore = shared.as_ref().map(|s| RestoreOnDrop(s.original));
    tracer = tracer.map(|t| t.share_cpu_until(shared));
    if let Some(shared) = shared {
        // On time, even if the tool makes no call the tracer sees.
        watcher.hand_back(shared);
    }
    // The tracer (this thread) must answer the tool's ptrace stops while
    // it waits for the exec.
    let launched = prepared.and_then(|layers| {
        match &mut tracer {
            Some(tracer) => {
                let tracer = std::cell::RefCell::new(tracer);
                launch.go_traced(&mut || tracer.borrow_mut().release_stops(), &mut || {
                    tracer.borrow().await_event()
                })
            }
            None => launch.go(),
        }
        .map(|()| layers)
    });
    let layers = match launched {
        Ok(layers) => layers,
        Err(error) => {
            // The tool never started: make sure the launcher is gone.
            tree.kill(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = match tracer {
                Some(tracer) => tracer.wait().map(|_| ()),
                None => launch.child().wait().map(|_| ()),
            };
            watcher.finish();
            return Err(RunError::Sandbox(error));
        }
    };

    let waited = match tracer {
        Some(tracer) => tracer.wait().map(|traced| {
            let trace::Traced {
                main,
                peaks,
                denied,
                accessed,
            } = traced;
            // The seccomp filter refuses `CLONE_UNTRACED`; should a process
            // have left the tracer's sight anyway, it dies here too, as an
            // untraced tool's leftovers do.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            // Fast path: every traced process is reaped by now, so a
            // process that escaped the tracer and lost its parent has come
            // back to `replay` (the subreaper) as a child; with no child at
            // all there is nothing to look for in `/proc`.
            if has_children() {
                reap_alone(launched_at.unwrap_or(u64::MAX));
            }
            // Every process of the tool is dead: its namespace is empty.
            if let Some(network) = network.take() {
                netns::POOL.give_back(network);
            }
            (
                main.status,
                main.user,
                main.system,
                main.ru_maxrss,
                peaks,
                denied,
                Some(accessed),
            )
        }),
        None => launch.child().wait().map(|status| {
            // Whatever it left behind dies with it: its process group (not
            // its pid, which is free for reuse now), and what left the
            // group and has come back to replay to be reaped.
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            reap_alone(launched_at.unwrap_or(u64::MAX));
            let exit = ExitStatus::from_std(status);
            (
                exit,
                Duration::ZERO,
                Duration::ZERO,
                0,
                Vec::new(),
                Vec::new(),
                None,
            )
        }),
    };
    // Stop the watcher on every path, so it never signals a stale group.
    let watched = watcher.finish();
    let (exit, user, system, ru_maxrss, processes, denied, accessed) =
        waited.map_err(RunError::Wait)?;
    let mut tails: Vec<Captured> = captures
        .into_iter()
        .map(|capture| capture.map(Capture::finish).unwrap_or_default())
        .collect();
    let stderr = tails.pop().unwrap_or_default();
    let stdout = tails.pop().unwrap_or_default();
    let peak_process = processes.iter().max_by_key(|p| p.bytes).cloned();
    Ok(ToolOutcome {
        exit,
        stop: watched.stop,
        layers,
        measurements: Measurements {
            wall_ms: started.elapsed().as_millis() as u64,
            user_ms: user.as_millis() as u64,
            system_ms: system.as_millis() as u64,
            peak_process,
            processes,
            peak_tree_rss_sampled: watched.peak_tree_rss,
            samples: watched.samples,
            ru_maxrss,
        },
        stdout_tail: stdout.tail,
        stderr_tail: stderr.tail,
        denied,
        accessed,
        stdout: stdout.whole,
        stderr: stderr.whole,
        started_at,
    })
}

/// Gives the calling thread its CPUs back when dropped.
struct RestoreOnDrop(affinity::Mask);

impl Drop for RestoreOnDrop {
    fn drop(&mut self) {
        affinity::restore(0, &self.0);
    }
}

/// Whether the calling thread's tool is the only one running.
fn running_alone() -> bool {
    RUNNING_TOOLS.lock().is_ok_and(|n| *n <= 1)
}

/// How many tools this process is running now (a parallel run has
/// several). The orphan reaper kills every descendant started since a
/// tool began, which is right only while no other tool runs.
static RUNNING_TOOLS: std::sync::Mutex<usize> = std::sync::Mutex::new(0);

/// One tool counted in [`RUNNING_TOOLS`] while it lives (or another
/// child the reaper must leave alone: the sandbox probe's, which another
/// session of the same process, a worker's other lease, may fork while
/// this one's tool ends).
pub(crate) struct Running;

impl Running {
    /// Counts one more child until the guard drops.
    pub(crate) fn enter() -> Running {
        if let Ok(mut n) = RUNNING_TOOLS.lock() {
            *n += 1;
        }
        Running
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(mut n) = RUNNING_TOOLS.lock() {
            *n = n.saturating_sub(1);
        }
    }
}

/// [`reap_orphans`] if this is the only tool running; with others
/// running, what escaped this one is left for [`reap_all_orphans`] when the
/// run ends. The count is held locked throughout, so no tool starts (its
/// launcher would look like an orphan) while this reaps.
fn reap_alone(since: u64) {
    if let Ok(n) = RUNNING_TOOLS.lock() {
        if *n <= 1 {
            reap_orphans(since);
        }
    }
}

/// At the end of a parallel run, with no tool running: kills whatever any
/// tool left behind (started since `since`).
pub fn reap_all_orphans(since: u64) {
    if let Ok(n) = RUNNING_TOOLS.lock() {
        if *n == 0 {
            reap_orphans(since);
        }
    }
}

/// Makes `replay` the reaper of orphaned descendants, so a tool's
/// grandchildren that outlive their parent come back to it to be reaped
/// rather than to init.
pub fn become_subreaper() -> nix::Result<()> {
    nix::sys::prctl::set_child_subreaper(true)
}

/// How long [`reap_orphans`] keeps killing what comes back to `replay`.
const REAP_DEADLINE: Duration = Duration::from_secs(5);

/// Kills and reaps what an untraced tool left running outside its process
/// group (a grandchild that called `setsid`): `replay`'s descendants that
/// started at or after `since`, the tool's launch ([`start_time`]). They
/// come to `replay`, the subreaper ([`become_subreaper`]), once their
/// parents are gone; each round kills every such descendant, whatever its
/// depth, until none is left or [`REAP_DEADLINE`] has passed. A child that
/// `replay` had before the tool (inherited across exec) and its own
/// children are left alone. (Traced, the tracer knows and kills every
/// process itself.)
pub fn reap_orphans(since: u64) {
    use nix::sys::signal::{kill, Signal};
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    use nix::unistd::Pid;
    let me = std::process::id() as i32;
    let deadline = Instant::now() + REAP_DEADLINE;
    loop {
        let doomed = descendants(me, since, &processes());
        for &pid in &doomed {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        // Reap whatever has died; what has not yet comes back next round.
        while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            if status == WaitStatus::StillAlive {
                break;
            }
        }
        if doomed.is_empty() || Instant::now() > deadline {
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Whether `replay` has any child, living or not yet reaped.
fn has_children() -> bool {
    // SAFETY: `siginfo_t` is plain data; zeroed is a valid initial value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to `info`, live for the call; `WNOWAIT`
    // leaves any child as it is (nothing is reaped).
    let waited = unsafe {
        libc::waitid(
            libc::P_ALL,
            0,
            &mut info,
            libc::WEXITED | libc::WSTOPPED | libc::WNOHANG | libc::WNOWAIT | libc::__WALL,
        )
    };
    // ECHILD: none at all. Anything else (a child, or an error): look.
    !(waited == -1 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD))
}

/// When process `pid` started, in clock ticks since boot (`/proc/PID/stat`
/// field 22), if it is there to ask.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_of(pid).map(|stat| stat.start)
}

/// What [`reap_orphans`] needs of a process.
struct ProcStat {
    pid: i32,
    ppid: i32,
    start: u64,
}

/// `/proc/PID/stat` of `pid`, read as bytes: the command name in it is
/// whatever bytes a process chose, and may hold `)`.
fn stat_of(pid: i32) -> Option<ProcStat> {
    let raw = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let close = raw.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(raw.get(close + 1..)?).ok()?;
    // Fields from the third (state) on: ppid is the fourth, start the 22nd.
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(ProcStat {
        pid,
        ppid: fields.get(1)?.parse().ok()?,
        start: fields.get(19)?.parse().ok()?,
    })
}

/// Every process on the machine, from `/proc`.
fn processes() -> Vec<ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter_map(stat_of)
        .collect()
}

/// The descendants of `root` in `table` that started at or after `since`,
/// reached only through such processes.
fn descendants(root: i32, since: u64, table: &[ProcStat]) -> Vec<i32> {
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for process in table {
            if process.ppid == parent && process.start >= since && !found.contains(&process.pid) {
                found.push(process.pid);
                frontier.push(process.pid);
            }
        }
    }
    found
}

/// The name of the launcher binary installed beside `replay`.
pub const LAUNCHER_NAME: &str = "replay-sandbox";

/// The path `replay` executes for the double spawn: `replay-sandbox` beside
/// the running `replay` (built and installed with it; it links only the
/// sandbox's child side, so each command starts it in about half the
/// time), else `replay` itself.
pub fn current_launcher() -> std::io::Result<std::path::PathBuf> {
    let me = std::env::current_exe().and_then(|p| Path::new(&p).canonicalize())?;
    Ok(launcher_beside(&me).unwrap_or(me))
}

/// The launcher binary in `exe`'s directory, if a regular executable file
/// is there (links resolved).
fn launcher_beside(exe: &Path) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let sibling = exe.parent()?.join(LAUNCHER_NAME).canonicalize().ok()?;
    let meta = std::fs::metadata(&sibling).ok()?;
    (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(sibling)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_launcher_beside_replay_is_used_only_if_it_is_an_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let exe = dir.path().join("replay");
        std::fs::write(&exe, b"").expect("write");
        assert_eq!(launcher_beside(&exe), None, "none there");
        let sibling = dir.path().join(LAUNCHER_NAME);
        std::fs::create_dir(&sibling).expect("mkdir");
        assert_eq!(launcher_beside(&exe), None, "a directory");
        std::fs::remove_dir(&sibling).expect("rmdir");
        std::fs::write(&sibling, b"").expect("write");
        assert_eq!(launcher_beside(&exe), None, "not executable");
        std::fs::set_permissions(&sibling, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let found = launcher_beside(&exe).expect("an executable file");
        assert_eq!(found, sibling.canonicalize().expect("canonical"));
    }

    fn process(pid: i32, ppid: i32, start: u64) -> ProcStat {
        ProcStat { pid, ppid, start }
    }

    #[test]
    fn descendants_are_found_at_any_depth_but_not_through_older_processes() {
        let table = [
            process(10, 1, 0),   // replay
            process(11, 10, 50), // inherited before the tool: left alone
            process(12, 11, 120),
            process(20, 10, 100), // the tool's orphan
            process(21, 20, 110),
            process(22, 21, 130),
            process(30, 1, 140), // someone else's
        ];
        let mut found = descendants(10, 100, &table);
        found.sort_unstable();
        assert_eq!(found, [20, 21, 22]);
    }

    #[test]
    fn this_process_has_a_start_time() {
        let me = std::process::id() as i32;
        let stat = stat_of(me).expect("reads its own stat");
        assert!(stat.ppid > 0);
        assert_eq!(start_time(me), Some(stat.start));
    }
}
