//! IR in, running program out: `aotc --log` writes the commands, `replay`
//! checks and runs them on LLVM 14's `opt` and `llc` and `clang-14`.

use std::path::Path;

use crate::support::{bin, copy_hello, log_hello, report, run, shipped_policy, text};

#[test]
fn aotc_log_is_checked_run_and_builds_a_working_program() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    log_hello(root, "2");
    let policy = shipped_policy("linux.toml");
    let policy = policy.to_str().unwrap();

    let check = run(
        &bin("replay"),
        &["check", "--policy", policy, "log.json"],
        root,
    );
    assert!(
        check.status.success(),
        "check refused: {}{}",
        text(&check.stdout),
        text(&check.stderr)
    );
    assert!(!root.join("hello").exists(), "`check` must run nothing");

    let replay = run(
        &bin("replay"),
        &["--policy", policy, "--report", "report.json", "log.json"],
        root,
    );
    assert!(
        replay.status.success(),
        "replay failed: {}",
        text(&replay.stderr)
    );

    // The program the tools built runs, and says what the IR says.
    let hello = run(&root.join("hello"), &[], root);
    assert!(hello.status.success());
    let direct = run(
        Path::new("/usr/bin/clang-14"),
        &["hello.ll", "-o", "direct"],
        root,
    );
    assert!(direct.status.success(), "{}", text(&direct.stderr));
    assert_eq!(hello.stdout, run(&root.join("direct"), &[], root).stdout);

    // Every command ran, measured: opt and llc per partition, one link.
    let report = report(&root.join("report.json"));
    let commands = report["commands"].as_array().unwrap();
    assert_eq!(commands.len(), 5, "{report:#}");
    for command in commands {
        assert_eq!(command["status"], "ok", "{command:#}");
        let peak = command["outcome"]["measurements"]["peak_process"]["bytes"].as_u64();
        assert!(
            peak.is_some_and(|b| b > 1 << 20),
            "no exact peak: {command:#}"
        );
    }
    assert_eq!(report["totals"]["succeeded"], 5);
    // Outputs were staged under temporary names and none is left over.
    let leftovers: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".replay-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_refused_command_means_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    log_hello(root, "1");
    // Slip a pass plugin into the first command: the later, harmless
    // commands must not run either.
    // (Edited as text: the header must stay before `commands`.)
    let log = std::fs::read_to_string(root.join("log.json")).unwrap();
    let evil = log.replacen(
        r#""args":["-O2","#,
        r#""args":["-load=/tmp/evil.so","-O2","#,
        1,
    );
    assert_ne!(evil, log, "the first command is opt -O2");
    assert!(evil.find("-load=").unwrap() < evil.rfind(r#""tool":"cc""#).unwrap());
    std::fs::write(root.join("log.json"), evil).unwrap();
    let policy = shipped_policy("linux.toml");
    let replay = run(
        &bin("replay"),
        &["--policy", policy.to_str().unwrap(), "log.json"],
        root,
    );
    assert_eq!(replay.status.code(), Some(3), "{}", text(&replay.stderr));
    assert!(
        text(&replay.stderr).contains("-load"),
        "{}",
        text(&replay.stderr)
    );
    let built: Vec<_> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".o") || name.ends_with(".opt.bc") || name == "hello")
        .collect();
    assert!(built.is_empty(), "something ran: {built:?}");
}

#[test]
fn a_missing_input_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    log_hello(root, "1");
    let partition = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "bc"))
        .or_else(|| {
            crate::support::walk(root)
                .into_iter()
                .find(|p| p.extension().is_some_and(|x| x == "bc"))
        })
        .expect("aotc wrote a partition");
    std::fs::remove_file(&partition).unwrap();
    let policy = shipped_policy("linux.toml");
    let replay = run(
        &bin("replay"),
        &["--policy", policy.to_str().unwrap(), "log.json"],
        root,
    );
    assert_eq!(replay.status.code(), Some(3), "{}", text(&replay.stderr));
}

#[test]
fn drive_runs_aotc_then_its_log_and_reports_both_peaks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    copy_hello(root);
    let policy = shipped_policy("linux.toml");
    let aotc = bin("aotc");
    let drive = run(
        &bin("replay"),
        &[
            "drive",
            "--policy",
            policy.to_str().unwrap(),
            "--report",
            "report.json",
            "--",
            aotc.to_str().unwrap(),
            "hello.ll",
            "-o",
            "hello",
            "--partitions",
            "2",
        ],
        root,
    );
    assert!(drive.status.success(), "{}", text(&drive.stderr));
    assert_eq!(
        text(&run(&root.join("hello"), &[], root).stdout),
        "hello from aotc: 42\n"
    );
    let report = report(&root.join("report.json"));
    let producer = report["producer"]["peak_rss"].as_u64().unwrap();
    assert!(producer > 4 << 20, "the compiler's own peak: {report:#}");
    assert_eq!(report["producer"]["exit"]["code"], 0, "{report:#}");
    assert_eq!(report["totals"]["succeeded"], 5, "{report:#}");
    assert!(
        text(&drive.stderr).contains("producer `"),
        "{}",
        text(&drive.stderr)
    );
}

#[test]
fn a_failing_producer_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let policy = shipped_policy("linux.toml");
    let aotc = bin("aotc");
    let drive = run(
        &bin("replay"),
        &[
            "drive",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            aotc.to_str().unwrap(),
            "missing.ll",
            "-o",
            "x",
        ],
        root,
    );
    assert_eq!(drive.status.code(), Some(1), "{}", text(&drive.stderr));
    assert!(
        text(&drive.stderr).contains("nothing ran"),
        "{}",
        text(&drive.stderr)
    );
    assert!(!root.join("x").exists());
}

