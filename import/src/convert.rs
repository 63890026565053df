//! One database entry into tool commands: the chain split, each program
//! given its tool kind, each path made relative to the work root, and the
//! inputs and outputs declared.

use std::path::{Path, PathBuf};

use cmdlog::path::normalize_under;
use cmdlog::ToolKind;

use crate::converted::{Converted, SOURCE_EXTENSIONS};
use crate::entry::{Entry, Invocation};
use crate::paths::{is_system, parent, relative, under_root};
use crate::{shell, Import, Remark};

/// What a program is, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Program {
    Cc,
    Cxx,
    Ar,
    Ranlib,
    Ld,
    Cmake,
    /// `ln`, `cp`, `mv`, `rm`: a file operation.
    File,
    Noop,
    Cd,
    Unknown,
}

fn program(word: &str) -> Program {
    let base = word.rsplit('/').next().unwrap_or(word);
    if base == ":" || base == "true" {
        return Program::Noop;
    }
    if base == "cd" {
        return Program::Cd;
    }
    if crate::fileops::is_file_program(base) {
        return Program::File;
    }
    // Without a version suffix: `clang-14`, `gcc-12`, `llvm-ar-14`.
    let name = cmdlog::ToolKind::program_stem(base);
    let exact = |n: &str| match n {
        "clang" | "gcc" | "cc" => Some(Program::Cc),
        "clang++" | "g++" | "c++" => Some(Program::Cxx),
        "ar" | "llvm-ar" => Some(Program::Ar),
        "ranlib" | "llvm-ranlib" => Some(Program::Ranlib),
        "ld" | "ld.lld" | "ld.bfd" | "ld.gold" => Some(Program::Ld),
        "cmake" => Some(Program::Cmake),
        _ => None,
    };
    exact(name)
        // A target prefix: `x86_64-linux-gnu-gcc`.
        .or_else(|| name.rsplit_once('-').and_then(|(_, t)| exact(t)))
        .filter(|p| *p != Program::Cmake || name == "cmake")
        .unwrap_or(Program::Unknown)
}

/// One `&&` part of a chain, once understood.
enum Step {
    Tool(Converted),
    /// `cmake -E rm -f FILES` or `rm -f FILES`: dropped if later tools of
    /// the chain write them all (replay writes outputs fresh), else the
    /// built-in `remove` it holds.
    Remove(Converted, String),
    /// `ranlib ARCHIVE`: folded into the archiver's `s` modifier.
    Ranlib(String, String),
}

/// Converts entry `e` (directories relative to `base`) under `root`;
/// what is left out, or folded, is recorded in `result`.
pub(crate) fn entry(e: &Entry, base: &Path, root: &Path, result: &mut Import) -> Vec<Converted> {
    let shown = match &e.command {
        Invocation::Arguments(a) => a.join(" "),
        Invocation::Command(c) => c.clone(),
    };
    let leave_out = |result: &mut Import, reason: String| {
        result.left_out.push(Remark {
            entry: e.index,
            subject: shown.clone(),
            reason,
        })
    };
    let dir = e.directory(base);
    let Some(cwd) = under_root(root, &dir) else {
        leave_out(
            result,
            format!(
                "its directory `{}` is outside the work root `{}`",
                dir.display(),
                root.display()
            ),
        );
        return Vec::new();
    };
    let chain = match &e.command {
        Invocation::Arguments(a) => vec![a.clone()],
        Invocation::Command(c) => match shell::split_chain(c) {
            Ok(chain) => chain,
            Err(why) => {
                leave_out(
                    result,
                    format!("its command uses {why}, which the importer never hands to a shell"),
                );
                return Vec::new();
            }
        },
    };
    let steps = match steps(e.index, &chain, root, cwd) {
        Ok(steps) => steps,
        Err(why) => {
            leave_out(result, why);
            return Vec::new();
        }
    };
    if steps.is_empty() {
        // Nothing is lost: ninja's phony and utility rules, `:`.
        result.notes.push(Remark {
            entry: e.index,
            subject: if shown.is_empty() {
                e.file.clone()
            } else {
                shown.clone()
            },
            reason: "skipped: it runs nothing (an empty, phony or no-op command)".into(),
        });
        return Vec::new();
    }
    match fold(e.index, steps, &mut result.notes) {
        Ok(tools) => tools,
        Err(why) => {
            leave_out(result, why);
            Vec::new()
        }
    }
}

