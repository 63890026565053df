//! The seccomp filter each tool runs under (x86_64), installed by the
//! launcher right before it execs the tool. It does two things:
//!
//! - **Refuses** what Landlock does not cover and no compile needs: sockets
//!   (a Unix socket on the host is reached by `connect`), io_uring, IPC
//!   objects, the keyring, `memfd_create`, limits or priorities set on
//!   another process, changing
//!   a file's metadata (`chmod`, `chown`, times, extended attributes: a
//!   tool could make the log unreadable or a host binary setuid), reaching
//!   into another process (`ptrace`, `process_vm_*`: a process could
//!   rewrite another's `argv[0]` after the tracer judged it), leaving the
//!   tracer (`clone` with `CLONE_UNTRACED`; `clone3`, whose flags a filter
//!   cannot read, answers `ENOSYS` so libc falls back to `clone`), the
//!   32-bit and x32 system-call tables (where this filter would see other
//!   numbers), and the calls that act on the whole machine (modules,
//!   `kexec`, `reboot`, mounts, namespaces, `bpf`). Those fail with
//!   `EPERM` (or `ENOSYS`). Output modes are set by `replay` at commit.
//! - **Reports**, when the launcher is traced and asked to: every
//!   file-system call the sandbox may refuse (opens, creates, removes,
//!   renames, links, execs) stops at the tracer (`SECCOMP_RET_TRACE`),
//!   which notes the path and, at the call's exit, whether the kernel
//!   refused it (Landlock tells an unprivileged process nothing; the failed
//!   call is what can be seen). With no tracer such a call would fail with
//!   `ENOSYS`, so this part is left out then.
//!
//! Elsewhere than x86_64 nothing is installed (the README says so).

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
    // What the action cache keys besides opened files: existence probes
    // and directory listings (a toolchain found by listing a directory).
    libc::SYS_access,
    libc::SYS_faccessat,
    libc::SYS_faccessat2,
    libc::SYS_getdents,
    libc::SYS_getdents64,
];

/// The system calls that fail with `EPERM` (x86_64 numbers).
#[cfg(target_arch = "x86_64")]
pub(crate) const REFUSED: &[i64] = &[
    // A file's metadata: Landlock has no right for these.
    libc::SYS_chmod,
    libc::SYS_fchmod,
    libc::SYS_fchmodat,
    libc::SYS_fchmodat2,
    libc::SYS_chown,
    libc::SYS_fchown,
    libc::SYS_lchown,
    libc::SYS_fchownat,
    libc::SYS_utime,
    libc::SYS_utimes,
    libc::SYS_utimensat,
    libc::SYS_futimesat,
    libc::SYS_setxattr,
    libc::SYS_lsetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_removexattr,
    libc::SYS_lremovexattr,
    libc::SYS_fremovexattr,
    SYS_SETXATTRAT,
    SYS_REMOVEXATTRAT,
    // Other processes.
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    // The whole machine.
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_reboot,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_bpf,
    // What is not a file to Landlock: io_uring (its operations pass
    // this filter by), System V and POSIX IPC objects of other processes,
    // the kernel keyring, memory no limit sees (`memfd_create`: gigabytes
    // held in no process's RSS, or a program run from memory), faults
    // handled in user space and performance counters.
    libc::SYS_io_uring_setup,
    libc::SYS_io_uring_enter,
    libc::SYS_io_uring_register,
    libc::SYS_shmget,
    libc::SYS_shmat,
    libc::SYS_shmctl,
    libc::SYS_msgget,
    libc::SYS_msgsnd,
    libc::SYS_msgrcv,
    libc::SYS_msgctl,
    libc::SYS_semget,
    libc::SYS_semop,
    libc::SYS_semtimedop,
    libc::SYS_semctl,
    libc::SYS_mq_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_memfd_create,
    libc::SYS_memfd_secret,
    libc::SYS_userfaultfd,
    libc::SYS_perf_event_open,
];

/// Sockets: a Unix socket on the host (the D-Bus bus, `docker.sock`) is
/// reached by `connect`, which Landlock does not judge, and a compile
/// needs none. Refused whenever the network is cut off (always, in a run).
#[cfg(target_arch = "x86_64")]
pub(crate) const SOCKETS: &[i64] = &[libc::SYS_socket, libc::SYS_socketpair];

