//! A tool that does what its command does not declare, for testing the
//! sandbox apart from any flag grammar: `hostile [--out=FILE]
//! [--beside=NAME] [--write=PATH]... [--read=PATH]... [--exec=PATH]...
//! [--chmod=PATH]... [--untraced] [--vm-write] [--connect=SOCKET]...
//! [--prlimit=PID]... [--netns] [--sleep-ms=N]`.
//!
//! It writes each `--out` FILE (a declared output), then a file NAME in
//! the same directory as the last `--out` (an undeclared side file, as a
//! `.pdb` or a map), then tries each action in order and prints one line
//! for each: `write PATH: done` or `write PATH: denied (ERROR)`, the same
//! for `read` and `exec` (which runs PATH and waits for it), `chmod` (makes
//! PATH setuid), `untraced` (starts a child with `CLONE_UNTRACED`, which
//! would leave a tracer's sight) and `vm-write` (writes its own memory
//! through `process_vm_writev`, as a process rewriting another's `argv[0]`
//! would), `connect` (connects to the Unix socket SOCKET) and `prlimit`
//! (sets the CPU limit of process PID to what it is, as it may of any
//! process of its user), `netns` (prints `netns NAMESPACE MICROS`, the
//! network namespace it is in and the time since the epoch) and `sleep-ms` (sleeps N ms). It exits 1 if any
//! action was denied, 0 otherwise.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut denied = false;
    let mut last_out = None;
    let mut report = |what: &str, path: &str, result: std::io::Result<()>| {
        match result {
            Ok(()) => println!("{what} {path}: done"),
            Err(error) => {
                println!("{what} {path}: denied ({error})");
                denied = true;
            }
        }
        let _ = std::io::stdout().flush();
    };
    for arg in &args {
        if let Some(path) = arg.strip_prefix("--out=") {
            report("out", path, std::fs::write(path, b"declared output\n"));
            last_out = Some(path.to_owned());
        } else if let Some(name) = arg.strip_prefix("--beside=") {
            let dir = last_out
                .as_deref()
                .and_then(|o| Path::new(o).parent())
                .unwrap_or(Path::new("."));
            let path = dir.join(name);
            report(
                "beside",
                name,
                std::fs::write(&path, b"undeclared side file\n"),
            );
        } else if let Some(path) = arg.strip_prefix("--write=") {
            let result = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .and_then(|mut file| file.write_all(b"written by hostile\n"));
            report("write", path, result);
        } else if let Some(path) = arg.strip_prefix("--read=") {
            report("read", path, std::fs::read(path).map(|_| ()));
        } else if let Some(path) = arg.strip_prefix("--chmod=") {
            use std::os::unix::fs::PermissionsExt;
            let result = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o4777));
            report("chmod", path, result);
        } else if arg == "--untraced" {
            report("untraced", "clone", untraced_child());
        } else if let Some(path) = arg.strip_prefix("--connect=") {
            let result = std::os::unix::net::UnixStream::connect(path).map(|_| ());
            report("connect", path, result);
        } else if let Some(pid) = arg.strip_prefix("--prlimit=") {
            report("prlimit", pid, set_cpu_limit(pid.parse().unwrap_or(0)));
        } else if arg == "--netns" {
            match std::fs::read_link("/proc/self/ns/net") {
                Ok(namespace) => println!(
                    "netns {} {}",
                    namespace.display(),
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.as_micros())
                        .unwrap_or(0)
                ),
                Err(error) => report("netns", "/proc/self/ns/net", Err(error)),
            }
        } else if let Some(ms) = arg.strip_prefix("--sleep-ms=") {
            std::thread::sleep(std::time::Duration::from_millis(ms.parse().unwrap_or(0)));
        } else if arg == "--vm-write" {
            report("vm-write", "self", vm_write());
        } else if let Some(path) = arg.strip_prefix("--exec=") {
            let result = std::process::Command::new(path)
                .status()
                .and_then(|status| match status.code() {
                    Some(0) => Ok(()),
                    _ => Err(std::io::Error::other(format!("it ended with {status}"))),
                });
            report("exec", path, result);
        }
    }
    if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// Starts a child with `CLONE_UNTRACED` that exits at once, and waits.
fn untraced_child() -> std::io::Result<()> {
    const CLONE_UNTRACED: libc::c_ulong = 0x0080_0000;
    // SAFETY: a raw `clone` with no new stack behaves as `fork` (the child
    // gets a copy of this single-threaded process) and the child only
    // calls `_exit`.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            CLONE_UNTRACED | libc::SIGCHLD as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            // SAFETY: leaves the child at once.
            unsafe { libc::_exit(0) }
        }
        child => {
            let mut status = 0;
            // SAFETY: waits for our own child; `status` outlives the call.
            unsafe { libc::waitpid(child as libc::pid_t, &mut status, 0) };
            Ok(())
        }
    }
}

/// Writes one byte of its own memory through `process_vm_writev`.
fn vm_write() -> std::io::Result<()> {
    let mut target = [0u8; 1];
    let source = [1u8; 1];
    let local = libc::iovec {
        iov_base: source.as_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    let remote = libc::iovec {
        iov_base: target.as_mut_ptr() as *mut libc::c_void,
        iov_len: 1,
    };
    // SAFETY: both vectors point at live one-byte buffers of this process.
    let written = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    if written == 1 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Sets the CPU limit of process `pid` to what it is (a change that harms
/// nothing, but that only a process allowed to set it can make).
fn set_cpu_limit(pid: libc::pid_t) -> std::io::Result<()> {
    let mut old = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: reads the limit into `old`, a live struct.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_CPU, std::ptr::null(), &mut old) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: sets the limit it just read; `old` outlives the call.
    if unsafe { libc::prlimit(pid, libc::RLIMIT_CPU, &old, std::ptr::null_mut()) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
