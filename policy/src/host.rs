//! The host directories a policy depends on, as a build-farm worker must
//! know them before it presents a client's files at a path of its own
//! machine ([`HostDirs`]).
//!
//! A path is not only where it ends: every directory its lookup passes
//! through, each symbolic link followed, decides what it names. A client's
//! tree mounted at one of those directories (or above one) would choose
//! what the path names; mounted over or inside a directory whose contents
//! the policy vouches for, it would replace those contents.
//!
//! Names are compared first, then identities (device and inode): on a
//! case-insensitive file system (ext4 with casefold, vfat) `/srv/Tools`
//! is `/srv/tools`, and a root there by either name is refused.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// How many symbolic links one lookup follows before it gives up (the
/// kernel's own limit).
const MAX_LINKS: usize = 40;

/// Directories no client's files may be presented at, over or in.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDirs {
    /// Directories whose contents are vouched for: nothing may be
    /// presented over or inside them.
    contents: Vec<PathBuf>,
    /// Directories a lookup of a vouched-for path passes through, links
    /// followed: nothing may be presented at or over them.
    passed: Vec<PathBuf>,
}

impl HostDirs {
    /// Vouches for the contents of directory `dir` (and for every
    /// directory its lookup passes through). Returns where it leads.
    pub fn add_dir(&mut self, dir: &Path) -> PathBuf {
        let end = self.add_path(dir);
        self.contents.push(end.clone());
        end
    }

    /// Vouches for file `file`: its directory's contents, and every
    /// directory its lookup passes through. Returns where it leads.
    pub fn add_file(&mut self, file: &Path) -> PathBuf {
        let end = self.add_path(file);
        if let Some(dir) = end.parent() {
            self.contents.push(dir.to_owned());
        }
        end
    }

    /// Notes every directory a lookup of `path` passes through, each
    /// symbolic link followed; returns where it leads (canonical through
    /// what exists, the rest as written).
    pub fn add_path(&mut self, path: &Path) -> PathBuf {
        walk(path, &mut self.passed)
    }

    /// Adds everything `other` holds.
    pub fn extend(&mut self, other: HostDirs) {
        self.contents.extend(other.contents);
        self.passed.extend(other.passed);
    }

    /// The vouched-for directory that a client's tree presented at `root`
    /// (absolute, normal) would cover, replace or reroute, if any: by
    /// name, or by identity under another name.
    pub fn overlapping(&self, root: &Path) -> Option<&Path> {
        let contents = self
            .contents
            .iter()
            .find(|dir| dir.starts_with(root) || root.starts_with(dir));
        contents
            .or_else(|| self.passed.iter().find(|dir| dir.starts_with(root)))
            .or_else(|| self.same_by_identity(root))
            .map(PathBuf::as_path)
    }

    /// [`HostDirs::overlapping`] by identity: the vouched-for directory
    /// that `root` (or a directory above it) is, or that lies under
    /// `root`, whatever either is called. Only what exists has an
    /// identity.
    fn same_by_identity(&self, root: &Path) -> Option<&PathBuf> {
        let root_id = identity(root)?;
        let around_root: Vec<Identity> = root.ancestors().filter_map(identity).collect();
        let inside = self
            .contents
            .iter()
            .find(|dir| identity(dir).is_some_and(|id| around_root.contains(&id)));
        inside.or_else(|| {
            self.contents.iter().chain(&self.passed).find(|dir| {
                dir.ancestors()
                    .filter_map(identity)
                    .any(|above| above == root_id)
            })
        })
    }

    /// Sorts and drops repeats.
    pub(crate) fn tidy(&mut self) {
        for list in [&mut self.contents, &mut self.passed] {
            list.sort();
            list.dedup();
        }
    }
}

/// A directory's device and inode.
type Identity = (u64, u64);

