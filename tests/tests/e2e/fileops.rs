//! The built-in file operations (`symlink`, `copy`, `rename`, `remove`)
//! that `replay` performs itself (issue 18): run in order, committed and
//! journaled as tools' outputs are, resumed; and every escape refused
//! before anything runs: a link pointing out of the root, a `..` through
//! a link, a dangling link as an input, an output planted as a link out
//! of the root, a policy that does not list built-ins.

use std::path::Path;

use serde_json::json;

use crate::support::{replay_command, shipped_policy, text, write_log};

/// A command of a built-in kind.
fn op(
    id: u64,
    tool: &str,
    cwd: &str,
    args: &[&str],
    inputs: &[&str],
    outputs: &[&str],
) -> serde_json::Value {
    json!({"id": id, "tool": tool, "program": "cmake", "args": args, "cwd": cwd,
           "env": {}, "inputs": inputs, "outputs": outputs})
}

/// `replay --policy linux-cc.toml [extra] log.json` in `root`.
fn replay(root: &Path, extra: &[&str]) -> std::process::Output {
    let policy = shipped_policy("linux-cc.toml");
    replay_command()
        .arg("--policy")
        .arg(&policy)
        .args(extra)
        .arg("log.json")
        .current_dir(root)
        .output()
        .expect("run replay")
}

/// The operations a shared library's build does after its link.
fn soname_log(root: &Path) {
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::write(root.join("build/libx.so.1.2.3"), b"\x7fELF not really").unwrap();
    std::fs::write(root.join("build/stale.txt"), b"old").unwrap();
    write_log(
        root,
        vec![
            op(
                1,
                "symlink",
                "build",
                &["libx.so.1.2.3", "libx.so.1"],
                &["build/libx.so.1.2.3"],
                &["build/libx.so.1"],
            ),
            op(
                2,
                "symlink",
                "build",
                &["libx.so.1", "libx.so"],
                &["build/libx.so.1"],
                &["build/libx.so"],
            ),
            op(
                3,
                "copy",
                ".",
                &["build/libx.so", "dist/libx.so.copy"],
                &["build/libx.so"],
                &["dist/libx.so.copy"],
            ),
            op(
                4,
                "rename",
                ".",
                &["dist/libx.so.copy", "dist/libx-final.so"],
                &["dist/libx.so.copy"],
                &["dist/libx-final.so", "dist/libx.so.copy"],
            ),
            op(
                5,
                "remove",
                ".",
                &["build/stale.txt", "build/never-there"],
                &[],
                &["build/stale.txt", "build/never-there"],
            ),
        ],
    );
}

#[test]
fn soname_links_copies_renames_and_removes_are_done_by_replay_and_resumed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    soname_log(root);
    let out = replay(root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let link = |p: &str| std::fs::read_link(root.join(p)).unwrap();
    assert_eq!(link("build/libx.so.1"), Path::new("libx.so.1.2.3"));
    assert_eq!(link("build/libx.so"), Path::new("libx.so.1"));
    // The copy is of what the links lead to, a plain file, renamed.
    let copied = root.join("dist/libx-final.so");
    assert!(std::fs::symlink_metadata(&copied).unwrap().is_file());
    assert_eq!(std::fs::read(&copied).unwrap(), b"\x7fELF not really");
    assert!(!root.join("dist/libx.so.copy").exists());
    assert!(!root.join("build/stale.txt").exists());
    let journal = std::fs::read_to_string(root.join("log.json.journal")).unwrap();
    assert_eq!(journal.lines().count(), 5, "{journal}");
    assert!(journal.contains("\"link:"), "{journal}");
    assert!(journal.contains("\"absent\""), "{journal}");

    // Resumed: the links and the remove are done; the copy's output was
    // renamed away since, so the copy (and the rename after it) run again.
    let out = replay(root, &["--resume", "--report", "r.json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = crate::support::report(&root.join("r.json"));
    let statuses: Vec<String> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("?").to_owned())
        .collect();
    assert_eq!(
        statuses,
        ["resumed", "resumed", "ok", "ok", "resumed"],
        "{report}"
    );

    // Run again from the start: the links the first run made are in the
    // outputs' places, and are replaced, not followed.
    std::fs::write(root.join("build/stale.txt"), b"old").unwrap();
    let out = replay(root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(link("build/libx.so.1"), Path::new("libx.so.1.2.3"));
    assert_eq!(link("build/libx.so"), Path::new("libx.so.1"));
    assert_eq!(
        std::fs::read(root.join("build/libx.so.1.2.3")).unwrap(),
        b"\x7fELF not really"
    );
    assert!(!root.join("build/stale.txt").exists());
}

/// Runs `log` (commands) in a fresh root prepared by `setup`, expecting a
/// refusal by `rule` and no change: returns the root's temp dir.
fn refused(
    commands: Vec<serde_json::Value>,
    setup: impl FnOnce(&Path),
    rule: &str,
) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("build")).unwrap();
    std::fs::write(root.join("build/real"), b"real").unwrap();
    setup(&root);
    write_log(&root, commands);
    let out = replay(&root, &[]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(rule), "expected [{rule}] in: {stderr}");
    assert!(
        !root.join("log.json.journal").exists() || {
            let j = std::fs::read_to_string(root.join("log.json.journal")).unwrap();
            j.is_empty()
        },
        "nothing may run"
    );
    tmp
}