#[test]
fn a_producer_that_writes_a_truncated_log_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let policy = shipped_policy("linux.toml");
    // A producer that dies mid-log but exits 0.
    let script = r#"printf '{"format":"replay-log","version":1,"producer":{"name":"x","version":"0"},"platform":{"os":"linux","arch":"x86_64"},"commands":[' >&"$REPLAY_LOG_FD""#;
    let drive = run(
        &bin("replay"),
        &[
            "drive",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            script,
        ],
        root,
    );
    assert_eq!(drive.status.code(), Some(2), "{}", text(&drive.stderr));
    assert!(
        text(&drive.stderr).contains("truncated"),
        "{}",
        text(&drive.stderr)
    );
}

#[test]
fn macos_and_windows_logs_pass_their_policies_and_fail_the_linux_one() {
    for (os, own) in [("macos", "macos.toml"), ("windows", "windows.toml")] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_hello(root);
        let aotc = run(
            &bin("aotc"),
            &[
                "hello.ll",
                "--target-os",
                os,
                "-o",
                "hello",
                "--log",
                "log.json",
                "--partitions",
                "2",
            ],
            root,
        );
        assert!(aotc.status.success(), "{os}: {}", text(&aotc.stderr));
        let own = shipped_policy(own);
        let check = run(
            &bin("replay"),
            &["check", "--policy", own.to_str().unwrap(), "log.json"],
            root,
        );
        // Audited here, the other platform's binaries are unverified, not
        // refused...
        assert_eq!(
            check.status.code(),
            Some(0),
            "{os}: {}",
            text(&check.stdout)
        );
        let stdout = text(&check.stdout);
        let tally = stdout.lines().last().unwrap_or_default();
        assert!(
            tally.starts_with("unverified: 0 allowed,") && tally.ends_with(" 0 refused"),
            "{os}: {stdout}"
        );
        // ...and --strict refuses what it cannot verify.
        let strict = run(
            &bin("replay"),
            &[
                "check",
                "--strict",
                "--policy",
                own.to_str().unwrap(),
                "log.json",
            ],
            root,
        );
        assert_eq!(
            strict.status.code(),
            Some(3),
            "{os}: {}",
            text(&strict.stdout)
        );
        let linux = shipped_policy("linux.toml");
        let wrong = run(
            &bin("replay"),
            &["check", "--policy", linux.to_str().unwrap(), "log.json"],
            root,
        );
        assert_eq!(
            wrong.status.code(),
            Some(3),
            "{os}: {}",
            text(&wrong.stdout)
        );
        assert!(
            text(&wrong.stdout).contains("platform.os-mismatch"),
            "{os}: {}",
            text(&wrong.stdout)
        );
    }
}

/// One command of [`write_log`]: `(tool, program, args, inputs, outputs)`.
type LoggedCommand<'a> = (
    &'a str,
    &'a str,
    &'a [&'a str],
    &'a [&'a str],
    &'a [&'a str],
);

/// Writes `log.json` in `root` with these commands.
fn write_log(root: &Path, commands: &[LoggedCommand<'_>]) {
    let commands: Vec<serde_json::Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (tool, program, args, inputs, outputs))| {
            serde_json::json!({"id": i + 1, "tool": tool, "program": program, "args": args,
                "cwd": ".", "env": {}, "inputs": inputs, "outputs": outputs})
        })
        .collect();
    crate::support::write_log(root, commands);
}

/// GNU ld reads an input that is not an object as a linker script. A file
/// that an earlier command makes cannot be looked at when the log is
/// checked; replay looks right before the linker runs, and refuses (exit
/// 3) a text file given as an object, or found by `-l` in a `-L` directory
/// of the root. Regression: both were linked.
#[test]
fn a_text_file_the_linker_would_read_as_a_script_is_refused_when_its_turn_comes() {
    let policy = shipped_policy("linux.toml");
    let policy = policy.to_str().unwrap();
    for case in ["made earlier", "found by -l"] {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        copy_hello(root);
        std::fs::create_dir(root.join("lib")).unwrap();
        std::fs::write(root.join("lib/libx.so"), "INPUT(/etc/hostname)\n").unwrap();
        if case == "made earlier" {
            // llc writes assembly text under an object's name.
            write_log(
                root,
                &[
                    (
                        "llc",
                        "llc",
                        &["-filetype=asm", "hello.ll", "-o", "x.o"],
                        &["hello.ll"],
                        &["x.o"],
                    ),
                    (
                        "cc",
                        "clang-14",
                        &["x.o", "-o", "prog"],
                        &["x.o"],
                        &["prog"],
                    ),
                ],
            );
        } else {
            write_log(
                root,
                &[
                    (
                        "llc",
                        "llc",
                        &["-filetype=obj", "hello.ll", "-o", "x.o"],
                        &["hello.ll"],
                        &["x.o"],
                    ),
                    (
                        "cc",
                        "clang-14",
                        &["x.o", "-Llib", "-lx", "-o", "prog"],
                        &["x.o"],
                        &["prog"],
                    ),
                ],
            );
        }
        let replay = run(&bin("replay"), &["--policy", policy, "log.json"], root);
        let stderr = text(&replay.stderr);
        assert_eq!(replay.status.code(), Some(3), "{case}: {stderr}");
        assert!(stderr.contains("linker script"), "{case}: {stderr}");
        assert!(root.join("x.o").is_file(), "{case}: the first command ran");
        assert!(!root.join("prog").exists(), "{case}: the link never ran");
    }
}
