//! The input tree of a lease, read from verified blobs and checked before
//! anything of it touches the disk: every `Directory` message is the blob
//! its digest names; every name is one plain path segment (no `/`, no
//! `.` or `..`, no NUL), unique in its directory; no symlinks at all (a
//! link could point out of the lease's root); bounded depth and size.
//! Main type: [`InputTree`], the flat list of files the lease may write
//! into its root.

use std::collections::BTreeSet;

use prost::Message as _;
use replay_cache::reapi::{DirectoryNode, FileNode};
use replay_cache::{Digest, PROGRAM_FILE, SYSTEM_DIR};

/// Directories deeper than this are refused.
pub const MAX_DEPTH: usize = 64;
/// Trees with more files and directories than this are refused.
pub const MAX_NODES: usize = 200_000;

/// `message Directory` with the fields a worker must see to refuse them:
/// `symlinks = 3` and `node_properties = 5` (REAPI v2), which the key's own
/// mirror leaves out because `replay` never makes them.
#[derive(Clone, PartialEq, Eq, prost::Message)]
struct WireDirectory {
    /// `repeated FileNode files = 1;`
    #[prost(message, repeated, tag = "1")]
    files: Vec<FileNode>,
    /// `repeated DirectoryNode directories = 2;`
    #[prost(message, repeated, tag = "2")]
    directories: Vec<DirectoryNode>,
    /// `repeated SymlinkNode symlinks = 3;` (only counted).
    #[prost(bytes = "vec", repeated, tag = "3")]
    symlinks: Vec<Vec<u8>>,
}

/// One file of the tree, by its path from the input root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeFile {
    /// `a/b/c.bc`, `/`-separated, relative to the input root.
    pub path: String,
    /// Its content digest.
    pub digest: Digest,
    /// Whether it is executable.
    pub executable: bool,
}

/// A checked input tree: the work-root files, the system files the client
/// read (absolute paths, to compare with this machine's), and the digest
/// the client claims for the program.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InputTree {
    /// Files to write into the lease's work root.
    pub files: Vec<TreeFile>,
    /// Files under [`SYSTEM_DIR`], as the absolute paths they stand for.
    pub system: Vec<TreeFile>,
    /// The digest of [`PROGRAM_FILE`], the client's binary.
    pub program: Option<Digest>,
}

/// Why a lease's input tree is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TreeError {
    /// A `Directory` blob is not in the CAS.
    #[error("the input tree's directory `{path}` (blob {digest}) is missing from the CAS")]
    Missing {
        /// Where in the tree.
        path: String,
        /// Its digest.
        digest: Digest,
    },
    /// A blob is not what its digest says.
    #[error("the input tree's directory `{path}` is not the blob its digest {digest} names")]
    Corrupt {
        /// Where in the tree.
        path: String,
        /// The digest claimed.
        digest: Digest,
    },
    /// A blob does not decode as a `Directory`.
    #[error("the input tree's directory `{path}` is not a REAPI Directory message")]
    Malformed {
        /// Where in the tree.
        path: String,
    },
    /// A node has no digest or a malformed one.
    #[error("the input tree's entry `{path}` has no well-formed digest")]
    NoDigest {
        /// The entry.
        path: String,
    },
    /// A name is empty, `.`, `..`, or holds `/` or NUL.
    #[error("the input tree's directory `{dir}` holds the name {name:?}, which is not one plain path segment")]
    BadName {
        /// The directory.
        dir: String,
        /// The name.
        name: String,
    },
    /// Two entries of one directory share a name.
    #[error("the input tree names `{path}` twice")]
    Duplicate {
        /// The path.
        path: String,
    },
    /// A symlink: a worker materializes none.
    #[error("the input tree's directory `{dir}` holds a symlink; a worker materializes only files and directories")]
    Symlink {
        /// The directory.
        dir: String,
    },
    /// Too deep or too large.
    #[error("the input tree is larger than a worker accepts ({what})")]
    TooLarge {
        /// Which bound.
        what: &'static str,
    },
}

