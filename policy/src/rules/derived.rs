//! Outputs a flag makes a compiler write beside its `-o` without naming
//! them: `-gsplit-dwarf`'s `.dwo` (clang names it after the `-o` value,
//! its extension replaced). Such an output must be declared, or the tool
//! would write a file the policy never judged (the executor discards
//! it, and the build loses its debug information). [`split_dwarf_file`]
//! is the name clang gives it, which the executor pins when it stages
//! the `-o` (so the object records the name an unstaged run would).

use cmdlog::{Command, ToolKind};

use crate::ctx::Ctx;

/// The `.dwo` a clang compile (`-c`) with `-gsplit-dwarf` writes, as
/// clang derives it from the `-o` value as written (`dir/a.c.o` gives
/// `dir/a.c.dwo`); `None` for other commands.
pub fn split_dwarf_file(args: &[String]) -> Option<String> {
    let split = args
        .iter()
        .any(|a| a == "-gsplit-dwarf" || a == "-gsplit-dwarf=split");
    if !split || !args.iter().any(|a| a == "-c") {
        return None;
    }
    let mut output = None;
    let mut at = 0;
    while at < args.len() {
        if args[at] == "-o" {
            output = args.get(at + 1);
            at += 1;
        }
        at += 1;
    }
    let output = output?;
    let (dir, name) = match output.rsplit_once('/') {
        Some((dir, name)) => (Some(dir), name),
        None => (None, output.as_str()),
    };
    let stem = match name.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => name,
    };
    Some(match dir {
        Some(dir) => format!("{dir}/{stem}.dwo"),
        None => format!("{stem}.dwo"),
    })
}

/// Judges the derived outputs of a `cc` or `c++` command.
pub(crate) fn derived(ctx: &mut Ctx<'_>, command: &Command) {
    if !matches!(command.tool, ToolKind::Cc | ToolKind::Cxx) {
        return;
    }
    let args = &command.args;
    let split = args.iter().any(|a| a.starts_with("-gsplit-dwarf"));
    if !split {
        return;
    }
    let Some(dwo) = split_dwarf_file(args) else {
        ctx.refuse(
            "args.split-dwarf",
            "-gsplit-dwarf",
            "`-gsplit-dwarf` without `-c` and `-o`: clang would name the `.dwo` after a file the log does not name".into(),
            "compile with `-c -o FILE.o` and declare `FILE.dwo` as an output",
        );
        return;
    };
    let declared = ctx
        .relative_key(&dwo)
        .is_some_and(|key| ctx.is_declared_output(&key));
    if !declared {
        ctx.refuse(
            "args.undeclared-output",
            &dwo,
            format!(
                "`-gsplit-dwarf` writes `{dwo}`, which the command does not declare as an output"
            ),
            "declare the `.dwo` among the command's outputs (`replay import` does)",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::split_dwarf_file;

    fn own(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_dwo_is_named_as_clang_names_it() {
        let args = own(&["-gsplit-dwarf", "-c", "x.c", "-o", "CMakeFiles/t.dir/x.c.o"]);
        assert_eq!(
            split_dwarf_file(&args).as_deref(),
            Some("CMakeFiles/t.dir/x.c.dwo")
        );
        assert_eq!(
            split_dwarf_file(&own(&["-gsplit-dwarf=split", "-c", "-o", "a"])).as_deref(),
            Some("a.dwo")
        );
        assert_eq!(split_dwarf_file(&own(&["-c", "-o", "a.o"])), None);
        assert_eq!(split_dwarf_file(&own(&["-gsplit-dwarf", "-o", "a"])), None);
    }
}
