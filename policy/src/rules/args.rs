//! The argument grammar: walks a command's argv against the allowlist of its
//! program's [`Grammar`], expanding response files where the policy opts in
//! and handing the values of flags like `-Wl,` to the grammar they are for
//! (the linker's), so a forbidden linker flag is refused however it is
//! smuggled in.
//!
//! Everything not allowed is refused: an unknown flag, a flag the grammar
//! denies (with the reason the policy gives), a value outside its
//! constraint, a positional argument or path value that is not a declared
//! input or output.

use cmdlog::path::is_absolute;

use super::dirs::system_dir;
use super::linker::{check_reads, inspect, Problem};
use crate::ctx::{Ctx, RootDir};
use crate::model::{FlagRule, Grammar, Positional, ValueRule};
use crate::rootfs::{Kind, Lookup};
use crate::verdict::LinkerReads;

/// How deep flag values may be handed from grammar to grammar
/// (`clang -Wl,` -> `ld` is depth 1).
const MAX_DELEGATION: u32 = 4;

/// Bytes of one response file.
const RESPONSE_FILE_MAX_BYTES: u64 = 1 << 20;

/// Arguments all response files of one command may expand to.
const RESPONSE_FILE_MAX_ARGS: usize = 1 << 16;

/// Checks `args` against the grammar named `grammar`; returns the argv with
/// response files expanded (what the executor should run).
pub(crate) fn check(ctx: &mut Ctx<'_>, grammar: &str, args: &[String]) -> Vec<String> {
    let mut expanded = Vec::with_capacity(args.len());
    let Some(g) = ctx.policy.grammars.get(grammar) else {
        // The loader refuses a program whose grammar is missing.
        return args.to_vec();
    };
    expand(ctx, g, args, 0, &mut expanded);
    let given = walk(ctx, g, &expanded, 0, "");
    // What `-l` finds in the root's `-L` directories: checked now, and
    // again right before the linker runs.
    if !ctx.linker_reads.library_dirs.is_empty() {
        let dirs = LinkerReads {
            objects: Vec::new(),
            library_dirs: ctx.linker_reads.library_dirs.clone(),
        };
        for r in check_reads(ctx.fs, &dirs, true) {
            ctx.refuse(r.rule, &r.path, r.message, r.hint);
        }
    }
    if !g.require_one_of.is_empty() && !g.require_one_of.iter().any(|r| given.contains(r)) {
        let names: Vec<String> = g.require_one_of.iter().map(|n| format!("`{n}`")).collect();
        ctx.refuse(
            "args.missing-output",
            &names.join(" "),
            format!(
                "the command gives none of {}: the tool would write a file named after its input, which is not a declared output",
                names.join(", ")
            ),
            "name the output with the flag, and list it in the command's `outputs`",
        );
    }
    expanded
}

/// Arguments handed from one flag occurrence to another grammar.
struct Delegation {
    /// The grammar they are for.
    grammar: String,
    /// The arguments.
    pieces: Vec<String>,
    /// The flag as shown in messages (`-Wl,`, `-Xlinker`).
    shown: String,
    /// Where the occurrence is in the argv: `start..end`.
    span: (usize, usize),
    /// Whether the flag carried them joined (`-Wl,a,b`).
    joined: bool,
}

