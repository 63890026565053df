//! The tracer's view of the file-system calls the sandbox may refuse (see
//! `sandbox::seccomp`): at a call's seccomp stop, what it names; at its
//! exit, whether the kernel refused it (`EACCES`, `EPERM`, or `EXDEV` for
//! a link or rename Landlock forbids). Refused calls become [`Denial`]s in
//! the tool's outcome: Landlock itself tells an unprivileged process
//! nothing, so this is how a report can say what was blocked.

use nix::unistd::Pid;

/// Something a tool's process tried that the sandbox stopped, as the
/// tracer saw it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Denial {
    /// The process that tried.
    pub pid: i32,
    /// What it tried: `exec`.
    pub action: &'static str,
    /// The binary (or path) it named.
    pub path: String,
    /// How it was refused, for a person.
    pub detail: String,
    /// Who refused it: `tracer` (a program the policy does not list: the
    /// tree was killed) or `kernel` (a call that failed, seen at its exit).
    pub by: &'static str,
}

/// A file a tool's process opened, ran, probed or listed, or looked for
/// and did not find, as the tracer saw it: what a cache entry's read set
/// is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Access {
    /// `read`, `write`, `exec`, `probe` (`access`) or `list` (`getdents`).
    pub action: &'static str,
    /// The file the kernel opened (resolved through `/proc/PID/fd`), or the
    /// path named, resolved where it could be; empty if it could not be
    /// read at all (the observation is then incomplete).
    pub path: String,
    /// Whether it was there; `false` for a call that failed with
    /// `ENOENT` or `ENOTDIR` (a search that missed).
    pub found: bool,
    /// What the file was when the call returned, for a file that was
    /// there: a change before its digest is taken shows.
    pub stamp: Option<Stamp>,
}

/// A file's identity and last change: device, inode, size, mtime and
/// ctime (nanoseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Last modification, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Last status change, nanoseconds since the epoch.
    pub ctime_ns: i128,
}

impl Stamp {
    /// The stamp of `meta`.
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        }
    }
}

/// What the tracer learns at an observed call's exit.
#[derive(Debug, Clone)]
pub(crate) enum Seen {
    /// The kernel refused it.
    Denied(Denial),
    /// It opened, ran or looked for a file.
    Accessed(Access),
}

/// A call seen at its entry, waiting for its exit.
#[derive(Debug, Clone)]
pub(crate) struct Pending {
    /// What it does: `read`, `write` or `exec`.
    action: &'static str,
    /// The path it names, made absolute where the tracer could.
    path: String,
    /// The call's name.
    call: &'static str,
}

