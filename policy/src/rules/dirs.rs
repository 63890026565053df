//! Input directories (`-I`, `-isystem`, `-iquote`, `-idirafter`, `-L`,
//! `-isysroot`, ...) checked like inputs: the executor grants a tool read
//! access to each one, and a grant on a directory covers everything
//! beneath it. So a directory is resolved (symlinks followed), and:
//!
//! - outside the root, it must resolve under the policy's
//!   `system_inputs`, and so must the symlinks near its top (walked two
//!   levels deep, bounded, remembered per checker): `/usr/lib/ssl` holds
//!   links to `/etc/ssl`;
//! - inside the root, it may not hold the log (or any file `replay`
//!   protects), a declared output of any command (this one's, an earlier
//!   one's, or a later one's: that one is refused), a fifo, socket or
//!   device, or a symlink out of the root (walked whole, bounded).
//!
//! What passes is listed on [`crate::Resolved::input_dirs`]. A compile's
//! own source directory (quote includes search it) is listed when it
//! passes the same test and silently left out when it does not.

use std::path::{Path, PathBuf};

use crate::ctx::{Ctx, WalkResult, CACHE_MAX};
use crate::kind::special;
use crate::rootfs::{Kind, Lookup};

/// How deep a system directory is walked for symlinks that leave the
/// system directories.
const SYSTEM_DEPTH: usize = 2;

/// How many entries of one system directory are looked at.
const SYSTEM_ENTRIES: usize = 10_000;

/// How deep a directory in the root is walked.
const ROOT_DEPTH: usize = 32;

/// How many entries of one directory in the root are looked at; past this
/// it is refused, as it cannot be vouched for.
const ROOT_ENTRIES: usize = 100_000;

/// Checks an absolute directory value that is lexically under the
/// system directories: resolved, and its top walked, it must stay there.
pub(crate) fn system_dir(ctx: &mut Ctx<'_>, subject: &str, key: &str) {
    if !ctx.here {
        return;
    }
    // A directory that does not exist gives nothing to read.
    let Ok(real) = std::fs::canonicalize(key) else {
        return;
    };
    if !ctx.under_system_resolved(&real) {
        ctx.refuse(
            "inputs.dir-escapes",
            subject,
            format!(
                "directory `{subject}` resolves to `{}`, outside the policy's system directories",
                real.display()
            ),
            "name a directory under the policy's `system_inputs` that stays there",
        );
        return;
    }
    let found = match ctx.dir_cache.system.get(&real) {
        Some(hit) => hit.clone(),
        None => {
            let found = walk_system(ctx, &real);
            if ctx.dir_cache.system.len() >= CACHE_MAX {
                ctx.dir_cache.system.clear();
            }
            ctx.dir_cache.system.insert(real.clone(), found.clone());
            found
        }
    };
    if let Some((rule, message)) = found {
        ctx.refuse(
            rule,
            subject,
            format!("directory `{subject}`: {message}"),
            "a tool may read everything beneath an input directory; name one whose contents stay in the system directories",
        );
        return;
    }
    if !ctx.input_dirs.contains(&real) {
        ctx.input_dirs.push(real);
    }
}

fn walk_system(ctx: &Ctx<'_>, top: &Path) -> WalkResult {
    let mut stack = vec![(top.to_path_buf(), 0usize)];
    let mut seen = 0usize;
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut entries: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        entries.sort();
        for path in entries {
            seen += 1;
            if seen > SYSTEM_ENTRIES {
                // Beyond this, the executor's read rules (on inodes, not
                // paths) do not follow a symlink out of a granted tree.
                return None;
            }
            let Ok(md) = std::fs::symlink_metadata(&path) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_symlink() {
                if let Ok(target) = std::fs::canonicalize(&path) {
                    if !ctx.under_system_resolved(&target) {
                        return Some((
                            "inputs.dir-escapes",
                            format!(
                                "`{}` leads to `{}`, outside the policy's system directories",
                                path.display(),
                                target.display()
                            ),
                        ));
                    }
                }
            } else if ft.is_dir() {
                if depth + 1 < SYSTEM_DEPTH {
                    stack.push((path, depth + 1));
                }
            } else if let Some(kind) = special(&ft) {
                return Some((
                    "inputs.dir-special",
                    format!("`{}` is a {kind}", path.display()),
                ));
            }
        }
    }
    None
}