/// Expands `@file` arguments into `out`, recursively.
fn expand(ctx: &mut Ctx<'_>, g: &Grammar, args: &[String], depth: u32, out: &mut Vec<String>) {
    for arg in args {
        let Some(path) = arg.strip_prefix('@').filter(|p| !p.is_empty()) else {
            out.push(arg.clone());
            continue;
        };
        if !g.response_files {
            ctx.refuse(
                "args.response-file",
                arg,
                format!("response file `{arg}` is not allowed for this program"),
                "pass the arguments inline, or set `response_files = true` in the policy's grammar",
            );
            continue;
        }
        if depth >= g.response_file_depth {
            ctx.refuse(
                "args.response-file-depth",
                arg,
                format!("response files nest deeper than {}", g.response_file_depth),
                "flatten the response files, or raise `response_file_depth` in the policy",
            );
            continue;
        }
        let Some(key) = ctx.relative_key(path) else {
            ctx.refuse(
                "args.path-outside-root",
                arg,
                format!("response file `{path}` is outside the work root"),
                "response files must be declared inputs inside the work root",
            );
            continue;
        };
        if !ctx.is_declared_input(&key) {
            ctx.refuse(
                "args.undeclared-input",
                arg,
                format!("response file `{path}` is not a declared input"),
                "list the response file in the command's `inputs`",
            );
            continue;
        }
        let raw = ctx.raw_under_cwd(path);
        if let Lookup::Escapes { via } = ctx.lookup(&raw) {
            ctx.symlink_escape(arg, &via);
            continue;
        }
        let native = ctx.native(&raw).into_owned();
        match ctx.fs.read_capped(&native, RESPONSE_FILE_MAX_BYTES) {
            Ok(Some(text)) => {
                let tokens = tokenize_gnu(&text);
                if out.len() + tokens.len() > RESPONSE_FILE_MAX_ARGS {
                    ctx.refuse(
                        "args.response-file-too-large",
                        arg,
                        format!(
                            "response files expand to more than {RESPONSE_FILE_MAX_ARGS} arguments"
                        ),
                        "pass fewer arguments",
                    );
                    continue;
                }
                expand(ctx, g, &tokens, depth + 1, out);
            }
            Ok(None) => ctx.refuse(
                "args.response-file-too-large",
                arg,
                format!("response file `{path}` is larger than {RESPONSE_FILE_MAX_BYTES} bytes"),
                "pass fewer arguments",
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ctx.unverified(
                "args.response-file-unread",
                arg,
                format!(
                    "response file `{path}` does not exist yet, so its arguments cannot be checked"
                ),
                "create the response file before checking, or pass the arguments inline",
            ),
            Err(e) => ctx.refuse(
                "args.response-file-unread",
                arg,
                format!("cannot read response file `{path}`: {e}"),
                "response files must be regular files inside the work root",
            ),
        }
    }
}

/// Tokenizes a response file as GNU tools and LLVM's `cl` do: whitespace
/// separates, `'...'` and `"..."` quote, backslash escapes.
pub(crate) fn tokenize_gnu(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_token = false;
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
                in_token = true;
            }
            '\'' | '"' => {
                in_token = true;
                while let Some(n) = chars.next() {
                    if n == c {
                        break;
                    }
                    if n == '\\' && c == '"' {
                        if let Some(e) = chars.next() {
                            cur.push(e);
                        }
                        continue;
                    }
                    cur.push(n);
                }
            }
            c if c.is_whitespace() => {
                if in_token {
                    out.push(std::mem::take(&mut cur));
                    in_token = false;
                }
            }
            c => {
                cur.push(c);
                in_token = true;
            }
        }
    }
    if in_token {
        out.push(cur);
    }
    out
}

/// The argument as the grammar matches it: first flag char made canonical,
/// ASCII case folded if the grammar ignores case. Same byte length.
fn match_key(g: &Grammar, arg: &str) -> Option<String> {
    let first = arg.chars().next()?;
    if !first.is_ascii() || !g.flag_chars.contains(&first) {
        return None;
    }
    let mut key = String::with_capacity(arg.len());
    key.push(g.flag_chars[0]);
    key.push_str(&arg[1..]);
    if g.case_insensitive {
        key.make_ascii_lowercase();
    }
    Some(key)
}

