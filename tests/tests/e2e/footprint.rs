//! `replay`'s own memory is flat in the log's length: it streams the log
//! rather than hold it, and keeps 8-byte identities per output for the
//! whole-log rules. Measured on `replay check` (the first pass of every
//! run, and its larger one), from its own `VmHWM`, on logs of growing size.

use std::io::Write;
use std::path::Path;

use crate::support::{bin, memtouch_policy, run, text};

const MIB: u64 = 1 << 20;

/// Writes a log of `n` trivial `memtouch` commands to `root/log.json`,
/// streaming (a log this size as one `serde_json::Value` would weigh more
/// than what is measured); each writes `o/K.txt` if `outputs`.
fn write_log(root: &Path, n: usize, outputs: bool) {
    let file = std::fs::File::create(root.join("log.json")).unwrap();
    let mut out = std::io::BufWriter::new(file);
    write!(
        out,
        r#"{{"format":"replay-log","version":1,"producer":{{"name":"e2e","version":"0"}},"platform":{{"os":"linux","arch":"{}"}},"commands":["#,
        std::env::consts::ARCH
    )
    .unwrap();
    for id in 1..=n {
        let (arg, output) = if outputs {
            (
                format!(r#","--out=o/{id}.txt""#),
                format!(r#""o/{id}.txt""#),
            )
        } else {
            (String::new(), String::new())
        };
        let comma = if id > 1 { "," } else { "" };
        writeln!(
            out,
            r#"{comma}{{"id":{id},"tool":"memtouch","program":"memtouch","args":["--mib=0"{arg}],"cwd":".","env":{{}},"inputs":[],"outputs":[{output}]}}"#
        )
        .unwrap();
    }
    writeln!(out, "]}}").unwrap();
    out.flush().unwrap();
}

/// `replay check`'s own peak RSS on a log of `n` commands.
fn peak_of_check(n: usize, outputs: bool) -> u64 {
    peak_of(n, outputs, &[])
}

/// `replay check EXTRA...`'s own peak RSS on a log of `n` commands.
fn peak_of(n: usize, outputs: bool, extra: &[&str]) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    std::fs::create_dir(root.join("o")).unwrap();
    memtouch_policy(&root, "");
    write_log(&root, n, outputs);
    let output = run(
        &bin("replay"),
        &[
            &["check", "--format", "json", "--policy", "memtouch.toml"][..],
            extra,
            &["log.json"],
        ]
        .concat(),
        &root,
    );
    assert!(output.status.success(), "{}", text(&output.stderr));
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["tally"]["allowed"], n as u64, "{verdict}");
    let peak = verdict["replay_peak_rss"].as_u64().unwrap();
    eprintln!("replay check {extra:?}, {n} commands (outputs: {outputs}): peak RSS {peak} bytes");
    assert!(
        peak > MIB,
        "a peak RSS of {peak} bytes is not a measurement"
    );
    peak
}

#[test]
fn replay_does_not_hold_the_log() {
    let small = peak_of_check(1_000, false);
    let large = peak_of_check(200_000, false);
    // 200 times the commands (about 30 MB of log), the same memory: the
    // log is streamed, one command at a time.
    assert!(
        large < small + MIB,
        "{small} bytes for 1,000 commands, {large} for 200,000"
    );
}

#[test]
fn replay_keeps_a_few_bytes_per_output() {
    let small = peak_of_check(1_000, true);
    let large = peak_of_check(200_000, true);
    // Entries are 16 bytes and a control byte, in tables 44% to 87% full,
    // and the allocator keeps some of what a table's doubling frees: up to
    // about 43 bytes an output at the worst sizes, 25 at this one. The
    // 128-bit identities before took 56 or more (65 here).
    let per_output = large.saturating_sub(small) / 199_000;
    assert!(
        per_output <= 48,
        "{per_output} bytes per output ({small} bytes for 1,000 outputs, {large} for 200,000)"
    );
}

#[test]
fn a_runs_check_pass_spills_its_outputs_early() {
    // `--here` judges as a run's first pass does: its whole-log tables
    // spill after a few thousand paths instead of 65,536, so 200,000
    // outputs cost what 1,000 do (plain `check` spends about 7 MiB more
    // here on its larger tables and sort buffer: bench figure 8).
    let small = peak_of(1_000, true, &["--here"]);
    let large = peak_of(200_000, true, &["--here"]);
    assert!(
        large < small + 3 * MIB / 2,
        "{small} bytes for 1,000 outputs, {large} for 200,000"
    );
}