fn steps(
    index: usize,
    chain: &[Vec<String>],
    root: &Path,
    mut cwd: String,
) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    for words in chain {
        let Some(first) = words.first() else { continue };
        let place = Place { root, cwd: &cwd };
        match program(first) {
            Program::Noop if words.len() == 1 => {}
            Program::Cd if words.len() == 2 => {
                let (_, rel) = place.path(&words[1], Role::Dir)?;
                cwd = rel.ok_or_else(|| format!("`cd {}` leaves the work root", words[1]))?;
            }
            Program::Cc => steps.push(Step::Tool(compile(index, words, &place, ToolKind::Cc)?)),
            Program::Ld => steps.push(Step::Tool(link(index, words, &place)?)),
            Program::Ar => steps.push(Step::Tool(archive(index, words, &place)?)),
            Program::Ranlib if words.len() == 2 => {
                let (_, rel) = place.path(&words[1], Role::Output)?;
                steps.push(Step::Ranlib(rel.unwrap_or_default(), words.join(" ")));
            }
            Program::Cmake | Program::File => {
                let resolve = |value: &str| -> Result<(String, String), String> {
                    let (arg, rel) = place.path(value, Role::Output)?;
                    rel.map(|rel| (arg, rel)).ok_or_else(|| {
                        format!("`{value}` is outside the work root")
                    })
                };
                let is_cmake = program(first) == Program::Cmake;
                if is_cmake && words.get(1).map(String::as_str) != Some("-E") {
                    return Err(format!(
                        "it runs `cmake {}`, a CMake step (regeneration, a script) the importer does not turn into a command",
                        words.get(1).map_or("", String::as_str)
                    ));
                }
                let made = if is_cmake {
                    crate::fileops::cmake(index, &words[1..], &cwd, &resolve)?
                } else {
                    vec![crate::fileops::posix(index, words, &cwd, &resolve)?]
                };
                for c in made {
                    if c.tool == ToolKind::Remove {
                        steps.push(Step::Remove(c, words.join(" ")));
                    } else {
                        steps.push(Step::Tool(c));
                    }
                }
            }
            Program::Cxx => steps.push(Step::Tool(compile(index, words, &place, ToolKind::Cxx)?)),
            _ => {
                return Err(format!(
                    "it runs `{first}`, not a program the importer knows (compilers, `ar`, `ranlib`, `ld`, and the file operations `cmake -E`, `ln`, `cp`, `mv`, `rm`)"
                ))
            }
        }
    }
    Ok(steps)
}

/// Folds `ranlib` into the archive step before it and drops a `cmake -E
/// rm -f` whose files later tools of the chain write.
fn fold(index: usize, steps: Vec<Step>, notes: &mut Vec<Remark>) -> Result<Vec<Converted>, String> {
    let written: Vec<String> = steps
        .iter()
        .filter_map(|s| match s {
            Step::Tool(t) => Some(t.outputs.clone()),
            _ => None,
        })
        .flatten()
        .collect();
    let mut tools: Vec<Converted> = Vec::new();
    for step in steps {
        match step {
            Step::Tool(t) => tools.push(t),
            Step::Remove(mut remove, shown) => {
                // Files no tool of the chain writes are removed by replay,
                // as the build would; the others are written fresh anyway
                // (and a remove before their writer would be a second
                // writer of them).
                let (args, outputs): (Vec<String>, Vec<String>) = remove
                    .args
                    .iter()
                    .cloned()
                    .zip(remove.outputs.iter().cloned())
                    .filter(|(_, output)| !written.contains(output))
                    .unzip();
                if !outputs.is_empty() {
                    remove.args = args;
                    remove.outputs = outputs;
                    tools.push(remove);
                    continue;
                }
                notes.push(Remark {
                    entry: index,
                    subject: shown,
                    reason: "dropped: it removes outputs of the chain, and replay writes every output fresh".into(),
                });
            }
            Step::Ranlib(archive, shown) => {
                let last = tools
                    .last_mut()
                    .filter(|t| t.tool == ToolKind::Ar && t.outputs == [archive.clone()]);
                let Some(ar) = last else {
                    return Err(format!(
                        "`{shown}` indexes an archive that the command before it does not write"
                    ));
                };
                if let Some(op) = ar.args.first_mut() {
                    if !op.contains('s') {
                        op.push('s');
                    }
                }
                notes.push(Remark {
                    entry: index,
                    subject: shown,
                    reason: "folded into the archiver's `s` modifier (the same symbol index)"
                        .into(),
                });
            }
        }
    }
    Ok(tools)
}

