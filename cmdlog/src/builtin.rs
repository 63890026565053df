//! Built-in file operations: the removes, symlinks, copies and renames
//! builds do between tools (`cmake -E cmake_symlink_library`, `ln -sf`,
//! `cp`, `mv`, `rm -f`). A log names them as commands of their own tool
//! kinds ([`ToolKind::Symlink`], [`ToolKind::Copy`], [`ToolKind::Rename`],
//! [`ToolKind::Remove`]) that `replay` performs itself, never through a
//! shell or a program; their arguments are fixed, and name exactly the
//! declared inputs and outputs (see [`FileOp::parse`]).
//!
//! | kind | `args` | `inputs` | `outputs` |
//! |---|---|---|---|
//! | `symlink` | `TARGET LINK` | the target, resolved from the link's directory | `LINK` |
//! | `copy` | `FROM TO` | `FROM` | `TO` |
//! | `rename` | `FROM TO` | `FROM` | `TO`, `FROM` |
//! | `remove` | `PATH...` | none | every `PATH` |
//!
//! Paths in `args` are relative to the command's `cwd`, as any tool's
//! arguments are; a symlink's `TARGET` is the text the link will hold,
//! relative to the link's own directory, as `ln -s` takes it.

use crate::path::{is_absolute, normalize_under};
use crate::{Command, ToolKind};

/// One built-in file operation, its paths root-relative and normalized
/// (the symlink's `target` excepted: it is the link's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileOp {
    /// Make `link` a symbolic link holding `target`, which resolves to
    /// `resolved` (root-relative, or absolute for a system file).
    Symlink {
        /// The text the link holds.
        target: String,
        /// What the target names: root-relative, or absolute.
        resolved: String,
        /// The link, root-relative.
        link: String,
    },
    /// Write a copy of `from`'s contents at `to`.
    Copy {
        /// The source, root-relative.
        from: String,
        /// The copy, root-relative.
        to: String,
    },
    /// Move `from` (a file or a symlink itself) to `to`.
    Rename {
        /// The source, root-relative; gone afterwards.
        from: String,
        /// The destination, root-relative.
        to: String,
    },
    /// Remove each path (a file or a symlink itself), if it exists.
    Remove {
        /// The paths, root-relative.
        paths: Vec<String>,
    },
}

/// Why a built-in command's arguments do not describe a file operation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileOpError {
    /// The kind is not a built-in one.
    #[error("tool kind `{0}` is not a built-in file operation")]
    NotBuiltin(String),
    /// The wrong number of arguments.
    #[error("`{kind}` takes {expected}, not {given} argument(s)")]
    Arity {
        /// The kind.
        kind: &'static str,
        /// What it takes.
        expected: &'static str,
        /// How many were given.
        given: usize,
    },
    /// An argument is not a path inside the work root.
    #[error("argument `{0}` is not a path inside the work root (from the command's cwd)")]
    Outside(String),
    /// An argument starts with `-`: no flags exist, and none are guessed.
    #[error("argument `{0}` starts with `-`: built-in operations take no flags")]
    Flag(String),
    /// The declared inputs or outputs are not what the arguments name.
    #[error("the declared {field} are {declared:?}, but the arguments name {named:?}")]
    Undeclared {
        /// `inputs` or `outputs`.
        field: &'static str,
        /// As declared (normalized).
        declared: Vec<String>,
        /// As the arguments name them (normalized).
        named: Vec<String>,
    },
}

impl ToolKind {
    /// Whether `replay` performs this kind itself (a [`FileOp`]) rather
    /// than running a program.
    pub fn is_builtin(&self) -> bool {
        matches!(
            self,
            ToolKind::Symlink | ToolKind::Copy | ToolKind::Rename | ToolKind::Remove
        )
    }
}

impl FileOp {
    /// The operation `command` describes, checked against its declared
    /// inputs and outputs: they must be exactly the paths its arguments
    /// name (in the table's order), so the policy's rules on inputs and
    /// outputs judge every path the operation touches.
    pub fn parse(command: &Command) -> Result<FileOp, FileOpError> {
        let args = &command.args;
        let cwd = command.cwd.as_str();
        let path = |arg: &String| -> Result<String, FileOpError> {
            if arg.starts_with('-') {
                return Err(FileOpError::Flag(arg.clone()));
            }
            if arg.is_empty() || is_absolute(arg) {
                return Err(FileOpError::Outside(arg.clone()));
            }
            normalize_under(cwd, arg)
                .filter(|p| p != ".")
                .ok_or_else(|| FileOpError::Outside(arg.clone()))
        };
        let arity = |kind: &'static str, expected: &'static str| FileOpError::Arity {
            kind,
            expected,
            given: args.len(),
        };
        let op = match &command.tool {
            ToolKind::Symlink => {
                let [target, link] = args.as_slice() else {
                    return Err(arity("symlink", "2 (TARGET LINK)"));
                };
                if target.is_empty() || target.starts_with('-') {
                    return Err(FileOpError::Flag(target.clone()));
                }
                let link = path(link)?;
                let resolved = if is_absolute(target) {
                    target.clone()
                } else {
                    let dir = link.rsplit_once('/').map_or(".", |(dir, _)| dir);
                    normalize_under(dir, target)
                        .filter(|p| p != ".")
                        .ok_or_else(|| FileOpError::Outside(target.clone()))?
                };
                FileOp::Symlink {
                    target: target.clone(),
                    resolved,
                    link,
                }
            }
            ToolKind::Copy | ToolKind::Rename => {
                let [from, to] = args.as_slice() else {
                    return Err(arity(
                        if command.tool == ToolKind::Copy {
                            "copy"
                        } else {
                            "rename"
                        },
                        "2 (FROM TO)",
                    ));
                };
                let (from, to) = (path(from)?, path(to)?);
                if command.tool == ToolKind::Copy {
                    FileOp::Copy { from, to }
                } else {
                    FileOp::Rename { from, to }
                }
            }
            ToolKind::Remove => {
                if args.is_empty() {
                    return Err(arity("remove", "1 or more (PATH...)"));
                }
                FileOp::Remove {
                    paths: args.iter().map(path).collect::<Result<_, _>>()?,
                }
            }
            other => return Err(FileOpError::NotBuiltin(other.name().to_owned())),
        };
        let (inputs, outputs) = op.declares();
        same("inputs", &command.inputs, inputs)?;
        same("outputs", &command.outputs, outputs)?;
        Ok(op)
    }

