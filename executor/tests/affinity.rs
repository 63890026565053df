//! A traced tool starts on its tracer's CPU and gets every CPU back: a
//! process it starts after the first moments may run anywhere `replay`
//! may. One test in its own binary: a tool shares a CPU only while it is
//! the only one running in the process.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replay::run::watch::ToolLimits;
use replay::run::{run_tool, RunOptions};
use replay::sandbox::{SandboxSpec, Want};

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
    let mut spec = SandboxSpec::new(
        PathBuf::from("/bin/sh"),
        "sh",
        vec!["-c".into(), script.into()],
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
        root.clone(),
        &root,
    );
    spec.landlock = Want::Off;
    spec.network = Want::Off;
    let sink: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::sink()));
    let options = RunOptions {
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_replay")),
        limits: ToolLimits {
            timeout: Some(Duration::from_secs(60)),
            grace: Duration::from_secs(1),
            max_rss: None,
            max_output: None,
        },
        sample_interval: Duration::from_millis(5),
        prefix: String::new(),
        stdout: Arc::clone(&sink),
        stderr: sink,
        interrupted: Arc::new(AtomicBool::new(false)),
        trace: true,
        may_exec: None,
        gauge: None,
        on_read: None,
    };
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
