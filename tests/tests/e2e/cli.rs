//! The commands around a run: `replay explain`, `replay policy show|lint`,
//! `replay completions`, `replay man`, and `replay check --here`.

use std::path::Path;

use crate::support::{memtouch_commands, memtouch_policy, replay_command, shipped_policy, text};

fn replay(dir: &Path, args: &[&str]) -> std::process::Output {
    replay_command()
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap()
}

#[test]
fn explain_tells_what_a_rule_refuses_and_the_keys_that_allow_it() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(dir.path(), &["explain", "args.unknown-flag"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    assert!(out.starts_with("[args.unknown-flag]"), "{out}");
    assert!(out.contains("refuses: "), "{out}");
    assert!(out.contains("`[args.GRAMMAR] flags`"), "{out}");

    let all = replay(dir.path(), &["explain"]);
    assert!(all.status.success());
    let all = text(&all.stdout);
    assert!(all.lines().count() > 40, "{all}");
    assert!(all.contains("inputs.missing"), "{all}");
}

#[test]
fn explain_of_a_mistyped_rule_says_which_it_may_be() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(dir.path(), &["explain", "args.unknown-flg"]);
    assert_eq!(output.status.code(), Some(2));
    let err = text(&output.stderr);
    assert!(
        err.contains("error: no rule is called `args.unknown-flg`"),
        "{err}"
    );
    assert!(err.contains("did you mean `args.unknown-flag`"), "{err}");
}

#[test]
fn policy_show_prints_the_policy_with_extends_merged() {
    let dir = tempfile::tempdir().unwrap();
    let output = replay(
        dir.path(),
        &[
            "policy",
            "show",
            shipped_policy("linux.toml").to_str().unwrap(),
        ],
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let shown = text(&output.stdout);
    assert!(shown.contains("llvm-14-common.toml"), "{shown}");
    assert!(!shown.contains("extends"), "{shown}");
    // The shown policy is a policy: it lints clean, as the original does.
    let path = dir.path().join("shown.toml");
    std::fs::write(&path, &shown).unwrap();
    let lint = replay(dir.path(), &["policy", "lint", "shown.toml"]);
    assert!(
        lint.status.success(),
        "{}{}",
        text(&lint.stdout),
        text(&lint.stderr)
    );
}

#[test]
fn policy_lint_warns_with_the_key_and_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.toml"),
        r#"[policy]
os = "linux"
[tool.opt]
programs = ["opt-14"]
dirs = ["/usr/bin"]
[args.opt]
flags = [{ name = "-load", form = "separate", pattern = ".*" }]
deny = [{ prefix = "-load", reason = "loads a plugin" }]
"#,
    )
    .unwrap();
    let output = replay(dir.path(), &["policy", "lint", "p.toml"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let out = text(&output.stdout);
    assert!(
        out.contains("warning: `p.toml`: `args.opt.flags`: `-load` is allowed"),
        "{out}"
    );
    // A policy that does not load is bad input.
    std::fs::write(dir.path().join("bad.toml"), "[policy]\nos = 3\n").unwrap();
    let bad = replay(dir.path(), &["policy", "lint", "bad.toml"]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn completions_and_the_man_page_come_from_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let bash = replay(dir.path(), &["completions", "bash"]);
    assert!(bash.status.success());
    let bash = text(&bash.stdout);
    assert!(bash.contains("_replay()"), "{bash}");
    assert!(bash.contains("explain") && bash.contains("--report-format"));
    let man = replay(dir.path(), &["man"]);
    assert!(man.status.success());
    let man = text(&man.stdout);
    assert!(
        man.starts_with(".ie") || man.contains(".TH replay"),
        "{man}"
    );
    assert!(man.contains("check"), "{man}");
}

/// A root where command 2 reads what command 1 makes, and command 3 reads
/// a file nothing makes.
fn missing_input_log(root: &Path, extra: &[&str]) {
    memtouch_policy(root, "");
    let mut third = vec!["--copy=nothere.txt", "--out=c.txt"];
    third.extend_from_slice(extra);
    memtouch_commands(
        root,
        &[
            (&["--out=a.txt"], &[], &["a.txt"]),
            (&["--copy=a.txt", "--out=b.txt"], &["a.txt"], &["b.txt"]),
            (&third, &["nothere.txt"], &["c.txt"]),
        ],
    );
}

#[test]
fn check_here_finds_a_missing_input_and_calls_it_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    missing_input_log(&root, &[]);
    // An audit does not look for inputs.
    let audit = replay(&root, &["check", "--policy", "memtouch.toml", "log.json"]);
    assert!(audit.status.success(), "{}", text(&audit.stdout));
    let here = replay(
        &root,
        &["check", "--here", "--policy", "memtouch.toml", "log.json"],
    );
    assert_eq!(here.status.code(), Some(2), "{}", text(&here.stdout));
    let out = text(&here.stdout);
    assert!(out.contains("nothere.txt"), "{out}");
    assert!(!out.contains("a.txt`"), "made by command 1: {out}");
    assert!(
        text(&here.stderr).contains("1 input(s) of the log are missing here"),
        "{}",
        text(&here.stderr)
    );
    assert!(!root.join("a.txt").exists(), "--here runs nothing");
}

#[test]
fn check_here_with_a_refusal_besides_is_a_policy_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    missing_input_log(&root, &["--no-such-flag"]);
    let here = replay(
        &root,
        &["check", "--here", "--policy", "memtouch.toml", "log.json"],
    );
    assert_eq!(here.status.code(), Some(3), "{}", text(&here.stdout));
}

