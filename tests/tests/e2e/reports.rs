//! Reports for CI: `replay check --format json|junit|sarif` and a run's
//! `--report FILE --report-format FMT`, each validated against its schema
//! (SARIF: OASIS's JSON Schema; JUnit: the Jenkins xunit plugin's XSD with
//! `xmllint`; JSON: `docs/report-v1.schema.json`, generated from the
//! types), and written in every outcome: a refused log, a failed command,
//! an interrupted run.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{memtouch_commands, memtouch_policy, replay_command, repo, text};

/// Validates `document` against the JSON Schema at `docs/NAME`.
fn validate_json(name: &str, document: &serde_json::Value) {
    let mut text = std::fs::read_to_string(repo().join("docs").join(name)).unwrap();
    // OASIS's SARIF schema has one pattern no Rust regex engine parses: a
    // stray `]` in `toolComponent.language`. `replay` never writes that
    // property; the `]` is escaped here, in memory, so the vendored file
    // stays byte for byte as published.
    text = text.replace(
        r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}]?$""#,
        r#""^[a-zA-Z]{2}|^[a-zA-Z]{2}-[a-zA-Z]{2}\\]?$""#,
    );
    let schema: serde_json::Value = serde_json::from_str(&text).unwrap();
    let validator = jsonschema::validator_for(&schema)
        .unwrap_or_else(|e| panic!("`docs/{name}` is not a usable schema: {e}"));
    let errors: Vec<String> = validator
        .iter_errors(document)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "not valid against `docs/{name}`: {errors:#?}\n{document:#}"
    );
}

/// Validates the XML file at `path` against the Jenkins JUnit XSD.
fn validate_junit(path: &Path) {
    let output = Command::new("xmllint")
        .arg("--noout")
        .arg("--schema")
        .arg(repo().join("docs/vendor/junit-10.xsd"))
        .arg(path)
        .output()
        .expect("run xmllint (`bash scripts/install-deps.sh` installs libxml2-utils)");
    assert!(
        output.status.success(),
        "not valid JUnit: {}\n{}",
        text(&output.stderr),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no report at `{}`: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// A root with the memtouch policy and a log whose second command (on
/// line 2, after a newline the test puts there) breaks the grammar.
fn refused_log(root: &Path) -> (u64, u64) {
    memtouch_policy(root, "");
    let log = memtouch_commands(
        root,
        &[
            (&["--mib=1"], &[], &[]),
            (&["--mib=1", "--load=evil.so"], &[], &[]),
        ],
    );
    // Put the second command on a line of its own, indented: its place
    // in the log is then known exactly.
    let text = std::fs::read_to_string(&log).unwrap();
    let at = text.match_indices("{\"args\"").nth(1).map(|(at, _)| at);
    let at = at.expect("the second command's object");
    let moved = format!("{}\n   {}", &text[..at], &text[at..]);
    std::fs::write(&log, moved).unwrap();
    (2, 4)
}

fn check(root: &Path, format: &str) -> std::process::Output {
    replay_command()
        .args([
            "check",
            "--policy",
            "memtouch.toml",
            "--format",
            format,
            "log.json",
        ])
        .current_dir(root)
        .output()
        .unwrap()
}

#[test]
fn check_sarif_validates_and_points_at_the_refused_command_on_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (line, column) = refused_log(&root);
    let output = check(&root, "sarif");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let sarif: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    validate_json("vendor/sarif-schema-2.1.0.json", &sarif);
    let run = &sarif["runs"][0];
    let result = &run["results"][0];
    assert_eq!(result["ruleId"], "args.unknown-flag", "{sarif:#}");
    assert_eq!(result["level"], "error");
    let location = &result["locations"][0]["physicalLocation"];
    assert_eq!(location["artifactLocation"]["uri"], "log.json");
    assert_eq!(location["region"]["startLine"], line, "{sarif:#}");
    assert_eq!(location["region"]["startColumn"], column, "{sarif:#}");
    let rule = &run["tool"]["driver"]["rules"][0];
    assert_eq!(rule["id"], "args.unknown-flag");
    assert!(rule["shortDescription"]["text"].is_string(), "{rule}");
}

#[test]
fn check_junit_validates_with_a_case_per_command_and_the_refusal_as_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    refused_log(&root);
    let output = check(&root, "junit");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let xml = root.join("check.xml");
    std::fs::write(&xml, &output.stdout).unwrap();
    validate_junit(&xml);
    let xml = text(&output.stdout);
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<testcase name=\"command 1 (memtouch)\""),
        "{xml}"
    );
    assert!(xml.contains("<failure type=\"args.unknown-flag\""), "{xml}");
}

#[test]
fn check_json_validates_against_the_report_schema() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let (line, column) = refused_log(&root);
    let output = check(&root, "json");
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    validate_json("report-v1.schema.json", &doc);
    assert_eq!(doc["format"], "replay-check");
    assert_eq!(doc["findings"][0]["line"], line);
    assert_eq!(doc["findings"][0]["column"], column);
}

/// The three reports of one run, each in its format.
fn run_with_reports(root: &Path) -> Command {
    let mut command = replay_command();
    command
        .args(["--policy", "memtouch.toml"])
        .args(["--report", "r.json", "--report-format", "json"])
        .args(["--report", "r.xml", "--report-format", "junit"])
        .args(["--report", "r.sarif", "--report-format", "sarif"])
        .arg("log.json")
        .current_dir(root);
    command
}

