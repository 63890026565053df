//! `-j N`: several tools at once on real tools, in dependency order, under
//! a memory budget that is never left exceeded, with the same outputs as
//! one at a time, and resumable after SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::{bin, memtouch_policy, report, run, shipped_policy, spawn_replay, text};

/// `replay ARGS` in `root`, off the cache.
fn replay(root: &Path, args: &[&str]) -> Output {
    run(&bin("replay"), args, root)
}

/// A fresh canonical root with the memtouch policy and a log of
/// `commands`, each `(args, outputs)`.
fn memtouch_root(commands: &[(Vec<String>, Vec<String>)]) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let args: Vec<Vec<&str>> = commands
        .iter()
        .map(|(a, _)| a.iter().map(String::as_str).collect())
        .collect();
    let outputs: Vec<Vec<&str>> = commands
        .iter()
        .map(|(_, o)| o.iter().map(String::as_str).collect())
        .collect();
    let borrowed: Vec<(&[&str], &[&str], &[&str])> = args
        .iter()
        .zip(&outputs)
        .map(|(a, o)| (a.as_slice(), &[][..], o.as_slice()))
        .collect();
    crate::support::memtouch_commands(&root, &borrowed);
    (dir, root)
}

/// `n` memtouch commands touching `mib` MiB for `hold_ms`, each writing
/// its own `oI.txt`.
fn touching(n: usize, mib: u64, hold_ms: u64) -> Vec<(Vec<String>, Vec<String>)> {
    (1..=n)
        .map(|i| {
            (
                vec![
                    format!("--mib={mib}"),
                    format!("--hold-ms={hold_ms}"),
                    format!("--out=o{i}.txt"),
                ],
                vec![format!("o{i}.txt")],
            )
        })
        .collect()
}

