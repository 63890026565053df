//! `replay` reports each tool's peak memory within 2% or 1 MiB of the
//! truth: a tool that touches a known number of MiB, and one whose children
//! each do.

use crate::support::{bin, memtouch_log, memtouch_policy, report, run, text};

const MIB: u64 = 1 << 20;

/// Whether `reported` is within 2% or 1 MiB (whichever is larger) of
/// `truth`.
fn close(reported: u64, truth: u64) -> bool {
    within(reported, truth, truth)
}

/// Whether `reported` is within 2% or 1 MiB of the range `low..=high`:
/// for a forked child, whose own pages are somewhere between none of its
/// parent's (file pages fault in anew) and all of them.
fn within(reported: u64, low: u64, high: u64) -> bool {
    let tolerance = (high / 50).max(MIB);
    reported + tolerance >= low && reported <= high + tolerance
}

/// Runs a log of `memtouch` commands whose first one touches nothing; the
/// report's measurements of every command, and that first one's exact
/// peak: the program's own pages (code, libc, stack), measured rather than
/// guessed, which the truth of the others adds to what they touch.
fn measure(commands: &[(&[&str], &[&str])]) -> (Vec<serde_json::Value>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let mut all: Vec<(&[&str], &[&str])> = vec![(&["--mib=0"], &[])];
    all.extend_from_slice(commands);
    memtouch_log(&root, &all);
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
    let measurements: Vec<serde_json::Value> = report["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"]["measurements"].clone())
        .collect();
    let base = measurements[0]["peak_process"]["bytes"].as_u64().unwrap();
    (measurements[1..].to_vec(), base)
}

#[test]
fn the_exact_peak_of_a_tool_is_within_two_percent() {
    let (measured, base) = measure(&[(&["--mib=160"], &[])]);
    let measurements = &measured[0];
    let peak = measurements["peak_process"]["bytes"].as_u64().unwrap();
    assert!(
        close(peak, base + 160 * MIB),
        "reported {peak} for 160 MiB over a base of {base}: {measurements:#}"
    );
    assert_eq!(measurements["peak_process"]["name"], "memtouch");
}

#[test]
fn children_are_measured_each_and_the_tree_as_a_whole() {
    // Three children hold 64 MiB each at the same time for 1.5 s; the
    // parent touches nothing.
    let (measured, base) = measure(&[(&["--mib=64", "--children=3", "--hold-ms=1500"], &[])]);
    let measurements = &measured[0];
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
    assert!(
        close(parent, base),
        "the parent touched nothing: {parent}, base {base}"
    );
    // A forked child touched 64 MiB, plus up to its parent's base.
    for child in &children {
        assert!(
            within(*child, 64 * MIB, base + 64 * MIB),
            "child reported {child} over a base of {base}: {measurements:#}"
        );
    }
    // The sampled tree holds all three at once (plus the parent); shared
    // pages count once per process, as RSS does.
    let tree = measurements["peak_tree_rss_sampled"].as_u64().unwrap();
    assert!(
        within(tree, base + 3 * 64 * MIB, 4 * base + 3 * 64 * MIB),
        "tree reported {tree} over a base of {base}: {measurements:#}"
    );
}
