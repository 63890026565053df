//! The shipped Linux policy accepts the real commands `aotc` logs, resolved
//! to this machine's LLVM 14 binaries, in Run mode.

use serde_json::json;

use crate::support::{check_log, check_with, log, run, shipped, Root};
use policy::{Checker, Status};

#[test]
fn linux_policy_runs_the_real_aotc_pipeline() {
    let policy = shipped("linux");
    let root = Root::new();
    root.file("p0.bc", "");
    root.file("p1.bc", "");
    std::fs::create_dir(root.path().join("libdir")).expect("mkdir");
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2", "p0.bc", "-o", "p0.opt.bc"], "inputs": ["p0.bc"], "outputs": ["p0.opt.bc"]}),
            json!({"id": 2, "tool": "llc", "program": "llc", "args": ["-O2", "-filetype=obj", "-mtriple=x86_64-unknown-linux-gnu", "-relocation-model=pic", "p0.opt.bc", "-o", "p0.o"], "inputs": ["p0.opt.bc"], "outputs": ["p0.o"]}),
            json!({"id": 3, "tool": "opt", "program": "opt-14", "args": ["-O2", "p1.bc", "-o", "p1.opt.bc"], "inputs": ["p1.bc"], "outputs": ["p1.opt.bc"]}),
            json!({"id": 4, "tool": "llc", "program": "/usr/lib/llvm-14/bin/llc", "args": ["-O2", "-filetype=obj", "p1.opt.bc", "-o", "p1.o"], "inputs": ["p1.opt.bc"], "outputs": ["p1.o"]}),
            json!({"id": 5, "tool": "cc", "program": "clang-14", "args": ["p0.o", "p1.o", "-o", "prog", "-lm", "-L", "libdir"], "inputs": ["p0.o", "p1.o"], "outputs": ["prog"]}),
            json!({"id": 6, "tool": "cc", "program": "clang-14", "args": ["-shared", "-fPIC", "p0.o", "p1.o", "-o", "libp.so"], "inputs": ["p0.o", "p1.o"], "outputs": ["libp.so"]}),
            json!({"id": 7, "tool": "ld", "program": "ld", "args": ["-r", "p0.o", "p1.o", "-o", "out.o"], "inputs": ["p0.o", "p1.o"], "outputs": ["out.o"]}),
        ],
    );
    let out = check_log(&policy, root.path(), &text, run());
    assert!(out.header.is_empty(), "{:#?}", out.header);
    for v in &out.verdicts {
        assert_eq!(v.status, Status::Allowed, "{v:#?}");
        assert!(v.resolved.is_some(), "{v:#?}");
    }
    let clang = out
        .verdict(5)
        .resolved
        .as_ref()
        .map(|r| (r.program.clone(), r.argv0.clone()));
    assert_eq!(
        clang,
        Some(("/usr/lib/llvm-14/bin/clang".into(), "clang-14".into()))
    );
    let ld = out.verdict(7).resolved.as_ref().map(|r| r.program.clone());
    assert_eq!(ld, Some("/usr/bin/x86_64-linux-gnu-ld.bfd".into()));
    // The policy's own environment only: its `PATH` (clang finds `ld`
    // through it), nothing inherited.
    let env = &out.verdict(1).resolved.as_ref().map(|r| r.env.clone());
    assert_eq!(
        env.as_ref().map(|e| e.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["LC_ALL".to_owned(), "PATH".to_owned()])
    );
}

#[test]
fn a_second_pass_judges_each_command_but_not_the_whole_log_again() {
    let policy = shipped("linux");
    let root = Root::new();
    root.file("p0.bc", "");
    // Refused whole (an input nobody writes, two writers of one output),
    // as the first pass of a run sees it.
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2", "p0.bc", "-o", "a.bc"], "inputs": ["p0.bc"], "outputs": ["a.bc"]}),
            json!({"id": 2, "tool": "opt", "program": "opt", "args": ["-O2", "gone.bc", "-o", "a.bc"], "inputs": ["gone.bc"], "outputs": ["a.bc"]}),
            json!({"id": 3, "tool": "opt", "program": "opt", "args": ["-O2", "-load=x.so", "a.bc", "-o", "b.bc"], "inputs": ["a.bc"], "outputs": ["b.bc"]}),
        ],
    );
    let first = check_log(&policy, root.path(), &text, run());
    assert_eq!(first.rules(2), ["inputs.missing", "outputs.duplicate"]);
    // The second pass leaves the whole-log rules to the first (and the
    // missing input to the executor's own check before it runs), and
    // still judges each command on its own.
    let checker = Checker::new(&policy, root.path(), run())
        .expect("checker")
        .whole_log_judged();
    let second = check_with(checker, &text);
    assert_eq!(second.verdict(1).status, Status::Allowed);
    assert_eq!(
        second.verdict(2).status,
        Status::Allowed,
        "{:#?}",
        second.verdict(2)
    );
    assert_eq!(second.rules(3), first.rules(3));
    assert_eq!(second.verdict(3).status, Status::Refused);
}