/// Calls that act on the process a pid argument names: allowed only on the
/// caller itself (pid 0), which is what libc's `setrlimit`,
/// `setpriority(PRIO_PROCESS, 0, ..)` and friends pass. Otherwise a tool
/// could set a CPU or file-size limit on `replay` or any process of its
/// user. (call, index of the pid argument)
#[cfg(target_arch = "x86_64")]
pub(crate) const SELF_ONLY: &[(i64, u32)] = &[
    (libc::SYS_prlimit64, 0),
    (libc::SYS_sched_setaffinity, 0),
    (libc::SYS_sched_setscheduler, 0),
    (libc::SYS_sched_setparam, 0),
    (libc::SYS_sched_setattr, 0),
    (libc::SYS_setpriority, 1),
    (libc::SYS_ioprio_set, 1),
];

/// `setxattrat` and `removexattrat` (Linux 6.13), not yet in `libc`.
#[cfg(target_arch = "x86_64")]
const SYS_SETXATTRAT: i64 = 463;
#[cfg(target_arch = "x86_64")]
const SYS_REMOVEXATTRAT: i64 = 466;

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

/// A BPF program under construction, with jumps to the shared returns.
#[cfg(target_arch = "x86_64")]
struct Program {
    code: Vec<libc::sock_filter>,
    /// (instruction index, which return it jumps to when true).
    jumps: Vec<(usize, Return)>,
}

/// The filter's possible answers.
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Return {
    Allow,
    Eperm,
    Enosys,
    Trace,
}

#[cfg(target_arch = "x86_64")]
impl Program {
    fn statement(&mut self, code: u32, k: u32) {
        self.code.push(libc::sock_filter {
            code: code as u16,
            jt: 0,
            jf: 0,
            k,
        });
    }

    /// Jumps to `to` when the accumulator `test`s true against `k`.
    fn jump(&mut self, test: u32, k: u32, to: Return) {
        self.jumps.push((self.code.len(), to));
        self.statement(libc::BPF_JMP | test | libc::BPF_K, k);
    }

    fn load(&mut self, offset: u32) {
        self.statement(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, offset);
    }

    /// Appends the returns and resolves every jump to them.
    fn finish(mut self) -> Vec<libc::sock_filter> {
        const SECCOMP_RET_ALLOW: u32 = 0x7fff_0000;
        const SECCOMP_RET_TRACE: u32 = 0x7ff0_0000;
        const SECCOMP_RET_ERRNO: u32 = 0x0005_0000;
        let returns = [
            (Return::Allow, SECCOMP_RET_ALLOW),
            (Return::Eperm, SECCOMP_RET_ERRNO | libc::EPERM as u32),
            (Return::Enosys, SECCOMP_RET_ERRNO | libc::ENOSYS as u32),
            (Return::Trace, SECCOMP_RET_TRACE),
        ];
        let first_return = self.code.len();
        for (_, value) in returns {
            self.statement(libc::BPF_RET | libc::BPF_K, value);
        }
        for (at, to) in std::mem::take(&mut self.jumps) {
            let target = first_return + returns.iter().position(|(r, _)| *r == to).unwrap_or(0);
            let offset = target - at - 1;
            if u32::from(self.code[at].code) == libc::BPF_JMP | libc::BPF_JA | libc::BPF_K {
                self.code[at].k = offset as u32;
            } else {
                // Fewer than 256 instructions: every offset fits a byte.
                self.code[at].jt = offset as u8;
            }
        }
        self.code
    }
}