/// What a path value is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Input,
    Output,
    Dir,
}

struct Place<'a> {
    root: &'a Path,
    cwd: &'a str,
}

impl Place<'_> {
    /// The argument to write for path `value` and its root-relative form
    /// (`None` for a system path, kept absolute). Outside both: an error.
    fn path(&self, value: &str, role: Role) -> Result<(String, Option<String>), String> {
        if value.is_empty() {
            return Err("an empty path".into());
        }
        if value.starts_with('/') {
            let abs = PathBuf::from(value);
            if let Some(rel) = under_root(self.root, &abs) {
                return Ok((relative(self.cwd, &rel), Some(rel)));
            }
            if role != Role::Output && is_system(&abs) {
                return Ok((value.to_owned(), None));
            }
            let what = match role {
                Role::Output => "writes",
                Role::Input => "reads",
                Role::Dir => "searches",
            };
            return Err(format!(
                "it {what} `{value}`, outside the work root `{}`{}",
                self.root.display(),
                if role == Role::Output {
                    ""
                } else {
                    " and the system directories"
                }
            ));
        }
        match normalize_under(self.cwd, value) {
            Some(rel) => Ok((value.to_owned(), Some(rel))),
            None => Err(format!("`{value}` climbs out of the work root")),
        }
    }
}

/// What a walk over a tool's arguments gathers.
#[derive(Default)]
struct Gathered {
    args: Vec<String>,
    inputs: Vec<String>,
    outputs: Vec<String>,
    source_dirs: Vec<String>,
}

impl Gathered {
    fn add(&mut self, rel: Option<String>, value: &str, role: Role) {
        let list = match role {
            Role::Output => &mut self.outputs,
            Role::Input | Role::Dir => &mut self.inputs,
        };
        let item = rel.unwrap_or_else(|| value.to_owned());
        // A system directory (`-isystem /usr/include/x`) is the policy's
        // to allow: not declared.
        let system_dir = role == Role::Dir && item.starts_with('/');
        if !system_dir && !list.contains(&item) {
            list.push(item);
        }
    }

    fn into_command(self, index: usize, tool: ToolKind, program: &str, cwd: &str) -> Converted {
        Converted {
            entry: index,
            tool,
            program: program.to_owned(),
            args: self.args,
            cwd: cwd.to_owned(),
            inputs: self.inputs,
            outputs: self.outputs,
            source_dirs: self.source_dirs,
        }
    }
}

/// Flags whose value is a path, in the next argument or glued on.
const CC_PATH_FLAGS: &[(&str, Role)] = &[
    ("-o", Role::Output),
    ("-MF", Role::Output),
    ("-include", Role::Input),
    ("-imacros", Role::Input),
    ("-isystem", Role::Dir),
    ("-iquote", Role::Dir),
    ("-idirafter", Role::Dir),
    ("-I", Role::Dir),
    ("-L", Role::Dir),
];

