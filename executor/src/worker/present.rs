//! A lease's root presented to its tool at the client's work root.
//!
//! The action cache's key names the client's absolute work root (`root`
//! platform property), because outputs can embed it (clang's
//! `DW_AT_comp_dir` with `-g`, an absolute `__FILE__`). A worker writes a
//! lease's inputs into a fresh directory of its own; to make the result
//! the key promises, the lease's run happens in a private mount namespace
//! of the lease's thread, where the lease directory is bind-mounted at the
//! client's root. The run (the policy check, staging, the sandbox, the
//! commit) then works at the client's path, exactly as a local run there,
//! while the rest of the worker (other leases, the bot session) keeps the
//! host's view; the mount goes away with the thread's last process.
//!
//! [`target`] decides where a lease may be presented (pure, unit-tested);
//! [`enter`] makes the namespace and the mount for the calling thread.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::sandbox::DEFAULT_READABLE;

/// Pseudo filesystems a client's root can never be inside.
const PSEUDO: [&str; 4] = ["/proc", "/sys", "/dev", "/run"];

/// Why a lease cannot be presented at the client's root (the lease is
/// refused: a result made elsewhere would be stored under a key that
/// names that root).
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    /// The `root` property is not an absolute, normal path.
    #[error("the client's root `{0}` is not an absolute path without `.`, `..` or `//`")]
    NotNormal(String),
    /// The root would hide system files every tool needs.
    #[error("the client's root `{0}` is or holds a system directory (`{1}`); a worker presents a lease only at a directory of its own")]
    System(String, String),
    /// The root is inside a pseudo filesystem.
    #[error("the client's root `{0}` is inside `{1}`")]
    Pseudo(String, String),
    /// The root overlaps the worker's own directory.
    #[error("the client's root `{0}` overlaps the worker's root `{1}`")]
    Worker(String, String),
    /// A kernel call failed.
    #[error("cannot present the lease at the client's root `{}`: {what}: {source} (a worker presents each lease at the client's root in a mount namespace of its own: run it as root)", at.display())]
    Kernel {
        /// The client's root.
        at: PathBuf,
        /// The call.
        what: &'static str,
        /// Why.
        source: io::Error,
    },
}

/// Where the lease of a `Command` whose `root` property is `root` runs:
/// `None` without the property (a client whose key names no root), else
/// the client's root, if a worker whose own directory is `worker_root`
/// may present a lease there.
pub fn target(root: Option<&str>, worker_root: &Path) -> Result<Option<PathBuf>, PresentError> {
    let Some(root) = root else { return Ok(None) };
    let normal = root == "/"
        || root.strip_prefix('/').is_some_and(|rest| {
            rest.split('/')
                .all(|name| !matches!(name, "" | "." | "..") && !name.contains('\0'))
        });
    if !normal {
        return Err(PresentError::NotNormal(root.to_owned()));
    }
    let at = PathBuf::from(root);
    let hidden = DEFAULT_READABLE
        .iter()
        .chain(&["/etc", "/home", "/root", "/var", "/tmp"])
        .find(|system| Path::new(system).starts_with(&at));
    if let Some(system) = hidden {
        return Err(PresentError::System(root.to_owned(), (*system).to_owned()));
    }
    if let Some(pseudo) = PSEUDO.iter().find(|p| at.starts_with(p)) {
        return Err(PresentError::Pseudo(root.to_owned(), (*pseudo).to_owned()));
    }
    if at.starts_with(worker_root) || worker_root.starts_with(&at) {
        return Err(PresentError::Worker(
            root.to_owned(),
            worker_root.display().to_string(),
        ));
    }
    Ok(Some(at))
}

