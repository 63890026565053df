//! Loading policies: every shipped policy loads; mistakes are errors that
//! name the file, line and key; `extends` merges, tightens and refuses
//! cycles.

use std::path::{Path, PathBuf};
use std::time::Duration;

use cmdlog::{Os, ToolKind};
use policy::{Invalid, Policy, PolicyError, Status};
use serde_json::json;

use crate::support::{audit, check_log, log, policies_dir, shipped, Root};

/// Writes `text` as `name` in `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write policy");
    p
}

fn load_err(text: &str) -> PolicyError {
    let tmp = tempfile::tempdir().expect("temp dir");
    let p = write(tmp.path(), "p.toml", text);
    match Policy::load(&p) {
        Ok(_) => panic!("policy loaded but should not:\n{text}"),
        Err(e) => e,
    }
}

/// A minimal valid policy with one tool.
const MINIMAL: &str = r#"
[policy]
os = "linux"
[tool.opt]
programs = ["opt"]
dirs = ["/usr/lib/llvm-14/bin"]
[args.opt]
flags = [{ name = "-O", form = "joined", enum = ["2"] }]
"#;

#[test]
fn shipped_policies_load_for_their_platform() {
    for (name, os) in [
        ("linux", Os::Linux),
        ("macos", Os::Macos),
        ("windows", Os::Windows),
    ] {
        let p = shipped(name);
        assert_eq!(p.os(), os, "{name}");
        let tools: Vec<&ToolKind> = p.tools().collect();
        for kind in [ToolKind::Opt, ToolKind::Llc, ToolKind::Cc, ToolKind::Ld] {
            assert!(tools.contains(&&kind), "{name} lacks {kind}");
        }
    }
}

#[test]
fn the_common_fragment_alone_is_incomplete() {
    // It names no `os`: only usable through `extends`.
    let err = Policy::load(&policies_dir().join("llvm-14-common.toml")).err();
    assert!(
        matches!(&err, Some(PolicyError::Invalid { key, problem: Invalid::Missing, .. }) if key == "policy.os"),
        "{err:?}"
    );
}

#[test]
fn limits_are_parsed_and_exposed_per_tool() {
    let p = shipped("linux");
    let ld = p.limits(&ToolKind::Ld).expect("ld allowed");
    assert_eq!(ld.timeout, Some(Duration::from_secs(3600)));
    assert_eq!(ld.max_rss, Some(8 << 30));
    assert_eq!(ld.max_output, Some(4 << 30));
    let opt = p.limits(&ToolKind::Opt).expect("opt allowed");
    assert_eq!(opt.timeout, Some(Duration::from_secs(1800)));
    assert_eq!(p.limits(&ToolKind::Ar), None);
}

