//! Errors say what went wrong, where, and what to do, with distinct exit
//! codes for bad input (2) and a failed tool under `--exec` (1).

use std::path::Path;

use crate::support::aotc;

fn stderr_of(cmd: &mut std::process::Command, code: i32) -> String {
    let out = cmd.output().expect("run aotc");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(err.contains("\nhint: "), "{err}");
    err
}

#[test]
fn a_syntax_error_names_the_file_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bad = tmp.path().join("bad.ll");
    std::fs::write(&bad, "define i32 @main() {\n  ret i32 %nope\n}\n").expect("write");
    let err = stderr_of(
        aotc()
            .arg(&bad)
            .arg("-o")
            .arg(tmp.path().join("x"))
            .arg("--log")
            .arg(tmp.path().join("log.json")),
        2,
    );
    assert!(err.contains("cannot parse"), "{err}");
    assert!(err.contains("bad.ll:2:"), "line and column missing: {err}");
    assert!(!tmp.path().join("log.json").exists(), "no log on failure");
}

#[test]
fn a_missing_input_and_a_duplicate_symbol_are_clear() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let err = stderr_of(
        aotc()
            .arg(tmp.path().join("none.ll"))
            .arg("-o")
            .arg(tmp.path().join("x"))
            .arg("--log")
            .arg(tmp.path().join("log.json")),
        2,
    );
    assert!(
        err.contains("cannot read") && err.contains("none.ll"),
        "{err}"
    );

    let (a, b) = (tmp.path().join("a.ll"), tmp.path().join("b.ll"));
    std::fs::write(&a, "define i32 @f() {\n  ret i32 1\n}\n").expect("write");
    std::fs::write(&b, "define i32 @f() {\n  ret i32 2\n}\n").expect("write");
    let err = stderr_of(
        aotc()
            .arg(&a)
            .arg(&b)
            .arg("-o")
            .arg(tmp.path().join("x"))
            .arg("--log")
            .arg(tmp.path().join("log.json")),
        2,
    );
    assert!(err.contains("cannot link") && err.contains("b.ll"), "{err}");
}

#[test]
fn an_output_outside_the_work_root_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll");
    let err = stderr_of(
        aotc()
            .arg(&hello)
            .arg("-o")
            .arg(tmp.path().join("x"))
            .arg("--log")
            .arg(tmp.path().join("sub/log.json")),
        2,
    );
    assert!(err.contains("is not under the work root"), "{err}");

    let err = stderr_of(
        aotc()
            .arg(&hello)
            .arg("-o")
            .arg(tmp.path().join("log.json"))
            .arg("--log")
            .arg(tmp.path().join("log.json")),
        2,
    );
    assert!(err.contains("is the log file"), "{err}");
}

#[test]
fn a_failing_tool_under_exec_exits_1_and_names_the_command() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let bin = tmp.path().join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for tool in ["opt", "llc", "clang-14"] {
        std::os::unix::fs::symlink("/bin/false", bin.join(tool)).expect("symlink");
    }
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll");
    let err = stderr_of(
        aotc()
            .arg(&hello)
            .arg("-o")
            .arg(tmp.path().join("x"))
            .arg("--log")
            .arg(tmp.path().join("log.json"))
            .arg("--llvm-bin")
            .arg(&bin)
            .arg("--exec"),
        1,
    );
    assert!(
        err.contains("command 1:") && err.contains("opt` failed"),
        "{err}"
    );
    assert!(
        tmp.path().join("log.json").is_file(),
        "the log is complete before tools run"
    );
}

/// The whole rendered message of each user error, with temporary paths
/// masked, so wording changes are reviewed.
#[test]
fn error_messages_read_well() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().canonicalize().expect("canonical tempdir");
    let bad = root.join("bad.ll");
    std::fs::write(&bad, "define i32 @main() {\n  ret i32 %nope\n}\n").expect("write");
    let hello = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll");

    let mut settings = insta::Settings::clone_current();
    settings.add_filter(&regex_escape(&root.display().to_string()), "[TMP]");
    settings.add_filter(&regex_escape(&hello.display().to_string()), "[HELLO]");
    settings.bind(|| {
        let err = stderr_of(
            aotc()
                .arg(&bad)
                .arg("-o")
                .arg(root.join("x"))
                .arg("--log")
                .arg(root.join("log.json")),
            2,
        );
        insta::assert_snapshot!("parse_error", err);
        let err = stderr_of(
            aotc()
                .arg(&hello)
                .arg("-o")
                .arg(root.join("x"))
                .arg("--log")
                .arg(root.join("sub/log.json")),
            2,
        );
        insta::assert_snapshot!("output_outside_root", err);
        let err = stderr_of(
            aotc()
                .env("REPLAY_LOG_FD", "987")
                .env("REPLAY_ROOT", &root)
                .arg(&hello)
                .arg("-o")
                .arg(root.join("x")),
            2,
        );
        insta::assert_snapshot!("driver_fd_not_open", err);
        let err = stderr_of(aotc().arg(&hello).arg("-o").arg(root.join("x")), 2);
        insta::assert_snapshot!("no_log", err);
    });
}

/// `text` as a regular expression matching itself.
fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$#&-~".contains(c);
            special
                .then_some('\\')
                .into_iter()
                .chain(std::iter::once(c))
        })
        .collect()
}
