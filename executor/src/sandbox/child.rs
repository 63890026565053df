//! The `replay __sandbox-exec` side of the double spawn: read the spec,
//! apply the layers, report, wait for `go`, exec the tool
//! ([`child_main`]).
//!
//! This process is single-threaded ordinary Rust, so it may allocate, use the
//! `landlock` crate, and `unshare` a user namespace; everything it applies
//! binds itself and, through `execve`, the tool.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;

use nix::fcntl::{fcntl, FcntlArg, FdFlag};
use nix::sys::signal::{self, SigHandler, SigSet, SigmaskHow, Signal};
use nix::sys::stat::{fstat, SFlag};

use super::kernel::LinuxKernel;
use super::layers::apply_layers;
use super::protocol::{read_line, to_line, ExecFailure, Report, SetupFailure, MAX_LINE};
use super::spec::SandboxSpec;
use super::{
    CHILD_ARG, CONTROL_FD, EXIT_EXEC_FAILED, EXIT_REFUSED, GO, GO_OBSERVED, NETNS_FD, REPORT_FD,
};

/// The tool, ready for `execve`.
struct Prepared {
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    /// Install the seccomp filter.
    seccomp: bool,
    /// With it, refuse sockets (the network is cut off).
    refuse_sockets: bool,
}

/// Runs the sandbox child: call it first thing in `main` when `argv[1]` is
/// [`CHILD_ARG`], before anything opens a file. Returns only on failure.
pub fn child_main() -> ExitCode {
    let Some((control, mut report)) = take_protocol_fds() else {
        eprintln!(
            "error: `replay {CHILD_ARG}` is internal to `replay`: it needs its control socket as its stdin"
        );
        return ExitCode::from(EXIT_REFUSED);
    };
    let number = |at: usize| {
        std::env::args_os()
            .nth(at)
            .and_then(|arg| arg.to_str().and_then(|s| s.parse::<u32>().ok()))
    };
    let expected_parent = number(2);
    // A network namespace to enter, if the parent passed one; used only if
    // the spec asks, and closed before the tool runs either way.
    let network = expected_parent
        .zip(number(3))
        .and_then(|(parent, fd)| take_network_fd(parent, fd));
    // Descriptors leaked into `replay` by whoever started it must not reach
    // the tool: Landlock checks opens, not descriptors already open.
    close_inherited_fds();
    let mut control = BufReader::new(control);

    let tool = match prepare(&mut control, expected_parent, network) {
        Ok((tool, applied)) => {
            if send(&mut report, &Report::Applied(applied)).is_err() {
                // The parent is gone; it will never say `go`.
                return ExitCode::from(EXIT_REFUSED);
            }
            tool
        }
        Err(report_line) => {
            // Best effort: a parent that went away cannot read it anyway.
            let _ = send(&mut report, &report_line);
            return ExitCode::from(EXIT_REFUSED);
        }
    };

    // The parent may PTRACE_SEIZE us now; it says `go` when it is ready.
    let observe = match read_line(&mut control, GO_OBSERVED.len() as u64) {
        Ok(Some(line)) if line == GO => false,
        Ok(Some(line)) if line == GO_OBSERVED => true,
        // EOF or anything else: the parent gave up on this tool.
        _ => return ExitCode::from(EXIT_REFUSED),
    };

    let errno = exec(&tool, control.get_ref(), &report, observe);
    let failure = ExecFailure {
        exec_error: format!(
            "cannot execute `{}`: {}",
            tool.program.to_string_lossy(),
            errno.desc()
        ),
        errno: Some(errno as i32),
    };
    let _ = send(&mut report, &failure);
    ExitCode::from(EXIT_EXEC_FAILED)
}

