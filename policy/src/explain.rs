//! What each rule the checker emits refuses, why, and how to allow what is
//! safe, with the policy keys involved: `replay explain RULE`, and the
//! rules' descriptions in SARIF. One [`Explanation`] per rule id; a test
//! reads the checker's sources and fails if a rule id it can emit has none.

/// One rule, explained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Explanation {
    /// The rule's id, as findings carry it (`args.unknown-flag`).
    pub rule: &'static str,
    /// What it refuses, in one sentence.
    pub refuses: &'static str,
    /// Why that is refused: what an attacker's log could do with it.
    pub why: &'static str,
    /// How to allow what is safe (or why nothing can be).
    pub allow: &'static str,
    /// The policy keys involved.
    pub keys: &'static [&'static str],
}

/// The explanation of rule `id`, if it is one the checker emits.
pub fn rule(id: &str) -> Option<&'static Explanation> {
    RULES.iter().find(|e| e.rule == id)
}

/// Every rule the checker can emit, explained, in families.
pub const RULES: &[Explanation] = &[
    // The log and its platform.
    Explanation {
        rule: "platform.os-mismatch",
        refuses: "a log whose `platform.os` is not the policy's `os`",
        why: "each platform's tools read flags and paths differently; a grammar written for one platform does not judge another's commands",
        allow: "check the log with the policy of the platform it was recorded on (`policies/macos.toml`, `policies/windows.toml`)",
        keys: &["[policy] os"],
    },
    Explanation {
        rule: "platform.not-runnable",
        refuses: "running (not auditing) a log recorded for another operating system",
        why: "its binaries, paths and flags mean nothing here; only an audit (`replay check`) can judge it",
        allow: "audit it with `replay check`, or run it on the platform it was recorded for",
        keys: &["[policy] os"],
    },
    Explanation {
        rule: "log.empty",
        refuses: "nothing: it marks a log with no commands as unverified",
        why: "a producer that logged nothing has likely failed or not spoken the driver protocol",
        allow: "check that the producer wrote its commands (driver mode: `REPLAY_LOG_FD`)",
        keys: &[],
    },
    Explanation {
        rule: "log.id-order",
        refuses: "command ids that do not strictly increase",
        why: "ids name commands in reports, journals and the cache; a repeated id would let one command pass for another",
        allow: "regenerate the log; a producer must number commands in order",
        keys: &[],
    },
    // Tools and binaries.
    Explanation {
        rule: "tool.not-allowed",
        refuses: "a command whose tool kind has no `[tool.KIND]` table in the policy (or one with `disabled = true`)",
        why: "a tool kind the policy does not list could be any program",
        allow: "add `[tool.KIND]` with `programs`, `dirs` and a grammar (`args`), if that tool is one you mean to run",
        keys: &["[tool.KIND]", "[tool.KIND] disabled"],
    },
    Explanation {
        rule: "binary.not-allowed",
        refuses: "a `program` whose name is not in its tool's `programs`, or that names a directory",
        why: "the log chooses the program; only names the policy lists may be looked up, and only in its `dirs`",
        allow: "add the program's name to `programs` of `[tool.KIND]` (never a path: the policy's `dirs` say where)",
        keys: &["[tool.KIND] programs", "[tool.KIND] dirs"],
    },
    Explanation {
        rule: "binary.not-found",
        refuses: "a program not found in any of its tool's `dirs` (refused when running; unverified when auditing)",
        why: "`replay` never searches PATH, so a program outside the policy's directories cannot be the one meant",
        allow: "install the tool, or add its directory to `dirs` of `[tool.KIND]` if that directory is trusted",
        keys: &["[tool.KIND] dirs"],
    },
    Explanation {
        rule: "binary.outside-dirs",
        refuses: "a program whose canonical path (symlinks resolved) leaves its tool's `dirs`",
        why: "a symlink in a trusted directory could lead to any binary",
        allow: "add the real directory to `dirs`, if it is trusted",
        keys: &["[tool.KIND] dirs"],
    },
    Explanation {
        rule: "binary.not-regular",
        refuses: "a program that is not a regular file",
        why: "only a regular file is a binary whose contents can be vouched for",
        allow: "point `dirs` at the real binary",
        keys: &["[tool.KIND] dirs"],
    },
    Explanation {
        rule: "binary.not-executable",
        refuses: "a program without execute permission",
        why: "it would fail to run; a file not meant to run is not a tool",
        allow: "install the tool properly (`chmod +x` only if it is the real binary)",
        keys: &[],
    },
    Explanation {
        rule: "binary.world-writable",
        refuses: "a program anyone may write",
        why: "any local user could replace the tool before it runs",
        allow: "`chmod o-w` the binary",
        keys: &[],
    },
    Explanation {
        rule: "binary.dir-world-writable",
        refuses: "a program in a directory anyone may write (without the sticky bit)",
        why: "any local user could swap the binary by renaming",
        allow: "`chmod o-w` the directory, or install the tool elsewhere",
        keys: &["[tool.KIND] dirs"],
    },
    Explanation {
        rule: "binary.sha256-mismatch",
        refuses: "a program whose sha256 is not the pinned one",
        why: "the binary is not the one the policy was written for",
        allow: "update the pin in `sha256` after checking the new binary",
        keys: &["[tool.KIND] sha256"],
    },
    Explanation {
        rule: "binary.unpinned",
        refuses: "a program with no sha256 pin when `require_sha256 = true`",
        why: "the policy asked that every binary of this tool be pinned",
        allow: "add the binary's canonical path and hash to `sha256`, or set `require_sha256 = false`",
        keys: &["[tool.KIND] sha256", "[tool.KIND] require_sha256"],
    },
    Explanation {
        rule: "binary.unverified",
        refuses: "nothing in an audit: the log is for another platform, so the binary's existence, permissions and hash cannot be checked here (`--strict` refuses it)",
        why: "only that platform's file system could tell",
        allow: "audit on the log's platform to verify binaries, or accept it unverified (without `--strict`)",
        keys: &["[tool.KIND] dirs", "[tool.KIND] sha256"],
    },
    // Arguments.
    Explanation {
        rule: "args.unknown-flag",
        refuses: "an argument the tool's grammar does not list",
        why: "a grammar is an allowlist: an unknown flag could load code, read or write files, or change which tool runs",
        allow: "if the flag is safe, add it to `flags` of `[args.GRAMMAR]` (in the policy you pass, or one it `extends`), with a `form` and a value constraint (`enum`, `pattern`, `range` or `path`)",
        keys: &["[args.GRAMMAR] flags"],
    },
    Explanation {
        rule: "args.forbidden-flag",
        refuses: "an argument the grammar's `deny` names (a plugin loader, a flag that writes undeclared files), or a flag given without what its `requires` needs, or a pass pipeline naming an unlisted pass",
        why: "the reason shown with the finding: each `deny` entry says what the flag would do",
        allow: "nothing for a denied flag (it is refused whatever the policy extends); give the flag its required partner (`-MD` with `-MF`); add a safe pass to the flag's `pipeline`",
        keys: &["[args.GRAMMAR] deny", "[args.GRAMMAR] flags (requires, pipeline)"],
    },
    Explanation {
        rule: "args.bad-value",
        refuses: "a flag's value outside its `enum`, `pattern` or `range`",
        why: "values steer tools too (a target triple decides which linker runs)",
        allow: "widen the flag's `enum`, `pattern` or `range` in `flags` of `[args.GRAMMAR]`, if the value is safe",
        keys: &["[args.GRAMMAR] flags (enum, pattern, range)"],
    },
    Explanation {
        rule: "args.missing-value",
        refuses: "a flag that takes a value, given none (at the end of the arguments)",
        why: "the tool would read its value from elsewhere, or fail",
        allow: "fix the producer; the log is malformed",
        keys: &["[args.GRAMMAR] flags (form)"],
    },
    Explanation {
        rule: "args.value-looks-like-flag",
        refuses: "a flag value that starts with `@` or a flag character",
        why: "tools expand `@file` anywhere, and parsers disagree on values like `-after` (clang reads `-isystem-after` as a flag of its own)",
        allow: "list the exact value in the flag's `enum` if it is meant, or pass it with a `=` form",
        keys: &["[args.GRAMMAR] flags (enum)"],
    },
    Explanation {
        rule: "args.missing-output",
        refuses: "a command that gives none of `require_one_of` (e.g. no `-o`), or an archiver with no operation and archive",
        why: "the tool would name its output itself, a file no command declares",
        allow: "have the producer pass `-o` with a declared output",
        keys: &["[args.GRAMMAR] require_one_of"],
    },
    Explanation {
        rule: "args.positional",
        refuses: "a positional argument where the grammar has `positional = \"refuse\"`, or one that is not what `archive` expects",
        why: "a positional is a file the tool reads or writes; the grammar says none are allowed",
        allow: "pass the file through a flag with `path = \"input\"`, or set `positional = \"input\"` if every positional is a declared input",
        keys: &["[args.GRAMMAR] positional", "[args.GRAMMAR] operations"],
    },
    Explanation {
        rule: "args.undeclared-input",
        refuses: "a path argument (positional or `path = \"input\"` value) that the command does not declare in `inputs`",
        why: "the sandbox lets a tool read only its declared inputs; an undeclared one is what a log would use to read a secret",
        allow: "declare the file in the command's `inputs` (the producer's job)",
        keys: &["[args.GRAMMAR] flags (path)"],
    },
    Explanation {
        rule: "args.undeclared-output",
        refuses: "an output path argument (`path = \"output\"`, e.g. `-o`) that the command does not declare in `outputs`",
        why: "outputs are written in staging and committed only if declared; an undeclared one could overwrite any file",
        allow: "declare the file in the command's `outputs` (the producer's job)",
        keys: &["[args.GRAMMAR] flags (path)"],
    },
    Explanation {
        rule: "args.path-outside-root",
        refuses: "a path argument that leaves the work root (absolute, or through `..`), outside `system_inputs`",
        why: "a tool reads and writes only in the root and the system directories",
        allow: "use paths inside the root; add a trusted system directory to `system_inputs` for reads",
        keys: &["[policy] system_inputs"],
    },
    Explanation {
        rule: "args.response-file",
        refuses: "an `@file` argument where the grammar has `response_files = false`, or a response file that is not a declared input in the root",
        why: "a response file holds more arguments; unchecked, it would smuggle any flag",
        allow: "set `response_files = true` in `[args.GRAMMAR]` (its arguments are then checked too) and declare the file as an input",
        keys: &["[args.GRAMMAR] response_files"],
    },
    Explanation {
        rule: "args.response-file-depth",
        refuses: "response files nested deeper than `response_file_depth`",
        why: "nesting without bound costs time and memory to check",
        allow: "raise `response_file_depth` in `[args.GRAMMAR]`",
        keys: &["[args.GRAMMAR] response_file_depth"],
    },
    Explanation {
        rule: "args.response-file-too-large",
        refuses: "a response file larger than the checker reads",
        why: "its arguments could not all be checked",
        allow: "split the command; the limit is not a policy key",
        keys: &[],
    },
    Explanation {
        rule: "args.response-file-unread",
        refuses: "a response file that cannot be read (when running) or is not there (when auditing: unverified)",
        why: "its arguments cannot be checked",
        allow: "make sure the file exists and is readable, or is produced by an earlier command",
        keys: &[],
    },
    Explanation {
        rule: "args.delegation-depth",
        refuses: "flags handed from grammar to grammar (`-Wl,` to `ld`, `/link`) nested too deep",
        why: "each hand-over is another parser; the chain must end",
        allow: "pass linker flags directly to the linker command",
        keys: &["[args.GRAMMAR] flags (grammar)"],
    },
    Explanation {
        rule: "args.linker-script",
        refuses: "a linker input in the root (or a `lib*.so*`/`lib*.a` in a root `-L` directory) that is not an object or archive",
        why: "ld reads any other file as a linker script, which can name inputs nobody declared",
        allow: "link only objects and archives; a source the tool compiles has its extension in `source_extensions`",
        keys: &["[args.GRAMMAR] linker_inputs", "[args.GRAMMAR] source_extensions"],
    },
    Explanation {
        rule: "args.thin-archive",
        refuses: "a linker input that is a thin archive (`!<thin>`)",
        why: "its members are files named by any path, read by the linker without being declared",
        allow: "nothing: make a normal archive (`ar qc`, not `ar qcT`)",
        keys: &[],
    },
    Explanation {
        rule: "args.linker-deplibs",
        refuses: "a linker input with a `.deplibs` section (`#pragma comment(lib, ...)`), or bitcode",
        why: "ld.lld follows `.deplibs` (and LTO the bitcode's dependent libraries) to files nobody declared",
        allow: "nothing: build the object without `#pragma comment(lib)` and link libraries with `-l`",
        keys: &[],
    },
    Explanation {
        rule: "args.linker-library",
        refuses: "a `lib*.so*`/`lib*.a` in a root `-L` directory that is a symlink out of the root, leads nowhere, is not a regular file or cannot be read",
        why: "`-l` may find it; it must be checked like any linker input, and a fifo would block the linker",
        allow: "remove or fix the file in the `-L` directory",
        keys: &[],
    },
    Explanation {
        rule: "args.linker-unreadable",
        refuses: "a linker input that cannot be read, or whose ELF section table cannot be read or is too large",
        why: "an input that cannot be inspected cannot be vouched for",
        allow: "fix the input file",
        keys: &[],
    },
    // Paths.
    Explanation {
        rule: "paths.outside-root",
        refuses: "a path of the command (its `cwd`, an input, an output) that leaves the work root and is not a system input",
        why: "a command is confined to the root and the system directories",
        allow: "keep the build under the work root (`--root DIR`); add trusted read-only directories to `system_inputs`",
        keys: &["[policy] system_inputs"],
    },
    Explanation {
        rule: "paths.symlink-escape",
        refuses: "a path that leaves the root through a symlink (or `..` after one)",
        why: "a planted symlink would make a tool read or write outside the root",
        allow: "replace the symlink with a real file or directory inside the root",
        keys: &[],
    },
    Explanation {
        rule: "paths.cwd-not-dir",
        refuses: "a `cwd` that is not a directory",
        why: "the tool could not start there; a file in its place may be a planted name",
        allow: "fix the log's `cwd`, or create the directory",
        keys: &[],
    },
    Explanation {
        rule: "paths.empty",
        refuses: "an empty path",
        why: "an empty name means the current directory to some tools and an error to others",
        allow: "fix the producer",
        keys: &[],
    },
    Explanation {
        rule: "inputs.outside-root",
        refuses: "an absolute input outside `system_inputs`",
        why: "the sandbox lets tools read only the root and the system directories",
        allow: "add the (trusted, read-only) directory to `system_inputs`",
        keys: &["[policy] system_inputs"],
    },
    Explanation {
        rule: "inputs.missing",
        refuses: "an input that neither exists nor is written by an earlier command (when running)",
        why: "the tool would fail, or read whatever appears there later",
        allow: "run the command that makes it first, or add it to the root; `replay check --here` lists what is missing",
        keys: &[],
    },
    Explanation {
        rule: "inputs.not-a-file",
        refuses: "an input that is a fifo, socket or device",
        why: "a tool would block on it, or read a device",
        allow: "use a regular file",
        keys: &[],
    },
    Explanation {
        rule: "inputs.protected",
        refuses: "an input that is one of `replay`'s own files (the log, the policy, the journal, the lock), by name or through a symlink",
        why: "a command must not read or change what judges it",
        allow: "nothing: keep the log, the policy and the journal out of commands",
        keys: &[],
    },
    Explanation {
        rule: "inputs.dir-escapes",
        refuses: "an input directory (`-I`, `-L`, `-isystem`, ...) outside `system_inputs`, or one that holds a symlink out of the root or the system directories",
        why: "a read grant on a directory covers everything beneath it",
        allow: "add the directory to `system_inputs` if all of it is trusted; remove the symlink",
        keys: &["[policy] system_inputs", "[args.GRAMMAR] flags (path = \"dir\")"],
    },
    Explanation {
        rule: "inputs.dir-holds-output",
        refuses: "an input directory in the root that holds the log, a protected file, or an output this command does not declare as an input",
        why: "the tool could read another command's output before it is written, or the log itself",
        allow: "keep outputs and the log out of include and library directories (a separate build directory)",
        keys: &[],
    },
    Explanation {
        rule: "inputs.dir-special",
        refuses: "an input directory in the root that holds a fifo, socket, device, or a name that is not UTF-8",
        why: "an `#include` or `-l` of a fifo would block the tool",
        allow: "remove the special file from the directory",
        keys: &[],
    },
    Explanation {
        rule: "inputs.dir-too-large",
        refuses: "an input directory in the root with more than 100,000 entries or nested deeper than 32",
        why: "it cannot be walked to be vouched for",
        allow: "point `-I`/`-L` at a smaller directory",
        keys: &[],
    },
    Explanation {
        rule: "outputs.outside-root",
        refuses: "an output outside the work root",
        why: "a tool writes only in its staging, committed into the root",
        allow: "write outputs under the root",
        keys: &[],
    },
    Explanation {
        rule: "outputs.protected",
        refuses: "an output that is the log, the policy (or a file it extends or a plugin), the journal, the lock or the staging directory",
        why: "a command must not rewrite what judges it",
        allow: "nothing: name the output elsewhere",
        keys: &[],
    },
    Explanation {
        rule: "outputs.not-a-file",
        refuses: "an output whose path holds a directory, fifo, socket or device",
        why: "committing over it would replace or block on something that is not an output",
        allow: "remove what is there, or name the output elsewhere",
        keys: &[],
    },
    Explanation {
        rule: "outputs.hard-link",
        refuses: "an output whose existing file has more than one hard link",
        why: "writing it would change the file's other name, maybe outside the root",
        allow: "remove the existing file (or its other link)",
        keys: &[],
    },
    Explanation {
        rule: "outputs.through-symlink",
        refuses: "an output named through a symlink",
        why: "a second spelling could name the log or another command's output",
        allow: "name the output by its physical path",
        keys: &[],
    },
    Explanation {
        rule: "outputs.duplicate",
        refuses: "two commands that write the same output",
        why: "the later silently replaces the earlier; with `-j` they would race",
        allow: "give each command its own output",
        keys: &[],
    },
    Explanation {
        rule: "outputs.read-before-write",
        refuses: "a command that reads a file a later command writes",
        why: "the log's order is wrong: the reader would see stale contents",
        allow: "reorder the log so producers come before their consumers",
        keys: &[],
    },
    Explanation {
        rule: "outputs.in-input-dir",
        refuses: "an output written beneath a directory an earlier command reads as an input directory",
        why: "the earlier command's read grant was judged without it",
        allow: "write outputs outside include and library directories",
        keys: &[],
    },
    // Environment.
    Explanation {
        rule: "env.forbidden",
        refuses: "an environment variable that is never allowed from a log (`LD_*`, `DYLD_*`, `PATH`, `CPATH`, `COMPILER_PATH`, `CCC_OVERRIDE_OPTIONS`, ...)",
        why: "they load code into the tool or change which programs and files it uses",
        allow: "nothing from the log; the policy may `set` a `PATH` of absolute directories",
        keys: &["[env] set"],
    },
    Explanation {
        rule: "env.not-allowed",
        refuses: "an environment variable the policy's `[env] allow` does not list",
        why: "nothing is inherited; a tool gets only what the policy builds",
        allow: "add the variable to `[env] allow` with a `pattern` for its value",
        keys: &["[env] allow"],
    },
    Explanation {
        rule: "env.bad-value",
        refuses: "an allowed variable whose value does not match its `pattern`",
        why: "values steer tools as flags do",
        allow: "widen the `pattern` in `[env] allow`, if the value is safe",
        keys: &["[env] allow"],
    },
    // Plugins.
    Explanation {
        rule: "plugin.refused",
        refuses: "a command one of the policy's plugins refused (the finding says why)",
        why: "plugins add rules the TOML cannot express, and can only restrict",
        allow: "see the plugin's documentation and configuration (its `[[plugin]]` entry)",
        keys: &["[[plugin]]"],
    },
    Explanation {
        rule: "plugin.failed",
        refuses: "the whole log, when a plugin traps, overruns its deadline or memory, prints garbage or misses a verdict",
        why: "a plugin that fails fails closed",
        allow: "fix the plugin, or raise its limits in its `[[plugin]]` entry (`timeout`, `fuel`, `max_memory`)",
        keys: &["[[plugin]]"],
    },
    // Built-in file operations and replay's own directories.
    Explanation {
        rule: "builtin.malformed",
        refuses: "a built-in file operation (`symlink`, `copy`, `rename`, `remove`) whose arguments are not its fixed form, or whose inputs and outputs are not exactly the paths it names",
        why: "replay performs these itself; an operation that touches a path its command does not declare would escape the checks every path gets",
        allow: "write `symlink TARGET LINK`, `copy FROM TO`, `rename FROM TO` or `remove PATH...` with the named paths as its inputs and outputs",
        keys: &["[policy] builtins"],
    },
    Explanation {
        rule: "builtin.symlink-target",
        refuses: "a `symlink` whose relative target climbs with `..` after a name (`sub/../../x`)",
        why: "the kernel follows `sub` (perhaps itself a link) before climbing, so the target cannot be judged from its text",
        allow: "write the target with its `..` first (`../lib/x.so`), or as a plain name beside the link",
        keys: &["[policy] builtins"],
    },
    Explanation {
        rule: "builtin.name-too-long",
        refuses: "a built-in operation naming a path component over 255 bytes",
        why: "no file system here holds it, and an operation over several paths would fail half done",
        allow: "shorten the name",
        keys: &[],
    },
    Explanation {
        rule: "builtin.rename-link",
        refuses: "a `rename` whose source is a symbolic link (on disk, or made earlier in the log)",
        why: "a relative link's target is read from the link's directory: moved elsewhere it can name a file outside the work root that no rule judged",
        allow: "make the link where it belongs with `symlink TARGET LINK` (and `remove` the old one)",
        keys: &["[policy] builtins"],
    },
    Explanation {
        rule: "builtin.env",
        refuses: "a built-in operation whose command asks for environment variables",
        why: "it runs no program; an environment there is a sign of a log that is not what it seems",
        allow: "give built-in operations an empty `env`",
        keys: &[],
    },
    Explanation {
        rule: "paths.reserved",
        refuses: "any input or output under `.replay-stage`, replay's own staging directory",
        why: "other commands' outputs wait there before they are committed; reading or writing there would reach another command's files past its checks",
        allow: "nothing there can be allowed; name a path outside `.replay-stage`",
        keys: &[],
    },
    Explanation {
        rule: "args.split-dwarf",
        refuses: "`-gsplit-dwarf` on a command without `-c` and `-o FILE`",
        why: "clang then names the `.dwo` file after something the log does not declare, a write no rule judged",
        allow: "compile with `-c -o FILE.o` and declare `FILE.dwo` as an output",
        keys: &["[args.clang]"],
    },
    Explanation {
        rule: "log.spill-failed",
        refuses: "a whole log, when the whole-log rules' temporary file (used past 65,536 paths) could not be written",
        why: "without it one writer per output and read-before-write cannot be judged; the log is refused rather than passed unjudged",
        allow: "free space in the temporary directory (`TMPDIR`), then check again",
        keys: &[],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every string literal in the checker's sources that looks like a
    /// rule id (`family.name`).
    fn emitted() -> std::collections::BTreeSet<String> {
        let families = [
            "platform", "tool", "binary", "args", "paths", "inputs", "outputs", "env", "log",
            "plugin", "builtin",
        ];
        let mut ids = std::collections::BTreeSet::new();
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut dirs = vec![src];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    dirs.push(path);
                    continue;
                }
                if path.file_name().is_some_and(|n| n == "explain.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // The code, not its tests (they write policies of their own).
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for literal in code.split('"').skip(1).step_by(2) {
                    let Some((family, name)) = literal.split_once('.') else {
                        continue;
                    };
                    if families.contains(&family)
                        && !name.is_empty()
                        && name
                            .chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    {
                        ids.insert(literal.to_owned());
                    }
                }
            }
        }
        ids
    }

    #[test]
    fn every_rule_the_checker_emits_is_explained() {
        let emitted = emitted();
        assert!(emitted.len() > 40, "the scan found too few: {emitted:?}");
        let missing: Vec<_> = emitted.iter().filter(|id| rule(id).is_none()).collect();
        assert!(
            missing.is_empty(),
            "rules without an explanation: {missing:?}"
        );
    }

    #[test]
    fn every_explanation_is_of_a_rule_the_checker_emits_once() {
        let emitted = emitted();
        let mut seen = std::collections::BTreeSet::new();
        for explained in RULES {
            assert!(seen.insert(explained.rule), "{} twice", explained.rule);
            assert!(
                emitted.contains(explained.rule),
                "{} is explained but never emitted",
                explained.rule
            );
            assert!(!explained.refuses.is_empty() && !explained.allow.is_empty());
        }
    }
}