/// Walks an expanded argv. `via` names the flag that handed these
/// arguments over (`-Wl,`), for messages. Returns the canonical names of
/// the flags given (at this level).
fn walk(ctx: &mut Ctx<'_>, g: &Grammar, args: &[String], depth: u32, via: &str) -> Vec<String> {
    let mut delegated: Vec<Delegation> = Vec::new();
    let mut given: Vec<String> = Vec::new();
    let mut positionals = 0;
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        // A lone `-` is stdin/stdout, which no declared path can be.
        let Some(key) = match_key(g, arg).filter(|_| arg.len() > 1) else {
            positional(ctx, g, arg, via, positionals);
            positionals += 1;
            continue;
        };
        if let Some(deny) = g.deny.iter().find(|d| {
            if d.prefix {
                key.starts_with(&d.name)
            } else {
                key == d.name
            }
        }) {
            ctx.refuse(
                "args.forbidden-flag",
                arg,
                format!("`{arg}`{}: {}", shown_via(via), deny.reason),
                "remove the flag; the policy never allows it",
            );
            continue;
        }
        let exact = g
            .flags
            .iter()
            .find(|f| f.name == key && (f.forms.switch || f.forms.separate || f.forms.rest));
        if let Some(flag) = exact {
            given.push(flag.name.clone());
            if flag.forms.switch {
                continue;
            }
            if flag.forms.rest {
                let rest: Vec<String> = args[i..].to_vec();
                let at = Occurrence {
                    arg,
                    span: (i - 1, args.len()),
                    joined: false,
                    via,
                };
                i = args.len();
                value(
                    ctx,
                    g,
                    flag,
                    &at,
                    &rest.join(" "),
                    Some(rest),
                    &mut delegated,
                );
                continue;
            }
            let count = flag.count as usize;
            if args.len() - i < count {
                ctx.refuse(
                    "args.missing-value",
                    arg,
                    format!("`{arg}`{} needs {count} value(s) after it", shown_via(via)),
                    "give the flag its value, or remove it",
                );
                i = args.len();
                continue;
            }
            let at = Occurrence {
                arg,
                span: (i - 1, i + count),
                joined: false,
                via,
            };
            for v in &args[i..i + count] {
                value(ctx, g, flag, &at, v, None, &mut delegated);
            }
            i += count;
            continue;
        }
        let joined = g
            .flags
            .iter()
            .filter(|f| f.forms.joined && key.len() > f.name.len() && key.starts_with(&f.name))
            .max_by_key(|f| f.name.len());
        if let Some(flag) = joined {
            given.push(flag.name.clone());
            let v = &arg[flag.name.len()..];
            let at = Occurrence {
                arg,
                span: (i - 1, i),
                joined: true,
                via,
            };
            value(ctx, g, flag, &at, v, None, &mut delegated);
            continue;
        }
        ctx.refuse(
            "args.unknown-flag",
            arg,
            format!("`{arg}`{} is not a flag the policy allows for this program", shown_via(via)),
            &format!(
                "remove the flag, or allow it (with a value constraint) in `flags` of {}; `replay explain args.unknown-flag`",
                g.whereabouts()
            ),
        );
    }
    // Flags allowed only beside another (`-MD` writes where `-MF` says,
    // else next to the output, under a name nobody declared).
    for name in &given {
        let Some(flag) = g.flags.iter().find(|f| f.name == *name) else {
            continue;
        };
        if !flag.requires.is_empty() && !flag.requires.iter().any(|r| given.contains(r)) {
            let names: Vec<String> = flag.requires.iter().map(|n| format!("`{n}`")).collect();
            // Refused like a denied flag: alone, it does what the policy
            // forbids (`-MD` writes a file named after the output).
            ctx.refuse(
                "args.forbidden-flag",
                name,
                format!(
                    "`{name}`{} is allowed only with {}: alone, it writes a file whose path is not given",
                    shown_via(via),
                    names.join(" or ")
                ),
                "give the companion flag (e.g. `-MF` naming a declared output), or remove the flag",
            );
        }
    }
    // Each occurrence is judged on its own: the tool places other
    // arguments (the driver's inputs) between two `-Wl,` occurrences, so a
    // flag in one cannot take its value from the next (`-Wl,-soname a.o
    // -Wl,-plugin,x.so` gives the linker `-soname a.o -plugin x.so`). Only
    // occurrences of a separate flag that follow each other directly
    // (`-Xlinker -soname -Xlinker name`) reach the tool as one run.
    let mut runs: Vec<Delegation> = Vec::new();
    for d in delegated {
        match runs.last_mut() {
            Some(last)
                if !last.joined
                    && !d.joined
                    && last.span.1 == d.span.0
                    && last.grammar == d.grammar
                    && last.shown == d.shown =>
            {
                last.pieces.extend(d.pieces);
                last.span.1 = d.span.1;
            }
            _ => runs.push(d),
        }
    }
    if g.positional == Positional::Archive && positionals < 2 {
        ctx.refuse(
            "args.missing-output",
            &args.join(" "),
            "the archiver is given no operation and archive: it needs `OPERATION ARCHIVE MEMBERS...`"
                .to_owned(),
            "name the operation and the archive (a declared output)",
        );
    }
    for run in runs {
        if depth + 1 > MAX_DELEGATION {
            ctx.refuse(
                "args.delegation-depth",
                &run.shown,
                format!(
                    "`{}` hands arguments on more than {MAX_DELEGATION} levels deep",
                    run.shown
                ),
                "pass the arguments to the tool directly",
            );
            continue;
        }
        if let Some(target) = ctx.policy.grammars.get(&run.grammar) {
            walk(ctx, target, &run.pieces, depth + 1, &run.shown);
        }
    }
    given
}