/// The identity of what `path` names now, links followed.
fn identity(path: &Path) -> Option<Identity> {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

/// Looks `path` up as the kernel would, one component at a time, following
/// symbolic links, and notes in `passed` every directory looked into.
/// Returns where it leads: canonical through what exists, the rest as
/// written. A relative path is taken from the current directory.
fn walk(path: &Path, passed: &mut Vec<PathBuf>) -> PathBuf {
    let mut pending: VecDeque<OsString> = VecDeque::new();
    let start = if path.is_absolute() {
        PathBuf::new()
    } else {
        std::env::current_dir().unwrap_or_default()
    };
    for part in start.components().chain(path.components()) {
        push_back(&mut pending, part);
    }
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = pending.pop_front() {
        if name == ".." {
            at.pop();
            continue;
        }
        passed.push(at.clone());
        let next = at.join(&name);
        let is_link = std::fs::symlink_metadata(&next).is_ok_and(|m| m.file_type().is_symlink());
        let target = is_link
            .then(|| std::fs::read_link(&next).ok())
            .flatten()
            .filter(|_| links < MAX_LINKS);
        match target {
            Some(target) => {
                links += 1;
                if target.is_absolute() {
                    at = PathBuf::from("/");
                }
                let mut parts = VecDeque::new();
                for part in target.components() {
                    push_back(&mut parts, part);
                }
                parts.append(&mut pending);
                pending = parts;
            }
            None => at = next,
        }
    }
    at
}

/// Queues a component's name: the root and `.` name no step.
fn push_back(queue: &mut VecDeque<OsString>, part: Component<'_>) {
    match part {
        Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        Component::ParentDir => queue.push_back("..".into()),
        Component::Normal(name) => queue.push_back(name.to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let top = tmp.path().canonicalize().expect("canonical");
        for dir in [
            "data/llvm/bin",
            "srv/tools",
            "srv/ci",
            "real/conf",
            "elsewhere",
        ] {
            std::fs::create_dir_all(top.join(dir)).expect("mkdir");
        }
        std::fs::write(top.join("real/conf/policy.toml"), "").expect("write");
        symlink(top.join("data/llvm"), top.join("srv/tools/llvm")).expect("link");
        symlink(
            "../../real/conf/policy.toml",
            top.join("srv/ci/policy.toml"),
        )
        .expect("link");
        (tmp, top)
    }

    #[test]
    fn a_path_leads_where_its_links_lead() {
        let (_tmp, top) = tree();
        let mut passed = Vec::new();
        assert_eq!(
            walk(&top.join("srv/tools/llvm/bin/opt"), &mut passed),
            top.join("data/llvm/bin/opt")
        );
        assert!(passed.contains(&top.join("srv/tools")));
        assert!(passed.contains(&top.join("data/llvm/bin")));
        assert_eq!(
            walk(&top.join("srv/ci/policy.toml"), &mut passed),
            top.join("real/conf/policy.toml")
        );
        assert_eq!(
            walk(&top.join("srv/ci/../missing/./x"), &mut passed),
            top.join("srv/missing/x")
        );
    }

    #[test]
    fn a_root_over_a_link_on_the_way_is_refused_and_one_beside_it_is_not() {
        let (_tmp, top) = tree();
        let mut dirs = HostDirs::default();
        dirs.add_dir(&top.join("srv/tools/llvm/bin"));
        dirs.add_file(&top.join("srv/ci/policy.toml"));
        dirs.tidy();
        // Where a link on the way lives, where it leads, and above both.
        for root in [
            "srv/tools",
            "srv/ci",
            "srv",
            "data",
            "data/llvm",
            "real/conf",
        ] {
            assert!(
                dirs.overlapping(&top.join(root)).is_some(),
                "{root} was accepted"
            );
        }
        // Inside a vouched-for directory: its contents.
        assert!(dirs.overlapping(&top.join("data/llvm/bin/sub")).is_some());
        // Beside them, or inside a directory only passed through.
        for root in ["elsewhere", "srv/other", "data/other", "srv/tools/else"] {
            assert_eq!(dirs.overlapping(&top.join(root)), None, "{root}");
        }
    }

    /// Another name for a vouched-for directory (a case-insensitive file
    /// system's `Tools` for `tools`; here a link, which makes one on any
    /// file system) is refused by identity, at, above and inside it.
    #[test]
    fn a_root_that_is_a_vouched_directory_by_another_name_is_refused() {
        let (_tmp, top) = tree();
        let mut dirs = HostDirs::default();
        dirs.add_dir(&top.join("data/llvm/bin"));
        dirs.tidy();
        symlink(top.join("data/llvm"), top.join("Alias")).expect("link");
        std::fs::create_dir(top.join("data/llvm/bin/sub")).expect("mkdir");
        for root in ["Alias", "Alias/bin", "Alias/bin/sub"] {
            assert!(
                dirs.overlapping(&top.join(root)).is_some(),
                "{root} was accepted"
            );
        }
        symlink(top.join("elsewhere"), top.join("Other")).expect("link");
        assert_eq!(dirs.overlapping(&top.join("Other")), None);
    }

    #[test]
    fn a_link_loop_ends() {
        let (_tmp, top) = tree();
        symlink(top.join("loop"), top.join("loop")).expect("link");
        let mut passed = Vec::new();
        assert_eq!(walk(&top.join("loop/x"), &mut passed), top.join("loop/x"));
    }
}