/// Reads the call `pid` is stopped at (a seccomp stop).
#[cfg(target_arch = "x86_64")]
pub(crate) fn entry(pid: i32) -> Option<Pending> {
    let regs = nix::sys::ptrace::getregs(Pid::from_raw(pid)).ok()?;
    let nr = regs.orig_rax as i64;
    let [a0, a1, a2, a3] = [regs.rdi, regs.rsi, regs.rdx, regs.r10];
    // Opened for reading (even with `O_CREAT`: an existing file is then
    // read) is a read; anything that can change the file is a write.
    let writes = |flags: u64| {
        let flags = flags as i32;
        flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
    };
    let open_action = |flags: u64| if writes(flags) { "write" } else { "read" };
    // (call, action, dirfd, path)
    let (call, action, dirfd, path) = match nr {
        libc::SYS_open => ("open", open_action(a1), None, a0),
        libc::SYS_openat => ("openat", open_action(a2), Some(a0), a1),
        libc::SYS_openat2 => {
            // struct open_how { u64 flags; ... }: its first field.
            let flags = read_u64(pid, a2).unwrap_or(0);
            ("openat2", open_action(flags), Some(a0), a1)
        }
        libc::SYS_creat => ("creat", "write", None, a0),
        libc::SYS_truncate => ("truncate", "write", None, a0),
        libc::SYS_mkdir => ("mkdir", "write", None, a0),
        libc::SYS_mkdirat => ("mkdirat", "write", Some(a0), a1),
        libc::SYS_rmdir => ("rmdir", "write", None, a0),
        libc::SYS_unlink => ("unlink", "write", None, a0),
        libc::SYS_unlinkat => ("unlinkat", "write", Some(a0), a1),
        libc::SYS_rename => ("rename", "write", None, a1),
        libc::SYS_renameat | libc::SYS_renameat2 => ("renameat", "write", Some(a2), a3),
        libc::SYS_link => ("link", "write", None, a1),
        libc::SYS_linkat => ("linkat", "write", Some(a2), a3),
        libc::SYS_symlink => ("symlink", "write", None, a1),
        libc::SYS_symlinkat => ("symlinkat", "write", Some(a1), a2),
        libc::SYS_mknod => ("mknod", "write", None, a0),
        libc::SYS_mknodat => ("mknodat", "write", Some(a0), a1),
        libc::SYS_execve => ("execve", "exec", None, a0),
        libc::SYS_execveat => ("execveat", "exec", Some(a0), a1),
        libc::SYS_access => ("access", "probe", None, a0),
        libc::SYS_faccessat | libc::SYS_faccessat2 => ("faccessat", "probe", Some(a0), a1),
        libc::SYS_getdents64 | libc::SYS_getdents => {
            // The directory is the one the descriptor holds.
            let path = std::fs::read_link(format!("/proc/{pid}/fd/{}", a0 as i32))
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            return Some(Pending {
                action: "list",
                path,
                call: "getdents64",
            });
        }
        _ => return None,
    };
    // A name the tracer cannot read is still a call to account for: an
    // empty path marks the observation incomplete (never cached).
    let path = read_string(pid, path)
        .map(|name| absolute(pid, dirfd, name))
        .unwrap_or_default();
    Some(Pending { action, path, call })
}

/// Elsewhere, nothing is decoded.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn entry(_pid: i32) -> Option<Pending> {
    None
}

/// At the call's exit: a [`Denial`] if the kernel refused it, an
/// [`Access`] if it opened, ran or missed a file.
#[cfg(target_arch = "x86_64")]
pub(crate) fn exit(pid: i32, pending: Pending) -> Option<Seen> {
    let regs = nix::sys::ptrace::getregs(Pid::from_raw(pid)).ok()?;
    let result = regs.rax as i64;
    let opens = matches!(
        pending.call,
        "open" | "openat" | "openat2" | "creat" | "execve" | "execveat"
    );
    let looks = opens || matches!(pending.call, "access" | "faccessat" | "getdents64");
    if result >= 0 {
        if !looks {
            return None;
        }
        let (path, stamp) = match pending.call {
            // The file the kernel opened, whatever the name said
            // (`/proc/self/cwd/...`, `..`, links): its descriptor knows.
            "open" | "openat" | "openat2" | "creat" => {
                let fd = format!("/proc/{pid}/fd/{result}");
                let path = std::fs::read_link(&fd)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                (path, std::fs::metadata(&fd).ok().map(|m| Stamp::of(&m)))
            }
            // The program now running in the process.
            "execve" | "execveat" => {
                let exe = format!("/proc/{pid}/exe");
                let path = std::fs::read_link(&exe)
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                (path, std::fs::metadata(&exe).ok().map(|m| Stamp::of(&m)))
            }
            "getdents64" => (pending.path, None),
            _ => {
                let path = resolve(pid, &pending.path).unwrap_or_default();
                let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
                (path, stamp)
            }
        };
        return Some(Seen::Accessed(Access {
            action: pending.action,
            path,
            found: true,
            stamp,
        }));
    }
    let missed = -result == i64::from(libc::ENOENT) || -result == i64::from(libc::ENOTDIR);
    if missed && looks && pending.action != "write" {
        return Some(Seen::Accessed(Access {
            action: pending.action,
            path: resolve(pid, &pending.path).unwrap_or_default(),
            found: false,
            stamp: None,
        }));
    }
    if pending.action == "probe" {
        // `access` says EACCES of a file that is there (a mode it lacks).
        let path = resolve(pid, &pending.path).unwrap_or_default();
        let stamp = std::fs::metadata(&path).ok().map(|m| Stamp::of(&m));
        return Some(Seen::Accessed(Access {
            action: "probe",
            path,
            found: true,
            stamp,
        }));
    }
    let errno = match -result {
        e if e == i64::from(libc::EACCES) => "EACCES",
        e if e == i64::from(libc::EPERM) => "EPERM",
        e if e == i64::from(libc::EXDEV) && pending.action == "write" => "EXDEV",
        _ => return None,
    };
    Some(Seen::Denied(Denial {
        pid,
        action: pending.action,
        detail: format!(
            "`{}` ({}) failed with {errno}: outside what the command declared (or not permitted)",
            pending.path, pending.call
        ),
        path: pending.path,
        by: "kernel",
    }))
}

