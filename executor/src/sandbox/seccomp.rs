//! A seccomp filter that reports, not restricts: every file-system call a
//! tool makes that the sandbox may refuse (opens, creates, removes,
//! renames, links, execs) stops at the tracer (`SECCOMP_RET_TRACE`), which
//! notes the path and, at the call's exit, whether the kernel refused it
//! (Landlock reports nothing to an unprivileged process; the failed call is
//! what can be seen). Every other call, and every call on another
//! architecture, is allowed untouched.
//!
//! Installed only when the launcher is traced: with no tracer attached a
//! `SECCOMP_RET_TRACE` call fails with `ENOSYS`. x86_64 only; elsewhere
//! nothing is installed and only refused execs are reported.

/// The system calls that stop at the tracer (x86_64 numbers).
#[cfg(target_arch = "x86_64")]
pub(crate) const OBSERVED: &[i64] = &[
    libc::SYS_open,
    libc::SYS_openat,
    libc::SYS_openat2,
    libc::SYS_creat,
    libc::SYS_truncate,
    libc::SYS_mkdir,
    libc::SYS_mkdirat,
    libc::SYS_rmdir,
    libc::SYS_unlink,
    libc::SYS_unlinkat,
    libc::SYS_rename,
    libc::SYS_renameat,
    libc::SYS_renameat2,
    libc::SYS_link,
    libc::SYS_linkat,
    libc::SYS_symlink,
    libc::SYS_symlinkat,
    libc::SYS_mknod,
    libc::SYS_mknodat,
    libc::SYS_execve,
    libc::SYS_execveat,
];

/// Whether this process has a tracer (`TracerPid:` in its status).
pub(crate) fn is_traced() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("TracerPid:"))
                .map(|pid| pid.trim() != "0")
        })
        .unwrap_or(false)
}

/// Installs the reporting filter on this process (and, through `execve`,
/// the tool). Needs `no_new_privs` (or privilege).
#[cfg(target_arch = "x86_64")]
pub(crate) fn install() -> std::io::Result<()> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
    const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
    let statement = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let jump = |k: u32, jt: u8, jf: u8| libc::sock_filter {
        code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
        jt,
        jf,
        k,
    };
    let load = |offset: u32| statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    let ret = |value: u32| statement(libc::BPF_RET | libc::BPF_K, value);
    // struct seccomp_data { int nr; __u32 arch; ... }
    let mut program = vec![
        load(4),
        jump(AUDIT_ARCH_X86_64, 1, 0),
        ret(SECCOMP_RET_ALLOW),
        load(0),
    ];
    let count = OBSERVED.len();
    for (at, nr) in OBSERVED.iter().enumerate() {
        // To the TRACE return: past the remaining tests and the ALLOW.
        let to_trace = (count - at) as u8;
        program.push(jump(*nr as u32, to_trace, 0));
    }
    program.push(ret(SECCOMP_RET_ALLOW));
    program.push(ret(SECCOMP_RET_TRACE));
    let filter = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `filter` points at `program`, a live vector of `len`
    // well-formed BPF instructions (every jump lands inside it, every path
    // ends in a return), alive for the call; the kernel copies the program
    // and keeps no pointer to it.
    let result = unsafe {
        libc::prctl(
            libc::PR_SET_SECCOMP,
            libc::SECCOMP_MODE_FILTER,
            &filter as *const libc::sock_fprog,
            0,
            0,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Elsewhere, nothing is observed.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn install() -> std::io::Result<()> {
    Ok(())
}