/// One occurrence of a flag in the argv, for [`value`].
struct Occurrence<'a> {
    /// The flag as written (with a joined value).
    arg: &'a str,
    /// Where the flag and its values are in the argv.
    span: (usize, usize),
    /// Whether the value is joined to the flag's name.
    joined: bool,
    /// The flag that handed the argv over, or "".
    via: &'a str,
}

/// ` (inside `-Wl,`)` after a flag handed over by another flag, else "".
fn shown_via(via: &str) -> String {
    if via.is_empty() {
        String::new()
    } else {
        format!(" (inside `{via}`)")
    }
}

/// Where a path value came from: ` (from `-o`)`, ` (from `-Map` inside
/// `-Wl,`)`, or nothing for a plain positional argument.
fn origin(arg: &str, v: &str, via: &str) -> String {
    match (arg == v, via.is_empty()) {
        (true, true) => String::new(),
        (true, false) => format!(" (inside `{via}`)"),
        (false, true) => format!(" (from `{arg}`)"),
        (false, false) => format!(" (from `{arg}` inside `{via}`)"),
    }
}

/// A positional argument, the `nth` (from 0) of its argv.
fn positional(ctx: &mut Ctx<'_>, g: &Grammar, arg: &str, via: &str, nth: usize) {
    if unexpanded_response_file(ctx, arg, via) {
        return;
    }
    match g.positional {
        Positional::Archive if nth == 0 => {
            if !g.operations.iter().any(|o| o == arg) {
                ctx.refuse(
                    "args.bad-value",
                    arg,
                    format!(
                        "`{arg}`{} is not an archiver operation this policy allows ({})",
                        shown_via(via),
                        g.operations.join(", ")
                    ),
                    "use one of the allowed operations (no thin archives, no plugins)",
                );
            }
        }
        Positional::Archive if nth == 1 => path_value(ctx, arg, arg, PathRole::Output, via),
        Positional::Archive => path_value(ctx, arg, arg, PathRole::Input, via),
        Positional::Refuse => ctx.refuse(
            "args.positional",
            arg,
            format!(
                "positional argument `{arg}`{} is not allowed for this program",
                shown_via(via)
            ),
            "remove it",
        ),
        Positional::Input => {
            path_value(ctx, arg, arg, PathRole::Input, via);
            // A compile's source directory: quote includes search it.
            let source = !is_absolute(arg)
                && arg
                    .rsplit_once('.')
                    .is_some_and(|(_, ext)| g.source_extensions.iter().any(|e| e == ext));
            if source {
                let raw = ctx.raw_under_cwd(arg);
                let parent = raw.rsplit_once('/').map_or(".", |(p, _)| p).to_owned();
                root_dir(ctx, arg, &parent, true);
            }
            if g.linker_inputs {
                linker_input(ctx, g, arg, via);
            }
        }
    }
}