    /// The inputs and outputs the operation must declare, in order.
    pub fn declares(&self) -> (Vec<String>, Vec<String>) {
        match self {
            FileOp::Symlink { resolved, link, .. } => (vec![resolved.clone()], vec![link.clone()]),
            FileOp::Copy { from, to } => (vec![from.clone()], vec![to.clone()]),
            FileOp::Rename { from, to } => (vec![from.clone()], vec![to.clone(), from.clone()]),
            FileOp::Remove { paths } => (Vec::new(), paths.clone()),
        }
    }
}

/// Checks `declared` names exactly `named`, in order (each normalized).
fn same(field: &'static str, declared: &[String], named: Vec<String>) -> Result<(), FileOpError> {
    let normal: Vec<String> = declared
        .iter()
        .map(|p| {
            if is_absolute(p) {
                p.clone()
            } else {
                normalize_under(".", p).unwrap_or_else(|| p.clone())
            }
        })
        .collect();
    if normal == named {
        Ok(())
    } else {
        Err(FileOpError::Undeclared {
            field,
            declared: normal,
            named,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn command(tool: ToolKind, cwd: &str, args: &[&str], ins: &[&str], outs: &[&str]) -> Command {
        let own = |items: &[&str]| items.iter().map(|s| (*s).to_owned()).collect();
        Command {
            id: 1,
            tool,
            program: "cmake".into(),
            args: own(args),
            cwd: cwd.into(),
            env: BTreeMap::new(),
            inputs: own(ins),
            outputs: own(outs),
            cache_key: None,
        }
    }

    #[test]
    fn a_soname_link_resolves_its_target_from_the_links_directory() {
        let c = command(
            ToolKind::Symlink,
            "build",
            &["libx.so.1.2", "libx.so.1"],
            &["build/libx.so.1.2"],
            &["build/libx.so.1"],
        );
        assert_eq!(
            FileOp::parse(&c),
            Ok(FileOp::Symlink {
                target: "libx.so.1.2".into(),
                resolved: "build/libx.so.1.2".into(),
                link: "build/libx.so.1".into(),
            })
        );
    }

    #[test]
    fn paths_the_arguments_name_must_be_the_declared_ones() {
        // Regression guard: a copy that declares another input than it
        // reads would let the policy judge one file and replay read another.
        let c = command(ToolKind::Copy, ".", &["a", "b"], &["c"], &["b"]);
        assert!(matches!(
            FileOp::parse(&c),
            Err(FileOpError::Undeclared {
                field: "inputs",
                ..
            })
        ));
        let c = command(ToolKind::Rename, ".", &["a", "b"], &["a"], &["b"]);
        assert!(matches!(
            FileOp::parse(&c),
            Err(FileOpError::Undeclared {
                field: "outputs",
                ..
            })
        ));
        let c = command(ToolKind::Rename, ".", &["a", "b"], &["a"], &["b", "a"]);
        assert!(FileOp::parse(&c).is_ok());
    }

    #[test]
    fn escapes_flags_and_wrong_arity_are_errors() {
        let c = command(
            ToolKind::Symlink,
            ".",
            &["../../etc/passwd", "l"],
            &[],
            &["l"],
        );
        assert_eq!(
            FileOp::parse(&c),
            Err(FileOpError::Outside("../../etc/passwd".into()))
        );
        let c = command(ToolKind::Remove, "sub", &["../../x"], &[], &[]);
        assert_eq!(
            FileOp::parse(&c),
            Err(FileOpError::Outside("../../x".into()))
        );
        let c = command(ToolKind::Remove, ".", &["-rf", "x"], &[], &["x"]);
        assert_eq!(FileOp::parse(&c), Err(FileOpError::Flag("-rf".into())));
        let c = command(ToolKind::Copy, ".", &["a"], &["a"], &[]);
        assert!(matches!(FileOp::parse(&c), Err(FileOpError::Arity { .. })));
        let c = command(
            ToolKind::Copy,
            ".",
            &["/etc/passwd", "b"],
            &["/etc/passwd"],
            &["b"],
        );
        assert_eq!(
            FileOp::parse(&c),
            Err(FileOpError::Outside("/etc/passwd".into()))
        );
    }

    #[test]
    fn an_absolute_symlink_target_is_declared_as_it_is_written() {
        let c = command(
            ToolKind::Symlink,
            ".",
            &["/usr/lib/x", "l"],
            &["/usr/lib/x"],
            &["l"],
        );
        assert!(matches!(
            FileOp::parse(&c),
            Ok(FileOp::Symlink { resolved, .. }) if resolved == "/usr/lib/x"
        ));
    }
}
