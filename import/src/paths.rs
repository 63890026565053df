//! Paths as the importer sees them: absolute on the recording machine,
//! made relative to the work root, or kept as system paths.

use std::path::{Component, Path, PathBuf};

/// Directories whose files an imported command may name by absolute path
/// (compilers, system headers and libraries); the policy's
/// `system_inputs` decides which it allows.
pub const SYSTEM_DIRS: &[&str] = &["/usr", "/lib", "/lib32", "/lib64", "/bin", "/opt"];

/// `path` with `.` and `..` resolved lexically (no file system access).
pub fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// Whether absolute `path` is under one of [`SYSTEM_DIRS`].
pub fn is_system(path: &Path) -> bool {
    SYSTEM_DIRS.iter().any(|d| path.starts_with(d))
}

/// The root-relative form (`/` separators, `.` for the root itself) of
/// absolute `path`, if it is inside `root` (canonical). A path not
/// lexically inside is tried again with its existing ancestors resolved,
/// so a root reached through a symlink is still recognised.
pub fn under_root(root: &Path, path: &Path) -> Option<String> {
    let path = lexical(path);
    if let Some(rel) = strip(root, &path) {
        return Some(rel);
    }
    // Resolve the longest existing ancestor, keep the rest as written.
    let mut head = path.clone();
    let mut tail = Vec::new();
    loop {
        if let Ok(real) = std::fs::canonicalize(&head) {
            let mut full = real;
            for part in tail.iter().rev() {
                full.push(part);
            }
            return strip(root, &lexical(&full));
        }
        let name = head.file_name()?.to_owned();
        tail.push(name);
        if !head.pop() {
            return None;
        }
    }
}

fn strip(root: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_str().map(str::to_owned))
        .collect::<Option<_>>()?;
    if parts.iter().any(|p| p == "..") {
        return None;
    }
    Some(if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    })
}

/// The relative path from root-relative directory `from` to root-relative
/// `to` (`../src/a.c` from `build` to `src/a.c`).
pub fn relative(from: &str, to: &str) -> String {
    let split = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|c| !c.is_empty() && *c != ".")
            .map(str::to_owned)
            .collect()
    };
    let from = split(from);
    let to = split(to);
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); from.len() - common];
    parts.extend(to[common..].iter().cloned());
    if parts.is_empty() {
        ".".to_owned()
    } else {
        parts.join("/")
    }
}

/// The root-relative parent directory of root-relative `path`.
pub fn parent(path: &str) -> &str {
    path.rsplit_once('/').map_or(".", |(p, _)| p)
}

/// Whether root-relative `path` is `dir` or beneath it.
pub fn is_under(path: &str, dir: &str) -> bool {
    dir == "." || path == dir || path.strip_prefix(dir).is_some_and(|r| r.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_climb_only_as_far_as_needed() {
        assert_eq!(relative("build", "src/a.c"), "../src/a.c");
        assert_eq!(relative(".", "src/a.c"), "src/a.c");
        assert_eq!(relative("build/x", "build/y/z.o"), "../y/z.o");
        assert_eq!(relative("src", "src"), ".");
    }

    #[test]
    fn under_root_refuses_what_leaves() {
        let root = Path::new("/work/p");
        assert_eq!(
            under_root(root, Path::new("/work/p/src/../a.c")).as_deref(),
            Some("a.c")
        );
        assert_eq!(under_root(root, Path::new("/work/p")).as_deref(), Some("."));
        assert_eq!(under_root(root, Path::new("/work/p/../q/a.c")), None);
        assert_eq!(under_root(root, Path::new("/work/pq/a.c")), None);
    }

    #[test]
    fn is_under_matches_whole_components() {
        assert!(is_under("src/a.c", "src"));
        assert!(!is_under("srcx/a.c", "src"));
        assert!(is_under("anything", "."));
    }
}
