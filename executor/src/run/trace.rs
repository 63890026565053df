//! Exact per-process peak memory, from the kernel, with ptrace.
//!
//! `wait4`'s `ru_maxrss` is inherited across `exec` (a tool started by a
//! large parent would report the parent's peak) and says nothing of the
//! tool's own children; sampling misses short spikes. So the runner attaches
//! to the tool with `PTRACE_SEIZE` before it execs, follows every fork,
//! vfork and clone (`PTRACE_O_TRACEFORK` and friends), and at each process's
//! `PTRACE_EVENT_EXIT` stop (the process is exiting but its memory is still
//! mapped) reads `VmHWM` from `/proc/PID/status`: the kernel's own high-water
//! mark of that process's resident set, since its last exec.
//!
//! `PTRACE_O_EXITKILL` makes the kernel kill every tracee if `replay` dies,
//! so no tool outlives it, even on SIGKILL.
//!
//! All ptrace requests for a tracee must come from the thread that attached
//! it; [`Tracer`] is therefore used from a single thread, the one that runs
//! the tool. Signals meant for a tracee (a timeout's SIGTERM) stop it first
//! and are re-injected here, so they arrive as sent.

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::sys::ptrace;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use super::observe::{Access, Denial, Seen};

/// The peak of one process, read from the kernel as it exited.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct ProcessPeak {
    /// The process id.
    pub pid: i32,
    /// The kernel's name for it (`Name:` in `/proc/PID/status`).
    pub name: String,
    /// `VmHWM`: its peak resident set, in bytes.
    pub bytes: u64,
}

/// How the main process ended, and what the kernel counted for its tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MainExit {
    /// `WaitStatus` of the tool's main process.
    pub status: ExitStatus,
    /// User CPU of the process and the children it waited for.
    pub user: Duration,
    /// System CPU of the process and the children it waited for.
    pub system: Duration,
    /// `ru_maxrss` in bytes: inherited across exec, kept only as a
    /// cross-check of the exact figure.
    pub ru_maxrss: u64,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
}

impl ExitStatus {
    /// The same, from the standard library's status of a reaped child.
    pub fn from_std(status: std::process::ExitStatus) -> ExitStatus {
        use std::os::unix::process::ExitStatusExt;
        match (status.code(), status.signal()) {
            (Some(code), _) => ExitStatus::Code(code),
            (None, Some(signal)) => ExitStatus::Signal(signal),
            (None, None) => ExitStatus::Code(-1),
        }
    }

    /// True for exit code 0.
    pub fn success(self) -> bool {
        self == ExitStatus::Code(0)
    }
}

/// The processes of a tool's tree, shared with the sampler and the killer.
#[derive(Debug, Default, Clone)]
pub struct Tree {
    /// Every traced task: processes and their threads.
    live: Arc<Mutex<HashSet<i32>>>,
    /// The tasks of `live` that are threads of another process: their
    /// `/proc` entries show the whole process's memory, so they are not
    /// counted again.
    threads: Arc<Mutex<HashSet<i32>>>,
}

