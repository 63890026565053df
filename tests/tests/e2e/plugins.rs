//! A policy's wasm plugin judges with the TOML rules: `replay check` shows
//! its refusals like the rules' own, and a refused log runs nothing.

use std::path::Path;

use crate::support::{bin, repo, run, shipped_policy, text};

fn aotc_log(root: &Path, level: &str) {
    std::fs::copy(
        repo().join("examples/hello/hello.ll"),
        root.join("hello.ll"),
    )
    .unwrap();
    let aotc = run(
        &bin("aotc"),
        &[
            "hello.ll",
            level,
            "-o",
            "hello",
            "--log",
            "log.json",
            "--partitions",
            "2",
        ],
        root,
    );
    assert!(aotc.status.success(), "{}", text(&aotc.stderr));
}

fn plugin_built() -> bool {
    // scripts/test.sh builds it first (scripts/build-plugins.sh).
    repo().join("policies/plugins/naming.wasm").is_file()
}

#[test]
fn the_naming_plugin_allows_an_o2_log_and_it_runs() {
    assert!(plugin_built(), "run scripts/build-plugins.sh first");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    aotc_log(root, "-O2");
    let policy = shipped_policy("linux-naming.toml");
    let policy = policy.to_str().unwrap();
    let check = run(
        &bin("replay"),
        &["check", "--policy", policy, "log.json"],
        root,
    );
    assert!(
        check.status.success(),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let replay = run(&bin("replay"), &["--policy", policy, "log.json"], root);
    assert!(replay.status.success(), "{}", text(&replay.stderr));
    assert!(root.join("hello").is_file());
}

#[test]
fn the_naming_plugin_refuses_o0_like_a_rule_and_nothing_runs() {
    assert!(plugin_built(), "run scripts/build-plugins.sh first");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    aotc_log(root, "-O0");
    let policy = shipped_policy("linux-naming.toml");
    let policy = policy.to_str().unwrap();
    // The TOML rules alone allow it...
    let linux = shipped_policy("linux.toml");
    let plain = run(
        &bin("replay"),
        &["check", "--policy", linux.to_str().unwrap(), "log.json"],
        root,
    );
    assert!(plain.status.success(), "{}", text(&plain.stdout));
    // ...the plugin does not, and says so in the rules' format.
    let check = run(
        &bin("replay"),
        &["check", "--policy", policy, "log.json"],
        root,
    );
    assert_eq!(check.status.code(), Some(3));
    let stdout = text(&check.stdout);
    assert!(
        // Both `opt` commands, as one block (identical but for the id).
        stdout.contains("refused: commands 1, 3 (opt): plugin `naming`: optimisation level `-O0`"),
        "{stdout}"
    );
    assert!(
        stdout.contains("1 allowed, 0 unverified, 4 refused"),
        "{stdout}"
    );
    let json = run(
        &bin("replay"),
        &["check", "--policy", policy, "--format", "json", "log.json"],
        root,
    );
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["status"], "refused");
    assert_eq!(doc["findings"][0]["rule"], "plugin.refused");
    let replay = run(&bin("replay"), &["--policy", policy, "log.json"], root);
    assert_eq!(replay.status.code(), Some(3), "{}", text(&replay.stderr));
    assert!(!root.join("hello").exists());
}

#[test]
fn a_plugin_that_fails_refuses_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    aotc_log(root, "-O2");
    // A "plugin" that is not a wasm module at all.
    std::fs::write(root.join("broken.wasm"), b"not wasm").unwrap();
    let policy = format!(
        "[policy]\nname = \"broken\"\nextends = [\"{}\"]\n\n[[plugin]]\nname = \"broken\"\npath = \"broken.wasm\"\n",
        shipped_policy("linux.toml").display()
    );
    std::fs::write(root.join("broken.toml"), policy).unwrap();
    let check = run(
        &bin("replay"),
        &["check", "--policy", "broken.toml", "log.json"],
        root,
    );
    assert_eq!(
        check.status.code(),
        Some(3),
        "{}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let stdout = text(&check.stdout);
    assert!(stdout.contains("plugin `broken` failed"), "{stdout}");
    // Regression: the commands stayed counted as allowed ("5 allowed, 0
    // refused, 1 log-wide problem"), and the reason said it failed twice.
    assert!(stdout.contains(": 0 allowed, 0 unverified, "), "{stdout}");
    assert_eq!(
        stdout.matches("plugin `broken` failed").count(),
        1,
        "{stdout}"
    );
}

/// A policy that pins the plugin by sha256: the right pin judges as
/// unpinned does, a wrong one refuses every command (the module is never
/// run), both through `replay check` on a real log.
#[test]
fn a_pinned_plugin_runs_only_with_its_own_hash() {
    assert!(plugin_built(), "run scripts/build-plugins.sh first");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    aotc_log(root, "-O2");
    let module = repo().join("policies/plugins/naming.wasm");
    let sha256 = {
        let out = run(
            std::path::Path::new("sha256sum"),
            &[module.to_str().unwrap()],
            root,
        );
        assert!(out.status.success());
        text(&out.stdout)
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    let wrong = format!(
        "{}{}",
        if sha256.starts_with('0') { "1" } else { "0" },
        &sha256[1..]
    );
    for (pin, allowed) in [(&sha256, true), (&wrong, false)] {
        let policy = format!(
            "[policy]\nname = \"pinned\"\nextends = [\"{}\"]\n\n[[plugin]]\nname = \"pinned\"\npath = \"{}\"\nsha256 = \"{pin}\"\n\n[plugin.config]\nmin_opt_level = 2\n",
            shipped_policy("linux.toml").display(),
            module.display()
        );
        std::fs::write(root.join("pinned.toml"), policy).unwrap();
        let check = run(
            &bin("replay"),
            &["check", "--policy", "pinned.toml", "log.json"],
            root,
        );
        let stdout = text(&check.stdout);
        if allowed {
            assert_eq!(
                check.status.code(),
                Some(0),
                "{stdout}{}",
                text(&check.stderr)
            );
        } else {
            assert_eq!(
                check.status.code(),
                Some(3),
                "{stdout}{}",
                text(&check.stderr)
            );
            assert!(stdout.contains("plugin `pinned` failed"), "{stdout}");
            assert!(stdout.contains("sha256"), "{stdout}");
        }
    }
}
