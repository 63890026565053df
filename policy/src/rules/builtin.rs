//! The built-in file operations (`symlink`, `copy`, `rename`, `remove`:
//! [`cmdlog::FileOp`]): the policy must list the kind in `[policy]
//! builtins`, the arguments must be the operation's fixed form naming
//! exactly the declared inputs and outputs (so the path rules judge every
//! path it touches), a symlink's target may climb with `..` only before
//! its first name (the link's own directories are physical: the path rule
//! refuses an output through a symlink, so what the target names is what
//! its declared input names), and no environment is asked for. Which
//! program the producer would have run is not judged: none runs.
//!
//! A `rename` never moves a symbolic link: a relative link's text is read
//! from the link's own directory, so moving it elsewhere (`x/y/z/l ->
//! ../../../../etc/passwd` renamed to `pw`) would make it point somewhere
//! nobody judged, possibly out of the root. A source that is a link on
//! disk, or that an earlier `symlink` command of the log makes, is
//! refused (`builtin.rename-link`); the executor refuses a link source
//! again when it runs, whatever the check saw.

use std::collections::HashSet;

use cmdlog::{Command, FileOp};

use crate::ctx::Ctx;

/// Judges the built-in command `command` (its paths are judged by
/// [`super::paths`], as any command's); `links` holds the links earlier
/// `symlink` commands make, and gains this one's when `judge` (the whole
/// log is judged, not a run's second pass).
pub(crate) fn builtin(
    ctx: &mut Ctx<'_>,
    command: &Command,
    links: &mut HashSet<String>,
    judge: bool,
) {
    let kind = command.tool.name();
    if !ctx.policy.allows_builtin(&command.tool) {
        ctx.refuse(
            "tool.not-allowed",
            kind,
            format!("built-in file operation `{kind}` is not allowed by the policy"),
            "list it in the policy's `[policy] builtins` (`policies/linux-cc.toml` allows all four)",
        );
        return;
    }
    match FileOp::parse(command) {
        Err(error) => ctx.refuse(
            "builtin.malformed",
            kind,
            format!("the `{kind}` operation is malformed: {error}"),
            "write `symlink TARGET LINK`, `copy FROM TO`, `rename FROM TO` or `remove PATH...`, with inputs and outputs exactly the paths they name",
        ),
        Ok(FileOp::Symlink { target, .. }) if climbs_after_a_name(&target) => ctx.refuse(
            "builtin.symlink-target",
            &target,
            format!("symlink target `{target}` climbs with `..` after a name: the kernel would follow that name (perhaps a symlink) before climbing"),
            "write the target with its `..` first (`../lib/x.so`), or as the plain name of a file beside the link",
        ),
        Ok(op) if long_name(&op).is_some() => {
            let (path, name) = long_name(&op).unwrap_or_default();
            ctx.refuse(
                "builtin.name-too-long",
                &path,
                format!("`{path}` has the name `{name}`, longer than {NAME_MAX} bytes: no file system here holds it, and the operation would fail half done"),
                "shorten the name",
            );
        }
        Ok(FileOp::Symlink { link, .. }) => {
            if judge {
                links.insert(key(ctx, &link));
            }
        }
        Ok(FileOp::Rename { from, .. }) => {
            if links.contains(&key(ctx, &from)) || is_link_on_disk(ctx, &from) {
                ctx.refuse(
                    "builtin.rename-link",
                    &from,
                    format!("`rename` would move the symbolic link `{from}`: its target is read from the link's directory, and would name something else (perhaps outside the root) from the new one"),
                    "make the link where it belongs with `symlink TARGET LINK` (and `remove` the old one)",
                );
            }
        }
        Ok(_) => {}
    }
    for name in command.env.keys() {
        ctx.refuse(
            "builtin.env",
            name,
            format!("built-in `{kind}` asks for the variable `{name}`: it runs no program"),
            "give built-in operations an empty `env`",
        );
    }
}

/// The longest name a directory entry may have (Linux's `NAME_MAX`).
const NAME_MAX: usize = 255;

/// The first path `op` touches in the root with a name longer than
/// [`NAME_MAX`], and that name.
fn long_name(op: &FileOp) -> Option<(String, String)> {
    let (inputs, outputs) = op.declares();
    inputs.into_iter().chain(outputs).find_map(|path| {
        let name = path.split('/').find(|n| n.len() > NAME_MAX)?.to_owned();
        Some((path, name))
    })
}

/// The key of root-relative, normalized `path` ([`Ctx::fold`] applied).
fn key(ctx: &Ctx<'_>, path: &str) -> String {
    if ctx.fold {
        path.to_lowercase()
    } else {
        path.to_owned()
    }
}

/// Whether root-relative `path` is a symbolic link itself now (its
/// directories not followed: a path through a link is judged by the path
/// rules).
fn is_link_on_disk(ctx: &Ctx<'_>, path: &str) -> bool {
    std::fs::symlink_metadata(ctx.fs.root().join(ctx.native(path).as_ref()))
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// Whether `target` has a `..` after a component that is a name.
fn climbs_after_a_name(target: &str) -> bool {
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => return true,
            ".." => {}
            _ => named = true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::climbs_after_a_name;

    #[test]
    fn only_leading_dots_climb() {
        assert!(!climbs_after_a_name("libx.so.1.2"));
        assert!(!climbs_after_a_name("../../lib/x"));
        assert!(climbs_after_a_name("sub/../x"));
        assert!(climbs_after_a_name("../a/../../x"));
    }
}
