//! The checker's API edges: the end of the log, tallies, a bad root.

use policy::report::Tally;
use policy::{Checker, CheckerError, Status};
use serde_json::json;

use crate::support::{audit, check_log, log, shipped, Root};

#[test]
fn an_empty_log_is_reported_at_the_end() {
    let policy = shipped("linux");
    let root = Root::new();
    let out = check_log(&policy, root.path(), &log("linux", &[]), audit());
    let rules: Vec<_> = out.end.iter().map(|f| (f.rule, f.status)).collect();
    assert_eq!(rules, vec![("log.empty", Status::Unverified)]);
}

#[test]
fn a_missing_root_is_an_error_naming_it() {
    let policy = shipped("linux");
    let root = Root::new();
    let gone = root.path().join("gone");
    match Checker::new(&policy, &gone, audit()) {
        Err(CheckerError::Root { path, .. }) => assert_eq!(path, gone),
        Ok(_) => panic!("a missing root was accepted"),
    }
}

#[test]
fn the_tally_takes_the_worst_status() {
    let policy = shipped("linux");
    let root = Root::new();
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2"]}),
            json!({"id": 2, "tool": "opt", "program": "opt", "args": ["-load", "x.so"]}),
        ],
    );
    let out = check_log(&policy, root.path(), &text, audit());
    let mut tally = Tally::default();
    for v in &out.verdicts {
        tally.add(v);
    }
    assert_eq!((tally.allowed, tally.refused), (1, 1));
    assert_eq!(tally.status(), Status::Refused);
    assert_eq!(
        tally.to_string(),
        "refused: 1 allowed, 0 unverified, 1 refused"
    );
    assert!(Status::Allowed < Status::Unverified && Status::Unverified < Status::Refused);
}

#[test]
fn refused_commands_carry_no_resolution() {
    // The executor runs only what has a `Resolved`; a refused command
    // must not have one even when its binary is fine.
    let policy = shipped("linux");
    let root = Root::new();
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-load", "x.so"], "inputs": ["x.so"]}),
        ],
    );
    let out = check_log(&policy, root.path(), &text, audit());
    assert_eq!(out.verdict(1).status, Status::Refused);
    assert!(out.verdict(1).resolved.is_none());
}

#[test]
fn a_judging_pass_gives_the_same_verdicts_without_resolutions() {
    let policy = shipped("linux");
    let root = Root::new();
    std::fs::write(root.path().join("a.bc"), b"BC").expect("input");
    let commands = [
        json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2", "a.bc", "-o", "b.bc"], "inputs": ["a.bc"], "outputs": ["b.bc"]}),
        json!({"id": 2, "tool": "opt", "program": "opt", "args": ["-load", "x.so"]}),
        json!({"id": 3, "tool": "llc", "program": "llc", "args": ["b.bc", "-o", "b.s"], "inputs": ["b.bc"], "outputs": ["b.s"]}),
        json!({"id": 4, "tool": "llc", "program": "llc", "args": ["b.bc", "-o", "b.s"], "inputs": ["b.bc"], "outputs": ["b.s"]}),
    ];
    let text = log("linux", &commands);
    let mut full = Checker::new(&policy, root.path(), audit()).expect("checker");
    let mut judging = Checker::new(&policy, root.path(), audit())
        .expect("checker")
        .judge_only();
    let mut both = Vec::new();
    cmdlog::LogReader::new(text.as_bytes())
        .read(&mut |command: cmdlog::Command| {
            both.push((full.command(&command), judging.command(&command)));
            std::ops::ControlFlow::Continue(())
        })
        .expect("a valid log");
    assert_eq!(both.len(), commands.len());
    assert!(both[0].0.resolved.is_some(), "{:?}", both[0].0);
    for (full, judged) in both {
        assert!(judged.resolved.is_none(), "{judged:?}");
        assert_eq!(
            (full.id, full.status, full.findings),
            (judged.id, judged.status, judged.findings)
        );
    }
}

#[test]
fn ids_must_increase_even_without_the_reader() {
    // The reader refuses duplicate ids; a checker fed directly must too.
    let policy = shipped("linux");
    let root = Root::new();
    let mut checker = Checker::new(&policy, root.path(), audit()).expect("checker");
    let command = |id| cmdlog::Command {
        id,
        tool: cmdlog::ToolKind::Opt,
        program: "opt".into(),
        args: vec!["-O2".into()],
        cwd: ".".into(),
        env: Default::default(),
        inputs: Vec::new(),
        outputs: Vec::new(),
        cache_key: None,
    };
    assert_eq!(checker.command(&command(5)).status, Status::Allowed);
    let dup = checker.command(&command(5));
    assert_eq!(
        dup.findings.iter().map(|f| f.rule).collect::<Vec<_>>(),
        vec!["log.id-order"]
    );
    let back = checker.command(&command(4));
    assert_eq!(back.status, Status::Refused);
    assert_eq!(checker.command(&command(6)).status, Status::Allowed);
}
