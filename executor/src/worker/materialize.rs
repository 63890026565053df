//! A checked [`InputTree`] made real: its files written into a fresh,
//! empty lease root from the worker's verified store (each blob rehashed
//! as it is read), and the files the client claims for this machine
//! compared with the machine's own: the program's binary and every system
//! file the client read. A lease whose program or system files differ
//! here is refused: the worker would run another tool, or the tool would
//! read other headers, than the client's key names.

use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use replay_cache::{Digest, Store};

use super::tree::InputTree;

/// Why a lease's inputs could not be written, or do not fit this machine.
#[derive(Debug, thiserror::Error)]
pub enum MaterializeError {
    /// The lease root is not a fresh empty directory.
    #[error("the lease root `{}` is not an empty directory", root.display())]
    NotFresh {
        /// The root.
        root: PathBuf,
    },
    /// A blob of the tree is not in the store as its digest names it.
    #[error(
        "the input `{path}` (blob {digest}) is not in the worker's store as its digest names it"
    )]
    Blob {
        /// The input.
        path: String,
        /// Its digest.
        digest: Digest,
    },
    /// Writing a file failed.
    #[error("cannot write the input `{}`", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The action names no program digest.
    #[error("the action does not name its program's digest (`.replay-program`); a worker runs only a binary the client named by content")]
    NoProgramClaim,
    /// The program here is not the client's.
    #[error("the program `{}` on this worker is {here}, the action names {claimed}: a different binary", program.display())]
    Program {
        /// The program as resolved here.
        program: PathBuf,
        /// Its digest here (or why none).
        here: String,
        /// The digest the action names.
        claimed: Digest,
    },
    /// A system file here is not the client's.
    #[error("the system file `{path}` on this worker is {here}, the action names {claimed}")]
    System {
        /// The absolute path.
        path: String,
        /// Its digest here (or why none).
        here: String,
        /// The digest the action names.
        claimed: Digest,
    },
}

/// Writes `tree`'s files under `root` (an existing empty directory),
/// creating directories as needed, never following or replacing anything
/// (`O_EXCL`, `O_NOFOLLOW`).
pub fn materialize(tree: &InputTree, store: &Store, root: &Path) -> Result<(), MaterializeError> {
    let fresh = std::fs::read_dir(root)
        .map(|mut entries| entries.next().is_none())
        .unwrap_or(false);
    if !fresh {
        return Err(MaterializeError::NotFresh {
            root: root.to_owned(),
        });
    }
    for file in &tree.files {
        let bytes = store
            .blob_bytes(&file.digest)
            .ok_or_else(|| MaterializeError::Blob {
                path: file.path.clone(),
                digest: file.digest.clone(),
            })?;
        let path = root.join(&file.path);
        let write = |source| MaterializeError::Write {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(write)?;
        }
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(if file.executable { 0o755 } else { 0o644 })
            .open(&path)
            .map_err(write)?;
        out.write_all(&bytes).map_err(write)?;
    }
    Ok(())
}

/// Checks that `program` (the binary the worker's policy resolved) and
/// every system file of `tree` are, on this machine, what the action
/// names; `digest` hashes a file here.
pub fn check_host(
    tree: &InputTree,
    program: &Path,
    digest: &dyn Fn(&Path) -> std::io::Result<Digest>,
) -> Result<(), MaterializeError> {
    let shown = |result: std::io::Result<Digest>| match result {
        Ok(d) => d.to_string(),
        Err(e) => format!("unreadable ({e})"),
    };
    let claimed = tree
        .program
        .clone()
        .ok_or(MaterializeError::NoProgramClaim)?;
    let here = digest(program);
    if here.as_ref().ok() != Some(&claimed) {
        return Err(MaterializeError::Program {
            program: program.to_owned(),
            here: shown(here),
            claimed,
        });
    }
    for file in &tree.system {
        let here = digest(Path::new(&file.path));
        if here.as_ref().ok() != Some(&file.digest) {
            return Err(MaterializeError::System {
                path: file.path.clone(),
                here: shown(here),
                claimed: file.digest.clone(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::tree::TreeFile;

    fn put(store: &Store, bytes: &[u8]) -> Digest {
        let digest = Digest::of(bytes);
        let mut sink = store.blob_sink(&digest).unwrap();
        sink.write(bytes).unwrap();
        sink.finish().unwrap();
        digest
    }

    fn file(path: &str, digest: Digest, executable: bool) -> TreeFile {
        TreeFile {
            path: path.into(),
            digest,
            executable,
        }
    }

    #[test]
    fn a_tree_is_written_from_verified_blobs_into_a_fresh_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), 1 << 20).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let a = put(&store, b"int main;");
        let tree = InputTree {
            files: vec![file("src/a.c", a.clone(), false), file("run.sh", a, true)],
            ..InputTree::default()
        };
        materialize(&tree, &store, &root).unwrap();
        assert_eq!(std::fs::read(root.join("src/a.c")).unwrap(), b"int main;");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(root.join("run.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111);
        // Not fresh any more: a second lease never writes into it.
        assert!(matches!(
            materialize(&tree, &store, &root),
            Err(MaterializeError::NotFresh { .. })
        ));
    }

    #[test]
    fn a_missing_blob_refuses_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("store"), 1 << 20).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir(&root).unwrap();
        let tree = InputTree {
            files: vec![file("a.c", Digest::of(b"never stored"), false)],
            ..InputTree::default()
        };
        assert!(matches!(
            materialize(&tree, &store, &root),
            Err(MaterializeError::Blob { .. })
        ));
    }

    #[test]
    fn another_program_or_system_file_here_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        let header = dir.path().join("stdio.h");
        std::fs::write(&tool, b"the client's tool").unwrap();
        std::fs::write(&header, b"#define X 1").unwrap();
        let digest = |p: &Path| std::fs::read(p).map(|b| Digest::of(&b));
        let header_file = |d: Digest| file(&header.display().to_string(), d, false);
        let mut tree = InputTree {
            system: vec![header_file(Digest::of(b"#define X 1"))],
            program: Some(Digest::of(b"the client's tool")),
            ..InputTree::default()
        };
        check_host(&tree, &tool, &digest).unwrap();
        assert!(matches!(
            check_host(&tree, &header, &digest),
            Err(MaterializeError::Program { .. })
        ));
        tree.system = vec![header_file(Digest::of(b"#define X 2"))];
        assert!(matches!(
            check_host(&tree, &tool, &digest),
            Err(MaterializeError::System { .. })
        ));
        tree.program = None;
        assert!(matches!(
            check_host(&tree, &tool, &digest),
            Err(MaterializeError::NoProgramClaim)
        ));
    }
}
