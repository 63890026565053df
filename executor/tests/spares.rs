//! A launcher started ahead of its tool (`run::spare`): the next traced
//! tool runs in it, under that tool's own layers; the orphan reaper
//! leaves a waiting spare alone, and what started before the tool; a
//! spare killed from outside is not used; and none outlives
//! `discard_all`. One test in its own binary:
//! `reap_orphans` kills every other child of the process it runs in.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use replay::run::{become_subreaper, reap_orphans, run_tool, spare, start_time};
use replay::sandbox::Want;

/// Whether `pid` runs (a zombie does not).
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .iter()
        .rposition(|&b| b == b')')
        .and_then(|close| stat.get(close + 2));
    state.is_some_and(|&state| state != b'Z')
}

/// The one spare waiting, once the spawner has started it.
fn the_spare() -> i32 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let waiting = spare::waiting();
        if let [pid] = waiting[..] {
            return pid;
        }
        assert!(waiting.len() < 2, "more spares than tools: {waiting:?}");
        assert!(Instant::now() < deadline, "no spare started");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pid the tool wrote to `file` in `root`.
fn pid_in(root: &Path, file: &str) -> i32 {
    std::fs::read_to_string(root.join(file))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_spare_runs_the_next_tool_under_its_own_layers_and_nothing_else_touches_it() {
    become_subreaper().expect("becomes the subreaper");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().canonicalize().unwrap().join("escaped");
    let options = common::options(true);

    // Untraced, no spare is asked for.
    let untraced = run_tool(&common::sh(&root, "true"), &common::options(false)).unwrap();
    assert!(untraced.success(), "{untraced:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        spare::waiting(),
        Vec::<i32>::new(),
        "a spare for an untraced tool"
    );

    let first = run_tool(&common::sh(&root, "echo $$ > first"), &options).unwrap();
    assert!(first.success(), "{first:?}");
    assert!(
        first.measurements.peak_process.is_some(),
        "this test needs ptrace: {first:?}"
    );
    let waiting = the_spare();
    assert_ne!(waiting, pid_in(&root, "first"));

    // The reaper, as it runs after an untraced tool, leaves it be.
    reap_orphans(start_time(std::process::id() as i32).unwrap());
    assert!(alive(waiting), "the reaper killed the spare {waiting}");

    // A child of this process that started after the spare but before
    // its tool: not the tool's, so the reaper after the tool leaves it
    // (regression: the reaper's window began at the spare's start).
    let mut bystander = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    // Start times count in clock ticks (10 ms): the tool starts a few later.
    std::thread::sleep(Duration::from_millis(50));

    // The next tool is the spare, and its layers are its own: Landlock
    // from this spec keeps it to its root.
    let mut confined = common::sh(
        &root,
        &format!(
            "echo $$ > second; echo x > {} 2>/dev/null; exit 0",
            outside.display()
        ),
    );
    confined.landlock = Want::IfAvailable;
    let second = run_tool(&confined, &options).unwrap();
    assert!(second.success(), "{second:?}");
    assert_eq!(pid_in(&root, "second"), waiting, "the spare was not used");
    assert!(
        alive(bystander.id() as i32),
        "the reaper killed a process older than the tool"
    );
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    if second.layers.landlock.is_some() {
        assert!(
            !outside.exists(),
            "the spare's tool wrote outside its root under Landlock"
        );
    }

    // A spare killed from outside is dropped, not handed a tool.
    let killed = the_spare();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(killed),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    while alive(killed) {
        std::thread::sleep(Duration::from_millis(1));
    }
    let third = run_tool(&common::sh(&root, "echo $$ > third"), &options).unwrap();
    assert!(third.success(), "{third:?}");
    assert_ne!(pid_in(&root, "third"), killed);
    assert!(
        !Path::new(&format!("/proc/{killed}")).exists(),
        "the killed spare {killed} was never reaped"
    );

    // The end of a run leaves none behind, not even a zombie.
    let last = the_spare();
    spare::discard_all();
    assert_eq!(spare::waiting(), Vec::<i32>::new());
    assert!(
        !Path::new(&format!("/proc/{last}")).exists(),
        "the spare {last} outlived discard_all"
    );
}
