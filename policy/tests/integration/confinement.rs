//! Property: path confinement holds for generated paths (`..`, `.`,
//! repeated `/`, unicode, symlinks in a temp root), judged against a small
//! model of how the kernel follows them. Commands are built directly, not
//! read from a log, so the checker is tested without the reader's lexical
//! checks in front of it.

use std::collections::BTreeMap;
use std::os::unix::fs::symlink;

use cmdlog::{Command, ToolKind};
use policy::{Checker, Policy};
use proptest::prelude::*;

use crate::support::{audit, shipped};

/// The root's layout: `sub/` (a directory), `alias -> sub` (inside),
/// `link -> <outside>` and `abs -> <outside>/deeper` (out of the root).
struct Fixture {
    _outside: tempfile::TempDir,
    root: tempfile::TempDir,
    policy: Policy,
}

impl Fixture {
    fn new() -> Fixture {
        let outside = tempfile::tempdir().expect("temp dir");
        let root = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir(root.path().join("sub")).expect("mkdir");
        symlink("sub", root.path().join("alias")).expect("symlink");
        symlink(outside.path(), root.path().join("link")).expect("symlink");
        symlink(outside.path().join("deeper"), root.path().join("abs")).expect("symlink");
        Fixture {
            _outside: outside,
            root,
            policy: shipped("linux"),
        }
    }
}

/// Where the model says a path leads: `None` if out of the root, else the
/// physical components under the root.
fn model(path: &str) -> Option<Vec<String>> {
    if path.starts_with('/') {
        // Absolute: outside the root (and not under a system directory).
        return None;
    }
    let mut at: Vec<String> = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                at.pop()?;
            }
            "link" | "abs" if at.is_empty() => return None,
            "alias" if at.is_empty() => at.push("sub".into()),
            other => at.push(other.into()),
        }
    }
    Some(at)
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("sub".to_owned()),
        Just("alias".to_owned()),
        Just("link".to_owned()),
        Just("abs".to_owned()),
        Just("a".to_owned()),
        Just("ü".to_owned()),
        Just("日本".to_owned()),
        Just("a b".to_owned()),
        "[a-z]{1,3}",
    ]
}

fn path() -> impl Strategy<Value = String> {
    prop::collection::vec(component(), 1..6).prop_map(|cs| cs.join("/"))
}

fn command(id: u64, inputs: Vec<String>, outputs: Vec<String>) -> Command {
    Command {
        id,
        tool: ToolKind::Opt,
        program: "opt".into(),
        args: Vec::new(),
        cwd: ".".into(),
        env: BTreeMap::new(),
        inputs,
        outputs,
        cache_key: None,
    }
}

const ESCAPES: [&str; 3] = [
    "outputs.outside-root",
    "inputs.outside-root",
    "paths.symlink-escape",
];

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn outputs_that_leave_the_root_are_always_refused(p in path()) {
        let fx = Fixture::new();
        let mut checker = Checker::new(&fx.policy, fx.root.path(), audit()).expect("checker");
        let v = checker.command(&command(1, Vec::new(), vec![p.clone()]));
        let escape = v.findings.iter().any(|f| ESCAPES.contains(&f.rule));
        match model(&p) {
            None => prop_assert!(escape, "{p:?} leaves the root but was not refused: {v:#?}"),
            Some(at) => {
                prop_assert!(!escape, "{p:?} stays inside but was refused: {v:#?}");
                if v.findings.is_empty() {
                    prop_assert!(!at.is_empty(), "{p:?} is the root itself but was allowed");
                }
            }
        }
    }

    #[test]
    fn inputs_that_leave_the_root_are_always_refused(p in path()) {
        let fx = Fixture::new();
        let mut checker = Checker::new(&fx.policy, fx.root.path(), audit()).expect("checker");
        let v = checker.command(&command(1, vec![p.clone()], Vec::new()));
        let escape = v.findings.iter().any(|f| ESCAPES.contains(&f.rule));
        prop_assert_eq!(escape, model(&p).is_none(), "{:?}: {:#?}", p, v);
    }

    #[test]
    fn output_args_that_leave_the_root_are_always_refused(p in path()) {
        // The same path as an `-o` argument relative to cwd `sub`.
        let fx = Fixture::new();
        let mut checker = Checker::new(&fx.policy, fx.root.path(), audit()).expect("checker");
        let mut c = command(1, vec!["x.bc".into()], vec!["y.bc".into()]);
        c.cwd = "sub".into();
        c.args = vec!["-O2".into(), "../x.bc".into(), "-o".into(), p.clone()];
        let v = checker.command(&c);
        let allowed = v.findings.is_empty();
        let inside = model(&format!("sub/{p}"));
        // Allowed only if it names the declared output `y.bc` at the root.
        if allowed {
            prop_assert_eq!(inside, Some(vec!["y.bc".to_owned()]), "{:?}", p);
        }
        if model(&format!("sub/{p}")).is_none() {
            prop_assert!(!allowed);
        }
    }
}