/// Reads the tree under `root` from `blob` (a verified CAS: the bytes of a
/// digest, or `None`), rehashing each `Directory` blob, and checks it.
pub fn read_tree(
    root: &Digest,
    blob: &dyn Fn(&Digest) -> Option<Vec<u8>>,
) -> Result<InputTree, TreeError> {
    let mut tree = InputTree::default();
    let mut nodes = 0usize;
    // (path of the directory, its digest, depth)
    let mut pending = vec![(String::new(), root.clone(), 0usize)];
    while let Some((dir, digest, depth)) = pending.pop() {
        if depth > MAX_DEPTH {
            return Err(TreeError::TooLarge { what: "depth" });
        }
        let shown = if dir.is_empty() {
            ".".to_owned()
        } else {
            dir.clone()
        };
        let bytes = blob(&digest).ok_or_else(|| TreeError::Missing {
            path: shown.clone(),
            digest: digest.clone(),
        })?;
        if Digest::of(&bytes) != digest {
            return Err(TreeError::Corrupt {
                path: shown,
                digest,
            });
        }
        let message =
            WireDirectory::decode(bytes.as_slice()).map_err(|_| TreeError::Malformed {
                path: shown.clone(),
            })?;
        if !message.symlinks.is_empty() {
            return Err(TreeError::Symlink { dir: shown });
        }
        nodes += message.files.len() + message.directories.len();
        if nodes > MAX_NODES {
            return Err(TreeError::TooLarge { what: "entries" });
        }
        let mut names = BTreeSet::new();
        let join = |name: &str| {
            if dir.is_empty() {
                name.to_owned()
            } else {
                format!("{dir}/{name}")
            }
        };
        let names_checked = message
            .files
            .iter()
            .map(|f| f.name.as_str())
            .chain(message.directories.iter().map(|d| d.name.as_str()));
        for name in names_checked {
            if name.is_empty()
                || name == "."
                || name == ".."
                || name.contains('/')
                || name.contains('\0')
            {
                return Err(TreeError::BadName {
                    dir: shown.clone(),
                    name: name.to_owned(),
                });
            }
            if !names.insert(name) {
                return Err(TreeError::Duplicate { path: join(name) });
            }
        }
        for file in &message.files {
            let path = join(&file.name);
            let digest = well_formed(file.digest.as_ref(), &path)?;
            if path == PROGRAM_FILE {
                tree.program = Some(digest);
                continue;
            }
            let entry = TreeFile {
                path: path.clone(),
                digest,
                executable: file.is_executable,
            };
            match path.strip_prefix(SYSTEM_DIR) {
                Some(rest) if rest.starts_with('/') => tree.system.push(TreeFile {
                    path: rest.to_owned(),
                    ..entry
                }),
                _ => tree.files.push(entry),
            }
        }
        for sub in &message.directories {
            let path = join(&sub.name);
            let digest = well_formed(sub.digest.as_ref(), &path)?;
            pending.push((path, digest, depth + 1));
        }
    }
    tree.files.sort_by(|a, b| a.path.cmp(&b.path));
    tree.system.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(tree)
}

fn well_formed(digest: Option<&Digest>, path: &str) -> Result<Digest, TreeError> {
    match digest {
        Some(d) if d.is_well_formed() => Ok(d.clone()),
        _ => Err(TreeError::NoDigest {
            path: path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use replay_cache::reapi::Directory;
    use std::collections::HashMap;

    /// A CAS in memory.
    #[derive(Default)]
    struct Cas(HashMap<Digest, Vec<u8>>);

    impl Cas {
        fn put(&mut self, bytes: Vec<u8>) -> Digest {
            let digest = Digest::of(&bytes);
            self.0.insert(digest.clone(), bytes);
            digest
        }
        fn dir(&mut self, files: &[&str], dirs: &[(&str, Digest)]) -> Digest {
            let message = Directory {
                files: files
                    .iter()
                    .map(|name| FileNode {
                        name: (*name).to_owned(),
                        digest: Some(Digest::of(name.as_bytes())),
                        is_executable: false,
                    })
                    .collect(),
                directories: dirs
                    .iter()
                    .map(|(name, digest)| DirectoryNode {
                        name: (*name).to_owned(),
                        digest: Some(digest.clone()),
                    })
                    .collect(),
            };
            self.put(message.encode_to_vec())
        }
        fn read(&self, root: &Digest) -> Result<InputTree, TreeError> {
            read_tree(root, &|d| self.0.get(d).cloned())
        }
    }

    #[test]
    fn a_tree_lists_its_files_the_program_and_system_inputs() {
        let mut cas = Cas::default();
        let usr = cas.dir(&["stdio.h"], &[]);
        let system = cas.dir(&[], &[("usr", usr)]);
        let sub = cas.dir(&["p0.bc"], &[]);
        let root = cas.dir(
            &[PROGRAM_FILE, "a.c"],
            &[("parts", sub), (SYSTEM_DIR, system)],
        );
        let tree = cas.read(&root).unwrap();
        let paths: Vec<&str> = tree.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a.c", "parts/p0.bc"]);
        assert_eq!(tree.system[0].path, "/usr/stdio.h");
        assert_eq!(tree.program, Some(Digest::of(PROGRAM_FILE.as_bytes())));
    }

    #[test]
    fn escaping_and_duplicate_names_and_symlinks_are_refused() {
        let mut cas = Cas::default();
        for bad in ["..", ".", "", "a/b", "nul\0"] {
            let root = cas.dir(&[bad], &[]);
            assert!(
                matches!(cas.read(&root), Err(TreeError::BadName { .. })),
                "{bad:?}"
            );
        }
        let root = cas.dir(&["x", "x"], &[]);
        assert_eq!(
            cas.read(&root),
            Err(TreeError::Duplicate { path: "x".into() })
        );
        let empty = cas.dir(&[], &[]);
        let root = cas.dir(&["x"], &[("x", empty)]);
        assert_eq!(
            cas.read(&root),
            Err(TreeError::Duplicate { path: "x".into() })
        );
        // A Directory with a SymlinkNode { name: "l", target: "/etc" }.
        let mut with_link = Directory::default().encode_to_vec();
        with_link.extend([
            0x1a, 0x09, 0x0a, 0x01, b'l', 0x12, 0x04, b'/', b'e', b't', b'c',
        ]);
        let root = cas.put(with_link);
        assert_eq!(cas.read(&root), Err(TreeError::Symlink { dir: ".".into() }));
    }

    #[test]
    fn a_missing_or_corrupt_directory_blob_is_refused() {
        let mut cas = Cas::default();
        let sub = cas.dir(&["f"], &[]);
        let root = cas.dir(&[], &[("d", sub.clone())]);
        let good = cas.0.remove(&sub).unwrap();
        assert!(matches!(cas.read(&root), Err(TreeError::Missing { .. })));
        let mut bad = good;
        bad.push(0);
        cas.0.insert(sub, bad);
        assert!(matches!(cas.read(&root), Err(TreeError::Corrupt { .. })));
    }
}
