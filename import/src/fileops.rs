//! The file operations of a chain as built-in commands
//! ([`cmdlog::FileOp`]): `cmake -E cmake_symlink_library REAL SONAME
//! LINK` (two `symlink`s, as CMake makes them), `cmake -E
//! create_symlink`, `copy`, `copy_if_different`, `rename`, `rm -f`, and
//! the POSIX `ln -s[f]`, `cp`, `mv [-f]`, `rm [-f]`. Only these forms, with
//! exactly the paths `replay` performs them on; anything else (`cp -r`, a
//! copy into a directory, several sources) is left out, and said.

use cmdlog::path::{is_absolute, normalize_under};
use cmdlog::ToolKind;

use crate::converted::Converted;
use crate::paths::parent;

/// A path of a file operation: as the importer writes it (relative to the
/// command's cwd) and root-relative. Outside the root: an error.
pub(crate) type Resolve<'a> = dyn Fn(&str) -> Result<(String, String), String> + 'a;

/// The program words these operations are recognised by.
pub(crate) fn is_file_program(name: &str) -> bool {
    matches!(name, "ln" | "cp" | "mv" | "rm")
}

/// The commands of `cmake -E OP ARGS...` (`words` from `-E` on), or why
/// it is not one replay performs.
pub(crate) fn cmake(
    index: usize,
    words: &[String],
    cwd: &str,
    path: &Resolve<'_>,
) -> Result<Vec<Converted>, String> {
    let program = "cmake";
    let op = words.get(1).map_or("", String::as_str);
    let args: Vec<&str> = words.iter().skip(2).map(String::as_str).collect();
    match (op, args.as_slice()) {
        ("cmake_symlink_library", [real, soname, link]) => {
            // As CMake does: SONAME -> REAL's name, LINK -> SONAME's name,
            // each only where the names differ.
            let mut out = Vec::new();
            if real != soname {
                out.push(symlink(index, program, cwd, file_name(real), soname, path)?);
            }
            if link != soname {
                out.push(symlink(index, program, cwd, file_name(soname), link, path)?);
            }
            Ok(out)
        }
        ("create_symlink", [target, link]) => {
            Ok(vec![symlink(index, program, cwd, target, link, path)?])
        }
        ("copy" | "copy_if_different", [from, to]) if !to.ends_with('/') => Ok(vec![two(
            index,
            ToolKind::Copy,
            program,
            cwd,
            from,
            to,
            path,
        )?]),
        ("rename", [from, to]) => Ok(vec![two(
            index,
            ToolKind::Rename,
            program,
            cwd,
            from,
            to,
            path,
        )?]),
        ("rm" | "remove", ["-f", files @ ..]) if !files.is_empty() => {
            Ok(vec![remove(index, program, cwd, files, path)?])
        }
        _ => Err(format!(
            "it runs `cmake -E {op}` with arguments replay does not perform as a built-in (it performs `cmake_symlink_library`, `create_symlink`, `copy` and `copy_if_different` of one file, `rename`, `rm -f`)"
        )),
    }
}

/// The command of a POSIX `ln`, `cp`, `mv` or `rm` (`words` whole).
pub(crate) fn posix(
    index: usize,
    words: &[String],
    cwd: &str,
    path: &Resolve<'_>,
) -> Result<Converted, String> {
    let program = words[0].as_str();
    let name = program.rsplit('/').next().unwrap_or(program);
    let (flags, operands): (Vec<&str>, Vec<&str>) = words[1..]
        .iter()
        .map(String::as_str)
        .partition(|w| w.starts_with('-') && w.len() > 1);
    let only = |allowed: &[&str]| flags.iter().all(|f| allowed.contains(f));
    let refused = || {
        format!(
            "it runs `{}`, a form replay does not perform as a built-in (it performs `ln -s[f] TARGET LINK`, `cp FROM TO`, `mv [-f] FROM TO`, `rm [-f] FILES`)",
            words.join(" ")
        )
    };
    match (name, operands.as_slice()) {
        ("ln", [target, link])
            if flags.iter().any(|f| f.contains('s')) && only(&["-s", "-sf", "-fs", "-f"]) =>
        {
            symlink(index, program, cwd, target, link, path)
        }
        ("cp", [from, to]) if flags.is_empty() && !to.ends_with('/') => {
            two(index, ToolKind::Copy, program, cwd, from, to, path)
        }
        ("mv", [from, to]) if only(&["-f"]) && !to.ends_with('/') => {
            two(index, ToolKind::Rename, program, cwd, from, to, path)
        }
        ("rm", files) if !files.is_empty() && only(&["-f"]) => {
            remove(index, program, cwd, files, path)
        }
        _ => Err(refused()),
    }
}