/// Flags whose value is the next argument and not a path the importer
/// interprets (the policy judges it as written).
const CC_SEPARATE: &[&str] = &[
    "-MT",
    "-MQ",
    "-D",
    "-U",
    "-x",
    "-Xlinker",
    "-target",
    "-mllvm",
    "-arch",
    "-z",
    "-u",
    "-e",
    "-l",
    "-T",
    "-Xclang",
    "-Xassembler",
    "-Xpreprocessor",
    "-B",
    "-isysroot",
    "-MJ",
    "--sysroot",
];

fn with_extension(path: &str, ext: &str) -> String {
    let (dir, name) = path.rsplit_once('/').map_or(("", path), |(d, n)| (d, n));
    let stem = name.rsplit_once('.').map_or(name, |(s, _)| s);
    if dir.is_empty() {
        format!("{stem}.{ext}")
    } else {
        format!("{dir}/{stem}.{ext}")
    }
}

fn compile(
    index: usize,
    words: &[String],
    place: &Place<'_>,
    tool: ToolKind,
) -> Result<Converted, String> {
    let mut g = Gathered::default();
    let (mut compile_only, mut dep, mut dep_file, mut split_dwarf) = (false, false, false, false);
    let mut output: Option<String> = None;
    let mut i = 1;
    while i < words.len() {
        let arg = &words[i];
        i += 1;
        if let Some((flag, role)) = CC_PATH_FLAGS.iter().find(|(f, _)| arg == f) {
            let value = words
                .get(i)
                .ok_or_else(|| format!("`{arg}` has no value"))?;
            i += 1;
            let (written, rel) = place.path(value, *role)?;
            if *flag == "-o" {
                output.clone_from(&rel);
            }
            dep_file |= *flag == "-MF";
            g.args.push(arg.clone());
            g.args.push(written);
            g.add(rel, value, *role);
            continue;
        }
        let glued = CC_PATH_FLAGS
            .iter()
            .find(|(f, _)| arg.len() > f.len() && arg.starts_with(f));
        if let Some((flag, role)) = glued {
            let value = &arg[flag.len()..];
            let (written, rel) = place.path(value, *role)?;
            if *flag == "-o" {
                output.clone_from(&rel);
            }
            dep_file |= *flag == "-MF";
            g.args.push(format!("{flag}{written}"));
            g.add(rel, value, *role);
            continue;
        }
        if CC_SEPARATE.contains(&arg.as_str()) {
            g.args.push(arg.clone());
            if let Some(value) = words.get(i) {
                g.args.push(value.clone());
                i += 1;
            }
            continue;
        }
        if let Some(list) = arg.strip_prefix("-Wl,") {
            let items: Vec<&str> = list.split(',').collect();
            let mut out = Vec::with_capacity(items.len());
            for (at, item) in items.iter().enumerate() {
                let script = item.strip_prefix("--version-script=");
                let after = at > 0 && items[at - 1] == "--version-script";
                if let Some(value) = script.or(if after { Some(item) } else { None }) {
                    let (written, rel) = place.path(value, Role::Input)?;
                    g.add(rel, value, Role::Input);
                    out.push(if after {
                        written
                    } else {
                        format!("--version-script={written}")
                    });
                } else {
                    out.push((*item).to_owned());
                }
            }
            g.args.push(format!("-Wl,{}", out.join(",")));
            continue;
        }
        match arg.as_str() {
            "-c" => compile_only = true,
            "-MD" | "-MMD" => dep = true,
            "-gsplit-dwarf" => split_dwarf = true,
            _ => {}
        }
        if arg.len() > 1 && arg.starts_with('-') {
            g.args.push(arg.clone());
            continue;
        }
        // A positional: a source, an object, an archive, a library.
        let (written, rel) = place.path(arg, Role::Input)?;
        let source = arg
            .rsplit_once('.')
            .is_some_and(|(_, ext)| SOURCE_EXTENSIONS.contains(&ext));
        if let (true, Some(rel)) = (source, &rel) {
            g.source_dirs.push(parent(rel).to_owned());
        }
        g.args.push(written);
        g.add(rel, arg, Role::Input);
    }
    if let (true, Some(o)) = (compile_only, &output) {
        if dep && !dep_file {
            g.add(Some(with_extension(o, "d")), "", Role::Output);
        }
        if split_dwarf {
            g.add(Some(with_extension(o, "dwo")), "", Role::Output);
        }
    }
    Ok(g.into_command(index, tool, &words[0], place.cwd))
}

