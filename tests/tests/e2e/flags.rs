//! Flags a real build needs, allowed by the shipped Linux policy with
//! checked values (issue 13's false positives): each runs through
//! `replay` on the real LLVM 14 tools and makes what it should.

use std::path::Path;

use crate::support::{bin, run, shipped_policy, text};

/// One logged command: `(tool, program, args, inputs, outputs)`.
type Logged<'a> = (&'a str, &'a str, Vec<&'a str>, Vec<&'a str>, Vec<&'a str>);

/// Writes `log.json` in `root` with these commands.
fn write_log(root: &Path, commands: &[Logged<'_>]) {
    let commands: Vec<serde_json::Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (tool, program, args, inputs, outputs))| {
            serde_json::json!({"id": i + 1, "tool": tool, "program": program, "args": args,
                "cwd": ".", "env": {}, "inputs": inputs, "outputs": outputs})
        })
        .collect();
    crate::support::write_log(root, commands);
}

/// Runs the log in `root` with the shipped Linux policy; panics unless
/// every command was allowed and ran.
fn replay_ok(root: &Path) {
    let policy = shipped_policy("linux.toml");
    let out = run(
        &bin("replay"),
        &["--policy", policy.to_str().unwrap_or_default(), "log.json"],
        root,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

#[test]
fn clang_build_flags_that_real_builds_use_are_allowed_and_run() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::create_dir(root.join("src")).expect("mkdir");
    std::fs::create_dir(root.join("inc")).expect("mkdir");
    std::fs::write(root.join("inc/answer.h"), "#define ANSWER 42\n").expect("write");
    std::fs::write(
        root.join("src/main.c"),
        "#include \"answer.h\"\nint main(void) { return ANSWER - 42; }\n",
    )
    .expect("write");
    let src = root.join("src").display().to_string();
    let prefix_map = format!("-ffile-prefix-map={src}=/src");
    let debug_map = format!("-fdebug-prefix-map={src}=/src");
    let macro_map = format!("-fmacro-prefix-map={src}=/src");
    write_log(
        root,
        &[
            (
                "cc",
                "clang-14",
                vec![
                    "-MD",
                    "-MF",
                    "main.d",
                    "-MT",
                    "main.o",
                    "-MQ",
                    "main.o",
                    "-pipe",
                    "-fstack-clash-protection",
                    "-fcf-protection",
                    "-fcf-protection=full",
                    &prefix_map,
                    &debug_map,
                    &macro_map,
                    "-g",
                    "-gdwarf-4",
                    "-fcolor-diagnostics",
                    "-Iinc",
                    "-c",
                    "src/main.c",
                    "-o",
                    "main.o",
                ],
                vec!["src/main.c"],
                vec!["main.o", "main.d"],
            ),
            (
                "cc",
                "clang-14",
                vec![
                    "-MMD",
                    "-MF",
                    "five.d",
                    "-gdwarf-5",
                    "-fcf-protection=branch",
                    "-Iinc",
                    "-c",
                    "src/main.c",
                    "-o",
                    "five.o",
                ],
                vec!["src/main.c"],
                vec!["five.o", "five.d"],
            ),
            (
                "cc",
                "clang-14",
                vec!["main.o", "-o", "prog"],
                vec!["main.o"],
                vec!["prog"],
            ),
        ],
    );
    replay_ok(root);
    let deps = std::fs::read_to_string(root.join("main.d")).expect("the dependency file");
    // The rule's targets are what `-MT` and `-MQ` say, as written: the
    // staging never rewrites them (regression: `-MT main.o` named the
    // staged path).
    assert!(deps.starts_with("main.o main.o:"), "{deps}");
    assert!(
        deps.contains("src/main.c") && deps.contains("answer.h"),
        "{deps}"
    );
    assert!(root.join("five.d").is_file());
    let prog = std::process::Command::new(root.join("prog"))
        .status()
        .expect("run the program");
    assert!(prog.success());
}

#[test]
fn opt_runs_a_pipeline_of_built_in_passes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path();
    std::fs::write(
        root.join("m.ll"),
        "define internal i32 @dead() {\n  ret i32 1\n}\n\ndefine i32 @f(i32 %x) {\n  %y = add i32 %x, 0\n  ret i32 %y\n}\n",
    )
    .expect("write");
    write_log(
        root,
        &[
            (
                "opt",
                "opt-14",
                vec![
                    "-passes=function(instcombine,simplifycfg),globaldce",
                    "m.ll",
                    "-S",
                    "-o",
                    "m.opt.ll",
                ],
                vec!["m.ll"],
                vec!["m.opt.ll"],
            ),
            (
                "opt",
                "opt-14",
                vec!["-passes=default<O2>", "m.ll", "-o", "m.o2.bc"],
                vec!["m.ll"],
                vec!["m.o2.bc"],
            ),
        ],
    );
    replay_ok(root);
    let ir = std::fs::read_to_string(root.join("m.opt.ll")).expect("the optimized IR");
    assert!(!ir.contains("@dead"), "globaldce ran: {ir}");
    assert!(!ir.contains("add i32"), "instcombine ran: {ir}");
    assert!(root.join("m.o2.bc").is_file());
}