/// Elsewhere, nothing is decoded.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn exit(_pid: i32, _pending: Pending) -> Option<Seen> {
    None
}

/// `path` (absolute, as the tool named it) as the file system resolves it
/// for the tracer: `/proc/self` is the tool's, `..` and links resolved
/// through the longest part that exists, the rest appended as written.
/// `None` for an empty or relative path.
fn resolve(pid: i32, path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let path = ["/proc/self/", "/proc/thread-self/"]
        .iter()
        .find_map(|prefix| path.strip_prefix(prefix))
        .map_or_else(|| path.to_owned(), |rest| format!("/proc/{pid}/{rest}"));
    resolve_through_existing(std::path::Path::new(&path))
}

/// `path` (absolute) canonical through its longest prefix that exists, the
/// rest appended as written (`.` dropped; `None` if a `..` follows a
/// missing component). The prefix is
/// found walking forward, one `stat` a component, and canonicalized once:
/// `realpath` reads every component's link, and trying it on ever shorter
/// prefixes cost a tool's missed file (the loader's search path) dozens of
/// calls.
fn resolve_through_existing(path: &std::path::Path) -> Option<String> {
    let parts: Vec<&std::ffi::OsStr> = path
        .components()
        .filter_map(|c| match c {
            std::path::Component::RootDir => None,
            other => Some(other.as_os_str()),
        })
        .collect();
    let mut existing = std::path::PathBuf::from("/");
    let mut found = 0;
    for part in &parts {
        let next = existing.join(part);
        if std::fs::metadata(&next).is_err() {
            break;
        }
        existing = next;
        found += 1;
    }
    let mut resolved = std::fs::canonicalize(&existing).ok()?;
    for part in &parts[found..] {
        match part.to_str()? {
            // The kernel climbs out of a directory only if it exists: past
            // a missing one, a `..` names nothing anyone could open.
            ".." => return None,
            "." | "" => {}
            name => resolved.push(name),
        }
    }
    Some(resolved.display().to_string())
}

/// `name` made absolute against the directory descriptor or the cwd of
/// `pid`, for a person to read (the kernel resolved it the same way).
fn absolute(pid: i32, dirfd: Option<u64>, name: String) -> String {
    if name.starts_with('/') {
        return name;
    }
    let base = match dirfd.map(|fd| fd as i32) {
        Some(fd) if fd != libc::AT_FDCWD => format!("/proc/{pid}/fd/{fd}"),
        _ => format!("/proc/{pid}/cwd"),
    };
    match std::fs::read_link(base) {
        Ok(dir) => dir.join(&name).display().to_string(),
        Err(_) => name,
    }
}

/// A NUL-terminated string at `address` in `pid`'s memory (at most 4 KiB).
fn read_string(pid: i32, address: u64) -> Option<String> {
    const PAGE: u64 = 4096;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; PAGE as usize];
    while bytes.len() < PAGE as usize {
        let at = address.checked_add(bytes.len() as u64)?;
        // Never across a page boundary: a string that ends before an
        // unmapped page must still be read.
        let len = (PAGE - at % PAGE) as usize;
        let read = read_memory(pid, at, &mut chunk[..len])?;
        if read == 0 {
            return None;
        }
        if let Some(end) = chunk[..read].iter().position(|b| *b == 0) {
            bytes.extend_from_slice(&chunk[..end]);
            return Some(String::from_utf8_lossy(&bytes).into_owned());
        }
        bytes.extend_from_slice(&chunk[..read]);
    }
    None
}