impl Tree {
    /// The live processes now (thread-group leaders, not their threads).
    pub fn pids(&self) -> Vec<i32> {
        let threads = self.threads.lock().map(|t| t.clone()).unwrap_or_default();
        self.live
            .lock()
            .map(|live| {
                live.iter()
                    .copied()
                    .filter(|t| !threads.contains(t))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Every live task: processes and their threads.
    pub(crate) fn tasks(&self) -> Vec<i32> {
        self.live
            .lock()
            .map(|live| live.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Adds a task; a thread of another process is noted as such.
    pub(crate) fn insert(&self, tid: i32) {
        if let Ok(mut live) = self.live.lock() {
            live.insert(tid);
        }
        let is_thread = read_status(tid).is_some_and(|status| status.tgid != tid);
        if is_thread {
            if let Ok(mut threads) = self.threads.lock() {
                threads.insert(tid);
            }
        }
    }

    fn remove(&self, tid: i32) -> bool {
        if let Ok(mut threads) = self.threads.lock() {
            threads.remove(&tid);
        }
        self.live
            .lock()
            .map(|mut live| {
                live.remove(&tid);
                live.is_empty()
            })
            .unwrap_or(true)
    }

    /// Sends `signal` to the tool's process group and to every process of
    /// the tree (a tool may have moved a child to another group).
    pub fn kill(&self, pgid: i32, signal: Signal) {
        let _ = nix::sys::signal::killpg(Pid::from_raw(pgid), signal);
        for pid in self.pids() {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }
}

/// A program a tool's processes may run: the canonical binary, and the
/// name it must be run as (`argv[0]`'s last component: one binary may be
/// several tools, as `lld` is `ld.lld` and `lld-link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRule {
    /// The canonical path of the binary.
    pub path: PathBuf,
    /// The name it is run as.
    pub name: String,
}

/// How many denials one tool's outcome keeps.
const MAX_DENIALS: usize = 64;

/// How many distinct files one tool's outcome records as accessed; past
/// it the record is incomplete (and the run is not cached).
pub const MAX_ACCESSES: usize = 50_000;

/// The files a tool's processes opened, ran or looked for.
#[derive(Debug, Clone, Default)]
pub struct Accessed {
    /// Each distinct access, in the order first seen.
    pub files: Vec<Access>,
    /// False if more than [`MAX_ACCESSES`] were seen (the rest are not
    /// listed).
    pub complete: bool,
}

/// What [`Tracer::wait`] saw of the whole tree.
#[derive(Debug)]
pub struct Traced {
    /// How the main process ended.
    pub main: MainExit,
    /// Each process's peak.
    pub peaks: Vec<ProcessPeak>,
    /// What the sandbox stopped.
    pub denied: Vec<Denial>,
    /// What the tree opened, ran or looked for.
    pub accessed: Accessed,
}

/// Told of each file a tool's processes open to read or run, as the
/// tracer first sees it (from the tracer's thread: it must return fast).
pub type ReadHook = std::sync::Arc<dyn Fn(&str) + Send + Sync>;

/// Follows one tool's process tree; see the module doc.
pub struct Tracer {
    main: i32,
    tree: Tree,
    peaks: HashMap<i32, ProcessPeak>,
    /// The programs the tree may run after the tool itself; `None` judges
    /// nothing.
    may_exec: Option<Vec<ExecRule>>,
    /// Whether the main process has made its first exec (the launcher
    /// becoming the tool replay chose).
    main_execd: bool,
    denied: Vec<Denial>,
    /// Observed calls between their seccomp stop and their exit.
    pending: HashMap<i32, super::observe::Pending>,
    /// Files accessed, and the set that keeps them distinct.
    accessed: Accessed,
    seen: HashSet<Access>,
    on_read: Option<ReadHook>,
    /// Until when the tree shares the tracer's CPU, and the CPUs to give
    /// back then ([`super::affinity`]).
    shared: Option<super::affinity::Shared>,
}

/// The options every tracee gets, and its children inherit.
fn options() -> ptrace::Options {
    ptrace::Options::PTRACE_O_TRACEEXIT
        | ptrace::Options::PTRACE_O_TRACEFORK
        | ptrace::Options::PTRACE_O_TRACEVFORK
        | ptrace::Options::PTRACE_O_TRACECLONE
        | ptrace::Options::PTRACE_O_TRACEEXEC
        | ptrace::Options::PTRACE_O_TRACESECCOMP
        | ptrace::Options::PTRACE_O_TRACESYSGOOD
        | ptrace::Options::PTRACE_O_EXITKILL
}

impl Tracer {
    /// Attaches to `pid` (which must not have exec'd the tool yet) without
    /// stopping it.
    ///
    /// With `may_exec`, every `execve` in the tree after the tool's own is
    /// judged at its `PTRACE_EVENT_EXEC` stop (the new program is loaded
    /// but has not run an instruction): a program not listed kills the
    /// whole tree and is recorded as a [`Denial`].
    pub fn seize(
        pid: i32,
        tree: Tree,
        may_exec: Option<Vec<ExecRule>>,
    ) -> Result<Tracer, nix::Error> {
        ptrace::seize(Pid::from_raw(pid), options())?;
        tree.insert(pid);
        Ok(Tracer {
            main: pid,
            tree,
            peaks: HashMap::new(),
            may_exec,
            main_execd: false,
            denied: Vec::new(),
            pending: HashMap::new(),
            accessed: Accessed {
                files: Vec::new(),
                complete: true,
            },
            seen: HashSet::new(),
            on_read: None,
            shared: None,
        })
    }

    /// Tells `hook` of each file the tree opens to read or runs, found
    /// there, once each.
    pub fn on_read(mut self, hook: Option<ReadHook>) -> Tracer {
        self.on_read = hook;
        self
    }

    /// Gives the tree and this thread their CPUs back when `shared` ends.
    pub(crate) fn share_cpu_until(mut self, shared: Option<super::affinity::Shared>) -> Tracer {
        self.shared = shared;
        self
    }

    /// Once the time to share a CPU is over: every task of the tree still
    /// on the shared CPU, and this thread, get their CPUs back (a task
    /// that starts later inherits them from its parent). The watcher does
    /// the same on time; this catches a task whose start the tracer had
    /// not yet seen then.
    fn end_sharing(&mut self) {
        let Some(shared) = self.shared else {
            return;
        };
        if std::time::Instant::now() < shared.until {
            return;
        }
        self.shared = None;
        for tid in self.tree.tasks() {
            shared.give_back(tid);
        }
        shared.give_back(shared.tracer);
    }

    fn access(&mut self, access: Access) {
        if !self.accessed.complete || self.seen.contains(&access) {
            return;
        }
        if self.accessed.files.len() >= MAX_ACCESSES {
            self.accessed.complete = false;
            return;
        }
        if let Some(hook) = &self.on_read {
            if access.found && matches!(access.action, "read" | "exec") {
                hook(&access.path);
            }
        }
        self.seen.insert(access.clone());
        self.accessed.files.push(access);
    }

    fn deny(&mut self, denial: Denial) {
        if self.denied.len() < MAX_DENIALS {
            self.denied.push(denial);
        }
    }

    /// Judges the program `pid` has just exec'd; a refused one kills the
    /// tree. Returns whether it may run.
    fn judge_exec(&mut self, pid: i32) -> bool {
        if pid == self.main && !self.main_execd {
            // The launcher becoming the tool: replay's own choice, judged
            // by the policy before the run.
            self.main_execd = true;
            return true;
        }
        let Some(allowed) = &self.may_exec else {
            return true;
        };
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
        let argv0 = String::from_utf8_lossy(argv.first().copied().unwrap_or_default());
        let name = argv0.rsplit('/').next().unwrap_or_default().to_owned();
        // `lld -flavor NAME` picks its tool by argument, whatever its name.
        let flavor = argv.get(1).is_some_and(|a| *a == b"-flavor");
        let verdict = match &exe {
            Some(exe) if !flavor => allowed.iter().any(|r| &r.path == exe && r.name == name),
            _ => false,
        };
        if !verdict {
            let path = exe
                .as_ref()
                .map(|e| e.display().to_string())
                .unwrap_or_else(|| "(unknown binary)".into());
            let detail = if flavor {
                format!("`{path}` run as `{name}` with `-flavor`, which picks another tool")
            } else {
                format!("`{path}` run as `{name}` is not a program the policy lets this tool run")
            };
            self.deny(Denial {
                pid,
                action: "exec",
                path,
                detail,
                by: "tracer",
            });
            self.tree.kill(self.main, Signal::SIGKILL);
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        verdict
    }

    /// Lets the main process out of any ptrace stop it is in, delivering
    /// the signal that stopped it, without reaping it: for the window
    /// before the tool runs, while another thread talks to the launcher.
    /// Without this, a signal to the launcher (SIGTERM from an interrupt,
    /// or SIGKILL, which stops it at its exit event) waited for this
    /// thread, which was blocked reading the launcher's pipe: a deadlock.
    pub fn release_stops(&mut self) {
        loop {
            // Only stops are asked for (no WEXITED), so nothing is reaped.
            let Some(info) = self.waitid_main(libc::WSTOPPED | libc::WNOHANG) else {
                return;
            };
            // SAFETY: `waitid` returned 0, so `info` is a filled-in
            // SIGCHLD record (or zeroed if no child changed state).
            if unsafe { info.si_pid() } == 0 {
                return;
            }
            // SAFETY: as above; `si_status` is the stopping signal, with
            // a ptrace event (the exit event) in its second byte.
            let status = unsafe { info.si_status() };
            let signal = status & 0x7f;
            // A quick tool can exit (or fork) before the launcher's setup
            // call returns: what `wait` records of these events is
            // recorded here. Regression: the exact peak of a tool that
            // exited in this window was lost.
            match status >> 8 {
                libc::PTRACE_EVENT_EXIT => self.record_peak(self.main),
                libc::PTRACE_EVENT_EXEC => {
                    self.judge_exec(self.main);
                }
                libc::PTRACE_EVENT_FORK | libc::PTRACE_EVENT_VFORK | libc::PTRACE_EVENT_CLONE => {
                    if let Ok(child) = ptrace::getevent(Pid::from_raw(self.main)) {
                        self.tree.insert(child as i32);
                    }
                }
                _ => {}
            }
            // SIGTRAP is an event stop; others are signals to deliver as
            // they would have been.
            let deliver = if signal == libc::SIGTRAP {
                None
            } else {
                nix::sys::signal::Signal::try_from(signal).ok()
            };
            if ptrace::cont(Pid::from_raw(self.main), deliver).is_err() {
                return;
            }
        }
    }

    /// Blocks until the main process is in a stop or has exited, consuming
    /// nothing ([`Tracer::release_stops`] answers the stop; the exit is
    /// reaped by [`Tracer::wait`]).
    pub fn await_event(&self) {
        // `WNOWAIT` leaves the stop or the exit to be waited for again.
        let _ = self.waitid_main(libc::WSTOPPED | libc::WEXITED | libc::WNOWAIT);
    }

    /// `waitid` on the main process with `flags` (and `__WALL`), retried
    /// on EINTR: its record, or `None` on an error. (With `WNOHANG` and
    /// nothing to report, the record's `si_pid` is 0.)
    fn waitid_main(&self, flags: libc::c_int) -> Option<libc::siginfo_t> {
        loop {
            // SAFETY: `siginfo_t` is plain data the kernel fills in; zeroed
            // is a valid initial value (and `si_pid` stays 0 if nothing is
            // reported).
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            // SAFETY: a valid pointer to `info`, live for the call.
            let waited = unsafe {
                libc::waitid(
                    libc::P_PID,
                    self.main as libc::id_t,
                    &mut info,
                    flags | libc::__WALL,
                )
            };
            if waited == 0 {
                return Some(info);
            }
            if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return None;
            }
        }
    }

    /// Handles ptrace stops and exits until the main process and every
    /// process it started are gone; returns how the main process ended and
    /// the peak of each process that ran (by thread-group id).
    pub fn wait(mut self) -> io::Result<Traced> {
        let mut main_exit = None;
        loop {
            let mut status = 0;
            // SAFETY: `rusage` is plain data that the kernel fills in; a
            // zeroed value is a valid initial state.
            let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: valid pointers to a status int and a rusage struct,
            // both live for the call.
            // `__WNOTHREAD`: only this thread's tracees and children. In a
            // parallel run each tool has its own tracer thread, and a wait
            // on any child would take another tool's events.
            let pid = unsafe {
                libc::wait4(
                    -1,
                    &mut status,
                    libc::__WALL | libc::__WNOTHREAD,
                    &mut rusage,
                )
            };
            if pid < 0 {
                let error = io::Error::last_os_error();
                match error.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    // No tracee and no child left.
                    Some(libc::ECHILD) => break,
                    _ => return Err(error),
                }
            }
            let status = WaitStatus::from_raw(Pid::from_raw(pid), status)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            match status {
                WaitStatus::PtraceEvent(pid, _, event) if event == libc::PTRACE_EVENT_EXIT => {
                    self.record_peak(pid.as_raw());
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::PtraceEvent(pid, _, event) if event == libc::PTRACE_EVENT_SECCOMP => {
                    // A call the sandbox may refuse: note it, and stop
                    // again at its exit to see whether it was refused.
                    match super::observe::entry(pid.as_raw()) {
                        Some(pending) => {
                            self.pending.insert(pid.as_raw(), pending);
                            if ptrace::syscall(pid, None).is_err() {
                                self.pending.remove(&pid.as_raw());
                            }
                        }
                        None => {
                            let _ = ptrace::cont(pid, None);
                        }
                    }
                }
                WaitStatus::PtraceEvent(pid, _, event) if event == libc::PTRACE_EVENT_EXEC => {
                    self.judge_exec(pid.as_raw());
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::PtraceEvent(pid, _, event)
                    if event == libc::PTRACE_EVENT_FORK
                        || event == libc::PTRACE_EVENT_VFORK
                        || event == libc::PTRACE_EVENT_CLONE =>
                {
                    if let Ok(child) = ptrace::getevent(pid) {
                        self.tree.insert(child as i32);
                        if main_exit.is_some() {
                            // Regression (review): a process forked as the
                            // main one exited was not in the tree the exit
                            // killed, and ran on. Everything dies with it.
                            let _ = nix::sys::signal::kill(
                                Pid::from_raw(child as i32),
                                Signal::SIGKILL,
                            );
                        }
                    }
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::PtraceEvent(pid, _, _) => {
                    // PTRACE_EVENT_STOP: a new child's first stop, or a
                    // group-stop. Tools get no job control here: resume
                    // (after the main process exited: kill, as above).
                    self.tree.insert(pid.as_raw());
                    if main_exit.is_some() {
                        let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
                    }
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::Stopped(pid, signal) => {
                    // A signal on its way to the tracee: deliver it.
                    let _ = ptrace::cont(pid, Some(signal));
                }
                WaitStatus::PtraceSyscall(pid) => {
                    if let Some(pending) = self.pending.remove(&pid.as_raw()) {
                        match super::observe::exit(pid.as_raw(), pending) {
                            Some(Seen::Denied(denial)) => self.deny(denial),
                            Some(Seen::Accessed(access)) => self.access(access),
                            None => {}
                        }
                    }
                    let _ = ptrace::cont(pid, None);
                }
                WaitStatus::Exited(pid, code) => {
                    if pid.as_raw() == self.main {
                        main_exit = Some(main_exit_of(ExitStatus::Code(code), &rusage));
                        // Whatever the tool left running dies with it.
                        self.tree.kill(self.main, Signal::SIGKILL);
                    }
                    if self.tree.remove(pid.as_raw()) && main_exit.is_some() {
                        break;
                    }
                }
                WaitStatus::Signaled(pid, signal, _) => {
                    if pid.as_raw() == self.main {
                        main_exit = Some(main_exit_of(ExitStatus::Signal(signal as i32), &rusage));
                        self.tree.kill(self.main, Signal::SIGKILL);
                    }
                    if self.tree.remove(pid.as_raw()) && main_exit.is_some() {
                        break;
                    }
                }
                WaitStatus::Continued(_) | WaitStatus::StillAlive => {}
            }
            // After the event: a task it added (a clone) is in the tree.
            self.end_sharing();
        }
        let main_exit = main_exit.ok_or_else(|| {
            io::Error::other("the tool's process vanished without an exit status")
        })?;
        let mut peaks: Vec<ProcessPeak> = self.peaks.into_values().collect();
        peaks.sort_by_key(|peak| peak.pid);
        Ok(Traced {
            main: main_exit,
            peaks,
            denied: self.denied,
            accessed: self.accessed,
        })
    }

    /// Reads the exiting task's `VmHWM` and keeps the largest per process.
    fn record_peak(&mut self, tid: i32) {
        let Some(status) = read_status(tid) else {
            return;
        };
        let entry = self.peaks.entry(status.tgid).or_insert(ProcessPeak {
            pid: status.tgid,
            name: status.name.clone(),
            bytes: 0,
        });
        if status.vm_hwm >= entry.bytes {
            entry.bytes = status.vm_hwm;
            entry.name = status.name;
        }
    }
}

fn main_exit_of(status: ExitStatus, rusage: &libc::rusage) -> MainExit {
    let duration = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec.max(0) as u64) + Duration::from_micros(t.tv_usec.max(0) as u64)
    };
    MainExit {
        status,
        user: duration(rusage.ru_utime),
        system: duration(rusage.ru_stime),
        // Linux reports ru_maxrss in KiB.
        ru_maxrss: (rusage.ru_maxrss.max(0) as u64) * 1024,
    }
}

/// The fields of `/proc/PID/status` the tracer needs.
pub(crate) struct Status {
    pub(crate) tgid: i32,
    pub(crate) name: String,
    pub(crate) vm_hwm: u64,
}

/// `replay`'s own peak RSS so far (its `VmHWM`), in bytes; 0 if unknown.
pub(crate) fn own_peak_rss() -> u64 {
    read_status(std::process::id() as i32).map_or(0, |status| status.vm_hwm)
}

/// Reads `/proc/PID/status`; `None` once the process has no memory (a
/// zombie) or is gone.
pub(crate) fn read_status(pid: i32) -> Option<Status> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_status(&text)
}

fn parse_status(text: &str) -> Option<Status> {
    let mut tgid = None;
    let mut name = String::new();
    let mut vm_hwm = None;
    for line in text.lines() {
        if let Some(value) = line.strip_prefix("Name:") {
            name = value.trim().to_owned();
        } else if let Some(value) = line.strip_prefix("Tgid:") {
            tgid = value.trim().parse().ok();
        } else if let Some(value) = line.strip_prefix("VmHWM:") {
            vm_hwm = value
                .trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
                .map(|kib| kib * 1024);
        }
    }
    Some(Status {
        tgid: tgid?,
        name,
        vm_hwm: vm_hwm?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_gives_the_high_water_mark_in_bytes() {
        let text = "Name:\topt\nUmask:\t0022\nState:\tR (running)\nTgid:\t4242\nPid:\t4243\nVmPeak:\t  20000 kB\nVmHWM:\t   1536 kB\nVmRSS:\t   1024 kB\n";
        let status = parse_status(text).expect("parses");
        assert_eq!(status.tgid, 4242);
        assert_eq!(status.name, "opt");
        assert_eq!(status.vm_hwm, 1536 * 1024);
    }

    #[test]
    fn a_zombie_without_memory_has_no_status() {
        assert!(parse_status("Name:\tx\nTgid:\t1\nState:\tZ (zombie)\n").is_none());
    }
}
