//! A traced tool starts on its tracer's CPU and gets every CPU back: a
//! process it starts after the first moments may run anywhere `replay`
//! may. One test in its own binary: a tool shares a CPU only while it is
//! the only one running in the process.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use replay::run::run_tool;

/// `Cpus_allowed_list` of a `/proc/PID/status` text.
fn cpus(status: &str) -> String {
    status
        .lines()
        .find_map(|line| line.strip_prefix("Cpus_allowed_list:"))
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn a_traced_tool_gets_every_cpu_back_after_its_start() {
    let dir = tempfile::tempdir().expect("work root");
    let root = dir.path().canonicalize().expect("canonical root");
    let script = "sleep 0.3; cat /proc/self/status > late.txt";
    let spec = common::sh(&root, script);
    let options = common::options(true);
    let mine = cpus(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    let outcome = run_tool(&spec, &options).expect("runs");
    assert!(outcome.success(), "{outcome:?}");
    assert!(
        outcome.measurements.peak_process.is_some(),
        "not traced: {outcome:?}"
    );
    let late = cpus(&std::fs::read_to_string(root.join("late.txt")).unwrap());
    assert_eq!(late, mine, "a process the tool started late");
    let after = cpus(&std::fs::read_to_string("/proc/thread-self/status").unwrap());
    assert_eq!(after, mine, "the tracer's own thread, after the run");
}
