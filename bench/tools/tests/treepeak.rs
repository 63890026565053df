//! `treepeak` on real process trees.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

const MIB: u64 = 1 << 20;

fn report_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("treepeak-{name}.json"))
}

/// Runs treepeak on `command`; its exit status and report.
fn treepeak(name: &str, command: &[&str]) -> (Option<i32>, Value) {
    let json = report_path(name);
    let _ = std::fs::remove_file(&json);
    let status = Command::new(env!("CARGO_BIN_EXE_treepeak"))
        .arg("--json")
        .arg(&json)
        .arg("--")
        .args(command)
        .status()
        .unwrap();
    let text = std::fs::read_to_string(&json).unwrap();
    (status.code(), serde_json::from_str(&text).unwrap())
}

fn bytes(report: &Value, key: &str) -> u64 {
    report[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` in {report:#}"))
}

#[test]
fn two_concurrent_children_add_up() {
    // Each child fills 64 MiB (`b'x' * n` writes every page) and holds it
    // for 300 ms; they start within a few ms of each other, so both are
    // resident together for most of that time.
    let script = r#"
import subprocess, sys
hold = "import time; b = b'x' * (64 << 20); time.sleep(0.3)"
kids = [subprocess.Popen([sys.executable, "-c", hold]) for _ in range(2)]
sys.exit(max(k.wait() for k in kids))
"#;
    let (code, report) = treepeak("concurrent", &["python3", "-c", script]);
    assert_eq!(code, Some(0), "{report:#}");
    let tree = bytes(&report, "peak_tree_rss");
    let single = bytes(&report, "peak_process_rss");
    assert!(
        tree >= 128 * MIB,
        "peak_tree_rss {} MiB: {report:#}",
        tree / MIB
    );
    // 64 MiB plus an interpreter (about 10 MiB), well short of two buffers.
    assert!(
        (64 * MIB..100 * MIB).contains(&single),
        "peak_process_rss {} MiB: {report:#}",
        single / MIB
    );
    // The parent and both children were in the tree at its peak.
    assert!(
        report["at_peak"].as_array().unwrap().len() >= 3,
        "{report:#}"
    );
    let by_comm = report["by_comm"].as_object().unwrap();
    let largest = by_comm.values().filter_map(Value::as_u64).max();
    assert_eq!(largest, Some(single));
    assert_eq!(
        by_comm
            .get(report["peak_process_comm"].as_str().unwrap())
            .and_then(Value::as_u64),
        Some(single)
    );
    // The kernel's own high-water mark agrees with the sampled one.
    let children_maxrss = bytes(&report, "children_maxrss");
    assert!(children_maxrss >= 64 * MIB, "{report:#}");
    assert!(report["samples"].as_u64().unwrap() > 10, "{report:#}");
}

#[test]
fn the_exit_code_is_passed_on() {
    let (code, report) = treepeak("exit3", &["sh", "-c", "exit 3"]);
    assert_eq!(code, Some(3));
    assert_eq!(report["exit_code"], 3);
    assert_eq!(report["signal"], Value::Null);
    assert_eq!(report["command"][0], "sh");
}

#[test]
fn a_signal_becomes_128_plus_its_number() {
    let (code, report) = treepeak("signal", &["sh", "-c", "kill -TERM $$"]);
    assert_eq!(code, Some(128 + 15));
    assert_eq!(report["exit_code"], Value::Null);
    assert_eq!(report["signal"], 15);
}

#[test]
fn a_missing_program_exits_127_without_a_report() {
    let json = report_path("missing");
    let _ = std::fs::remove_file(&json);
    let out = Command::new(env!("CARGO_BIN_EXE_treepeak"))
        .arg("--json")
        .arg(&json)
        .args(["--", "/nonexistent/program"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(127));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("cannot run `/nonexistent/program`"),
        "{stderr}"
    );
    assert!(!json.exists());
}
