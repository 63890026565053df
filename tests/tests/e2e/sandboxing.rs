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

/// Through `replay`, a tool that tries to write outside the work root, to
/// read a file of `/etc` it has no need for, and to reach a server on this
/// machine is stopped by the sandbox (Landlock and the network namespace,
/// which this machine and CI have), while the same tool outside replay
/// does all three.
#[test]
fn a_tool_cannot_write_outside_the_root_read_etc_or_open_a_connection() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let flag = format!("--escape={port}");

    // The control: unsandboxed, both tries succeed.
    let plain = run(&bin("memtouch"), &[&flag], std::path::Path::new("/"));
    let plain_out = text(&plain.stdout);
    assert!(plain_out.contains("write: done"), "{plain_out}");
    assert!(plain_out.contains("read: done"), "{plain_out}");
    assert!(plain_out.contains("connect: done"), "{plain_out}");
    if let Some(path) = plain_out
        .split_whitespace()
        .find(|w| w.starts_with("/var/tmp/"))
    {
        let _ = std::fs::remove_file(path);
    }

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    require(&root, r#""landlock", "network""#);
    memtouch_log(&root, &[(&[&flag], &[])]);
    let output = run(
        &bin("replay"),
        &["--policy", "memtouch.toml", "log.json"],
        &root,
    );
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{stdout}{}", text(&output.stderr));
    assert!(stdout.contains("write: denied"), "{stdout}");
    // Of /etc, only what the loader and the clang driver need is readable.
    assert!(stdout.contains("read: denied"), "{stdout}");
    assert!(stdout.contains("connect: denied"), "{stdout}");
    let tried = stdout
        .split_whitespace()
        .find(|w| w.starts_with("/var/tmp/memtouch-escape-"))
        .expect("the path it tried");
    assert!(!std::path::Path::new(tried).exists());
}
