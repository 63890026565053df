//! An untraced tool (ptrace refused) whose grandchild left its process
//! group with `setsid` leaves nothing running once `run_tool` returns.
//! One test in its own binary: `reap_orphans` kills every child of the
//! process it runs in, so no other test may have children here.

#![cfg(target_os = "linux")]

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replay::run::watch::ToolLimits;
use replay::run::{become_subreaper, run_tool, RunOptions};
use replay::sandbox::{SandboxSpec, Want};

fn alive(pid: i32) -> bool {
    // A zombie counts as gone: it holds no memory and runs nothing.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let (_, rest) = stat.rsplit_once(')')?;
            rest.split_whitespace().next().map(|state| state != "Z")
        })
        .unwrap_or(false)
}

#[test]
fn an_untraced_tool_leaves_no_process_that_left_its_group() {
    become_subreaper().expect("becomes the subreaper");
    let dir = tempfile::tempdir().expect("work root");
    let root = dir.path().canonicalize().expect("canonical root");
    // The grandchild makes itself a session (and group) of its own, then
    // outlives the tool by five minutes unless something kills it.
    let script = "setsid sleep 300 </dev/null >/dev/null 2>&1 & echo $! > grandchild";
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
        trace: false,
    };
    let outcome = run_tool(&spec, &options).expect("runs");
    assert!(outcome.success(), "{outcome:?}");
    assert!(
        outcome.measurements.peak_process.is_none(),
        "untraced, yet an exact peak: {outcome:?}"
    );
    let grandchild: i32 = std::fs::read_to_string(root.join("grandchild"))
        .expect("the tool wrote its grandchild's pid")
        .trim()
        .parse()
        .expect("a pid");
    assert!(
        !alive(grandchild),
        "the grandchild {grandchild} that left the tool's group still runs"
    );
}
