//! What this machine's sandbox can do ([`probe`]), so `replay` can report
//! it, or refuse a policy's `require` up front, before any tool runs.

use std::ffi::CString;
use std::io;

use super::kernel::{TCP_ABI, TESTED_ABI};
use super::spec::{AppliedLayers, Enforcement, LandlockLayer, Layer, Skipped};

/// Probes the layers a tool would get if every layer were wanted.
///
/// Landlock is asked for its ABI version; namespaces are tried for real in
/// a forked child that exits at once. Call it before tools run: it forks
/// and reaps one short-lived child of its own.
pub fn probe() -> AppliedLayers {
    let mut layers = AppliedLayers {
        // prctl and setrlimit exist on every kernel Landlock needs.
        parent_death_signal: true,
        no_new_privs: true,
        rlimits: true,
        ..AppliedLayers::default()
    };
    match landlock_abi() {
        Ok(abi) => {
            layers.landlock = Some(LandlockLayer {
                abi,
                enforcement: if abi >= TESTED_ABI as u32 {
                    Enforcement::Full
                } else {
                    Enforcement::Partial
                },
                tcp_denied: abi >= TCP_ABI,
            })
        }
        Err(reason) => layers.skipped.push(Skipped {
            layer: Layer::Landlock,
            reason,
        }),
    }
    match network_namespace() {
        Ok(user_namespace) => {
            layers.network_namespace = true;
            layers.user_namespace = user_namespace;
        }
        Err(reason) => layers.skipped.push(Skipped {
            layer: Layer::Network,
            reason,
        }),
    }
    layers
}

/// The kernel's Landlock ABI version.
fn landlock_abi() -> Result<u32, String> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: with a null attribute, size 0 and the VERSION flag, the call
    // only returns the ABI version (or -1 and errno); it reads no memory.
    let version = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if version >= 1 {
        return u32::try_from(version).map_err(|_| format!("landlock reported ABI {version}"));
    }
    let error = io::Error::last_os_error();
    Err(match error.raw_os_error() {
        Some(libc::EOPNOTSUPP) => {
            "the kernel has landlock but it is not enabled (add `landlock` to the `lsm=` boot parameter)".into()
        }
        Some(libc::ENOSYS) => {
            "the kernel has no landlock (needs linux 5.13 or later built with `CONFIG_SECURITY_LANDLOCK`)".into()
        }
        _ => format!("cannot query landlock: {error}"),
    })
}

/// Exit codes of the probing child.
const NETNS: i32 = 0;
const USERNS: i32 = 1;
const MAP_FAILED: i32 = 2;
/// Added to the errno of the user-namespace `unshare`.
const UNSHARE_FAILED: i32 = 10;

/// Whether a network namespace can be made: `Ok(true)` if it needs a user
/// namespace (unprivileged), `Err` with the reason if neither works.
fn network_namespace() -> Result<bool, String> {
    // Everything the child needs is built before the fork: after it, in a
    // possibly multi-threaded process, the child may not allocate.
    let (Ok(setgroups), Ok(uid_map), Ok(gid_map)) = (
        CString::new("/proc/self/setgroups"),
        CString::new("/proc/self/uid_map"),
        CString::new("/proc/self/gid_map"),
    ) else {
        return Err("cannot build the probe's paths".into());
    };
    // SAFETY: getuid and getgid cannot fail and touch no memory of ours.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let uid_line = format!("{uid} {uid} 1\n");
    let gid_line = format!("{gid} {gid} 1\n");
    let writes = [
        (&setgroups, b"deny".as_slice()),
        (&uid_map, uid_line.as_bytes()),
        (&gid_map, gid_line.as_bytes()),
    ];

    // Counted as a running tool while it lives, so another session's
    // orphan reaper (a worker runs several) neither kills nor reaps it.
    let _counted = crate::run::Running::enter();
    // SAFETY: fork duplicates only the calling thread. The child makes
    // async-signal-safe system calls only (unshare, open, write, close,
    // _exit) on memory prepared above, never returns into Rust code, and
    // exits with `_exit` so no destructor or atexit handler runs twice.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        // SAFETY: see above; every pointer is to a live CString or slice.
        unsafe {
            if libc::unshare(libc::CLONE_NEWNET) == 0 {
                libc::_exit(NETNS);
            }
            if libc::unshare(libc::CLONE_NEWUSER | libc::CLONE_NEWNET) != 0 {
                let errno = *libc::__errno_location();
                libc::_exit(UNSHARE_FAILED + errno.clamp(0, 200));
            }
            for (path, content) in writes {
                let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 || libc::write(fd, content.as_ptr().cast(), content.len()) < 0 {
                    libc::_exit(MAP_FAILED);
                }
                libc::close(fd);
            }
            libc::_exit(USERNS);
        }
    }
    if pid < 0 {
        return Err(format!(
            "cannot fork to probe namespaces: {}",
            io::Error::last_os_error()
        ));
    }
    let mut status = 0;
    loop {
        // SAFETY: waits for our own child, writing only `status`.
        let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
        if waited == pid {
            break;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(format!("cannot wait for the namespace probe: {error}"));
        }
    }
    if !libc::WIFEXITED(status) {
        return Err(format!("the namespace probe died (wait status {status})"));
    }
    match libc::WEXITSTATUS(status) {
        NETNS => Ok(false),
        USERNS => Ok(true),
        MAP_FAILED => Err("entered a user namespace but could not map ids in it".into()),
        code => {
            let user = io::Error::from_raw_os_error(code - UNSHARE_FAILED);
            let mut reason = format!(
                "cannot create a network namespace: `unshare(CLONE_NEWUSER|CLONE_NEWNET)`: {user}"
            );
            if matches!(
                user.raw_os_error(),
                Some(libc::EPERM | libc::EACCES | libc::ENOSPC)
            ) {
                reason.push_str(" (unprivileged user namespaces are forbidden here, as on GitHub's Ubuntu 24.04 runners)");
            }
            Err(reason)
        }
    }
}
