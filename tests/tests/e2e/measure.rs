//! `replay` reports each tool's peak memory within 2% or 1 MiB of the
//! truth: a tool that touches a known number of MiB, and one whose children
//! each do.

use crate::support::{bin, memtouch_log, memtouch_policy, report, run, text};

const MIB: u64 = 1 << 20;

/// Whether `reported` is within 2% or 1 MiB (whichever is larger) of
/// `truth`, allowing `base` more for the program's own pages.
fn close(reported: u64, truth: u64, base: u64) -> bool {
    let tolerance = (truth / 50).max(MIB);
    reported + tolerance >= truth && reported <= truth + base + tolerance
}

/// A small Rust program's own resident pages (code, libc, stack).
const BASE: u64 = 3 * MIB;

#[test]
fn the_exact_peak_of_a_tool_is_within_two_percent() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_log(&root, &[(&["--mib=160"], &[])]);
    let output = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--report",
            "report.json",
            "log.json",
        ],
        &root,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = report(&root.join("report.json"));
    let measurements = &report["commands"][0]["outcome"]["measurements"];
    let peak = measurements["peak_process"]["bytes"].as_u64().unwrap();
    assert!(
        close(peak, 160 * MIB, BASE),
        "reported {peak} for 160 MiB: {measurements:#}"
    );
    assert_eq!(measurements["peak_process"]["name"], "memtouch");
}

#[test]
fn children_are_measured_each_and_the_tree_as_a_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    // Three children hold 64 MiB each at the same time for 1.5 s; the
    // parent touches nothing.
    memtouch_log(
        &root,
        &[(&["--mib=64", "--children=3", "--hold-ms=1500"], &[])],
    );
    let output = run(
        &bin("replay"),
        &[
            "--policy",
            "memtouch.toml",
            "--report",
            "report.json",
            "log.json",
        ],
        &root,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let report = report(&root.join("report.json"));
    let measurements = &report["commands"][0]["outcome"]["measurements"];
    let processes = measurements["processes"].as_array().unwrap();
    assert_eq!(
        processes.len(),
        4,
        "parent and three children: {measurements:#}"
    );
    let mut children: Vec<u64> = processes
        .iter()
        .map(|p| p["bytes"].as_u64().unwrap())
        .collect();
    children.sort_unstable();
    let parent = children.remove(0);
    assert!(parent < 8 * MIB, "the parent touched nothing: {parent}");
    for child in &children {
        assert!(
            close(*child, 64 * MIB, BASE),
            "child reported {child}: {measurements:#}"
        );
    }
    // The sampled tree holds all three at once (plus the parent).
    let tree = measurements["peak_tree_rss_sampled"].as_u64().unwrap();
    assert!(
        close(tree, 3 * 64 * MIB, 4 * BASE),
        "tree reported {tree}: {measurements:#}"
    );
}
