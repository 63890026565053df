//! A traced tool starts on its tracer's CPU and gets every CPU back: a
//! process it starts after the first moments may run anywhere `replay`
//! may, a tool that makes no call the tracer sees gets them back on time,
//! and a tool that chose its own CPUs keeps its choice. One test in its
//! own binary: a tool shares a CPU only while it is the only one running
//! in the process.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

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

    busy_tool_gets_its_cpus_back_on_time(&root, &mine);
    own_choice_is_kept(&root);
}

/// Regression (review): the CPUs came back only at the tracer's next
/// event, so a tool computing without a call the tracer sees stayed on
/// one CPU. This one spins in the shell (no system call) until its
/// timeout.
fn busy_tool_gets_its_cpus_back_on_time(root: &Path, mine: &str) {
    let spec = common::sh(root, "echo $$ > busy; while :; do :; done");
    let mut options = common::options(true);
    options.limits.timeout = Some(Duration::from_secs(3));
    let tool = std::thread::spawn(move || run_tool(&spec, &options).map(|o| o.stop));
    let deadline = Instant::now() + Duration::from_secs(20);
    let pid = loop {
        let written = std::fs::read_to_string(root.join("busy")).unwrap_or_default();
        if let Ok(pid) = written.trim().parse::<i32>() {
            break pid;
        }
        assert!(Instant::now() < deadline, "the busy tool never started");
        std::thread::sleep(Duration::from_millis(5));
    };
    // Ten times the time it shares a CPU.
    std::thread::sleep(Duration::from_millis(300));
    let now = cpus(&std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap());
    let stop = tool.join().unwrap().expect("runs");
    assert!(stop.is_some(), "the busy tool ended by itself");
    assert_eq!(now, mine, "a busy tool 300 ms after its start");
}

/// Regression (review): the hand-back gave every task the tracer's CPUs,
/// even one that had chosen its own. This tool moves to a CPU other than
/// the one it started on, and keeps it past the hand-back.
fn own_choice_is_kept(root: &Path) {
    let script = "c=$(sed -n 's/^Cpus_allowed_list:[[:space:]]*//p' /proc/self/status); \
                  if [ \"$c\" = 1 ]; then o=0; else o=1; fi; echo $o > chosen; \
                  exec taskset -c $o sh -c 'sleep 0.2; cat /proc/self/status > late.txt'";
    let spec = common::sh(root, script);
    let outcome = run_tool(&spec, &common::options(true)).expect("runs");
    if !outcome.success() {
        // One CPU only (no CPU 1 to choose): nothing to keep.
        assert!(
            std::fs::read_to_string("/sys/devices/system/cpu/online")
                .unwrap()
                .trim()
                == "0",
            "{outcome:?}"
        );
        return;
    }
    let chosen = std::fs::read_to_string(root.join("chosen")).unwrap();
    let late = cpus(&std::fs::read_to_string(root.join("late.txt")).unwrap());
    assert_eq!(late, chosen.trim(), "the CPU the tool chose for itself");
}
