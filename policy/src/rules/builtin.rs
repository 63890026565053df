//! The built-in file operations (`symlink`, `copy`, `rename`, `remove`:
//! [`cmdlog::FileOp`]): the policy must list the kind in `[policy]
//! builtins`, the arguments must be the operation's fixed form naming
//! exactly the declared inputs and outputs (so the path rules judge every
//! path it touches), a symlink's target may climb with `..` only before
//! its first name (the link's own directories are physical: the path rule
//! refuses an output through a symlink, so what the target names is what
//! its declared input names), and no environment is asked for. Which
//! program the producer would have run is not judged: none runs.

use cmdlog::{Command, FileOp};

use crate::ctx::Ctx;

/// Judges the built-in command `command` (its paths are judged by
/// [`super::paths`], as any command's).
pub(crate) fn builtin(ctx: &mut Ctx<'_>, command: &Command) {
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
