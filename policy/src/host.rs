//! The host directories a policy depends on, as a build-farm worker must
//! know them before it presents a client's files at a path of its own
//! machine ([`HostDirs`]).
//!
//! A path is not only where it ends: every directory its lookup passes
//! through, each symbolic link followed, decides what it names. A client's
//! tree mounted at one of those directories (or above one) would choose
//! what the path names; mounted over or inside a directory whose contents
//! the policy vouches for, it would replace those contents.

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
    /// (absolute, normal) would cover, replace or reroute, if any.
    pub fn overlapping(&self, root: &Path) -> Option<&Path> {
        let contents = self
            .contents
            .iter()
            .find(|dir| dir.starts_with(root) || root.starts_with(dir));
        contents
            .or_else(|| self.passed.iter().find(|dir| dir.starts_with(root)))
            .map(PathBuf::as_path)
    }

    /// Sorts and drops repeats.
    pub(crate) fn tidy(&mut self) {
        for list in [&mut self.contents, &mut self.passed] {
            list.sort();
            list.dedup();
        }
    }
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

    #[test]
    fn a_link_loop_ends() {
        let (_tmp, top) = tree();
        symlink(top.join("loop"), top.join("loop")).expect("link");
        let mut passed = Vec::new();
        assert_eq!(walk(&top.join("loop/x"), &mut passed), top.join("loop/x"));
    }
}
