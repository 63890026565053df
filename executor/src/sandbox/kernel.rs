//! The real [`Kernel`]: Linux system calls through `nix` and the `landlock`
//! crate, for the single-threaded sandbox child only (`unshare` of a user
//! namespace fails in a multi-threaded process, and every layer here binds
//! the calling process for good).

use std::fs::OpenOptions;
use std::io::{self, Write};

use landlock::{
    path_beneath_rules, Access, AccessFs, AccessNet, LandlockStatus, RestrictionStatus, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};
use nix::sched::{unshare, CloneFlags};
use nix::sys::prctl;
use nix::sys::resource::{getrlimit, setrlimit, Resource};
use nix::sys::signal::Signal;

use super::layers::{Kernel, LandlockOutcome, LandlockRules, Limit, UserNamespaceError};
use super::spec::{Enforcement, LandlockLayer};

/// The newest Landlock ABI `replay` was tested against. Rights of newer
/// ABIs are never requested (the crate's advice: a right is only as good as
/// its test); older kernels get what they support, reported as partial.
pub(crate) const TESTED_ABI: ABI = ABI::V7;

/// The first Landlock ABI that can deny TCP bind and connect.
pub(crate) const TCP_ABI: u32 = 4;

/// Linux, for real.
#[derive(Debug, Default)]
pub(crate) struct LinuxKernel {
    /// A network namespace to enter instead of making one.
    pub(crate) network: Option<std::os::fd::OwnedFd>,
}

impl Kernel for LinuxKernel {
    fn set_parent_death_signal(&mut self) -> io::Result<()> {
        prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)
    }

    fn parent_pid(&self) -> u32 {
        u32::try_from(nix::unistd::getppid().as_raw()).unwrap_or(0)
    }

    fn join_network(&mut self) -> Option<io::Result<()>> {
        let network = self.network.take()?;
        Some(nix::sched::setns(&network, CloneFlags::CLONE_NEWNET).map_err(io::Error::from))
    }

    fn unshare_network(&mut self) -> io::Result<()> {
        unshare(CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
    }

    fn unshare_user_and_network(&mut self) -> Result<(), UserNamespaceError> {
        // SAFETY: getuid and getgid cannot fail and touch no memory of ours.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        unshare(CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNET)
            .map_err(|e| UserNamespaceError::Unshare(e.into()))?;
        // Map our own ids, so files the tool creates keep their owner and
        // the tool (not uid 0 inside) drops the namespace's capabilities at
        // exec. `setgroups` must be denied before an unprivileged gid_map.
        let write = |path: &str, content: String| -> Result<(), UserNamespaceError> {
            OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|mut file| file.write_all(content.as_bytes()))
                .map_err(|e| {
                    UserNamespaceError::Map(io::Error::new(e.kind(), format!("`{path}`: {e}")))
                })
        };
        write("/proc/self/setgroups", "deny".to_owned())?;
        write("/proc/self/uid_map", format!("{uid} {uid} 1\n"))?;
        write("/proc/self/gid_map", format!("{gid} {gid} 1\n"))
    }

    fn set_no_new_privs(&mut self) -> io::Result<()> {
        prctl::set_no_new_privs().map_err(io::Error::from)
    }

    fn restrict_landlock(&mut self, rules: LandlockRules<'_>) -> LandlockOutcome {
        match restrict(rules) {
            Ok(status) => outcome(&status, rules.deny_tcp),
            Err(e) => LandlockOutcome::Unavailable(format!("cannot enforce the ruleset: {e}")),
        }
    }

    fn set_rlimit(&mut self, limit: Limit, value: u64) -> io::Result<()> {
        let resource = match limit {
            Limit::Core => Resource::RLIMIT_CORE,
            Limit::Fsize => Resource::RLIMIT_FSIZE,
            Limit::Nofile => Resource::RLIMIT_NOFILE,
        };
        // Never above the current hard limit (that needs privilege, and the
        // existing limit is already tighter); hard = soft so the tool cannot
        // raise it back.
        let (_, hard) = getrlimit(resource)?;
        let value = value.min(hard);
        setrlimit(resource, value, value).map_err(io::Error::from)
    }
}

/// Builds the ruleset and enforces it on this process.
fn restrict(rules: LandlockRules<'_>) -> Result<RestrictionStatus, RulesetError> {
    let mut ruleset = Ruleset::default().handle_access(AccessFs::from_all(TESTED_ABI))?;
    if rules.deny_tcp {
        // No rule for any port: every TCP bind and connect is denied.
        ruleset = ruleset.handle_access(AccessNet::from_all(TESTED_ABI))?;
    }
    // No signals to, and no abstract unix sockets of, processes outside.
    ruleset = ruleset.scope(Scope::from_all(TESTED_ABI))?;
    // With a list of executables, reading a file no longer lets a tool
    // run it: only the listed files may be `execve`d.
    let read_access = match rules.executable {
        Some(_) => AccessFs::from_read(TESTED_ABI) & !AccessFs::Execute,
        None => AccessFs::from_read(TESTED_ABI),
    };
    // Where a tool writes, it makes plain files and directories only: no
    // symbolic link, FIFO, socket or device (a link left in a staging
    // could steer what `replay` does with it), no link or rename across
    // directories (`Refer`), and nothing it wrote is executed.
    let write_access = AccessFs::from_all(TESTED_ABI)
        & !(AccessFs::MakeSym
            | AccessFs::MakeFifo
            | AccessFs::MakeSock
            | AccessFs::MakeBlock
            | AccessFs::MakeChar
            | AccessFs::Refer
            | AccessFs::Execute);
    ruleset
        .create()?
        // Missing paths (say `/lib32`) are left out by `path_beneath_rules`.
        .add_rules(path_beneath_rules(rules.readable, read_access))?
        .add_rules(path_beneath_rules(
            rules.executable.unwrap_or(&[]),
            AccessFs::Execute | AccessFs::ReadFile,
        ))?
        .add_rules(path_beneath_rules(rules.writable, write_access))?
        // The sandbox sets no_new_privs itself, as its own layer.
        .no_new_privs(false)
        .restrict_self()
}

fn outcome(status: &RestrictionStatus, deny_tcp: bool) -> LandlockOutcome {
    let abi = match status.landlock {
        LandlockStatus::Available { effective_abi, .. } => effective_abi as u32,
        LandlockStatus::NotEnabled => {
            return LandlockOutcome::Unavailable(
                "the kernel has landlock but it is not enabled (add `landlock` to the `lsm=` boot parameter)".into(),
            )
        }
        LandlockStatus::NotImplemented => {
            return LandlockOutcome::Unavailable(
                "the kernel has no landlock (needs linux 5.13 or later built with `CONFIG_SECURITY_LANDLOCK`)".into(),
            )
        }
    };
    let enforcement = match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => {
            return LandlockOutcome::Unavailable(format!(
                "landlock ABI {abi} enforced none of the requested rights"
            ))
        }
    };
    LandlockOutcome::Enforced(LandlockLayer {
        abi,
        enforcement,
        tcp_denied: deny_tcp && abi >= TCP_ABI,
    })
}
