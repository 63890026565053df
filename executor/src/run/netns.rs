//! Network namespaces made once and entered by many tools, one at a time.
//!
//! Making a network namespace costs about half a millisecond of CPU (every
//! per-namespace sysctl table is registered, a loopback device made) and
//! more again when a kernel worker tears it down: for a run of many small
//! commands, a tenth of all the CPU. So `replay` keeps the namespaces its
//! tools used: a tool's launcher enters one with `setns` instead of making
//! its own ([`crate::sandbox::launch_joining`]), and the namespace goes
//! back to the [`Pool`] only once every process of that tool is known dead
//! (a traced run: the tracer saw each exit). A tool is alone in its
//! namespace while it runs: nothing of an earlier tool is left in it to
//! talk to (its sockets died with its processes), and concurrent tools
//! never share one. The tool cannot change the namespace for the next one:
//! it holds no capability (`CAP_NET_ADMIN` would be needed to bring the
//! loopback device up). Where `replay` may not make a namespace (it is not
//! privileged), each launcher makes its own as before, with a user
//! namespace.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

/// The namespaces not in use, and whether making one has failed.
#[derive(Debug, Default)]
pub struct Pool {
    free: Mutex<Vec<OwnedFd>>,
    unavailable: AtomicBool,
}

/// The process's pool: one per `replay`.
pub static POOL: Pool = Pool {
    free: Mutex::new(Vec::new()),
    unavailable: AtomicBool::new(false),
};

impl Pool {
    /// A namespace no tool is in: a kept one, or a new one; `None` where
    /// none can be made (then each launcher makes its own).
    pub fn take(&self) -> Option<OwnedFd> {
        if let Some(kept) = self.free.lock().ok().and_then(|mut free| free.pop()) {
            return Some(kept);
        }
        if self.unavailable.load(Ordering::Relaxed) {
            return None;
        }
        let made = make();
        if made.is_none() {
            self.unavailable.store(true, Ordering::Relaxed);
        }
        made
    }

    /// Keeps `namespace` for the next tool: call only once every process
    /// that was in it is dead.
    pub fn give_back(&self, namespace: OwnedFd) {
        if let Ok(mut free) = self.free.lock() {
            free.push(namespace);
        }
    }

    /// How many namespaces are kept now.
    pub fn kept(&self) -> usize {
        self.free.lock().map(|free| free.len()).unwrap_or(0)
    }
}

/// Makes a network namespace and returns a descriptor of it: a thread of
/// its own enters it (namespaces are per thread until a process is made)
/// and opens it, then exits, leaving the namespace to the descriptor.
fn make() -> Option<OwnedFd> {
    std::thread::Builder::new()
        .name("replay-netns".into())
        .spawn(|| {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).ok()?;
            std::fs::File::open("/proc/thread-self/ns/net")
                .ok()
                .map(OwnedFd::from)
        })
        .ok()?
        .join()
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn inode(path: &str) -> u64 {
        std::fs::metadata(path).expect("stat").ino()
    }

    #[test]
    fn a_made_namespace_is_new_and_kept_ones_are_handed_out_again() {
        let pool = Pool::default();
        let Some(first) = pool.take() else {
            // Unprivileged here: launchers make their own namespaces.
            assert!(pool.take().is_none(), "no retry once making one failed");
            return;
        };
        let own = inode("/proc/self/ns/net");
        let made = std::fs::File::from(first.try_clone().expect("dup"))
            .metadata()
            .expect("fstat")
            .ino();
        assert_ne!(made, own, "a namespace of its own, not replay's");
        assert_eq!(
            inode("/proc/thread-self/ns/net"),
            own,
            "this thread stays where it was"
        );
        let second = pool.take().expect("another");
        pool.give_back(first);
        assert_eq!(pool.kept(), 1);
        let again = pool.take().expect("the kept one");
        let again_ino = std::fs::File::from(again).metadata().expect("fstat").ino();
        assert_eq!(again_ino, made, "the kept namespace is handed out again");
        drop(second);
    }
}
