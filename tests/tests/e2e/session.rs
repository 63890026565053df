//! Whole sessions through the `replay` library, in this process: the
//! check pass and the run pass feeding one set of reporters, with the
//! console captured, as the binary would run them but without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use replay::session::{self, Console, Format, RunSettings, SessionError, Target};
use replay::ReplayExitCode;

use crate::support::{bin, memtouch_policy};

/// A console whose streams are buffers the test reads afterwards.
struct Captured {
    stdout: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
}

/// One shared buffer as a `Write`.
struct Buffer(Arc<Mutex<Vec<u8>>>);

impl Write for Buffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn new() -> (Captured, Console) {
        let stdout = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let console = Console {
            stdout: Arc::new(Mutex::new(Buffer(Arc::clone(&stdout)))),
            stderr: Arc::new(Mutex::new(Buffer(Arc::clone(&stderr)))),
            bar: None,
        };
        (Captured { stdout, stderr }, console)
    }

    fn stdout(&self) -> String {
        String::from_utf8(self.stdout.lock().unwrap().clone()).unwrap()
    }

    fn stderr(&self) -> String {
        String::from_utf8(self.stderr.lock().unwrap().clone()).unwrap()
    }
}

/// A work root with the memtouch policy and a log of `commands`, each
/// `(args, inputs, outputs)`.
fn root(commands: &[(&[&str], &[&str], &[&str])]) -> (tempfile::TempDir, PathBuf, Target) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let policy = memtouch_policy(&root, "");
    crate::support::memtouch_commands(&root, commands);
    let target = Target { policy, root: None };
    (dir, root, target)
}

fn settings(report: &Path) -> RunSettings {
    RunSettings {
        report: vec![(report.to_owned(), Format::Json)],
        launcher: Some(bin("replay")),
        ..RunSettings::default()
    }
}

#[test]
fn a_whole_session_checks_then_runs_and_every_reporter_hears_both_passes() {
    let (_dir, root, target) = root(&[
        (&["--out=a.txt"], &[], &["a.txt"]),
        (&["--copy=a.txt", "--out=b.txt"], &["a.txt"], &["b.txt"]),
    ]);
    let report = root.join("report.json");
    let (captured, console) = Captured::new();

    session::run(
        &target,
        &root.join("log.json"),
        &settings(&report),
        &console,
    )
    .expect("the session succeeds");

    assert!(root.join("a.txt").is_file() && root.join("b.txt").is_file());
    let stderr = captured.stderr();
    // The check pass's tally, then the run's progress and table, on the
    // one stream of the report for people, in that order.
    let tally = stderr.find("allowed: 2 allowed, 0 unverified, 0 refused");
    let started = stderr.find("replay: [1] running command 1 (memtouch)");
    let total = stderr.find("total: 2 commands, 2 ran, 2 ok");
    assert!(
        tally.is_some() && started.is_some() && total.is_some(),
        "{stderr}"
    );
    assert!(tally < started && started < total, "{stderr}");
    // The JSON report has the check section and every command.
    let doc = crate::support::report(&report);
    assert_eq!(doc["check"]["status"], "allowed", "{doc}");
    assert_eq!(doc["check"]["tally"]["allowed"], 2, "{doc}");
    assert_eq!(doc["commands"].as_array().map(Vec::len), Some(2), "{doc}");
    assert_eq!(doc["totals"]["succeeded"], 2, "{doc}");
}

#[test]
fn a_refused_session_runs_nothing_and_its_report_says_why() {
    let (_dir, root, target) = root(&[
        (&["--out=a.txt"], &[], &["a.txt"]),
        (&["--no-such-flag", "--out=b.txt"], &[], &["b.txt"]),
    ]);
    let report = root.join("report.json");
    let (captured, console) = Captured::new();

    let error = session::run(
        &target,
        &root.join("log.json"),
        &settings(&report),
        &console,
    )
    .expect_err("the policy refuses the log");

    assert!(matches!(error, SessionError::Refused), "{error:?}");
    assert_eq!(error.code(), ReplayExitCode::DENIED);
    assert!(error.hint().is_some());
    assert!(!root.join("a.txt").exists(), "nothing may run");
    let stderr = captured.stderr();
    assert!(
        stderr.contains("refused: command 2 (memtouch)") && !stderr.contains("running command"),
        "{stderr}"
    );
    let doc = crate::support::report(&report);
    assert_eq!(doc["check"]["status"], "refused", "{doc}");
    assert_eq!(doc["check"]["findings"][0]["id"], 2, "{doc}");
    assert_eq!(doc["commands"], serde_json::json!([]), "{doc}");
    assert!(doc["error"].is_string(), "{doc}");
}

#[test]
fn a_check_session_prints_its_verdict_document_and_runs_nothing() {
    let (_dir, root, target) = root(&[(&["--no-such-flag", "--out=a.txt"], &[], &["a.txt"])]);
    let (captured, console) = Captured::new();

    let error = session::check(
        &target,
        &root.join("log.json"),
        session::CheckSettings {
            strict: false,
            here: false,
            format: Format::Json,
        },
        &console,
    )
    .expect_err("refused");

    assert!(error.is_quiet(), "the document said why: {error:?}");
    assert_eq!(error.code(), ReplayExitCode::DENIED);
    let doc: serde_json::Value = serde_json::from_str(&captured.stdout()).unwrap();
    assert_eq!(doc["status"], "refused", "{doc}");
    assert_eq!(doc["findings"][0]["tool"], "memtouch", "{doc}");
    assert_eq!(doc["tally"]["refused"], 1, "{doc}");
    assert!(!root.join("a.txt").exists());
}
