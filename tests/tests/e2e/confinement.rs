//! The sandbox's second layer on its own: a tool that the test's policy
//! allows with any arguments (`hostile`) tries to write, read and run what
//! its command does not declare. The kernel (Landlock) and the tracer stop
//! each try whatever the flag, nothing changes in or outside the root, and
//! the report says what the tracer saw. Each test first runs the same tool
//! outside `replay` and sees the try succeed, so it cannot pass vacuously.

use std::path::Path;

use crate::support::{bin, bin_dir, report, run, text};

/// A policy that lets `hostile` do anything its flags say; with `runs`, it
/// may run the `helper` kind's binary (`memtouch`).
fn hostile_policy(root: &Path, runs: bool) {
    let runs = if runs { "runs = [\"helper\"]" } else { "" };
    let policy = format!(
        r#"[policy]
name = "hostile-test"
os = "linux"
require_sandbox = ["landlock"]

[tool.hostile]
programs = ["hostile"]
dirs = ["{dir}"]
args = "hostile"
{runs}

[tool.helper]
programs = ["memtouch"]
dirs = ["{dir}"]
args = "memtouch"

[args.memtouch]
positional = "refuse"
flags = []

[args.hostile]
positional = "refuse"
flags = [
  {{ name = "--out=", form = "joined", path = "output" }},
  {{ name = "--beside=", form = "joined", pattern = ".+" }},
  {{ name = "--write=", form = "joined", pattern = ".+" }},
  {{ name = "--read=", form = "joined", pattern = ".+" }},
  {{ name = "--exec=", form = "joined", pattern = ".+" }},
  {{ name = "--chmod=", form = "joined", pattern = ".+" }},
  {{ name = "--untraced", form = "switch" }},
  {{ name = "--vm-write", form = "switch" }},
  {{ name = "--connect=", form = "joined", pattern = ".+" }},
  {{ name = "--prlimit=", form = "joined", pattern = "[0-9]+" }},
  {{ name = "--netns", form = "switch" }},
  {{ name = "--sleep-ms=", form = "joined", pattern = "[0-9]+" }},
]
"#,
        dir = bin_dir().display()
    );
    std::fs::write(root.join("hostile.toml"), policy).expect("write the policy");
}

/// Writes `root/log.json` with the one `command`; returns its text.
fn one_command_log(root: &Path, command: serde_json::Value) -> String {
    crate::support::write_log(root, vec![command])
}

/// A log of one `hostile` command.
fn hostile_log(root: &Path, args: &[&str], inputs: &[&str], outputs: &[&str]) {
    one_command_log(
        root,
        serde_json::json!({
            "id": 1, "tool": "hostile", "program": "hostile",
            "args": args, "cwd": ".", "env": {}, "inputs": inputs, "outputs": outputs,
        }),
    );
}

/// A fresh root with the policy and a log of `args`.
fn root_with(args: &[&str], inputs: &[&str], outputs: &[&str], runs: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    hostile_policy(&root, runs);
    hostile_log(&root, args, inputs, outputs);
    dir
}

/// Runs the log of `dir` with a report; returns (exit code, stdout, report).
fn replay(dir: &tempfile::TempDir) -> (Option<i32>, String, serde_json::Value) {
    let root = dir.path().canonicalize().unwrap();
    let output = run(
        &bin("replay"),
        &["--policy", "hostile.toml", "--report", "r.json", "log.json"],
        &root,
    );
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    (
        output.status.code(),
        format!("{stdout}{stderr}"),
        report(&root.join("r.json")),
    )
}

/// The same tool outside replay, in `dir`: the control.
fn unconfined(dir: &Path, args: &[&str]) -> String {
    text(&run(&bin("hostile"), args, dir).stdout)
}