#[test]
fn an_unknown_flag_hint_names_the_grammar_and_the_files_that_hold_it() {
    // Regression: the hint said "the program's `[args.*]` grammar", and
    // a user of `linux.toml` could not tell where `clang`'s flags live.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    crate::support::write_log(
        &root,
        vec![serde_json::json!({
            "id": 1, "tool": "cc", "program": "clang-14",
            "args": ["-c", "a.c", "-o", "a.o", "-fno-such-thing"],
            "cwd": ".", "env": {}, "inputs": ["a.c"], "outputs": ["a.o"],
        })],
    );
    let policy = shipped_policy("linux.toml");
    let output = replay(
        &root,
        &["check", "--policy", policy.to_str().unwrap(), "log.json"],
    );
    assert_eq!(output.status.code(), Some(3));
    let out = text(&output.stdout);
    assert!(out.contains("in `flags` of `[args.clang]` (`"), "{out}");
    assert!(out.contains("llvm-14-common.toml`"), "{out}");
    assert!(out.contains("linux.toml`)"), "{out}");
}

#[test]
fn the_quick_start_runs_the_binaries_where_cargo_put_them() {
    // Regression: it ran `target/debug/replay`, which does not exist (or
    // is stale) when `CARGO_TARGET_DIR` sends the build elsewhere.
    let script =
        std::fs::read_to_string(crate::support::repo().join("scripts/quickstart.sh")).unwrap();
    assert!(!script.contains("target/debug/"), "{script}");
    assert!(
        script.contains("${CARGO_TARGET_DIR:-target}/debug"),
        "{script}"
    );
}

#[test]
fn the_readme_links_nothing_outside_the_repository() {
    let readme = std::fs::read_to_string(crate::support::repo().join("README.md")).unwrap();
    for needle in ["](../", "`../shared", "](/"] {
        assert!(!readme.contains(needle), "README.md has `{needle}`");
    }
}

#[test]
fn quiet_runs_print_only_failures_and_verbose_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let commands: Vec<(&[&str], &[&str], &[&str])> = (0..25)
        .map(|i| {
            let args: &[&str] = if i == 24 { &["--exit=3"] } else { &["--mib=0"] };
            (args, &[][..], &[][..])
        })
        .collect();
    memtouch_commands(&root, &commands);
    let quiet = replay(&root, &["--policy", "memtouch.toml", "-q", "log.json"]);
    assert_eq!(quiet.status.code(), Some(1));
    let err = text(&quiet.stderr);
    assert!(err.contains("FAILED (exit 3)"), "{err}");
    for noise in ["running command", "total:", "allowed:", "     1  memtouch"] {
        assert!(!err.contains(noise), "`{noise}` with -q: {err}");
    }
    // 25 commands: a long log lists its failures, -v every command.
    let normal = replay(&root, &["--policy", "memtouch.toml", "log.json"]);
    let err = text(&normal.stderr);
    assert!(
        !err.contains("     1  memtouch") && err.contains("    25  memtouch"),
        "{err}"
    );
    let verbose = replay(&root, &["--policy", "memtouch.toml", "-v", "log.json"]);
    let err = text(&verbose.stderr);
    assert!(
        err.contains("     1  memtouch") && err.contains("    25  memtouch"),
        "{err}"
    );
}
