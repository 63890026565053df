//! Each tool runs in the sandbox layers this machine allows, the report
//! says which, and a policy can require layers.

use crate::support::{bin, memtouch_log, memtouch_policy, report, run, text};

fn require(root: &std::path::Path, layers: &str) {
    let path = root.join("memtouch.toml");
    let policy = std::fs::read_to_string(&path).unwrap().replacen(
        "os = \"linux\"\n",
        &format!("os = \"linux\"\nrequire_sandbox = [{layers}]\n"),
        1,
    );
    std::fs::write(path, policy).unwrap();
}

#[test]
fn required_layers_are_applied_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    require(&root, r#""landlock", "network""#);
    memtouch_log(&root, &[(&["--mib=1"], &[])]);
    let output = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--report",
            "r.json",
            "log.json",
        ],
        &root,
    );
    // This machine (CI's too) has Landlock and network namespaces; where it
    // did not, replay would refuse with exit 3 and say which layer.
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = report(&root.join("r.json"));
    let layers = &report["commands"][0]["outcome"]["layers"];
    assert!(
        layers["landlock"]["abi"]
            .as_u64()
            .is_some_and(|abi| abi >= 1),
        "{layers:#}"
    );
    assert_eq!(layers["network_namespace"], true, "{layers:#}");
    assert_eq!(layers["no_new_privs"], true, "{layers:#}");
}

#[test]
fn an_unknown_required_layer_is_a_policy_error() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    require(&root, r#""seccomp""#);
    memtouch_log(&root, &[(&["--mib=1"], &[])]);
    let output = run(
        &bin("replay"),
        &["--policy", "memtouch.toml", "log.json"],
        &root,
    );
    assert_eq!(output.status.code(), Some(2), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("policy.require_sandbox"), "{stderr}");
    assert!(
        stderr.contains("`seccomp` is not a sandbox layer"),
        "{stderr}"
    );
}