/// A `u64` at `address` in `pid`'s memory.
#[cfg(target_arch = "x86_64")]
fn read_u64(pid: i32, address: u64) -> Option<u64> {
    let mut bytes = [0u8; 8];
    (read_memory(pid, address, &mut bytes)? == bytes.len()).then(|| u64::from_ne_bytes(bytes))
}

/// Reads `pid`'s memory at `address` into `buffer` with one
/// `process_vm_readv` (no descriptor opened per call, as `/proc/PID/mem`
/// needed); how many bytes came, or `None` if none could be read.
fn read_memory(pid: i32, address: u64, buffer: &mut [u8]) -> Option<usize> {
    let local = libc::iovec {
        iov_base: buffer.as_mut_ptr().cast(),
        iov_len: buffer.len(),
    };
    let remote = libc::iovec {
        iov_base: address as usize as *mut libc::c_void,
        iov_len: buffer.len(),
    };
    // SAFETY: `local` describes `buffer`, which is live and exclusively
    // borrowed for the call, so the kernel writes at most `buffer.len()`
    // bytes into memory we own. `remote` names memory of the other
    // process only: the kernel reads it (with ptrace access checks) and
    // never dereferences it in ours.
    let read = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    usize::try_from(read).ok()
}

#[cfg(test)]
mod resolve_tests {
    use super::*;

    /// The resolution the tracer used before: `realpath` on ever shorter
    /// prefixes. Kept as the oracle of the faster one.
    fn resolve_slow(pid: i32, path: &str) -> Option<String> {
        if !path.starts_with('/') {
            return None;
        }
        let path = ["/proc/self/", "/proc/thread-self/"]
            .iter()
            .find_map(|prefix| path.strip_prefix(prefix))
            .map_or_else(|| path.to_owned(), |rest| format!("/proc/{pid}/{rest}"));
        let path = std::path::Path::new(&path);
        let mut missing = Vec::new();
        let mut existing = path;
        loop {
            if let Ok(canonical) = std::fs::canonicalize(existing) {
                let mut resolved = canonical;
                for part in missing.iter().rev() {
                    match *part {
                        ".." => {
                            resolved.pop();
                        }
                        "." | "" => {}
                        name => resolved.push(name),
                    }
                }
                return Some(resolved.display().to_string());
            }
            let name = existing.file_name()?.to_str()?;
            missing.push(name);
            existing = existing.parent()?;
        }
    }

    #[test]
    fn the_forward_walk_resolves_as_realpath_on_shorter_prefixes_did() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::create_dir_all(root.join("a/b/c")).expect("mkdir");
        std::fs::write(root.join("a/b/c/f"), b"x").expect("write");
        std::os::unix::fs::symlink(root.join("a/b"), root.join("link")).expect("link");
        std::os::unix::fs::symlink("b/c", root.join("a/rel")).expect("link");
        std::os::unix::fs::symlink(root.join("nowhere"), root.join("dangling")).expect("link");
        let me = std::process::id() as i32;
        let r = root.display();
        for path in [
            format!("{r}/a/b/c/f"),
            format!("{r}/a/b/c/missing"),
            format!("{r}/a/missing/deeper/f"),
            format!("{r}/link/c/f"),
            format!("{r}/link/c/missing/x"),
            format!("{r}/link/../b/c"),
            format!("{r}/a/rel/f"),
            format!("{r}/a/rel/../c/f"),
            format!("{r}/a/missing/../b/c/f"),
            format!("{r}/a/./b/./missing/./x"),
            format!("{r}/dangling"),
            format!("{r}/dangling/x"),
            format!("{r}/a/b/c/f/not-a-dir"),
            "/proc/self/exe".to_owned(),
            "/".to_owned(),
            "/nonexistent-top/x".to_owned(),
            "relative/x".to_owned(),
        ] {
            assert_eq!(resolve(me, &path), resolve_slow(me, &path), "{path}");
        }
    }
}
