//! Killing `replay` with SIGKILL at any moment and resuming ends with the
//! same outputs as an uninterrupted run.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{bin, memtouch_log, memtouch_policy, run, spawn_replay, text};

fn log(root: &Path) {
    memtouch_policy(root, "");
    let commands: Vec<(Vec<String>, Vec<String>)> = (1..=4)
        .map(|i| {
            (
                vec![
                    format!("--mib={}", i),
                    "--hold-ms=300".into(),
                    format!("--out=o{i}.txt"),
                ],
                vec![format!("o{i}.txt")],
            )
        })
        .collect();
    let borrowed: Vec<(Vec<&str>, Vec<&str>)> = commands
        .iter()
        .map(|(a, o)| {
            (
                a.iter().map(String::as_str).collect(),
                o.iter().map(String::as_str).collect(),
            )
        })
        .collect();
    let slices: Vec<(&[&str], &[&str])> = borrowed
        .iter()
        .map(|(a, o)| (a.as_slice(), o.as_slice()))
        .collect();
    memtouch_log(root, &slices);
}

fn outputs(root: &Path) -> Vec<Option<Vec<u8>>> {
    (1..=4)
        .map(|i| std::fs::read(root.join(format!("o{i}.txt"))).ok())
        .collect()
}

/// The log run to its end without interruption: what a resumed run must
/// end with.
fn uninterrupted() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let clean = dir.path().canonicalize().unwrap();
    log(&clean);
    let output = run(
        &bin("replay"),
        &["--policy", "memtouch.toml", "log.json"],
        &clean,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    (dir, clean)
}

/// `--resume` in `root`: it succeeds and ends with `clean`'s outputs;
/// its report.
fn resume_like(root: &Path, clean: &Path) -> serde_json::Value {
    let resumed = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--resume",
            "--report",
            "r.json",
            "log.json",
        ],
        root,
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(outputs(root), outputs(clean));
    serde_json::from_slice(&std::fs::read(root.join("r.json")).unwrap()).unwrap()
}

#[test]
fn sigkill_then_resume_ends_like_an_uninterrupted_run() {
    let (_clean_dir, clean) = uninterrupted();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    log(&root);
    let mut child = spawn_replay(&root, &["--policy", "memtouch.toml", "log.json"]);
    // Kill it while the second command is running: after the first one's
    // journal entry, before the run ends.
    let journal = root.join("log.json.journal");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 1 {
        assert!(
            Instant::now() < deadline,
            "the first command never finished"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = outputs(&root);
    assert!(partial[0].is_some(), "the first output is in place");
    assert!(partial[3].is_none(), "the run was cut short");

    let report = resume_like(&root, &clean);
    assert_eq!(report["commands"][0]["status"], "resumed", "{report:#}");
    // The killed run's temporaries were cleaned up by the resumed one.
    let leftovers: Vec<_> = std::fs::read_dir(&root)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".replay-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// The journal is synced by a group commit, after entries are written:
/// a SIGKILL that falls after two commands' entries and before any sync
/// (the test holds every sync back) must still resume exactly, skipping
/// both.
#[test]
fn sigkill_between_entries_and_their_sync_still_resumes_exactly() {
    let (_clean_dir, clean) = uninterrupted();

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    log(&root);
    let mut child = crate::support::replay_command()
        .args(["--policy", "memtouch.toml", "log.json"])
        .env("REPLAY_TEST_HOLD_JOURNAL_SYNC", "1")
        .current_dir(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start replay");
    let journal = root.join("log.json.journal");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&journal).map_or(0, |j| j.lines().count()) < 2 {
        assert!(
            Instant::now() < deadline,
            "the first two commands never finished"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let partial = outputs(&root);
    assert!(partial[3].is_none(), "the run was cut short");

    let report = resume_like(&root, &clean);
    for i in 0..2 {
        assert_eq!(
            report["commands"][i]["status"],
            "resumed",
            "command {}: {report:#}",
            i + 1
        );
    }
}

#[test]
fn resume_reruns_a_command_whose_input_was_rebuilt() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let write = |first_mib: u32| {
        let log = format!(
            r#"{{"format":"replay-log","version":1,"producer":{{"name":"t","version":"0"}},"platform":{{"os":"linux","arch":"{arch}"}},"commands":[
{{"id":1,"tool":"memtouch","program":"memtouch","args":["--mib={first_mib}","--out=a.txt"],"cwd":".","env":{{}},"inputs":[],"outputs":["a.txt"]}},
{{"id":2,"tool":"memtouch","program":"memtouch","args":["--out=b.txt"],"cwd":".","env":{{}},"inputs":["./a.txt"],"outputs":["b.txt"]}}
]}}"#,
            arch = std::env::consts::ARCH
        );
        std::fs::write(root.join("log.json"), log).unwrap();
    };
    write(1);
    let first = run(
        &bin("replay"),
        &["--policy", "memtouch.toml", "log.json"],
        &root,
    );
    assert!(first.status.success(), "{}", text(&first.stderr));
    // The first command changes; the second is unchanged but reads its
    // output, so it is not done either.
    write(2);
    let resumed = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--resume",
            "--report",
            "r.json",
            "log.json",
        ],
        &root,
    );
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["commands"][0]["status"], "ok", "{report:#}");
    assert_eq!(report["commands"][1]["status"], "ok", "{report:#}");
    // And with nothing changed, both are skipped.
    let again = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--resume",
            "--report",
            "r.json",
            "log.json",
        ],
        &root,
    );
    assert!(again.status.success(), "{}", text(&again.stderr));
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("r.json")).unwrap()).unwrap();
    assert_eq!(report["commands"][0]["status"], "resumed", "{report:#}");
    assert_eq!(report["commands"][1]["status"], "resumed", "{report:#}");
}