fn archive(index: usize, words: &[String], place: &Place<'_>) -> Result<Converted, String> {
    let [_, op, archive, members @ ..] = words else {
        return Err(format!(
            "`{}` names no operation and archive",
            words.join(" ")
        ));
    };
    let letters = op.strip_prefix('-').unwrap_or(op);
    let creates = letters.starts_with(['q', 'r']) && letters.chars().all(|c| "qrcsuDU".contains(c));
    if !creates {
        return Err(format!(
            "`{}`: only the archiver's `q` and `r` operations (with `c`, `s`, `u`, `D`) are imported",
            words.join(" ")
        ));
    }
    let mut g = Gathered::default();
    g.args.push(op.clone());
    let (written, rel) = place.path(archive, Role::Output)?;
    g.args.push(written);
    g.add(rel, archive, Role::Output);
    for m in members {
        if m.starts_with('-') {
            return Err(format!(
                "`{m}`: archiver options after the archive are not imported"
            ));
        }
        let (written, rel) = place.path(m, Role::Input)?;
        g.args.push(written);
        g.add(rel, m, Role::Input);
    }
    Ok(g.into_command(index, ToolKind::Ar, &words[0], place.cwd))
}

/// Linker flags whose value is the next argument and not a path.
const LD_SEPARATE: &[&str] = &[
    "-m",
    "-z",
    "-soname",
    "-h",
    "-rpath",
    "-e",
    "-l",
    "-dynamic-linker",
    "-T",
    "-Map",
    "-plugin",
];

fn link(index: usize, words: &[String], place: &Place<'_>) -> Result<Converted, String> {
    let mut g = Gathered::default();
    let mut i = 1;
    while i < words.len() {
        let arg = &words[i];
        i += 1;
        let role = match arg.as_str() {
            "-o" => Some(Role::Output),
            "-L" => Some(Role::Dir),
            _ => None,
        };
        if let Some(role) = role {
            let value = words
                .get(i)
                .ok_or_else(|| format!("`{arg}` has no value"))?;
            i += 1;
            let (written, rel) = place.path(value, role)?;
            g.args.push(arg.clone());
            g.args.push(written);
            g.add(rel, value, role);
            continue;
        }
        if LD_SEPARATE.contains(&arg.as_str()) {
            g.args.push(arg.clone());
            if let Some(value) = words.get(i) {
                g.args.push(value.clone());
                i += 1;
            }
            continue;
        }
        if arg.len() > 1 && arg.starts_with('-') {
            g.args.push(arg.clone());
            continue;
        }
        let (written, rel) = place.path(arg, Role::Input)?;
        g.args.push(written);
        g.add(rel, arg, Role::Input);
    }
    Ok(g.into_command(index, ToolKind::Ld, &words[0], place.cwd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_are_known_by_name_whatever_their_version_or_prefix() {
        assert_eq!(program("/usr/bin/clang-14"), Program::Cc);
        assert_eq!(program("x86_64-linux-gnu-gcc-12"), Program::Cc);
        assert_eq!(program("/usr/bin/llvm-ar-14"), Program::Ar);
        assert_eq!(program("/usr/bin/llvm-ranlib-14"), Program::Ranlib);
        assert_eq!(program("clang++"), Program::Cxx);
        assert_eq!(program("/usr/bin/cmake"), Program::Cmake);
        assert_eq!(program("ld.lld"), Program::Ld);
        assert_eq!(program("python3"), Program::Unknown);
        assert_eq!(program("not-cmake"), Program::Unknown);
        assert_eq!(program(":"), Program::Noop);
    }

    #[test]
    fn derived_outputs_replace_the_extension() {
        assert_eq!(with_extension("a/b.c.o", "d"), "a/b.c.d");
        assert_eq!(with_extension("x", "dwo"), "x.dwo");
    }
}