/// The refused calls the report lists for command 1, as (action, path).
fn denied(report: &serde_json::Value) -> Vec<(String, String)> {
    report["commands"][0]["outcome"]["denied"]
        .as_array()
        .map(|all| {
            all.iter()
                .map(|d| {
                    let field = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
                    (field("action"), field("path"))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Every file under `dir`, with its contents, sorted: what a run changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(at) = pending.pop() {
        for entry in std::fs::read_dir(&at).unwrap().flatten() {
            let path = entry.path();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(path);
            } else {
                let name = path.strip_prefix(dir).unwrap().display().to_string();
                let bytes = std::fs::read(&path).unwrap_or_default();
                files.push((name, bytes));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn an_undeclared_write_in_the_root_or_over_the_log_is_denied() {
    let control = tempfile::tempdir().unwrap();
    std::fs::write(control.path().join("log.json"), "the log").unwrap();
    let out = unconfined(control.path(), &["--write=evil.txt", "--write=log.json"]);
    assert!(out.contains("write evil.txt: done"), "{out}");
    assert!(out.contains("write log.json: done"), "{out}");

    let dir = root_with(&["--write=evil.txt", "--write=log.json"], &[], &[], false);
    let root = dir.path();
    let before = std::fs::read(root.join("log.json")).unwrap();
    let (code, output, report) = replay(&dir);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("write evil.txt: denied"), "{output}");
    assert!(output.contains("write log.json: denied"), "{output}");
    assert!(!root.join("evil.txt").exists());
    assert_eq!(std::fs::read(root.join("log.json")).unwrap(), before);
    // The tracer saw both refused opens, and the report names them.
    let seen = denied(&report);
    for name in ["evil.txt", "log.json"] {
        let path = root.join(name).display().to_string();
        assert!(seen.contains(&("write".into(), path)), "{seen:?}");
    }
}

#[test]
fn a_write_through_a_planted_hard_link_changes_nothing_outside() {
    // Regression (hardening): with the whole root writable, a hard link in
    // the root to a file outside it let a tool rewrite that file.
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "precious").unwrap();
    let dir = root_with(&["--write=link"], &[], &[], false);
    let root = dir.path();
    std::fs::hard_link(&victim, root.join("link")).unwrap();
    let (code, output, _) = replay(&dir);
    assert_eq!(code, Some(1), "{output}");
    assert!(output.contains("write link: denied"), "{output}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");

    // The control: unconfined, the same write goes through the link.
    let control = unconfined(root, &["--write=link"]);
    assert!(control.contains("write link: done"), "{control}");
    assert_ne!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

#[test]
fn only_declared_inputs_are_readable_in_the_root() {
    let dir = root_with(
        &["--read=in.txt", "--read=secret.txt", "--out=o.txt"],
        &["in.txt"],
        &["o.txt"],
        false,
    );
    let root = dir.path();
    std::fs::write(root.join("in.txt"), "input").unwrap();
    std::fs::write(root.join("secret.txt"), "secret").unwrap();
    let control = unconfined(root, &["--read=secret.txt"]);
    assert!(control.contains("read secret.txt: done"), "{control}");

    let (code, output, report) = replay(&dir);
    assert!(output.contains("read in.txt: done"), "{output}");
    let secret = root.join("secret.txt").display().to_string();
    assert_eq!(denied(&report), [("read".to_owned(), secret)]);
    assert!(output.contains("read secret.txt: denied"), "{output}");
    assert_eq!(code, Some(1), "{output}");
    assert!(
        !root.join("o.txt").exists(),
        "a failed command commits nothing"
    );
}

#[test]
fn what_a_tool_writes_beside_its_output_is_discarded_and_reported() {
    let dir = root_with(&["--out=w.exe", "--beside=w.pdb"], &[], &["w.exe"], false);
    let root = dir.path();
    let (code, output, report) = replay(&dir);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(
        std::fs::read_to_string(root.join("w.exe")).unwrap(),
        "declared output\n"
    );
    assert!(!root.join("w.pdb").exists());
    assert_eq!(report["commands"][0]["discarded"][0], "w.pdb", "{report:#}");
    assert!(
        output.contains("wrote `w.pdb`, which it does not declare: discarded"),
        "{output}"
    );
    // Nothing of the staging is left in the root.
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".replay.lock",
            "hostile.toml",
            "log.json",
            "log.json.journal",
            "r.json",
            "w.exe"
        ]
    );
}

#[test]
fn a_program_the_policy_does_not_list_cannot_be_executed() {
    let helper = bin_dir().join("memtouch");
    let helper = helper.to_str().unwrap();
    let exec = format!("--exec={helper}");
    let control = tempfile::tempdir().unwrap();
    let out = unconfined(control.path(), &[&exec]);
    assert!(out.contains(&format!("exec {helper}: done")), "{out}");

    // Not listed: Landlock lets the tool execute only the binaries its
    // policy lists (and their loaders), so the exec itself fails.
    let dir = root_with(&[&exec, "--out=o.txt"], &[], &["o.txt"], false);
    let root = dir.path();
    let before = snapshot(root);
    let (code, output, _) = replay(&dir);
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!("exec {helper}: denied")),
        "{output}"
    );
    assert!(!root.join("o.txt").exists());
    let after: Vec<_> = snapshot(root)
        .into_iter()
        .filter(|(name, _)| {
            !["r.json", "log.json.journal", ".replay.lock"].contains(&name.as_str())
        })
        .collect();
    assert_eq!(after, before);

    // Listed through `runs`: the same exec runs.
    let dir = root_with(&[&exec], &[], &[], true);
    let (code, output, _) = replay(&dir);
    assert!(output.contains(&format!("exec {helper}: done")), "{output}");
    assert_eq!(code, Some(0), "{output}");
}

#[test]
fn a_listed_binary_run_under_another_name_is_killed_by_the_tracer() {
    // As `lld` run as `lld-link`: the binary is one Landlock lets the tool
    // execute, but the name picks a tool the policy never judged. The
    // tracer sees the exec before the program runs, kills the tree and
    // names the binary.
    let dir = root_with(&["--exec=./alias", "--out=o.txt"], &[], &["o.txt"], true);
    let root = dir.path();
    let helper = bin_dir().join("memtouch").canonicalize().unwrap();
    std::os::unix::fs::symlink(&helper, root.join("alias")).unwrap();
    let control = unconfined(root, &["--exec=./alias"]);
    assert!(control.contains("exec ./alias: done"), "{control}");

    let (code, output, report) = replay(&dir);
    assert_eq!(code, Some(1), "{output}");
    let command = &report["commands"][0];
    assert_eq!(command["status"], "denied", "{command:#}");
    assert_eq!(command["action"], "exec", "{command:#}");
    assert_eq!(command["path"], helper.display().to_string(), "{command:#}");
    let reason = command["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("run as `alias`"), "{reason}");
    assert!(!root.join("o.txt").exists());
}

/// Staging must not change what a tool writes: clang names a dependency
/// file's target after `-o` and writes the paths it was given into debug
/// information, so a staged compile is compared byte for byte with the
/// same compile run directly in the same root.
#[test]
fn staged_outputs_are_byte_identical_to_an_unstaged_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::create_dir_all(root.join("out")).unwrap();
    std::fs::write(root.join("src/a.h"), "#define ANSWER 42\n").unwrap();
    std::fs::write(
        root.join("src/a.c"),
        "#include \"a.h\"\nint answer(void) { return ANSWER; }\n",
    )
    .unwrap();
    let args = [
        "-c",
        "src/a.c",
        "-g",
        "-gdwarf-5",
        "-MD",
        "-MF",
        "out/a.d",
        "-o",
        "out/a.o",
    ];
    let command = serde_json::json!({
        "id": 1, "tool": "cc", "program": "clang-14", "args": args,
        "cwd": ".", "env": {}, "inputs": ["src/a.c", "src/a.h"],
        "outputs": ["out/a.o", "out/a.d"],
    });
    one_command_log(&root, command);
    let policy = crate::support::shipped_policy("linux.toml");
    let output = run(
        &bin("replay"),
        &["--policy", policy.to_str().unwrap(), "log.json"],
        &root,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let staged: Vec<Vec<u8>> = ["out/a.o", "out/a.d"]
        .iter()
        .map(|o| std::fs::read(root.join(o)).unwrap())
        .collect();
    let depfile = String::from_utf8_lossy(&staged[1]).into_owned();
    assert!(depfile.starts_with("out/a.o:"), "{depfile}");
    for o in ["out/a.o", "out/a.d"] {
        std::fs::remove_file(root.join(o)).unwrap();
    }
    let direct = run(std::path::Path::new("/usr/bin/clang-14"), &args, &root);
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    for (at, o) in ["out/a.o", "out/a.d"].iter().enumerate() {
        let unstaged = std::fs::read(root.join(o)).unwrap();
        assert!(
            staged[at] == unstaged,
            "`{o}` differs between a staged and a direct run"
        );
    }
}

/// The second layer on its own against the first class of the hardening
/// issue: a policy that wrongly lets clang take any `-target` (as the
/// shipped one did) passes `clang -target x86_64-pc-windows-msvc
/// -fuse-ld=lld ... -Wl,-rpath,/out:log.json`, and clang then runs `lld`
/// as `lld-link`, which reads `/out:log.json` as its output. The tracer
/// kills it at that exec, before it runs, and the log is untouched.
#[test]
fn lld_link_through_a_wrongly_allowed_target_is_killed_at_exec() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    // The shipped policy with its triple rule loosened to any triple.
    let shipped = crate::support::repo().join("policies");
    let linux = std::fs::read_to_string(shipped.join("linux.toml")).unwrap();
    let loose: String = linux
        .lines()
        .map(|line| match line.find("pattern = \"") {
            Some(at) if line.contains("\"-target\"") || line.contains("\"--target=\"") => {
                format!("{}pattern = \"[A-Za-z0-9_.-]+\" }},", &line[..at])
            }
            _ => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_ne!(loose, linux, "the test must loosen the triple rule");
    std::fs::write(root.join("loose.toml"), loose).unwrap();
    std::fs::copy(
        shipped.join("llvm-14-common.toml"),
        root.join("llvm-14-common.toml"),
    )
    .unwrap();
    std::fs::write(
        root.join("win.c"),
        "int mainCRTStartup(void) { return 0; }\n",
    )
    .unwrap();
    let args = [
        "-target",
        "x86_64-pc-windows-msvc",
        "-fuse-ld=lld",
        "-nostdlib",
        "win.c",
        "-o",
        "w.exe",
        "-Wl,-rpath,/out:log.json",
    ];
    let command = serde_json::json!({
        "id": 1, "tool": "cc", "program": "clang-14", "args": args,
        "cwd": ".", "env": {}, "inputs": ["win.c"], "outputs": ["w.exe"],
    });
    let log = one_command_log(&root, command);
    let check = run(
        &bin("replay"),
        &["check", "--policy", "loose.toml", "log.json"],
        &root,
    );
    assert!(
        check.status.success(),
        "the loosened policy must pass it: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    let output = run(
        &bin("replay"),
        &["--policy", "loose.toml", "--report", "r.json", "log.json"],
        &root,
    );
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert_eq!(std::fs::read_to_string(root.join("log.json")).unwrap(), log);
    assert!(!root.join("w.exe").exists());
    let report = report(&root.join("r.json"));
    let command = &report["commands"][0];
    assert_eq!(command["status"], "denied", "{command:#}");
    let reason = command["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("run as `lld-link`"), "{reason}");
}

/// What Landlock has no right for (a file's mode, leaving the tracer,
/// writing another process's memory) the seccomp filter refuses.
#[test]
fn calls_landlock_cannot_see_are_refused_by_the_filter() {
    let actions = ["--chmod=log.json", "--untraced", "--vm-write"];
    let control = tempfile::tempdir().unwrap();
    std::fs::write(control.path().join("log.json"), "x").unwrap();
    let out = unconfined(control.path(), &actions);
    for done in [
        "chmod log.json: done",
        "untraced clone: done",
        "vm-write self: done",
    ] {
        assert!(out.contains(done), "{out}");
    }

    let dir = root_with(&actions, &[], &[], false);
    let root = dir.path();
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
    };
    let before = mode(&root.join("log.json"));
    let (code, output, _) = replay(&dir);
    assert_eq!(code, Some(1), "{output}");
    for denied in [
        "chmod log.json: denied",
        "untraced clone: denied",
        "vm-write self: denied",
    ] {
        assert!(output.contains(denied), "{output}");
    }
    assert_eq!(mode(&root.join("log.json")), before);
}

/// Regression (hardening, class 3): files named as an earlier `replay`'s
/// backups (`.replay-backup-ID-PID-NAME`, `.replay-keep-...`) were renamed
/// over outputs by the clean-up of stale files, so a planted linker script
/// became an input and a planted dangling symlink received a write. No
/// file in the root is recognised by its name any more.
#[test]
fn planted_backups_are_never_renamed_over_outputs() {
    let dir = root_with(&["--out=x.o"], &[], &["x.o"], false);
    let root = dir.path();
    let pid = 999;
    let script = root.join(format!(".replay-backup-1-{pid}-x.o"));
    std::fs::write(&script, "INPUT(/etc/hostname)\n").unwrap();
    let dangling = root.join(format!(".replay-keep-1-{pid}-x.o"));
    std::os::unix::fs::symlink("/nonexistent/target", &dangling).unwrap();
    let (code, output, _) = replay(&dir);
    assert_eq!(code, Some(0), "{output}");
    assert_eq!(
        std::fs::read_to_string(root.join("x.o")).unwrap(),
        "declared output\n"
    );
    assert_eq!(
        std::fs::read_to_string(&script).unwrap(),
        "INPUT(/etc/hostname)\n"
    );
    assert!(std::fs::symlink_metadata(&dangling)
        .unwrap()
        .file_type()
        .is_symlink());
    assert!(!Path::new("/nonexistent/target").exists());
}

/// What is no file to Landlock: a Unix socket of the host (reached by
/// `connect`, which Landlock does not judge) and the limits of another
/// process (`replay`'s own, say) are refused by the filter.
#[test]
fn host_sockets_and_other_processes_limits_are_out_of_reach() {
    let sockets = tempfile::tempdir().unwrap();
    let socket = sockets.path().join("host.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    listener.set_nonblocking(true).unwrap();
    // A process of this user, standing for `replay` or the user's shell.
    let mut victim = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    let connect = format!("--connect={}", socket.display());
    let prlimit = format!("--prlimit={}", victim.id());
    let actions = [connect.as_str(), prlimit.as_str()];

    let control = tempfile::tempdir().unwrap();
    let out = unconfined(control.path(), &actions);
    assert!(out.contains(": done") && !out.contains("denied"), "{out}");
    assert!(listener.accept().is_ok(), "the control connected");

    let dir = root_with(&actions, &[], &[], false);
    let (code, output, _) = replay(&dir);
    let _ = victim.kill();
    let _ = victim.wait();
    assert_eq!(code, Some(1), "{output}");
    assert!(
        output.contains(&format!("connect {}: denied", socket.display())),
        "{output}"
    );
    assert!(
        output.contains(&format!("prlimit {}: denied", victim.id())),
        "{output}"
    );
    assert!(listener.accept().is_err(), "nothing connected under replay");
}

/// Network namespaces are kept and entered again (making one per command
/// cost a tenth of a run's CPU), but a tool is alone in its namespace:
/// tools that run at once never share one, and none is `replay`'s own.
#[test]
fn tools_running_at_once_never_share_a_network_namespace() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    hostile_policy(&root, false);
    let command = |id: u64, sleep: &str| {
        serde_json::json!({
            "id": id, "tool": "hostile", "program": "hostile",
            "args": ["--netns", format!("--sleep-ms={sleep}"), "--netns"], "cwd": ".", "env": {},
            "inputs": [], "outputs": [],
        })
    };
    // The scheduler runs a tool it has never measured alone first (1);
    // then 2 and 3 start together, and 4 when 3 is done, while 2 runs.
    crate::support::write_log(
        &root,
        vec![
            command(1, "0"),
            command(2, "900"),
            command(3, "300"),
            command(4, "0"),
        ],
    );
    let output = run(
        &bin("replay"),
        &[
            "--policy",
            "hostile.toml",
            "-j",
            "2",
            "--report",
            "r.json",
            "log.json",
        ],
        &root,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = report(&root.join("r.json"));
    // Each tool prints its namespace and the time, first and last: while
    // it printed, it was alive.
    let seen = |i: usize| -> (String, u128, u128) {
        let tail = report["commands"][i]["outcome"]["stdout_tail"]
            .as_str()
            .unwrap_or_default();
        let lines: Vec<(&str, u128)> = tail
            .lines()
            .filter_map(|line| {
                let (space, at) = line.strip_prefix("netns ")?.split_once(' ')?;
                Some((space, at.parse().ok()?))
            })
            .collect();
        match lines[..] {
            [(space, from), (_, to)] => (space.to_owned(), from, to),
            _ => panic!("command {} printed no namespace: {report:#}", i + 1),
        }
    };
    let own = std::fs::read_link("/proc/self/ns/net")
        .unwrap()
        .display()
        .to_string();
    let seen: Vec<(String, u128, u128)> = (0..4).map(seen).collect();
    let spaces: Vec<String> = seen.iter().map(|s| s.0.clone()).collect();
    let span = |i: usize| (seen[i].1, seen[i].2);
    assert!(spaces.iter().all(|s| *s != own), "{spaces:?} vs {own}");
    let mut overlaps = 0;
    for a in 0..4 {
        for b in a + 1..4 {
            let ((a0, a1), (b0, b1)) = (span(a), span(b));
            if a0 < b1 && b0 < a1 {
                overlaps += 1;
                assert_ne!(
                    spaces[a],
                    spaces[b],
                    "commands {} and {} ran at once in one namespace",
                    a + 1,
                    b + 1
                );
            }
        }
    }
    assert!(overlaps >= 2, "the tools did not run at once: {report:#}");
    let user_namespaces = report["commands"][0]["outcome"]["layers"]["user_namespace"] == true;
    if !user_namespaces {
        // Privileged: namespaces are kept, and later tools reuse them.
        let mut distinct = spaces.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() < 4, "no namespace was reused: {spaces:?}");
    }
}