/// Takes the control socket `launch` gave as stdin: moved to
/// [`CONTROL_FD`] (to read) and [`REPORT_FD`] (to write), both
/// close-on-exec, and stdin becomes `/dev/null` (the tool's). `None` if
/// stdin is not a socket (not started by `replay`).
fn take_protocol_fds() -> Option<(File, File)> {
    let is_socket = fstat(std::io::stdin().as_fd())
        .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFSOCK)
        .unwrap_or(false);
    if !is_socket {
        return None;
    }
    // SAFETY: dup3 and open make new descriptors and touch no memory of
    // ours; `child_main` runs first in `main`, before any code could own
    // a descriptor, so nothing else owns 0, 3 or 4, which these replace.
    // Each new descriptor is owned exactly once below.
    unsafe {
        if libc::dup3(0, CONTROL_FD, libc::O_CLOEXEC) == -1
            || libc::dup3(CONTROL_FD, REPORT_FD, libc::O_CLOEXEC) == -1
        {
            return None;
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if null == -1 || libc::dup2(null, 0) == -1 {
            return None;
        }
        libc::close(null);
        Some((
            File::from(OwnedFd::from_raw_fd(CONTROL_FD)),
            File::from(OwnedFd::from_raw_fd(REPORT_FD)),
        ))
    }
}

/// Opens again the network namespace the parent holds at descriptor `fd`
/// (through its `/proc` entry, if it is still our parent), placed at
/// [`NETNS_FD`], close-on-exec so it can never reach the tool.
fn take_network_fd(parent: u32, fd: u32) -> Option<OwnedFd> {
    if std::os::unix::process::parent_id() != parent {
        return None;
    }
    let opened = OwnedFd::from(File::open(format!("/proc/{parent}/fd/{fd}")).ok()?);
    if opened.as_raw_fd() == NETNS_FD {
        return Some(opened);
    }
    // SAFETY: dup3 makes a new descriptor at NETNS_FD, which nothing in
    // this process owns (`child_main` runs first in `main`; only 3 and 4
    // are taken), and touches no memory of ours.
    unsafe {
        if libc::dup3(opened.as_raw_fd(), NETNS_FD, libc::O_CLOEXEC) == -1 {
            return None;
        }
        Some(OwnedFd::from_raw_fd(NETNS_FD))
    }
}

/// Closes every descriptor above the protocol socket and [`NETNS_FD`].
fn close_inherited_fds() {
    let first = NETNS_FD as u32 + 1;
    // SAFETY: close_range touches no memory. It closes descriptors no Rust
    // value in this process owns: `child_main` runs first in `main`, and
    // the only descriptors it has taken are 3 and 4, below `first`.
    let closed = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if closed == 0 {
        return;
    }
    // Kernels before 5.9 have no close_range: list /proc/self/fd instead.
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > NETNS_FD)
        .collect();
    for fd in fds {
        // SAFETY: as above; the directory's own descriptor is already closed
        // (its ReadDir was dropped), so close just fails with EBADF there.
        unsafe { libc::close(fd) };
    }
}

/// Reads the spec, applies the layers, enters `cwd`: everything before the
/// report. An `Err` is the report line to send instead.
fn prepare(
    control: &mut BufReader<File>,
    expected_parent: Option<u32>,
    network: Option<OwnedFd>,
) -> Result<(Prepared, super::spec::AppliedLayers), Report> {
    let line = read_line(control, MAX_LINE)
        .map_err(|e| setup("read the spec", &e))?
        .ok_or_else(|| setup_msg("read the spec", "the parent closed the control pipe"))?;
    let spec: SandboxSpec =
        serde_json::from_str(&line).map_err(|e| setup_msg("parse the spec", e))?;
    // Convert before applying layers: a bad argument is the caller's bug,
    // and is reported as such rather than as an exec failure.
    let tool = Prepared::from_spec(&spec)?;
    let expected_parent = expected_parent.filter(|_| spec.parent_death_signal);
    let mut kernel = LinuxKernel {
        network: network.filter(|_| spec.join_network),
    };
    let applied = apply_layers(&spec, &mut kernel, expected_parent).map_err(Report::Refused)?;
    // The namespace's descriptor is closed here: the tool never holds it.
    drop(kernel);
    std::env::set_current_dir(&spec.cwd).map_err(|e| {
        setup(
            &format!("enter the working directory `{}`", spec.cwd.display()),
            &e,
        )
    })?;
    Ok((tool, applied))
}