/// The last component of `path`.
fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// A built-in command with no source directories.
fn command(
    index: usize,
    tool: ToolKind,
    program: &str,
    cwd: &str,
    args: Vec<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
) -> Converted {
    Converted {
        entry: index,
        tool,
        program: program.to_owned(),
        args,
        cwd: cwd.to_owned(),
        inputs,
        outputs,
        source_dirs: Vec::new(),
    }
}

fn symlink(
    index: usize,
    program: &str,
    cwd: &str,
    target: &str,
    link: &str,
    path: &Resolve<'_>,
) -> Result<Converted, String> {
    let (link_arg, link_rel) = path(link)?;
    if is_absolute(target) {
        return Err(format!(
            "it links `{link}` to the absolute path `{target}`: replay makes links whose target is relative to the link"
        ));
    }
    let resolved = normalize_under(parent(&link_rel), target)
        .filter(|r| r != ".")
        .ok_or_else(|| format!("the link `{link}` points to `{target}`, out of the work root"))?;
    Ok(command(
        index,
        ToolKind::Symlink,
        program,
        cwd,
        vec![target.to_owned(), link_arg],
        vec![resolved],
        vec![link_rel],
    ))
}

fn two(
    index: usize,
    tool: ToolKind,
    program: &str,
    cwd: &str,
    from: &str,
    to: &str,
    path: &Resolve<'_>,
) -> Result<Converted, String> {
    let (from_arg, from_rel) = path(from)?;
    let (to_arg, to_rel) = path(to)?;
    let outputs = if tool == ToolKind::Rename {
        vec![to_rel, from_rel.clone()]
    } else {
        vec![to_rel]
    };
    Ok(command(
        index,
        tool,
        program,
        cwd,
        vec![from_arg, to_arg],
        vec![from_rel],
        outputs,
    ))
}

fn remove(
    index: usize,
    program: &str,
    cwd: &str,
    files: &[&str],
    path: &Resolve<'_>,
) -> Result<Converted, String> {
    let mut args = Vec::new();
    let mut outputs = Vec::new();
    for file in files {
        let (arg, rel) = path(file)?;
        args.push(arg);
        outputs.push(rel);
    }
    Ok(command(
        index,
        ToolKind::Remove,
        program,
        cwd,
        args,
        Vec::new(),
        outputs,
    ))
}

/// The outputs of `c` it makes, rather than takes away: a `rename`'s
/// source and a `remove`'s paths are another command's output before.
pub(crate) fn made(c: &Converted) -> &[String] {
    match c.tool {
        ToolKind::Remove => &[],
        ToolKind::Rename => &c.outputs[..c.outputs.len().min(1)],
        _ => &c.outputs,
    }
}

/// `commands` (in run order) without a `rename` of a symbolic link: one an
/// earlier `symlink` makes, or one in the root now. A link's target is
/// read from its own directory; `replay` never moves one (the policy and
/// the executor refuse it), so the `mv` is left out, and said.
pub(crate) fn no_link_renamed(
    commands: Vec<Converted>,
    root: &std::path::Path,
    left_out: &mut Vec<crate::Remark>,
) -> Vec<Converted> {
    let mut links = std::collections::HashSet::new();
    let mut kept = Vec::with_capacity(commands.len());
    for c in commands {
        match c.tool {
            ToolKind::Symlink => links.extend(c.outputs.iter().cloned()),
            ToolKind::Rename => {
                let Some(from) = c.inputs.first() else {
                    kept.push(c);
                    continue;
                };
                let on_disk = std::fs::symlink_metadata(root.join(from))
                    .is_ok_and(|m| m.file_type().is_symlink());
                if links.contains(from) || on_disk {
                    left_out.push(crate::Remark {
                        entry: c.entry,
                        subject: c.shown(),
                        reason: format!("it moves the symbolic link `{from}`, whose target would then be read from another directory: replay never renames a link (make it where it belongs with `ln -s`)"),
                    });
                    continue;
                }
            }
            _ => {}
        }
        kept.push(c);
    }
    kept
}