#[test]
fn a_symlink_pointing_out_of_the_root_is_refused() {
    // Out by `..`: the target leaves the root from the link's directory.
    refused(
        vec![op(
            1,
            "symlink",
            "build",
            &["../../outside", "l"],
            &["outside"],
            &["build/l"],
        )],
        |_| {},
        "builtin.malformed",
    );
    // Out by an absolute target that is no system directory.
    let tmp = tempfile::tempdir().unwrap();
    let secret = tmp.path().join("secret");
    std::fs::write(&secret, b"s").unwrap();
    let secret = secret.to_str().unwrap().to_owned();
    refused(
        vec![op(1, "symlink", ".", &[&secret, "l"], &[&secret], &["l"])],
        |_| {},
        "inputs.outside-root",
    );
}

#[test]
fn a_target_climbing_after_a_name_through_a_link_is_refused() {
    // `build/up -> OUTSIDE/a/b`: `up/../../x` is `x` lexically, but the
    // kernel follows `up` first and climbs outside.
    refused(
        vec![op(
            1,
            "symlink",
            ".",
            &["build/up/../../real", "l"],
            &["real"],
            &["l"],
        )],
        |root| {
            let outside = root.parent().unwrap().join("a/b");
            std::fs::create_dir_all(&outside).unwrap();
            std::os::unix::fs::symlink(&outside, root.join("build/up")).unwrap();
            std::fs::write(root.join("real"), b"r").unwrap();
        },
        "builtin.symlink-target",
    );
}

#[test]
fn a_dangling_link_as_an_input_is_refused() {
    refused(
        vec![op(
            1,
            "copy",
            "build",
            &["dangling", "copy"],
            &["build/dangling"],
            &["build/copy"],
        )],
        |root| {
            std::os::unix::fs::symlink("nowhere", root.join("build/dangling")).unwrap();
        },
        "inputs.missing",
    );
}

#[test]
fn a_copy_of_a_link_out_of_the_root_is_refused() {
    let tmp = refused(
        vec![op(
            1,
            "copy",
            "build",
            &["leak", "copy"],
            &["build/leak"],
            &["build/copy"],
        )],
        |root| {
            let secret = root.parent().unwrap().join("secret");
            std::fs::write(&secret, b"secret").unwrap();
            std::os::unix::fs::symlink(&secret, root.join("build/leak")).unwrap();
        },
        "paths.symlink-escape",
    );
    assert!(!tmp.path().join("root/build/copy").exists());
}

#[test]
fn an_output_planted_as_a_link_out_of_the_root_is_refused_and_untouched() {
    let tmp = refused(
        vec![op(
            1,
            "copy",
            "build",
            &["real", "planted"],
            &["build/real"],
            &["build/planted"],
        )],
        |root| {
            let victim = root.parent().unwrap().join("victim");
            std::fs::write(&victim, b"victim").unwrap();
            std::os::unix::fs::symlink(&victim, root.join("build/planted")).unwrap();
        },
        "paths.symlink-escape",
    );
    assert_eq!(std::fs::read(tmp.path().join("victim")).unwrap(), b"victim");
    // And a directory link planted in an output's path: the same.
    let tmp = refused(
        vec![op(1, "remove", ".", &["out/victim"], &[], &["out/victim"])],
        |root| {
            let outside = root.parent().unwrap().join("dir");
            std::fs::create_dir_all(&outside).unwrap();
            std::fs::write(outside.join("victim"), b"victim").unwrap();
            std::os::unix::fs::symlink(&outside, root.join("out")).unwrap();
        },
        "paths.symlink-escape",
    );
    assert!(tmp.path().join("dir/victim").exists());
}

#[test]
fn built_ins_are_refused_by_a_policy_that_does_not_list_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    soname_log(root);
    let out = replay_command()
        .arg("check")
        .arg("--policy")
        .arg(shipped_policy("linux.toml"))
        .arg("log.json")
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = text(&out.stderr) + &text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("built-in file operation `symlink` is not allowed"),
        "{stderr}"
    );
}