/// Moves the calling thread (and every thread and process it starts from
/// now on) into a mount namespace of its own, private to it, in which
/// `lease_root` is also seen at `at`.
///
/// `at` is made (an empty directory, mode 0755) if the host lacks it: it
/// is only a mount point, and is left in place. It must be a directory
/// reached without a symbolic link. Call it only from a thread that ends
/// with the lease: the thread cannot leave the namespace.
pub fn enter(lease_root: &Path, at: &Path) -> Result<(), PresentError> {
    let fail = |what: &'static str| {
        move |source: io::Error| PresentError::Kernel {
            at: at.to_owned(),
            what,
            source,
        }
    };
    if std::fs::symlink_metadata(at).is_err() {
        let mut builder = std::fs::DirBuilder::new();
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o755);
        builder
            .recursive(true)
            .create(at)
            .map_err(fail("make the mount point"))?;
    }
    let canonical = at.canonicalize().map_err(fail("resolve the mount point"))?;
    if canonical != at || !canonical.is_dir() {
        return Err(fail("check the mount point")(io::Error::other(format!(
            "it resolves to `{}`, not to itself as a directory",
            canonical.display()
        ))));
    }
    // CLONE_NEWNS implies CLONE_FS: only this thread's view changes.
    unshare(CloneFlags::CLONE_NEWNS)
        .map_err(io::Error::from)
        .map_err(fail("unshare(CLONE_NEWNS)"))?;
    // Private first: with shared propagation (systemd's default) the bind
    // below would appear on the host as well.
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )
    .map_err(io::Error::from)
    .map_err(fail("make the mounts private"))?;
    mount(
        Some(lease_root),
        at,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(io::Error::from)
    .map_err(fail("bind-mount the lease root"))?;
    let same = |a: &Path, b: &Path| -> io::Result<bool> {
        let (a, b) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
        Ok(a.dev() == b.dev() && a.ino() == b.ino())
    };
    match same(lease_root, at) {
        Ok(true) => Ok(()),
        Ok(false) => Err(fail("check the mount")(io::Error::other(
            "the client's root is not the lease root after the mount",
        ))),
        Err(e) => Err(fail("check the mount")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_presented_only_at_a_normal_directory_of_its_own() {
        let worker = Path::new("/var/lib/replay-worker");
        let said = |root: Option<&str>| match target(root, worker) {
            Ok(at) => format!("{at:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(said(None), "None");
        assert_eq!(said(Some("/srv/ci/build")), "Some(\"/srv/ci/build\")");
        assert_eq!(said(Some("/tmp/x/root")), "Some(\"/tmp/x/root\")");
        for bad in [
            "srv/ci",
            "/srv/../etc",
            "/srv/./ci",
            "/srv//ci",
            "/srv/ci/",
            "",
        ] {
            assert!(
                matches!(target(Some(bad), worker), Err(PresentError::NotNormal(b)) if b == bad),
                "{bad}"
            );
        }
        for (bad, system) in [
            ("/", "/usr"),
            ("/usr", "/usr"),
            ("/etc", "/etc/ld.so.cache"),
            ("/home", "/home"),
        ] {
            assert!(
                matches!(target(Some(bad), worker), Err(PresentError::System(b, s)) if b == bad && s == system),
                "{bad}: {}",
                said(Some(bad))
            );
        }
        assert_eq!(
            said(Some("/proc/1/root")),
            "the client's root `/proc/1/root` is inside `/proc`"
        );
        for overlap in ["/var/lib", "/var/lib/replay-worker/lease-1/root"] {
            assert!(
                matches!(target(Some(overlap), worker), Err(PresentError::Worker(..))),
                "{overlap}"
            );
        }
    }

    /// The kernel half, on a thread of its own: the tool's view is the
    /// lease's, the host's view is unchanged, also while the lease runs.
    #[test]
    fn a_presented_root_is_the_lease_root_for_the_thread_and_its_children_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = dir.path().join("lease");
        std::fs::create_dir(&lease).expect("lease");
        std::fs::write(lease.join("input.c"), "int x;\n").expect("input");
        let at = dir.path().join("client/work");
        let (lease2, at2) = (lease.clone(), at.clone());
        let seen = std::thread::spawn(move || -> Result<(String, String), PresentError> {
            enter(&lease2, &at2)?;
            let child = std::process::Command::new("/bin/sh")
                .arg("-c")
                .arg("cat input.c && pwd -P > made.txt")
                .current_dir(&at2)
                .output()
                .expect("sh");
            let host = std::fs::read_to_string("/proc/1/mountinfo").unwrap_or_default();
            Ok((String::from_utf8_lossy(&child.stdout).into_owned(), host))
        })
        .join()
        .expect("thread");
        let (stdout, host_mounts) = match seen {
            Ok(seen) => seen,
            Err(e) if !nix::unistd::geteuid().is_root() => {
                assert!(matches!(e, PresentError::Kernel { .. }), "{e}");
                return;
            }
            Err(e) => panic!("as root, presenting must work: {e}"),
        };
        assert_eq!(stdout, "int x;\n", "the child reads the lease's input");
        assert_eq!(
            std::fs::read_to_string(lease.join("made.txt")).expect("written through the mount"),
            format!("{}\n", at.display()),
            "the tool's working directory is the client's root"
        );
        assert!(
            !host_mounts.contains(&at.display().to_string()),
            "the mount is not the host's"
        );
        let own = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        assert!(!own.contains(&at.display().to_string()));
        assert!(at.is_dir() && std::fs::read_dir(&at).expect("ls").next().is_none());
    }
}
