//! Limits stop tools (exit 4, saying which limit), failures exit 1, and
//! neither leaves a partial output in place of the previous one, nor a
//! process behind.

use std::path::Path;

use crate::support::{bin, memtouch_log, memtouch_policy, report, run, spawn_replay, text};

/// Processes running `memtouch` whose working directory is `root`.
fn memtouch_processes_in(root: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            exe.is_ok_and(|e| e.ends_with("memtouch"))
                && cwd.is_ok_and(|c| c.starts_with(root) || root.starts_with(&c) && c == root)
        })
        .collect()
}

fn replay(root: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["--policy", "memtouch.toml", "--report", "report.json"];
    args.extend_from_slice(extra);
    args.push("log.json");
    run(&bin("replay"), &args, root)
}

#[test]
fn a_timeout_stops_the_tool_keeps_the_old_output_and_exits_4() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(
        &root,
        &[(&["--hold-ms=20000", "--out=out.txt"], &["out.txt"])],
    );
    std::fs::write(root.join("out.txt"), "previous\n").unwrap();
    let output = replay(&root, &["--timeout", "0.5", "--grace", "0.2"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("timeout: limit 0.500s"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(root.join("out.txt")).unwrap(),
        "previous\n"
    );
    let report = report(&root.join("report.json"));
    let stop = &report["commands"][0]["stop"];
    assert_eq!(stop["kind"], "timeout", "{report:#}");
    assert!(stop["after_ms"]
        .as_u64()
        .is_some_and(|ms| (500..5000).contains(&ms)));
}

#[test]
fn a_memory_limit_kills_the_whole_forking_tree_and_leaves_no_orphan() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    // Three children of 96 MiB each, together: only the tree's sum crosses
    // the 200 MiB limit.
    memtouch_log(
        &root,
        &[(&["--mib=96", "--children=3", "--hold-ms=20000"], &[])],
    );
    let output = replay(&root, &["--max-rss", "200M"]);
    assert_eq!(output.status.code(), Some(4), "{}", text(&output.stderr));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("memory: limit 200.0 MiB"), "{stderr}");
    let report = report(&root.join("report.json"));
    let stop = &report["commands"][0]["stop"];
    assert_eq!(stop["kind"], "memory", "{report:#}");
    assert!(stop["observed"].as_u64().unwrap() > 200 << 20);
    assert!(
        memtouch_processes_in(&root).is_empty(),
        "memtouch processes outlived the kill: {:?}",
        memtouch_processes_in(&root)
    );
}

#[test]
fn a_failing_tool_exits_1_and_keeps_the_previous_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(
        &root,
        &[
            (&["--exit=3", "--out=a.txt"], &["a.txt"]),
            (&["--out=b.txt"], &["b.txt"]),
        ],
    );
    std::fs::write(root.join("a.txt"), "previous\n").unwrap();
    let output = replay(&root, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(
        text(&output.stderr).contains("FAILED (exit 3)"),
        "{}",
        text(&output.stderr)
    );
    // The tool wrote a new a.txt before failing; the old one is in place.
    assert_eq!(
        std::fs::read_to_string(root.join("a.txt")).unwrap(),
        "previous\n"
    );
    // Stop at the first failure: the second command never ran.
    assert!(!root.join("b.txt").exists());
}

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(
        &root,
        &[
            (&["--exit=3", "--out=a.txt"], &["a.txt"]),
            (&["--out=b.txt"], &["b.txt"]),
        ],
    );
    let output = replay(&root, &["--keep-going"]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    assert!(!root.join("a.txt").exists());
    assert!(std::fs::read_to_string(root.join("b.txt"))
        .unwrap()
        .contains("written by memtouch"));
}

#[test]
fn a_crashing_tool_is_reported_by_signal_and_its_partial_output_discarded() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(&root, &[(&["--crash=1", "--out=a.txt"], &["a.txt"])]);
    std::fs::write(root.join("a.txt"), "previous\n").unwrap();
    let output = replay(&root, &[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    // SIGABRT is 6.
    assert!(
        text(&output.stderr).contains("FAILED (signal 6)"),
        "{}",
        text(&output.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(root.join("a.txt")).unwrap(),
        "previous\n"
    );
    let report = report(&root.join("report.json"));
    assert_eq!(report["commands"][0]["exit"]["signal"], 6, "{report:#}");
}

#[test]
fn the_policys_file_size_limit_is_a_limit_stop_not_a_failure() {
    // Regression: a tool killed by SIGXFSZ at the policy's `max_output`
    // was reported as `FAILED (signal 25)`, exit 1.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "max_output = \"8B\"");
    memtouch_log(&root, &[(&["--out=out.txt"], &["out.txt"])]);
    std::fs::write(root.join("out.txt"), "previous\n").unwrap();
    let output = replay(&root, &[]);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("output file size"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(root.join("out.txt")).unwrap(),
        "previous\n"
    );
    let report = report(&root.join("report.json"));
    assert_eq!(
        report["commands"][0]["stop"]["kind"], "file_size",
        "{report:#}"
    );
}

/// Regression for two bugs of an interrupted run: a SIGTERM that landed
/// between two tools ended the run with commands unrun yet exit 0, and one
/// that landed while a tool's sandbox was being set up deadlocked `replay`
/// (the traced launcher stopped for its signal, waiting for the thread
/// that was blocked reading the launcher's pipe). Signals at several
/// moments of a run of short tools (SIGHUP and SIGQUIT too, which killed
/// replay outright): each run must end, promptly, with 130.
#[test]
fn a_signal_at_any_moment_ends_the_run_with_130() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let args: [&str; 1] = ["--hold-ms=5"];
    let commands: Vec<(&[&str], &[&str])> = (0..200).map(|_| (&args[..], &[][..])).collect();
    memtouch_log(&root, &commands);
    for (delay_ms, signal) in [
        (0, libc::SIGTERM),
        (30, libc::SIGTERM),
        (70, libc::SIGINT),
        (110, libc::SIGTERM),
        (170, libc::SIGHUP),
        (230, libc::SIGQUIT),
    ] {
        let journal = root.join("log.json.journal");
        let _ = std::fs::remove_file(&journal);
        let mut child = spawn_replay(&root, &["--policy", "memtouch.toml", "log.json"]);
        // Signal only once the run has begun (the journal exists): before,
        // replay has not set its handlers yet and the signal's default
        // action ends it, which is not what this test is about.
        let begun = Instant::now() + Duration::from_secs(20);
        while !journal.exists() {
            assert!(Instant::now() < begun, "the run never began");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: kill has no memory effects; the pid is our own child,
        // not yet reaped.
        unsafe { libc::kill(child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("replay hung after signal {signal} at {delay_ms} ms");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        assert_eq!(status.code(), Some(130), "signal {signal} at {delay_ms} ms");
    }
}

#[test]
fn a_long_sample_interval_does_not_hold_up_each_command() {
    // Regression: the watcher slept a whole interval after the tool had
    // exited, so `--sample-interval 20000` made each trivial command take
    // 20 s. The bound below is far from both: a behaviour, not a timing.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(&root, &[(&["--mib=0"], &[]), (&["--mib=0"], &[])]);
    let started = std::time::Instant::now();
    let output = replay(&root, &["--sample-interval", "20000"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "two trivial commands took {:?}",
        started.elapsed()
    );
}