#[test]
fn a_link_is_never_renamed_where_its_target_would_lead_out() {
    // The reviewer's escape: `x/y/z/l -> ../../../../etc/hosts` is inside
    // the root from `x/y/z`; renamed to the root it would lead out.
    let up = "../../../etc/hosts";
    refused(
        vec![
            op(
                1,
                "symlink",
                ".",
                &[up, "x/y/z/l"],
                &["etc/hosts"],
                &["x/y/z/l"],
            ),
            op(
                2,
                "rename",
                ".",
                &["x/y/z/l", "l"],
                &["x/y/z/l"],
                &["l", "x/y/z/l"],
            ),
        ],
        |root| {
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/hosts"), b"inside").unwrap();
        },
        "builtin.rename-link",
    );
    // A link already on disk is refused too.
    let tmp = refused(
        vec![op(
            1,
            "rename",
            ".",
            &["x/y/z/l", "l"],
            &["x/y/z/l"],
            &["l", "x/y/z/l"],
        )],
        |root| {
            std::fs::create_dir_all(root.join("x/y/z")).unwrap();
            std::fs::create_dir_all(root.join("etc")).unwrap();
            std::fs::write(root.join("etc/hosts"), b"inside").unwrap();
            std::os::unix::fs::symlink(up, root.join("x/y/z/l")).unwrap();
        },
        "builtin.rename-link",
    );
    assert!(std::fs::symlink_metadata(tmp.path().join("root/l")).is_err());
}

/// A policy in `dir` extending the shipped `linux-cc.toml` with `extra`.
fn derived_policy(dir: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("derived.toml");
    let base = shipped_policy("linux-cc.toml");
    std::fs::write(
        &path,
        format!(
            "[policy]\nextends = [{:?}]\n{extra}\n",
            base.to_str().unwrap()
        ),
    )
    .unwrap();
    path
}

#[test]
fn a_copy_is_held_to_the_policys_max_output_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("big"), vec![1u8; 2 << 20]).unwrap();
    std::fs::write(root.join("small"), b"small").unwrap();
    write_log(
        &root,
        vec![
            op(1, "copy", ".", &["small", "s2"], &["small"], &["s2"]),
            op(2, "copy", ".", &["big", "b2"], &["big"], &["b2"]),
        ],
    );
    let policy = derived_policy(tmp.path(), "[limits]\nmax_output = \"1MiB\"");
    let out = replay_command()
        .arg("--policy")
        .arg(&policy)
        .args(["--report", "r.json"])
        .arg("log.json")
        .current_dir(&root)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert_eq!(std::fs::read(root.join("s2")).unwrap(), b"small");
    assert!(!root.join("b2").exists(), "{stderr}");
    let journal = std::fs::read_to_string(root.join("log.json.journal")).unwrap();
    assert_eq!(journal.lines().count(), 1, "{journal}");
    let report = crate::support::report(&root.join("r.json"));
    let second = &report["commands"][1];
    assert_eq!(second["status"], "stopped", "{second}");
    let staged = root.join(".replay-stage");
    assert!(
        !staged.exists() || std::fs::read_dir(&staged).unwrap().next().is_none(),
        "a partial copy was left staged"
    );
}

#[test]
fn nothing_reads_or_writes_replays_staging() {
    let stage = |root: &Path| {
        std::fs::create_dir_all(root.join(".replay-stage/sub")).unwrap();
        std::fs::write(root.join(".replay-stage/sub/o"), b"o").unwrap();
        std::fs::write(root.join("f"), b"f").unwrap();
    };
    let tmp = refused(
        vec![op(
            1,
            "rename",
            ".",
            &["f", ".replay-stage/sub/x"],
            &["f"],
            &[".replay-stage/sub/x", "f"],
        )],
        stage,
        "paths.reserved",
    );
    assert!(tmp.path().join("root/f").exists());
    refused(
        vec![op(
            1,
            "remove",
            ".",
            &[".replay-stage/x"],
            &[],
            &[".replay-stage/x"],
        )],
        stage,
        "paths.reserved",
    );
    refused(
        vec![op(
            1,
            "copy",
            ".",
            &[".replay-stage/sub/o", "c"],
            &[".replay-stage/sub/o"],
            &["c"],
        )],
        stage,
        "paths.reserved",
    );
    // A tool's too.
    refused(
        vec![json!({"id": 1, "tool": "cc", "program": "clang-14",
            "args": ["-c", "f.c", "-o", ".replay-stage/f.o"], "cwd": ".", "env": {},
            "inputs": ["f.c"], "outputs": [".replay-stage/f.o"]})],
        |root| {
            stage(root);
            std::fs::write(root.join("f.c"), b"int f;").unwrap();
        },
        "paths.reserved",
    );
}