/// The filter's instructions; with `observe`, the observed calls stop at
/// the tracer.
#[cfg(target_arch = "x86_64")]
fn program(observe: bool, refuse_sockets: bool) -> Vec<libc::sock_filter> {
    const AUDIT_ARCH_X86_64: u32 = 0xc000_003e;
    const X32_SYSCALL_BIT: u32 = 0x4000_0000;
    const CLONE_UNTRACED: u32 = 0x0080_0000;
    let mut p = Program {
        code: Vec::new(),
        jumps: Vec::new(),
    };
    // struct seccomp_data { int nr; __u32 arch; __u64 ip; __u64 args[6]; }
    p.load(4);
    // Another architecture's table (int 0x80): refused. The jump skips the
    // refusal when the architecture is ours.
    p.statement(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        AUDIT_ARCH_X86_64,
    );
    let arch_check = p.code.len() - 1;
    p.code[arch_check].jt = 1;
    p.statement(libc::BPF_LD | libc::BPF_W | libc::BPF_IMM, 0);
    p.jump(libc::BPF_JEQ, 0, Return::Enosys);
    p.load(0);
    p.jump(libc::BPF_JGE, X32_SYSCALL_BIT, Return::Enosys);
    for nr in REFUSED {
        p.jump(libc::BPF_JEQ, *nr as u32, Return::Eperm);
    }
    if refuse_sockets {
        for nr in SOCKETS {
            p.jump(libc::BPF_JEQ, *nr as u32, Return::Eperm);
        }
    }
    p.jump(libc::BPF_JEQ, libc::SYS_clone3 as u32, Return::Enosys);
    // A pid argument other than 0 (both 32-bit halves of args[i], at
    // offset 16 + 8i): refused. Each test leaves the number in place.
    for (nr, arg) in SELF_ONLY {
        let low = 16 + 8 * arg;
        p.statement(libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K, *nr as u32);
        let at = p.code.len() - 1;
        // Not this call: skip its five instructions.
        p.code[at].jf = 5;
        p.load(low);
        p.jump(libc::BPF_JSET, u32::MAX, Return::Eperm);
        p.load(low + 4);
        p.jump(libc::BPF_JSET, u32::MAX, Return::Eperm);
        // pid 0: allowed, whatever follows.
        p.jump(libc::BPF_JA, 0, Return::Allow);
    }
    // clone: refused with CLONE_UNTRACED in its flags (args[0], low word).
    p.statement(
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::SYS_clone as u32,
    );
    let clone_check = p.code.len() - 1;
    // Not clone: skip the two instructions of the flags test.
    p.code[clone_check].jf = 2;
    p.load(16);
    p.jump(libc::BPF_JSET, CLONE_UNTRACED, Return::Eperm);
    if observe {
        // The flags test left args[0] in the accumulator: reload nr.
        p.load(0);
        for nr in OBSERVED {
            p.jump(libc::BPF_JEQ, *nr as u32, Return::Trace);
        }
    }
    p.jump(libc::BPF_JA, 0, Return::Allow);
    p.finish()
}

/// Installs the filter on this process (and, through `execve`, the tool);
/// with `observe`, the observed calls stop at the tracer, which must have
/// set `PTRACE_O_TRACESECCOMP`. Needs `no_new_privs` (or privilege).
#[cfg(target_arch = "x86_64")]
pub(crate) fn install(observe: bool, refuse_sockets: bool) -> std::io::Result<()> {
    let mut code = program(observe, refuse_sockets);
    let filter = libc::sock_fprog {
        len: code.len() as u16,
        filter: code.as_mut_ptr(),
    };
    // SAFETY: `filter` points at `code`, a live vector of `len` BPF
    // instructions built by `program` (every jump resolved to a return
    // after it, every path ending in a return), alive for the call; the
    // kernel copies and verifies the program and keeps no pointer to it.
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

/// Elsewhere, nothing is installed.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) fn install(_observe: bool, _refuse_sockets: bool) -> std::io::Result<()> {
    Ok(())
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn every_jump_lands_on_a_return_inside_the_program() {
        for (observe, sockets) in [(false, false), (true, true), (true, false)] {
            let code = program(observe, sockets);
            assert!(code.len() < 256);
            for (at, instruction) in code.iter().enumerate() {
                if u32::from(instruction.code) & 0x07 == libc::BPF_JMP {
                    let offsets = if u32::from(instruction.code) & 0xf0 == libc::BPF_JA {
                        vec![instruction.k as usize]
                    } else {
                        vec![usize::from(instruction.jt), usize::from(instruction.jf)]
                    };
                    for offset in offsets {
                        let target = at + 1 + offset;
                        assert!(target < code.len(), "jump at {at} leaves the program");
                    }
                }
            }
            let last = code[code.len() - 1];
            assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
        }
    }
}
