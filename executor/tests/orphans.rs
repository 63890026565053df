//! An untraced tool (ptrace refused) whose grandchild left its process
//! group with `setsid` leaves nothing running once `run_tool` returns.
//! One test in its own binary: `reap_orphans` kills every child of the
//! process it runs in, so no other test may have children here.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use replay::run::{become_subreaper, run_tool};

fn alive(pid: i32) -> bool {
    // A zombie counts as gone: it holds no memory and runs nothing. Read
    // as bytes: a command name need not be UTF-8.
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| stat.get(close + 2));
    state.is_some_and(|&state| state != b'Z')
}

#[test]
fn an_untraced_tool_leaves_no_process_that_left_its_group() {
    become_subreaper().expect("becomes the subreaper");
    let dir = tempfile::tempdir().expect("work root");
    let root = dir.path().canonicalize().expect("canonical root");
    // The grandchild makes itself a session (and group) of its own, says
    // so, then outlives the tool by five minutes unless something kills
    // it; its own child, in its session, too. The tool waits until both
    // are on their way, so the group kill cannot catch them.
    let script = "setsid sh -c 'sleep 300 & echo $! > great; echo $$ > grandchild; wait' \
                  </dev/null >/dev/null 2>&1 & \
                  while [ ! -s grandchild ] || [ ! -s great ]; do sleep 0.01; done";
    let spec = common::sh(&root, script);
    let options = common::options(false);
    let outcome = run_tool(&spec, &options).expect("runs");
    assert!(outcome.success(), "{outcome:?}");
    assert!(
        outcome.measurements.peak_process.is_none(),
        "untraced, yet an exact peak: {outcome:?}"
    );
    for name in ["grandchild", "great"] {
        let pid: i32 = std::fs::read_to_string(root.join(name))
            .expect("the tool's descendant wrote its pid")
            .trim()
            .parse()
            .expect("a pid");
        assert!(
            !alive(pid),
            "the {name} {pid}, which left the tool's group, still runs"
        );
    }
}