#[test]
fn unknown_keys_are_errors_with_their_line() {
    let err = load_err("[policy]\nos = \"linux\"\n\n[tool.opt]\nprogrms = [\"opt\"]\n");
    match err {
        PolicyError::Parse { line, message, .. } => {
            assert_eq!(line, 5);
            assert!(message.contains("programs"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn bad_values_name_file_line_and_key() {
    let text = MINIMAL.replace(r#"enum = ["2"]"#, r#"pattern = "([a-z""#);
    match load_err(&text) {
        PolicyError::Invalid {
            path,
            line,
            key,
            problem: Invalid::Regex(_),
            ..
        } => {
            assert!(path.ends_with("p.toml"));
            assert_eq!(line, 8);
            assert_eq!(key, "args.opt.flags[0]");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn every_kind_of_bad_value_is_refused() {
    type Case = (&'static str, &'static str, fn(&Invalid) -> bool);
    let cases: &[Case] = &[
        (r#"os = "linux""#, r#"os = "beos""#, |p| {
            matches!(p, Invalid::Os(_))
        }),
        (
            r#"dirs = ["/usr/lib/llvm-14/bin"]"#,
            r#"dirs = ["bin"]"#,
            |p| matches!(p, Invalid::Dir(_)),
        ),
        (
            r#"dirs = ["/usr/lib/llvm-14/bin"]"#,
            r#"dirs = ["/usr/../tmp"]"#,
            |p| matches!(p, Invalid::Dir(_)),
        ),
        (r#"programs = ["opt"]"#, r#"programs = ["../opt"]"#, |p| {
            matches!(p, Invalid::ProgramName(_))
        }),
        (r#"form = "joined""#, r#"form = "glued""#, |p| {
            matches!(p, Invalid::Form(_))
        }),
        (r#"enum = ["2"]"#, r#"enum = []"#, |p| {
            matches!(p, Invalid::Empty)
        }),
        (r#"enum = ["2"]"#, r#"range = [5, 1]"#, |p| {
            matches!(p, Invalid::Empty)
        }),
        (r#"enum = ["2"]"#, r#"enum = ["2"], pattern = "2""#, |p| {
            matches!(p, Invalid::Constraint(_))
        }),
        (r#", enum = ["2"]"#, "", |p| {
            matches!(p, Invalid::Constraint(_))
        }),
        (r#"enum = ["2"]"#, r#"grammar = "nope""#, |p| {
            matches!(p, Invalid::UnknownGrammar(_))
        }),
        (r#"enum = ["2"]"#, r#"path = "anywhere""#, |p| {
            matches!(p, Invalid::PathRule(_))
        }),
        (r#"name = "-O""#, r#"name = "O""#, |p| {
            matches!(p, Invalid::FlagName(_))
        }),
        (r#"[tool.opt]"#, "[tool.opt]\nargs = \"missing\"", |p| {
            matches!(p, Invalid::UnknownGrammar(_))
        }),
        (
            r#"[tool.opt]"#,
            "[limits]\ntimeout = \"3 fortnights\"\n[tool.opt]",
            |p| matches!(p, Invalid::Duration(_)),
        ),
        (
            r#"[args.opt]"#,
            "[args.opt]\nflag_chars = \"\u{2013}\"",
            |p| matches!(p, Invalid::Constraint(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[limits]\nmax_rss = \"lots\"\n[tool.opt]",
            |p| matches!(p, Invalid::Size(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[env]\nallow = { LD_PRELOAD = { pattern = \".*\" } }\n[tool.opt]",
            |p| matches!(p, Invalid::NeverFromLog(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[env]\nset = { PATH = \"/usr/bin:\" }\n[tool.opt]",
            |p| matches!(p, Invalid::NeverFromLog(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[env]\nset = { PATH = \"/usr/../tmp\" }\n[tool.opt]",
            |p| matches!(p, Invalid::NeverFromLog(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[env]\nset = { LD_LIBRARY_PATH = \"/usr/lib\" }\n[tool.opt]",
            |p| matches!(p, Invalid::NeverFromLog(_)),
        ),
        (
            r#"[tool.opt]"#,
            "[tool.opt]\nsha256 = { \"/usr/lib/llvm-14/bin/opt\" = \"abc\" }",
            |p| matches!(p, Invalid::Sha256(_)),
        ),
    ];
    for (from, to, is) in cases {
        assert!(MINIMAL.contains(from), "{from}");
        let text = MINIMAL.replacen(from, to, 1);
        match load_err(&text) {
            PolicyError::Invalid { problem, .. } => assert!(is(&problem), "{to}: {problem:?}"),
            other => panic!("{to}: {other:?}"),
        }
    }
}

#[test]
fn include_cycles_are_refused() {
    let tmp = tempfile::tempdir().expect("temp dir");
    write(tmp.path(), "a.toml", "[policy]\nextends = [\"b.toml\"]\n");
    write(tmp.path(), "b.toml", "[policy]\nextends = [\"c.toml\"]\n");
    let c = write(tmp.path(), "c.toml", "[policy]\nextends = [\"a.toml\"]\n");
    match Policy::load(&c) {
        Err(PolicyError::Cycle { chain, .. }) => {
            assert!(
                chain.contains("c.toml") && chain.contains("a.toml") && chain.contains("b.toml"),
                "{chain}"
            );
        }
        other => panic!("{other:?}"),
    }
    let selfish = write(
        tmp.path(),
        "self.toml",
        "[policy]\nextends = [\"self.toml\"]\n",
    );
    assert!(matches!(
        Policy::load(&selfish),
        Err(PolicyError::Cycle { .. })
    ));
}

#[test]
fn a_missing_include_is_a_read_error_naming_it_and_the_file_that_extends_it() {
    let error = load_err("[policy]\nos = \"linux\"\nextends = [\"nowhere.toml\"]\n");
    let message = error.to_string();
    match error {
        PolicyError::Extends { path, by, .. } => {
            assert!(path.ends_with("nowhere.toml"));
            assert!(message.contains(&format!("which `{}` extends", by.display())));
        }
        other => panic!("{other:?}"),
    }
}

/// Regression (fuzzing notes): `extends` naming a FIFO blocked the loader
/// for ever, and one naming `/dev/zero` read without end.
#[test]
fn an_include_that_is_not_a_regular_file_is_a_read_error_at_once() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let fifo = tmp.path().join("fifo.toml");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("run mkfifo");
    assert!(made.success());
    for target in [fifo.display().to_string(), "/dev/zero".to_owned()] {
        let p = write(
            tmp.path(),
            "p.toml",
            &format!("[policy]\nos = \"linux\"\nextends = [\"{target}\"]\n"),
        );
        match Policy::load(&p) {
            Err(PolicyError::Extends { path, source, .. }) => {
                assert!(path.display().to_string().contains(&target), "{path:?}");
                assert!(
                    source.to_string().contains("not a regular file"),
                    "{source}"
                );
            }
            other => panic!("{target}: {other:?}"),
        }
    }
}

#[test]
fn extending_tightens_a_shipped_policy() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let shipped = policies_dir().join("linux.toml");
    let text = format!(
        r#"
[policy]
name = "project"
extends = ["{}"]
[tool.cc]
disabled = true
[tool.opt]
limits = {{ timeout = "5m" }}
[args.llc]
drop_flags = ["-relocation-model="]
"#,
        shipped.display()
    );
    let p = Policy::load(&write(tmp.path(), "project.toml", &text)).expect("loads");
    assert_eq!(p.name(), "project");
    assert_eq!(p.os(), Os::Linux);
    assert!(!p.tools().any(|t| *t == ToolKind::Cc));
    assert_eq!(
        p.limits(&ToolKind::Opt).and_then(|l| l.timeout),
        Some(Duration::from_secs(300))
    );
    // The rest of opt's limits come from the shipped file.
    assert_eq!(
        p.limits(&ToolKind::Opt).and_then(|l| l.max_rss),
        Some(8 << 30)
    );
    // The dropped llc flag is now unknown; the rest of llc's grammar stays.
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "llc", "program": "llc", "args": ["-relocation-model=pic", "a.bc", "-o", "a.o"], "inputs": ["a.bc"], "outputs": ["a.o"]}),
            json!({"id": 2, "tool": "llc", "program": "llc", "args": ["-filetype=obj", "a.bc", "-o", "b.o"], "inputs": ["a.bc"], "outputs": ["b.o"]}),
            json!({"id": 3, "tool": "cc", "program": "clang-14", "args": [], "inputs": [], "outputs": []}),
        ],
    );
    let root = Root::new();
    let out = check_log(&p, root.path(), &text, audit());
    assert_eq!(out.rules(1), vec!["args.unknown-flag"]);
    assert_eq!(out.verdict(2).status, Status::Allowed);
    assert_eq!(out.rules(3), vec!["tool.not-allowed"]);
}

#[test]
fn plugin_tables_are_kept_for_the_plugin_host() {
    let text = format!("{MINIMAL}\n[[plugin]]\nmodule = \"deny.wasm\"\nfuel = 1000\n");
    let tmp = tempfile::tempdir().expect("temp dir");
    let p = Policy::load(&write(tmp.path(), "p.toml", &text)).expect("loads");
    let plugins = p.plugins();
    assert_eq!(plugins.len(), 1);
    assert_eq!(plugins[0].line, 10);
    assert_eq!(
        plugins[0].table.get("module").and_then(|v| v.as_str()),
        Some("deny.wasm")
    );
    assert!(plugins[0].file.ends_with("p.toml"));
}

#[test]
fn the_plugin_example_syntax_loads_into_a_platform_policy() {
    // `policies/plugins/example.toml` shows `[[plugin]]` entries to paste
    // into a platform policy; they must load, nested tables and all.
    let example =
        std::fs::read_to_string(policies_dir().join("plugins/example.toml")).expect("example");
    let tmp = tempfile::tempdir().expect("temp dir");
    let text = format!(
        "[policy]\nextends = [\"{}\"]\n\n{example}",
        policies_dir().join("linux.toml").display()
    );
    let p = Policy::load(&write(tmp.path(), "with-plugin.toml", &text)).expect("loads");
    let plugins = p.plugins();
    assert_eq!(plugins.len(), 1);
    let table = &plugins[0].table;
    assert_eq!(table.get("name").and_then(|v| v.as_str()), Some("naming"));
    let opt = table
        .get("config")
        .and_then(|c| c.get("outputs"))
        .and_then(|o| o.get("opt"))
        .and_then(|v| v.as_array())
        .map(|a| a.len());
    assert_eq!(opt, Some(1));
}

#[test]
fn remote_cache_trust_and_prohibition_load_and_an_extension_cannot_lift_a_prohibition() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let base = write(
        tmp.path(),
        "base.toml",
        &MINIMAL.replace(
            "os = \"linux\"\n",
            "os = \"linux\"\nremote_cache_writers = [\"grpcs://cache.example:443\"]\n",
        ),
    );
    let policy = Policy::load(&base).expect("loads");
    assert!(!policy.forbids_remote_cache());
    assert!(policy.trusts_remote_writer("grpcs://cache.example:443"));
    assert!(!policy.trusts_remote_writer("grpc://cache.example:443"));

    let forbidding = write(
        tmp.path(),
        "forbid.toml",
        "[policy]\nextends = [\"base.toml\"]\nremote_cache = false\n",
    );
    assert!(Policy::load(&forbidding)
        .expect("loads")
        .forbids_remote_cache());
    let lifting = write(
        tmp.path(),
        "lift.toml",
        "[policy]\nextends = [\"forbid.toml\"]\nremote_cache = true\n",
    );
    assert!(Policy::load(&lifting)
        .expect("loads")
        .forbids_remote_cache());
    // A later layer's writers replace the earlier's.
    let other = write(
        tmp.path(),
        "other.toml",
        "[policy]\nextends = [\"base.toml\"]\nremote_cache_writers = []\n",
    );
    assert!(!Policy::load(&other)
        .expect("loads")
        .trusts_remote_writer("grpcs://cache.example:443"));
}

/// `[policy] remote_execution = false` keeps a platform's commands on this
/// machine, and a policy that extends it cannot send them out again.
#[test]
fn remote_execution_false_holds_and_a_derived_policy_cannot_lift_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = write(tmp.path(), "base.toml", MINIMAL);
    assert!(!Policy::load(&base)
        .expect("loads")
        .forbids_remote_execution());
    let forbidding = write(
        tmp.path(),
        "forbid.toml",
        "[policy]\nextends = [\"base.toml\"]\nremote_execution = false\n",
    );
    assert!(Policy::load(&forbidding)
        .expect("loads")
        .forbids_remote_execution());
    let lifting = write(
        tmp.path(),
        "lift.toml",
        "[policy]\nextends = [\"forbid.toml\"]\nremote_execution = true\n",
    );
    assert!(Policy::load(&lifting)
        .expect("loads")
        .forbids_remote_execution());
}

/// `[tool.KIND] local_only = true` keeps that tool off a build farm, the
/// rest may go; `remote_execution = false` keeps every tool; a derived
/// policy cannot send out what its base keeps.
#[test]
fn local_only_keeps_a_tool_here_and_a_derived_policy_cannot_lift_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let base = write(tmp.path(), "base.toml", MINIMAL);
    assert!(!Policy::load(&base)
        .expect("loads")
        .keeps_local(&ToolKind::Opt));
    let kept = write(
        tmp.path(),
        "kept.toml",
        "[policy]\nextends = [\"base.toml\"]\n[tool.opt]\nlocal_only = true\n",
    );
    let policy = Policy::load(&kept).expect("loads");
    assert!(policy.keeps_local(&ToolKind::Opt));
    assert!(!policy.keeps_local(&ToolKind::Cc));
    let lifting = write(
        tmp.path(),
        "lift.toml",
        "[policy]\nextends = [\"kept.toml\"]\n[tool.opt]\nlocal_only = false\n",
    );
    let lifted = Policy::load(&lifting).expect("loads");
    assert!(lifted.keeps_local(&ToolKind::Opt));
    // `policy show` says so, and what it prints loads back the same.
    let shown = lifted.to_toml();
    assert!(shown.contains("local_only = true"), "{shown}");
    let again = write(tmp.path(), "shown.toml", &shown);
    assert!(Policy::load(&again)
        .expect("loads")
        .keeps_local(&ToolKind::Opt));
    let platform = write(
        tmp.path(),
        "platform.toml",
        "[policy]\nextends = [\"base.toml\"]\nremote_execution = false\n",
    );
    let policy = Policy::load(&platform).expect("loads");
    assert!(policy.keeps_local(&ToolKind::Opt) && policy.keeps_local(&ToolKind::Cc));
    let shown = policy.to_toml();
    assert!(shown.contains("remote_execution = false"), "{shown}");
}