#[test]
fn a_derived_policy_switches_built_ins_off_or_narrows_them() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("f"), b"f").unwrap();
    std::fs::write(root.join("g"), b"g").unwrap();
    write_log(
        &root,
        vec![
            op(1, "symlink", ".", &["f", "l"], &["f"], &["l"]),
            op(2, "remove", ".", &["g"], &[], &["g"]),
        ],
    );
    let check = |policy: &Path| {
        let out = replay_command()
            .arg("check")
            .arg("--policy")
            .arg(policy)
            .arg("log.json")
            .current_dir(&root)
            .output()
            .unwrap();
        (out.status.code(), text(&out.stderr) + &text(&out.stdout))
    };
    let none = derived_policy(tmp.path(), "builtins = []");
    let (code, said) = check(&none);
    assert_eq!(code, Some(3), "{said}");
    assert!(said.contains("`symlink` is not allowed"), "{said}");
    assert!(said.contains("`remove` is not allowed"), "{said}");
    let links = derived_policy(tmp.path(), "builtins = [\"symlink\"]");
    let (code, said) = check(&links);
    assert_eq!(code, Some(3), "{said}");
    assert!(!said.contains("`symlink` is not allowed"), "{said}");
    assert!(said.contains("`remove` is not allowed"), "{said}");
    // Without the key, the base's list holds.
    let same = derived_policy(tmp.path(), "");
    let (code, said) = check(&same);
    assert_eq!(code, Some(0), "{said}");
    assert!(root.join("g").exists());
}

#[test]
fn copies_and_renames_get_the_modes_of_committed_outputs() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    for name in ["a", "b"] {
        std::fs::write(root.join(name), b"not a program").unwrap();
        std::fs::set_permissions(root.join(name), std::fs::Permissions::from_mode(0o6777)).unwrap();
    }
    write_log(
        root,
        vec![
            op(1, "copy", ".", &["a", "bin/a"], &["a"], &["bin/a"]),
            op(2, "rename", ".", &["b", "bin/b"], &["b"], &["bin/b", "b"]),
        ],
    );
    let out = replay(root, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for made in ["bin/a", "bin/b"] {
        let mode = std::fs::metadata(root.join(made))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o644, "{made}: {mode:o}");
    }
}

#[test]
fn a_name_no_file_system_holds_is_refused_before_anything_moves() {
    let long = format!("nd1/nd2/{}", "n".repeat(300));
    let tmp = refused(
        vec![op(1, "rename", ".", &["g", &long], &["g"], &[&long, "g"])],
        |root| std::fs::write(root.join("g"), b"g").unwrap(),
        "builtin.name-too-long",
    );
    assert!(tmp.path().join("root/g").exists());
    assert!(!tmp.path().join("root/nd1").exists());
}

/// The largest regular file beneath `dir`, in bytes (0 if none).
fn largest_file(dir: &Path) -> u64 {
    let mut largest = 0;
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let Ok(meta) = std::fs::symlink_metadata(entry.path()) else {
            continue;
        };
        if meta.is_dir() {
            largest = largest.max(largest_file(&entry.path()));
        } else if meta.is_file() {
            largest = largest.max(meta.len());
        }
    }
    largest
}

#[test]
fn an_interrupted_copy_stops_and_is_neither_committed_nor_journaled() {
    use std::time::{Duration, Instant};
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    // Sparse: it takes no room; its copy takes what is written of it
    // before the signal.
    let big = std::fs::File::create(root.join("big")).unwrap();
    big.set_len(8 << 30).unwrap();
    drop(big);
    write_log(
        &root,
        vec![op(1, "copy", ".", &["big", "c"], &["big"], &["c"])],
    );
    let policy = derived_policy(tmp.path(), "[limits]\nmax_output = \"16GiB\"");
    let mut child =
        crate::support::spawn_replay(&root, &["--policy", policy.to_str().unwrap(), "log.json"]);
    // Signalled once the copy is under way (its staged file grows).
    let begun = Instant::now() + Duration::from_secs(60);
    while largest_file(&root.join(".replay-stage")) == 0 {
        if Instant::now() > begun || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the copy never began");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    // SAFETY: kill has no memory effects; the pid is our own child, not
    // yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay went on copying after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    assert!(std::fs::symlink_metadata(root.join("c")).is_err());
    let journal = std::fs::read_to_string(root.join("log.json.journal")).unwrap_or_default();
    assert_eq!(journal.lines().count(), 0, "{journal}");
    assert_eq!(largest_file(&root.join(".replay-stage")), 0);
}
