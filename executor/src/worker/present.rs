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

/// Directories the worker trusts besides [`DEFAULT_READABLE`]: a client's
/// root may neither hold one nor lie inside one (a root inside `/usr/bin`
/// would replace the programs, inside `/etc` a policy).
const TRUSTED: [&str; 4] = ["/etc", "/root", "/boot", "/var/lib"];

/// Why a lease cannot be presented at the client's root (the lease is
/// refused: a result made elsewhere would be stored under a key that
/// names that root).
#[derive(Debug, thiserror::Error)]
pub enum PresentError {
    /// The `root` property is not an absolute, normal path.
    #[error("the client's root `{0}` is not an absolute path without `.`, `..` or `//`")]
    NotNormal(String),
    /// The root would hide system files every tool needs, or lie among
    /// files the worker trusts.
    #[error("the client's root `{0}` overlaps `{1}`, which the worker trusts; a worker presents a lease only at a directory of its own")]
    System(String, String),
    /// The root does not exist here, or is not a directory reached
    /// without a symbolic link, only through directories that only root
    /// (or this worker's user) can change.
    #[error("the client's root `{}` cannot be a mount point here: {why} (make it an empty directory, owned by root, whose parents only root can write)", at.display())]
    Unsafe {
        /// The client's root.
        at: PathBuf,
        /// Why not.
        why: String,
    },
    /// The root is inside a pseudo filesystem.
    #[error("the client's root `{0}` is inside `{1}`")]
    Pseudo(String, String),
    /// The root overlaps the worker's own directory.
    #[error("the client's root `{0}` overlaps the worker's own `{1}`")]
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
/// the client's root, if a worker whose own directories (its `--root`,
/// its binary's directory, its home, and all its policy depends on) are
/// `own` may present a lease there: the root may neither hold nor lie
/// inside a system or trusted directory, nor overlap `own`
/// ([`policy::HostDirs::overlapping`]).
pub fn target(root: Option<&str>, own: &policy::HostDirs) -> Result<Option<PathBuf>, PresentError> {
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
    if let Some(pseudo) = PSEUDO.iter().find(|p| at.starts_with(p)) {
        return Err(PresentError::Pseudo(root.to_owned(), (*pseudo).to_owned()));
    }
    // Holding them hides them; lying inside them replaces what is there.
    let overlaps = |dir: &Path| dir.starts_with(&at) || at.starts_with(dir);
    let system = DEFAULT_READABLE
        .iter()
        .chain(&TRUSTED)
        .find(|dir| overlaps(Path::new(dir)));
    if let Some(system) = system {
        return Err(PresentError::System(root.to_owned(), (*system).to_owned()));
    }
    // Holding these hides them as well.
    if let Some(top) = ["/home", "/var", "/tmp"]
        .iter()
        .find(|d| Path::new(d).starts_with(&at))
    {
        return Err(PresentError::System(root.to_owned(), (*top).to_owned()));
    }
    if let Some(mine) = own.overlapping(&at) {
        return Err(PresentError::Worker(
            root.to_owned(),
            mine.display().to_string(),
        ));
    }
    Ok(Some(at))
}

/// Moves the calling thread (and every thread and process it starts from
/// now on) into a mount namespace of its own, private to it, in which
/// `lease_root` is also seen at `at`.
///
/// `at` must exist already (the worker makes nothing on its host at a
/// path a client chose): a directory reached without a symbolic link,
/// owned by root or this worker's user, as is every directory above it,
/// none of which anybody else may change (a sticky directory such as
/// `/tmp` counts when the entry below it is owned so), so no other local
/// user can move it between this check and the mount. Call it only from
/// a thread that ends with the lease: the thread cannot leave the
/// namespace.
pub fn enter(lease_root: &Path, at: &Path) -> Result<(), PresentError> {
    let fail = |what: &'static str| {
        move |source: io::Error| PresentError::Kernel {
            at: at.to_owned(),
            what,
            source,
        }
    };
    safe_mount_point(at)?;
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

/// Checks `at` as [`enter`] says, component by component, without
/// following a link.
fn safe_mount_point(at: &Path) -> Result<(), PresentError> {
    use std::os::unix::fs::PermissionsExt as _;
    let unsafe_because = |why: String| PresentError::Unsafe {
        at: at.to_owned(),
        why,
    };
    let me = nix::unistd::geteuid().as_raw();
    let mut path = PathBuf::from("/");
    let components: Vec<_> = at.components().skip(1).collect();
    for (index, component) in std::iter::once(None)
        .chain(components.iter().map(Some))
        .enumerate()
    {
        if let Some(component) = component {
            path.push(component);
        }
        let meta = std::fs::symlink_metadata(&path)
            .map_err(|e| unsafe_because(format!("`{}`: {e}", path.display())))?;
        if !meta.is_dir() {
            return Err(unsafe_because(format!(
                "`{}` is not a directory (a symbolic link is never followed)",
                path.display()
            )));
        }
        let owned = meta.uid() == 0 || meta.uid() == me;
        if !owned {
            return Err(unsafe_because(format!(
                "`{}` is owned by uid {}",
                path.display(),
                meta.uid()
            )));
        }
        let mode = meta.permissions().mode();
        let last = index == components.len();
        // Others may write here: only a sticky directory is safe (they
        // cannot move the owned entry below it, checked next).
        if mode & 0o022 != 0 && mode & 0o1000 == 0 && !last {
            return Err(unsafe_because(format!(
                "`{}` may be changed by others (mode {:o})",
                path.display(),
                mode & 0o7777
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_presented_only_at_a_normal_directory_of_its_own() {
        let mut own = policy::HostDirs::default();
        own.add_dir(Path::new("/srv/replay-worker"));
        own.add_dir(Path::new("/opt2/bin"));
        let said = |root: Option<&str>| match target(root, &own) {
            Ok(at) => format!("{at:?}"),
            Err(e) => e.to_string(),
        };
        assert_eq!(said(None), "None");
        assert_eq!(said(Some("/srv/ci/build")), "Some(\"/srv/ci/build\")");
        assert_eq!(said(Some("/tmp/x/root")), "Some(\"/tmp/x/root\")");
        assert_eq!(said(Some("/home/ci/src")), "Some(\"/home/ci/src\")");
        for bad in [
            "srv/ci",
            "/srv/../etc",
            "/srv/./ci",
            "/srv//ci",
            "/srv/ci/",
            "",
        ] {
            assert!(
                matches!(target(Some(bad), &own), Err(PresentError::NotNormal(b)) if b == bad),
                "{bad}"
            );
        }
        // Holding a system directory hides it; lying inside one (or one
        // the worker trusts) replaces what is there.
        for (bad, system) in [
            ("/", "/usr"),
            ("/usr", "/usr"),
            ("/usr/local/bin", "/usr"),
            ("/etc", "/etc/ld.so.cache"),
            ("/etc/replay", "/etc"),
            ("/root/.cache", "/root"),
            ("/var/lib/ci", "/var/lib"),
            ("/home", "/home"),
            ("/tmp", "/tmp"),
        ] {
            assert!(
                matches!(target(Some(bad), &own), Err(PresentError::System(b, s)) if b == bad && s == system),
                "{bad}: {}",
                said(Some(bad))
            );
        }
        assert_eq!(
            said(Some("/proc/1/root")),
            "the client's root `/proc/1/root` is inside `/proc`"
        );
        for overlap in ["/srv", "/srv/replay-worker/lease-1/root", "/opt2/bin/x"] {
            assert!(
                matches!(target(Some(overlap), &own), Err(PresentError::Worker(..))),
                "{overlap}: {}",
                said(Some(overlap))
            );
        }
    }

    /// A mount point the worker would have to make, or one reached
    /// through a link, is refused before any namespace is made.
    #[test]
    fn a_missing_or_linked_root_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lease = dir.path().join("lease");
        std::fs::create_dir(&lease).expect("lease");
        let missing = dir.path().join("absent/root");
        assert!(matches!(
            enter(&lease, &missing),
            Err(PresentError::Unsafe { .. })
        ));
        assert!(!missing.exists(), "nothing is made on the host");
        std::fs::create_dir(dir.path().join("real")).expect("real");
        std::os::unix::fs::symlink(dir.path().join("real"), dir.path().join("link")).expect("link");
        let linked = dir.path().join("link");
        let said = enter(&lease, &linked).expect_err("a link").to_string();
        assert!(
            said.contains("not a directory (a symbolic link is never followed)"),
            "{said}"
        );
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
        std::fs::create_dir_all(&at).expect("the client's root");
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