/// A positional linker input inside the root that exists must be an
/// object, an archive or bitcode: GNU `ld` reads any other file as a
/// linker script, which can pull in files the command does not declare
/// (`INPUT(/etc/...)`) even though `-T` is refused.
fn linker_input(ctx: &mut Ctx<'_>, g: &Grammar, arg: &str, via: &str) {
    if is_absolute(arg) {
        // System inputs (`/usr/lib/.../libc.so` is itself a script) come
        // from the read-only directories the policy trusts.
        return;
    }
    let compiled = arg
        .rsplit_once('.')
        .is_some_and(|(_, ext)| g.source_extensions.iter().any(|e| e == ext));
    if compiled {
        return;
    }
    let raw = ctx.raw_under_cwd(arg);
    let native = ctx.native(&raw).into_owned();
    // Whatever is there now, an earlier command may make or change it:
    // verified again right before the tool runs.
    if let Some(path) = cmdlog::path::normalize_under(".", &native) {
        ctx.linker_reads.objects.push(path);
    }
    if !matches!(
        ctx.lookup(&raw),
        Lookup::Inside {
            kind: Kind::File | Kind::Linked
        }
    ) {
        // Missing: an earlier command makes it (checked when it runs).
        // Anything else was refused as a path already.
        return;
    }
    let problem = match ctx.fs.open_file(&native) {
        Ok(file) => inspect(file).err(),
        Err(e) => Some(Problem::Unreadable(e)),
    };
    if let Some(problem) = problem {
        let message = format!("{}{}", problem.message(arg), shown_via(via));
        ctx.refuse(problem.rule(), arg, message, problem.hint());
    }
}

/// Refuses `@file` where it was not expanded: inside a value handed to
/// another grammar (`-Wl,@file`), the tool would read it unchecked.
fn unexpanded_response_file(ctx: &mut Ctx<'_>, arg: &str, via: &str) -> bool {
    if arg.len() > 1 && arg.starts_with('@') {
        ctx.refuse(
            "args.response-file",
            arg,
            format!(
                "response file `{arg}`{} is not allowed here",
                shown_via(via)
            ),
            "pass the arguments inline",
        );
        return true;
    }
    false
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum PathRole {
    Input,
    Output,
    Dir,
}

/// Checks one value of `flag` (as written in `at`).
fn value(
    ctx: &mut Ctx<'_>,
    g: &Grammar,
    flag: &FlagRule,
    at: &Occurrence<'_>,
    v: &str,
    rest: Option<Vec<String>>,
    delegated: &mut Vec<Delegation>,
) {
    let Some(rule) = &flag.value else { return };
    let (arg, via) = (at.arg, at.via);
    if looks_like_flag(g, flag, at, v, rule) {
        ctx.refuse(
            "args.value-looks-like-flag",
            v,
            format!(
                "value `{v}` of `{arg}`{} starts like a flag or a response file, which the tool may read as one",
                shown_via(via)
            ),
            "give the value without a leading flag character or `@`, or name the flag the tool would see",
        );
        return;
    }
    let bad = |ctx: &mut Ctx<'_>, expected: String| {
        ctx.refuse(
            "args.bad-value",
            v,
            format!(
                "value `{v}` of `{arg}`{} is not allowed: expected {expected}",
                shown_via(via)
            ),
            &format!(
                "use an allowed value, or widen the constraint of `{}` in `flags` of {}",
                flag.name,
                g.whereabouts()
            ),
        )
    };
    match rule {
        ValueRule::Enum(values) => {
            let ok = values.iter().any(|e| {
                if g.case_insensitive {
                    e.eq_ignore_ascii_case(v)
                } else {
                    e == v
                }
            });
            if !ok {
                let list: Vec<String> = values.iter().map(|e| format!("`{e}`")).collect();
                bad(ctx, format!("one of {}", list.join(", ")));
            }
        }
        ValueRule::Pattern(re) => {
            if !re.is_match(v) {
                bad(ctx, format!("a match of `{}`", pattern_shown(re.as_str())));
            }
        }
        ValueRule::Range(lo, hi) => {
            let ok = v.parse::<i64>().is_ok_and(|n| (*lo..=*hi).contains(&n));
            if !ok {
                bad(ctx, format!("an integer from {lo} to {hi}"));
            }
        }
        ValueRule::Input => path_value(ctx, arg, v, PathRole::Input, via),
        ValueRule::Output => path_value(ctx, arg, v, PathRole::Output, via),
        ValueRule::Dir => {
            path_value(ctx, arg, v, PathRole::Dir, via);
            // `-L dir` in the root: what `-l` finds there is a linker input.
            if g.linker_inputs && flag.name == "-L" && !is_absolute(v) {
                let raw = ctx.raw_under_cwd(v);
                let native = ctx.native(&raw).into_owned();
                if let Some(dir) = cmdlog::path::normalize_under(".", &native) {
                    ctx.linker_reads.library_dirs.push(dir);
                }
            }
        }
        ValueRule::Pipeline(allowed) => {
            // Refused like a denied flag: the pipeline is what the flag does.
            if let Err(why) = check_pipeline(v, allowed) {
                ctx.refuse(
                    "args.forbidden-flag",
                    arg,
                    format!(
                        "`{arg}`{}: the pipeline may name only built-in passes that write no undeclared file: {why}",
                        shown_via(via)
                    ),
                    "name built-in passes only (`opt-14 --print-passes`), without `dot-*`, `view-*` or `insert-gcov-profiling`; or use `-O`",
                );
            }
        }
        ValueRule::Grammar { name, split } => {
            let pieces: Vec<String> = match (rest, split) {
                (Some(rest), _) => rest,
                (None, Some(c)) => v
                    .split(*c)
                    .filter(|p| !p.is_empty())
                    .map(str::to_owned)
                    .collect(),
                (None, None) => vec![v.to_owned()],
            };
            let shown = if at.joined {
                flag.name.clone()
            } else {
                arg.to_owned()
            };
            delegated.push(Delegation {
                grammar: name.clone(),
                pieces,
                shown,
                span: at.span,
                joined: at.joined,
            });
        }
    }
}

