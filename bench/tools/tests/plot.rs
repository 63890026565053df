//! `plot` end to end: JSON file in, SVG file out.

use std::path::PathBuf;
use std::process::Command;

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name)
}

fn plot(input: &PathBuf, out: &PathBuf) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_plot"))
        .arg("--input")
        .arg(input)
        .arg("--out")
        .arg(out)
        .output()
        .unwrap()
}

#[test]
fn renders_a_small_figure() {
    let input = tmp("plot-small.json");
    let out = tmp("plot-small.svg");
    std::fs::write(
        &input,
        r#"{"title": "replay at scale", "x_label": "functions (N)", "n": [1000, 10000, 50000],
            "panels": [
              {"title": "wall time", "y_label": "seconds", "series": [
                {"name": "aotc in-process", "values": [0.8, 7.5, 40.1]},
                {"name": "aotc --log + replay", "values": [0.9, null, 41.0]}]},
              {"title": "peak RSS", "y_label": "MiB", "series": [
                {"name": "aotc in-process", "values": [150, 1300, 6100]},
                {"name": "aotc --log + replay", "values": [110, 800, 3900]}]}]}"#,
    )
    .unwrap();
    let output = plot(&input, &out);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let svg = std::fs::read_to_string(&out).unwrap();
    assert!(svg.starts_with("<svg"));
    assert!(svg.trim_end().ends_with("</svg>"));
    for text in [
        "replay at scale",
        "wall time",
        "peak RSS",
        "functions (N)",
        "seconds",
        "MiB",
        "aotc in-process",
        "aotc --log + replay",
    ] {
        // Series names pass through XML escaping unchanged here.
        assert!(svg.contains(text), "`{text}` missing from the SVG");
    }
}

#[test]
fn a_missing_input_is_a_clear_error() {
    let output = plot(&tmp("plot-does-not-exist.json"), &tmp("plot-unused.svg"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("plot: error: cannot read `"), "{stderr}");
    assert!(stderr.contains("plot-does-not-exist.json"), "{stderr}");
}

#[test]
fn mismatched_lengths_name_the_series() {
    let input = tmp("plot-short.json");
    std::fs::write(
        &input,
        r#"{"title": "t", "x_label": "N", "n": [1, 10],
            "panels": [{"title": "p", "y_label": "s", "series": [{"name": "short", "values": [1]}]}]}"#,
    )
    .unwrap();
    let output = plot(&input, &tmp("plot-short.svg"));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("panel `p`, series `short`: 1 values, but `n` has 2 entries"),
        "{stderr}"
    );
}
