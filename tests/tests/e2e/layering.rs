//! The driver stays small: `replay` must never link LLVM (DESIGN.md).

use std::process::Command;

#[test]
fn replay_does_not_depend_on_llvm() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "replay",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(tree.contains("cmdlog"), "unexpected tree:\n{tree}");
    for forbidden in ["inkwell", "llvm-sys"] {
        assert!(
            !tree.lines().any(|line| line.starts_with(forbidden)),
            "`replay` depends on {forbidden}:\n{tree}"
        );
    }
}

#[test]
fn aotc_does_link_llvm() {
    // The same check on the crate that must link LLVM, so the test above
    // cannot pass merely because `cargo tree` printed nothing useful.
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "-p",
            "aotc",
            "-e",
            "normal,build",
            "--prefix",
            "none",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo tree runs");
    let tree = String::from_utf8_lossy(&output.stdout);
    assert!(
        tree.lines().any(|line| line.starts_with("inkwell")),
        "{tree}"
    );
}