/// Whether a value would be read by the tool as something else than the
/// value the checker judged: tools expand `@file` anywhere (GNU `ld` even
/// inside `-Wl,`), and a value starting with a flag character is where
/// parsers disagree (`-isystem-after` is its own clang flag that takes
/// the next argument, not `-isystem` with `-after`). Values handed to
/// another grammar are judged there; an enum only allows what it lists.
fn looks_like_flag(
    g: &Grammar,
    flag: &FlagRule,
    at: &Occurrence<'_>,
    v: &str,
    rule: &ValueRule,
) -> bool {
    if matches!(rule, ValueRule::Grammar { .. } | ValueRule::Enum(_)) {
        // Judged elsewhere, or only ever the exact strings the policy lists.
        return false;
    }
    if v.starts_with('@') {
        // A path value is what a tool opens, and GNU tools read `@file`
        // instead; a pattern admits `@` only where its author wrote it
        // (ld64's `@rpath/...`, which is not a file name).
        return matches!(rule, ValueRule::Input | ValueRule::Output | ValueRule::Dir)
            || !matches!(rule, ValueRule::Pattern(_));
    }
    let Some(first) = v.chars().next() else {
        return false;
    };
    // A lone `-` is stdin or stdout, not a flag; path rules refuse it.
    if !g.flag_chars.contains(&first) || v.len() == 1 {
        return false;
    }
    // A joined value after a name that ends in a separator (`-mattr=-sse`,
    // `/OUT:`) cannot be read as part of a longer flag name.
    !at.joined || flag.name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The user's pattern without the anchors the loader added.
fn pattern_shown(anchored: &str) -> &str {
    anchored
        .strip_prefix("^(?:")
        .and_then(|s| s.strip_suffix(")$"))
        .unwrap_or(anchored)
}

/// A value that names a path: it must be a declared input or output, or
/// for a directory, inside the root or under a system input directory.
fn path_value(ctx: &mut Ctx<'_>, arg: &str, v: &str, role: PathRole, via: &str) {
    if is_absolute(v) {
        let under_system = ctx.absolute_key(v).is_some_and(|k| ctx.under_system(&k));
        let ok = match role {
            PathRole::Input => ctx
                .absolute_key(v)
                .is_some_and(|k| ctx.is_declared_input(&k)),
            PathRole::Dir => under_system,
            PathRole::Output => false,
        };
        if ok {
            if role == PathRole::Dir {
                if let Some(key) = ctx.absolute_key(v) {
                    system_dir(ctx, v, &key);
                }
            }
            return;
        }
        let (rule, what, hint) = match role {
            PathRole::Input => (
                "args.undeclared-input",
                "a declared input",
                "list it in the command's `inputs` (absolute inputs must be under the policy's `system_inputs`)",
            ),
            PathRole::Output => (
                "args.path-outside-root",
                "a declared output inside the work root",
                "write outputs inside the work root and list them in `outputs`",
            ),
            PathRole::Dir => (
                "args.path-outside-root",
                "a directory inside the work root or under the policy's `system_inputs`",
                "use a directory inside the work root, or add it to `system_inputs`",
            ),
        };
        ctx.refuse(
            rule,
            v,
            format!("`{v}`{} is not {what}", origin(arg, v, via)),
            hint,
        );
        return;
    }
    let Some(key) = ctx.relative_key(v) else {
        ctx.refuse(
            "args.path-outside-root",
            v,
            format!("`{v}`{} leaves the work root", origin(arg, v, via)),
            "use paths inside the work root",
        );
        return;
    };
    let raw = ctx.raw_under_cwd(v);
    match ctx.lookup(&raw) {
        Lookup::Escapes { via: link } => {
            ctx.symlink_escape(v, &link);
            return;
        }
        Lookup::Inside { kind } => {
            if role == PathRole::Output {
                // As for declared outputs: the argument must name the file
                // where it physically is, or staging (which renames the
                // argument's last component) and the checks that compare
                // paths as written would see another file than the tool.
                if let Some(physical) = ctx.symlinked_as(&raw) {
                    ctx.refuse(
                        "outputs.through-symlink",
                        v,
                        format!(
                            "`{v}`{} goes through a symlink (it is `{physical}`)",
                            origin(arg, v, via)
                        ),
                        "name outputs by their real path inside the work root",
                    );
                    return;
                }
            }
            if role == PathRole::Dir && !matches!(kind, Kind::Dir | Kind::Missing) {
                ctx.refuse(
                    "args.bad-value",
                    v,
                    format!("`{v}`{} is not a directory", origin(arg, v, via)),
                    "name a directory",
                );
                return;
            }
            if role == PathRole::Dir {
                root_dir(ctx, v, &raw, false);
            }
        }
    }
    let (ok, rule, what, hint) = match role {
        PathRole::Input => (
            ctx.is_declared_input(&key),
            "args.undeclared-input",
            "a declared input",
            "list the file in the command's `inputs`",
        ),
        PathRole::Output => (
            ctx.is_declared_output(&key),
            "args.undeclared-output",
            "a declared output",
            "list the file in the command's `outputs`",
        ),
        PathRole::Dir => (true, "", "", ""),
    };
    if !ok {
        ctx.refuse(
            rule,
            v,
            format!("`{v}`{} is not {what}", origin(arg, v, via)),
            hint,
        );
    }
}

/// How deep pass pipelines may nest (`module(cgscc(function(loop(...))))`).
const MAX_PIPELINE_DEPTH: usize = 16;

/// Checks an LLVM new pass manager pipeline (`opt -passes=`): elements
/// `name<params>(nested pipeline)` separated by commas, each name in
/// `allowed`, parameters plain words (`O2`, `no-partial;runtime`).
/// `Err` says what is wrong.
pub(crate) fn check_pipeline(text: &str, allowed: &[String]) -> Result<(), String> {
    let b = text.as_bytes();
    let mut i = 0;
    let mut depth = 0usize;
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'-' | b'.')) {
            i += 1;
        }
        let name = &text[start..i];
        if name.is_empty() {
            return Err(format!("a pass name is expected at byte {start}"));
        }
        if !allowed.iter().any(|a| a == name) {
            return Err(format!(
                "`{name}` is not a built-in pass this policy allows"
            ));
        }
        while i < b.len() && b[i] == b'<' {
            let close = text[i..]
                .find('>')
                .map(|j| i + j)
                .ok_or_else(|| format!("`<` at byte {i} is not closed"))?;
            let params = &text[i + 1..close];
            if !params.bytes().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, b'_' | b'-' | b'.' | b';' | b'=' | b'+')
            }) {
                return Err(format!(
                    "parameters `<{params}>` of `{name}` are not plain words"
                ));
            }
            i = close + 1;
        }
        if i < b.len() && b[i] == b'(' {
            depth += 1;
            if depth > MAX_PIPELINE_DEPTH {
                return Err(format!("it nests deeper than {MAX_PIPELINE_DEPTH}"));
            }
            i += 1;
            continue;
        }
        while i < b.len() && b[i] == b')' {
            if depth == 0 {
                return Err(format!("`)` at byte {i} closes nothing"));
            }
            depth -= 1;
            i += 1;
        }
        if i == b.len() {
            return if depth == 0 {
                Ok(())
            } else {
                Err("a `(` is not closed".into())
            };
        }
        if b[i] != b',' {
            return Err(format!("unexpected `{}` at byte {i}", char::from(b[i])));
        }
        i += 1;
    }
}