impl Prepared {
    fn from_spec(spec: &SandboxSpec) -> Result<Self, Report> {
        if !spec.program.is_absolute() {
            return Err(setup_msg(
                "check the program",
                format!("`{}` is not an absolute path", spec.program.display()),
            ));
        }
        let c = |what: &str, bytes: &[u8]| {
            CString::new(bytes).map_err(|_| {
                setup_msg("check the arguments", format!("{what} contains a NUL byte"))
            })
        };
        let program = c("the program path", spec.program.as_os_str().as_bytes())?;
        let mut argv = vec![c("argv[0]", spec.argv0.as_bytes())?];
        for (i, arg) in spec.args.iter().enumerate() {
            argv.push(c(&format!("argument {}", i + 1), arg.as_bytes())?);
        }
        let mut envp = Vec::with_capacity(spec.env.len());
        for (key, value) in &spec.env {
            if key.is_empty() || key.contains('=') {
                return Err(setup_msg(
                    "check the environment",
                    format!("`{key}` is not a valid variable name"),
                ));
            }
            envp.push(c(
                &format!("variable `{key}`"),
                format!("{key}={value}").as_bytes(),
            )?);
        }
        Ok(Prepared {
            program,
            argv,
            envp,
            seccomp: spec.seccomp,
            refuse_sockets: spec.network != super::spec::Want::Off,
        })
    }
}

/// Hands the process over to the tool; returns only the error of `execve`.
fn exec(tool: &Prepared, control: &File, report: &File, observe: bool) -> nix::errno::Errno {
    for fd in [control.as_fd(), report.as_fd()] {
        // The exec closes the pipes: that EOF tells the parent it succeeded.
        if let Err(e) = fcntl(fd, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC)) {
            return e;
        }
    }
    // The Rust runtime ignores SIGPIPE; a tool expects the default. And no
    // signal stays blocked across the exec.
    // SAFETY: installing SIG_DFL runs no handler code of ours, so no
    // async-signal-safety question arises; the process is single-threaded.
    if let Err(e) = unsafe { signal::signal(Signal::SIGPIPE, SigHandler::SigDfl) } {
        return e;
    }
    if let Err(e) = signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None) {
        return e;
    }
    drop_capabilities();
    // Last, so nothing above is filtered. The observed calls stop at the
    // tracer only when the parent asked and a tracer is attached: with
    // none, they would fail.
    if tool.seccomp {
        let observe = observe && super::seccomp::is_traced();
        if let Err(error) = super::seccomp::install(observe, tool.refuse_sockets) {
            return nix::errno::Errno::from_raw(error.raw_os_error().unwrap_or(libc::EPERM));
        }
    }
    match nix::unistd::execve(&tool.program, &tool.argv, &tool.envp) {
        Err(errno) => errno,
        Ok(never) => match never {},
    }
}

/// Makes sure the tool holds no capability, even when `replay` runs as
/// root (which Landlock does not confine: loading a module, raw I/O): an
/// empty bounding set means `execve` grants root none, and no ambient ones
/// are kept. Unprivileged, there is nothing to drop (and no right to).
fn drop_capabilities() {
    // SAFETY: `prctl` with integer arguments only; clearing the ambient
    // set cannot fail in a way that matters here.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
    }
    let last = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|text| text.trim().parse::<libc::c_ulong>().ok())
        .unwrap_or(63);
    for capability in 0..=last {
        // SAFETY: as above; without `CAP_SETPCAP` this fails with `EPERM`,
        // and an unprivileged process has no capability to lose.
        unsafe {
            libc::prctl(libc::PR_CAPBSET_DROP, capability, 0, 0, 0);
        }
    }
}

fn send(report: &mut File, message: &impl serde::Serialize) -> io::Result<()> {
    let line = to_line(message).map_err(io::Error::other)?;
    report.write_all(&line)
}

fn setup(step: &str, error: &io::Error) -> Report {
    Report::SetupFailed(SetupFailure {
        step: step.to_owned(),
        message: error.to_string(),
        errno: error.raw_os_error(),
    })
}

fn setup_msg(step: &str, message: impl std::fmt::Display) -> Report {
    Report::SetupFailed(SetupFailure {
        step: step.to_owned(),
        message: message.to_string(),
        errno: None,
    })
}
