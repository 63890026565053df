//! Input directories and files on `Resolved`: what the executor grants the
//! tool read access to, resolved and checked like inputs.

use std::path::PathBuf;

use policy::{CheckOptions, Mode, Status};
use serde_json::json;

use crate::support::{check_log, log, shipped, Root};

#[test]
fn include_and_source_dirs_are_resolved_and_listed_canonical() {
    let root = Root::new();
    root.file("src/a.c", "#include \"ok.h\"\nint f(void) { return OK; }\n");
    root.file("inc/ok.h", "#define OK 1\n");
    std::os::unix::fs::symlink("inc", root.path().join("alias")).expect("symlink");
    let text = log(
        "linux",
        &[json!({"id": 1, "tool": "cc", "program": "clang-14",
                 "args": ["-Ialias", "-isystem", "/usr/include", "-c", "src/a.c", "-o", "a.o"],
                 "inputs": ["src/a.c"], "outputs": ["a.o"]})],
    );
    let options = CheckOptions {
        mode: Mode::Run,
        strict: false,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&shipped("linux"), root.path(), &text, options);
    let v = out.verdict(1);
    assert_eq!(v.status, Status::Allowed, "{v:#?}");
    let resolved = v.resolved.as_ref().expect("resolved");
    let real = std::fs::canonicalize(root.path()).expect("canonical");
    let mut dirs = resolved.input_dirs.clone();
    dirs.sort();
    let mut want = vec![
        real.join("inc"),
        real.join("src"),
        PathBuf::from("/usr/include"),
    ];
    want.sort();
    assert_eq!(dirs, want);
    assert_eq!(resolved.input_files, vec![real.join("src/a.c")]);
}

#[test]
fn a_source_in_the_root_that_holds_the_log_leaves_its_directory_out() {
    let root = Root::new();
    root.file("a.c", "int f(void) { return 0; }\n");
    let text = log(
        "linux",
        &[json!({"id": 1, "tool": "cc", "program": "clang-14",
                 "args": ["-c", "a.c", "-o", "a.o"],
                 "inputs": ["a.c"], "outputs": ["a.o"]})],
    );
    root.file("log.json", &text);
    let options = CheckOptions {
        mode: Mode::Run,
        strict: false,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&shipped("linux"), root.path(), &text, options);
    let v = out.verdict(1);
    assert_eq!(v.status, Status::Allowed, "{v:#?}");
    let resolved = v.resolved.as_ref().expect("resolved");
    assert!(resolved.input_dirs.is_empty(), "{resolved:#?}");
    let real = std::fs::canonicalize(root.path()).expect("canonical");
    assert_eq!(resolved.input_files, vec![real.join("a.c")]);
}

/// Regression (review of the hardening): a declared input that is a
/// directory, or the log under another name, was granted to the tool as
/// is: `inputs: ["."]` let clang read every file of the root, and a
/// symlink to the log let a tool read it.
#[test]
fn a_directory_or_the_log_declared_as_an_input_is_judged_like_an_input_directory() {
    let root = Root::new();
    root.file("a.c", "#include \"secret.h\"\n");
    root.file("secret.h", "int secret;\n");
    std::os::unix::fs::symlink("log.json", root.path().join("lnk")).expect("symlink");
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": "cc", "program": "clang-14",
                   "args": ["-c", "a.c", "-o", "a.o"],
                   "inputs": ["a.c", "."], "outputs": ["a.o"]}),
            json!({"id": 2, "tool": "cc", "program": "clang-14",
                   "args": ["-c", "a.c", "-o", "b.o"],
                   "inputs": ["a.c", "lnk"], "outputs": ["b.o"]}),
        ],
    );
    root.file("log.json", &text);
    let options = CheckOptions {
        mode: Mode::Run,
        strict: false,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&shipped("linux"), root.path(), &text, options);
    let rules =
        |id: u64| -> Vec<&str> { out.verdict(id).findings.iter().map(|f| f.rule).collect() };
    assert_eq!(
        out.verdict(1).status,
        Status::Refused,
        "{:#?}",
        out.verdict(1)
    );
    assert!(
        rules(1).contains(&"inputs.dir-holds-output"),
        "{:?}",
        rules(1)
    );
    assert_eq!(
        out.verdict(2).status,
        Status::Refused,
        "{:#?}",
        out.verdict(2)
    );
    assert!(rules(2).contains(&"inputs.protected"), "{:?}", rules(2));
}