/// Records a directory in the root (`raw`, from the root) the tool will
/// read whole, to check once the command's paths are known.
fn root_dir(ctx: &mut Ctx<'_>, subject: &str, raw: &str, source: bool) {
    let native = ctx.native(raw).into_owned();
    let exists = match ctx.fs.lookup(&native) {
        Lookup::Inside { kind: Kind::Dir } => true,
        // Made by an earlier command, perhaps: what it will hold is judged
        // by name now, and walked when the command is judged again.
        Lookup::Inside {
            kind: Kind::Missing,
        } => false,
        // Refused as a path already.
        _ => return,
    };
    let Some(physical) = ctx.fs.physical(&native) else {
        return;
    };
    let physical = if physical.is_empty() {
        ".".to_owned()
    } else {
        physical
    };
    if ctx
        .root_dirs
        .iter()
        .any(|d| d.physical == physical && d.source == source)
    {
        return;
    }
    ctx.root_dirs.push(RootDir {
        subject: subject.to_owned(),
        physical,
        source,
        exists,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gnu_tokenizer_handles_quotes_and_escapes() {
        assert_eq!(
            tokenize_gnu("-O2  'a b' \"c\\\"d\" e\\ f\n-o\tout"),
            vec!["-O2", "a b", "c\"d", "e f", "-o", "out"]
        );
        assert_eq!(tokenize_gnu("''"), vec![""]);
        assert!(tokenize_gnu("  \n ").is_empty());
    }

    #[test]
    fn pipelines_name_only_allowed_passes() {
        let allowed: Vec<String> = [
            "module",
            "function",
            "loop",
            "instcombine",
            "loop-unroll",
            "default",
            "require",
            "print",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        for ok in [
            "instcombine",
            "default<O2>",
            "function(instcombine,loop(loop-unroll<O2;no-partial>))",
            "module(function(require<domtree>,print<domtree>))",
        ] {
            assert_eq!(check_pipeline(ok, &allowed), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "dot-cfg",
            "function(dot-cfg)",
            "function(instcombine",
            "instcombine)",
            "instcombine,,",
            "print<a/b>",
            "instcombine;dot-cfg",
            "function((instcombine))",
        ] {
            assert!(check_pipeline(bad, &allowed).is_err(), "{bad}");
        }
    }

    #[test]
    fn patterns_are_shown_without_their_anchors() {
        assert_eq!(pattern_shown("^(?:[a-z]+)$"), "[a-z]+");
        assert_eq!(pattern_shown("abc"), "abc");
    }
}