fn validate_all(root: &Path) -> (serde_json::Value, String, serde_json::Value) {
    let report = json(&root.join("r.json"));
    validate_json("report-v1.schema.json", &report);
    validate_junit(&root.join("r.xml"));
    let sarif = json(&root.join("r.sarif"));
    validate_json("vendor/sarif-schema-2.1.0.json", &sarif);
    let xml = std::fs::read_to_string(root.join("r.xml")).unwrap();
    (report, xml, sarif)
}

#[test]
fn a_refused_run_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    refused_log(&root);
    let output = run_with_reports(&root).output().unwrap();
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let (report, xml, sarif) = validate_all(&root);
    assert_eq!(report["check"]["status"], "refused", "{report:#}");
    assert!(xml.contains("<failure type=\"args.unknown-flag\""), "{xml}");
    assert_eq!(
        sarif["runs"][0]["results"][0]["ruleId"],
        "args.unknown-flag"
    );
}

#[test]
fn a_failed_command_is_a_junit_failure_with_its_output() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    // The first prints `gate: waiting` and goes on: its gate is open.
    std::fs::write(root.join("open"), "").unwrap();
    memtouch_commands(
        &root,
        &[
            (&["--mib=1", "--gate=open"], &[], &[]),
            (&["--mib=1", "--exit=7"], &[], &[]),
        ],
    );
    let output = run_with_reports(&root).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", text(&output.stderr));
    let (report, xml, sarif) = validate_all(&root);
    assert_eq!(report["commands"][1]["status"], "failed", "{report:#}");
    assert!(
        xml.contains("<testsuite name=\"run log.json\" tests=\"2\" failures=\"1\""),
        "{xml}"
    );
    assert!(
        xml.contains("<failure type=\"failed\" message=\"the tool exited 7\""),
        "{xml}"
    );
    assert!(xml.contains("<system-out>gate: waiting"), "{xml}");
    assert_eq!(sarif["runs"][0]["results"][0]["ruleId"], "run.tool-failed");
}

#[test]
fn an_interrupted_run_writes_every_report() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    memtouch_commands(&root, &[(&["--mib=1", "--hold-ms=60000"], &[], &[])]);
    let mut child = run_with_reports(&root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Once the run has begun (its journal exists), replay handles SIGINT.
    let journal = root.join("log.json.journal");
    let begun = Instant::now() + Duration::from_secs(20);
    while !journal.exists() {
        assert!(Instant::now() < begun, "the run never began");
        std::thread::sleep(Duration::from_millis(5));
    }
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: kill has no memory effects; the pid is our own child, not
    // yet reaped.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("replay hung after SIGINT");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(status.code(), Some(130));
    let (report, xml, _) = validate_all(&root);
    let interrupted = serde_json::to_string(&report["commands"]).unwrap();
    assert!(interrupted.contains("interrupted"), "{report:#}");
    assert!(xml.contains("<failure type=\"interrupted\""), "{xml}");
}

#[test]
fn the_report_schema_in_docs_is_the_one_the_types_give() {
    // Run with `UPDATE_SCHEMAS=1` to rewrite it after changing the types.
    let path = repo().join("docs/report-v1.schema.json");
    let generated = replay::report::schema::report_v1_text();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "`docs/report-v1.schema.json` is out of date: run `UPDATE_SCHEMAS=1 cargo test -p replay-e2e --test e2e reports` and commit it"
    );
}

#[test]
fn findings_past_those_shown_are_counted_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    memtouch_policy(&root, "");
    let args: [&str; 1] = ["--bogus"];
    let commands: Vec<(&[&str], &[&str], &[&str])> =
        (0..25).map(|_| (&args[..], &[][..], &[][..])).collect();
    memtouch_commands(&root, &commands);
    let sarif = check(&root, "sarif");
    let sarif: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    validate_json("vendor/sarif-schema-2.1.0.json", &sarif);
    let run = &sarif["runs"][0];
    assert_eq!(run["results"].as_array().map(Vec::len), Some(20));
    assert_eq!(
        run["invocations"][0]["toolExecutionNotifications"][0]["message"]["text"],
        "5 more findings of [args.unknown-flag] not shown (the first 20 are)"
    );
    let junit = check(&root, "junit");
    let xml = root.join("check.xml");
    std::fs::write(&xml, &junit.stdout).unwrap();
    validate_junit(&xml);
    // Every refused command fails, the 5 whose findings were not shown too.
    assert!(
        text(&junit.stdout).contains("tests=\"25\" failures=\"25\""),
        "{}",
        text(&junit.stdout)
    );
}

#[test]
fn a_check_that_cannot_start_still_prints_a_valid_document() {
    // A policy that does not load: exit 2, and CI still gets a document
    // that says the check did not finish.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    refused_log(&root);
    std::fs::write(root.join("memtouch.toml"), "[policy\n").unwrap();
    let sarif = check(&root, "sarif");
    assert_eq!(sarif.status.code(), Some(2), "{}", text(&sarif.stderr));
    let sarif: serde_json::Value = serde_json::from_slice(&sarif.stdout).unwrap();
    validate_json("vendor/sarif-schema-2.1.0.json", &sarif);
    assert_eq!(
        sarif["runs"][0]["invocations"][0]["executionSuccessful"],
        false
    );
    let json = check(&root, "json");
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    validate_json("report-v1.schema.json", &json);
    assert!(json["error"].is_string(), "{json}");
    let junit = check(&root, "junit");
    let xml = root.join("check.xml");
    std::fs::write(&xml, &junit.stdout).unwrap();
    validate_junit(&xml);
    assert!(text(&junit.stdout).contains("<error type=\"stopped\""));
}