/// Walks a directory in the root (physical, root-relative): no fifo,
/// socket or device, no symlink out of the root, not too large.
pub(crate) fn walk_root(ctx: &mut Ctx<'_>, physical: &str) -> WalkResult {
    let root = ctx.fs.root().to_path_buf();
    let mut stack: Vec<(String, usize)> = vec![(physical.to_owned(), 0)];
    let mut seen = 0usize;
    while let Some((rel, depth)) = stack.pop() {
        let abs = if rel == "." {
            root.clone()
        } else {
            root.join(&rel)
        };
        let Ok(entries) = std::fs::read_dir(&abs) else {
            continue;
        };
        let mut names: Vec<std::ffi::OsString> = entries.flatten().map(|e| e.file_name()).collect();
        names.sort();
        for name in names {
            seen += 1;
            if seen > ROOT_ENTRIES {
                return Some((
                    "inputs.dir-too-large",
                    format!("it holds more than {ROOT_ENTRIES} entries, more than the check walks"),
                ));
            }
            let Some(name) = name.to_str().map(str::to_owned) else {
                return Some((
                    "inputs.dir-special",
                    format!("it holds a name that is not UTF-8 under `{rel}`"),
                ));
            };
            let child = if rel == "." {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let Ok(md) = std::fs::symlink_metadata(abs.join(&name)) else {
                continue;
            };
            let ft = md.file_type();
            if ft.is_symlink() {
                match ctx.fs.lookup(&child) {
                    Lookup::Escapes { via } => {
                        return Some((
                            "inputs.dir-escapes",
                            format!("`{child}` leads out of the work root through `{via}`"),
                        ))
                    }
                    Lookup::Inside { kind: Kind::Other } => {
                        return Some((
                            "inputs.dir-special",
                            format!("`{child}` leads to a fifo, socket or device"),
                        ))
                    }
                    Lookup::Inside { .. } => {}
                }
            } else if ft.is_dir() {
                if depth + 1 >= ROOT_DEPTH {
                    return Some((
                        "inputs.dir-too-large",
                        format!("it nests deeper than {ROOT_DEPTH} directories"),
                    ));
                }
                stack.push((child, depth + 1));
            } else if let Some(kind) = special(&ft) {
                return Some((
                    "inputs.dir-special",
                    format!(
                        "`{child}` is a {kind}: a tool reading it would block, or read a device"
                    ),
                ));
            }
        }
    }
    None
}

/// Whether the root-relative `path` is `dir` or beneath it (`.` holds
/// everything).
pub(crate) fn is_under(path: &str, dir: &str) -> bool {
    dir == "."
        || path == dir
        || path
            .strip_prefix(dir)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// The root-relative directories that hold `path`, innermost first, ending
/// with `.`.
pub(crate) fn ancestors(path: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(path);
    std::iter::from_fn(move || {
        let p = rest?;
        match p.rfind('/') {
            Some(i) => {
                rest = Some(&p[..i]);
                Some(&p[..i])
            }
            None => {
                rest = None;
                Some(".")
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ancestors_end_with_the_root() {
        assert_eq!(
            ancestors("a/b/c.o").collect::<Vec<_>>(),
            vec!["a/b", "a", "."]
        );
        assert_eq!(ancestors("c.o").collect::<Vec<_>>(), vec!["."]);
    }

    #[test]
    fn under_compares_whole_components() {
        assert!(is_under("inc/a.h", "inc"));
        assert!(is_under("inc", "inc"));
        assert!(!is_under("include/a.h", "inc"));
        assert!(is_under("anything", "."));
    }
}
