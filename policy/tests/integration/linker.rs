//! What a linker reads from the root is checked again right before it runs
//! (`Resolved::verify_linker_reads`): an earlier command, or anyone, may
//! have changed it since the check.

use std::process::Command;

use policy::{Resolved, Status};
use serde_json::json;

use crate::support::{check_log, log, run, shipped, Root};

fn clang(root: &Root, args: &[&str]) {
    let out = Command::new("clang-14")
        .args(args)
        .current_dir(root.path())
        .output()
        .expect("run clang-14");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root with `main.o` and an empty `-L` directory `libs`, and the
/// resolved link command `clang-14 main.o -Llibs -lx -o prog`.
fn link() -> (Root, Resolved) {
    let root = Root::new();
    root.file("main.c", "int main(void) { return 0; }\n");
    clang(&root, &["-c", "main.c", "-o", "main.o"]);
    std::fs::create_dir(root.path().join("libs")).expect("mkdir");
    let text = log(
        "linux",
        &[json!({"id": 1, "tool": "cc", "program": "clang-14",
                 "args": ["-fuse-ld=lld", "main.o", "-Llibs", "-lx", "-o", "prog"],
                 "inputs": ["main.o"], "outputs": ["prog"]})],
    );
    let out = check_log(&shipped("linux"), root.path(), &text, run());
    let v = out.verdict(1);
    assert_eq!(v.status, Status::Allowed, "{v:#?}");
    let resolved = v.resolved.clone().expect("resolved");
    assert_eq!(resolved.verify_linker_reads(root.path()), Ok(()));
    (root, resolved)
}

#[test]
fn a_library_symlinked_out_of_the_root_after_the_check_is_refused() {
    let (root, resolved) = link();
    let outside = tempfile::tempdir().expect("temp dir");
    std::fs::copy(root.path().join("main.o"), outside.path().join("x.o")).expect("copy");
    std::os::unix::fs::symlink(outside.path().join("x.o"), root.path().join("libs/libx.so"))
        .expect("symlink");
    let err = resolved
        .verify_linker_reads(root.path())
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("libs/libx.so") && err.contains("args.linker-library"),
        "{err}"
    );
}

#[test]
fn a_fifo_library_is_refused_without_blocking() {
    let (root, resolved) = link();
    let status = Command::new("mkfifo")
        .arg(root.path().join("libs/libx.so"))
        .status()
        .expect("mkfifo");
    assert!(status.success());
    let err = resolved
        .verify_linker_reads(root.path())
        .err()
        .unwrap_or_default();
    assert!(err.contains("args.linker-library"), "{err}");
}

#[test]
fn an_input_given_a_deplibs_section_after_the_check_is_refused() {
    let (root, resolved) = link();
    root.file(
        "evil.c",
        "#pragma comment(lib, \"script.txt\")\nint main(void) { return 0; }\n",
    );
    clang(&root, &["-c", "evil.c", "-o", "main.o"]);
    let err = resolved
        .verify_linker_reads(root.path())
        .err()
        .unwrap_or_default();
    assert!(
        err.contains("main.o") && err.contains("args.linker-deplibs"),
        "{err}"
    );
}