/// Each command's `[start, end)` in milliseconds, from the report.
fn intervals(report: &serde_json::Value) -> Vec<(u64, u64, u64)> {
    report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let t = &c["timing"];
            (
                c["id"].as_u64().unwrap(),
                t["started_ms"].as_u64().unwrap(),
                t["ended_ms"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn overlaps(intervals: &[(u64, u64, u64)]) -> usize {
    let mut n = 0;
    for (i, a) in intervals.iter().enumerate() {
        for b in &intervals[i + 1..] {
            if a.1 < b.2 && b.1 < a.2 {
                n += 1;
            }
        }
    }
    n
}

#[test]
fn two_at_a_time_builds_the_same_bytes_as_one_at_a_time() {
    let build = |jobs: &str| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().to_owned();
        crate::support::log_hello(&root, "4");
        let policy = shipped_policy("linux.toml");
        let out = replay(
            &root,
            &[
                "-j",
                jobs,
                "--predict",
                "opt=200M",
                "--predict",
                "llc=200M",
                "--predict",
                "cc=300M",
                "--policy",
                policy.to_str().unwrap(),
                "--report",
                "report.json",
                "log.json",
            ],
        );
        assert!(out.status.success(), "{}", text(&out.stderr));
        let mut files: Vec<(String, Vec<u8>)> = crate::support::walk(&root)
            .into_iter()
            .filter(|p| {
                let name = p.to_string_lossy();
                name.ends_with(".o") || name.ends_with(".opt.bc") || name.ends_with("/hello")
            })
            .map(|p| {
                let rel = p
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                (rel, std::fs::read(&p).unwrap())
            })
            .collect();
        files.sort();
        (dir, report(&root.join("report.json")), files)
    };
    let (_one_dir, one_report, one) = build("1");
    let (_two_dir, two_report, two) = build("2");
    assert!(
        one.len() >= 9,
        "4 partitions, 2 files each, and the program"
    );
    assert_eq!(
        one.iter().map(|(p, _)| p).collect::<Vec<_>>(),
        two.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for ((path, a), (_, b)) in one.iter().zip(&two) {
        assert!(a == b, "{path} differs between -j 1 and -j 2");
    }
    assert_eq!(overlaps(&intervals(&one_report)), 0, "{one_report:#}");
    assert!(
        overlaps(&intervals(&two_report)) > 0,
        "-j 2 ran two at once: {two_report:#}"
    );
    assert_eq!(two_report["totals"]["jobs"], 2);
}

#[test]
fn a_budget_smaller_than_two_tools_never_runs_two_at_once() {
    let commands = touching(3, 64, 200);
    let (_dir, root) = memtouch_root(&commands);
    let out = replay(
        &root,
        &[
            "-j",
            "3",
            "--predict",
            "memtouch=80M",
            "--memory-budget",
            "120M",
            "--policy",
            "memtouch.toml",
            "--report",
            "r.json",
            "log.json",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc = report(&root.join("r.json"));
    assert_eq!(overlaps(&intervals(&doc)), 0, "{doc:#}");
    let peak = doc["totals"]["peak_sum_rss"].as_u64().unwrap();
    assert!(peak > 60 << 20, "the tools were measured: {doc:#}");
    assert!(
        peak <= 120 << 20,
        "the sum stayed under the budget: {doc:#}"
    );
    assert_eq!(doc["totals"]["memory_budget"], 120u64 << 20);
}

#[test]
fn a_tool_that_outgrows_its_prediction_is_stopped_and_run_again_alone() {
    let commands = touching(2, 100, 1500);
    let (_dir, root) = memtouch_root(&commands);
    // Predicted at 10 MiB each, both are admitted; together they pass
    // the budget, so the later one is stopped and runs again alone.
    let out = replay(
        &root,
        &[
            "-j",
            "2",
            "--predict",
            "memtouch=10M",
            "--memory-budget",
            "150M",
            "--policy",
            "memtouch.toml",
            "--report",
            "r.json",
            "log.json",
        ],
    );
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // One overrun stops one tool, the last started, not every tool.
    assert_eq!(
        stderr
            .matches("was stopped to keep the tools running at once under the memory budget")
            .count(),
        1,
        "{stderr}"
    );
    let doc = report(&root.join("r.json"));
    let statuses: Vec<&str> = doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["ok", "ok"], "{doc:#}");
    // The rerun ran alone: the final runs do not overlap.
    assert_eq!(overlaps(&intervals(&doc)), 0, "{doc:#}");
    for i in 1..=2 {
        assert!(root.join(format!("o{i}.txt")).is_file());
    }
}

#[test]
fn sigkill_during_a_parallel_run_then_resume_ends_like_an_uninterrupted_run() {
    let commands: Vec<(Vec<String>, Vec<String>)> = (1..=6)
        .map(|i| {
            (
                vec![
                    format!("--mib={i}"),
                    "--hold-ms=300".into(),
                    format!("--out=o{i}.txt"),
                ],
                vec![format!("o{i}.txt")],
            )
        })
        .collect();
    let args = [
        "-j",
        "2",
        "--predict",
        "memtouch=50M",
        "--policy",
        "memtouch.toml",
        "log.json",
    ];
    let (_clean_dir, clean) = memtouch_root(&commands);
    let out = replay(&clean, &args);
    assert!(out.status.success(), "{}", text(&out.stderr));

    let (_dir, root) = memtouch_root(&commands);
    let mut child = spawn_replay(&root, &args);
    let journal = root.join("log.json.journal");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 2 {
        assert!(Instant::now() < deadline, "no command finished");
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let outputs = |root: &Path| -> Vec<Option<Vec<u8>>> {
        (1..=6)
            .map(|i| std::fs::read(root.join(format!("o{i}.txt"))).ok())
            .collect()
    };
    assert!(
        outputs(&root).iter().any(Option::is_none),
        "the run was cut short"
    );
    let mut resume = args.to_vec();
    resume.insert(0, "--resume");
    let resumed = replay(&root, &resume);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(outputs(&root), outputs(&clean));
    assert!(
        !root
            .join(".replay-stage")
            .read_dir()
            .is_ok_and(|mut d| d.next().is_some()),
        "no staging left behind"
    );
}

#[test]
fn keep_going_in_parallel_blocks_what_needs_a_failed_output_and_runs_the_rest() {
    let commands = vec![
        (
            vec!["--exit=1".to_owned(), "--out=a.txt".to_owned()],
            vec!["a.txt".to_owned()],
        ),
        (
            vec!["--hold-ms=200".to_owned(), "--out=c.txt".to_owned()],
            vec!["c.txt".to_owned()],
        ),
    ];
    let (_dir, root) = memtouch_root(&commands);
    // A third command that needs the failed one's output.
    let log = std::fs::read_to_string(root.join("log.json")).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&log).unwrap();
    doc["commands"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "id": 3, "tool": "memtouch", "program": "memtouch",
            "args": ["--copy=a.txt", "--out=b.txt"], "cwd": ".", "env": {},
            "inputs": ["a.txt"], "outputs": ["b.txt"],
        }));
    crate::support::write_log(&root, doc["commands"].as_array().unwrap().clone());
    let out = replay(
        &root,
        &[
            "-j",
            "2",
            "--keep-going",
            "--predict",
            "memtouch=10M",
            "--policy",
            "memtouch.toml",
            "--report",
            "r.json",
            "log.json",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc = report(&root.join("r.json"));
    let mut statuses: Vec<(u64, String)> = doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["id"].as_u64().unwrap(),
                c["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    statuses.sort();
    assert_eq!(
        statuses,
        [
            (1, "failed".to_owned()),
            (2, "ok".to_owned()),
            (3, "blocked".to_owned())
        ],
        "{doc:#}"
    );
    assert!(root.join("c.txt").is_file() && !root.join("b.txt").exists());
}
