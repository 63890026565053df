//! Finding the built binaries, making work roots, and running `replay`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The directory cargo put the workspace's binaries in.
pub fn bin_dir() -> PathBuf {
    // target/debug/deps/e2e-HASH -> target/debug
    let exe = std::env::current_exe().expect("test executable path");
    exe.parent()
        .and_then(Path::parent)
        .expect("target/debug")
        .to_owned()
}

/// A workspace binary; `scripts/test.sh` builds them all before the tests.
pub fn bin(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "`{}` is not built: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_owned()
}

/// A shipped policy.
pub fn shipped_policy(name: &str) -> PathBuf {
    repo().join("policies").join(name)
}

/// The environment that keeps `replay` off the action cache unless a
/// test passes `--cache DIR`: each test's runs are its own, with no hit
/// from another test's.
pub const NO_CACHE: (&str, &str) = ("REPLAY_NO_CACHE", "1");

/// `replay`, off the action cache unless given `--cache DIR`.
pub fn replay_command() -> Command {
    let mut command = Command::new(bin("replay"));
    command.env(NO_CACHE.0, NO_CACHE.1);
    command
}

/// Runs `program` with `args` in `dir` (off the action cache, if it is
/// `replay`), returning its output.
pub fn run(program: &Path, args: &[&str], dir: &Path) -> Output {
    Command::new(program)
        .env(NO_CACHE.0, NO_CACHE.1)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()))
}

/// stderr as text, for assertion messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A policy that allows `memtouch` (as tool kind `memtouch`) from the
/// build directory, with `limits` (TOML inline-table body) if given.
pub fn memtouch_policy(root: &Path, limits: &str) -> PathBuf {
    let policy = format!(
        r#"[policy]
name = "memtouch-test"
os = "linux"

[limits]
{limits}

[tool.memtouch]
programs = ["memtouch"]
dirs = ["{dir}"]
args = "memtouch"

[args.memtouch]
positional = "refuse"
flags = [
  {{ name = "--mib=", form = "joined", range = [0, 4096] }},
  {{ name = "--children=", form = "joined", range = [0, 16] }},
  {{ name = "--hold-ms=", form = "joined", range = [0, 600000] }},
  {{ name = "--exit=", form = "joined", range = [0, 255] }},
  {{ name = "--crash=", form = "joined", range = [0, 1] }},
  {{ name = "--out=", form = "joined", path = "output" }},
  {{ name = "--escape=", form = "joined", range = [1, 65535] }},
  {{ name = "--copy=", form = "joined", path = "input" }},
  {{ name = "--list=", form = "joined", path = "input" }},
  {{ name = "--gate=", form = "joined", pattern = "[a-z]+" }},
  {{ name = "--fill=", form = "joined", range = [0, 1048576] }},
]
"#,
        dir = bin_dir().display()
    );
    let path = root.join("memtouch.toml");
    std::fs::write(&path, policy).expect("write the policy");
    path
}

/// A log of `memtouch` commands, each `(args, outputs)`.
pub fn memtouch_log(root: &Path, commands: &[(&[&str], &[&str])]) -> PathBuf {
    let commands: Vec<serde_json::Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (args, outputs))| {
            serde_json::json!({
                "id": i + 1, "tool": "memtouch", "program": "memtouch",
                "args": args, "cwd": ".", "env": {}, "inputs": [], "outputs": outputs,
            })
        })
        .collect();
    write_log(root, commands);
    root.join("log.json")
}

/// Writes `root/log.json` with memtouch `commands`, each `(args, inputs,
/// outputs)`; returns its path.
pub fn memtouch_commands(root: &Path, commands: &[(&[&str], &[&str], &[&str])]) -> PathBuf {
    let commands: Vec<serde_json::Value> = commands
        .iter()
        .enumerate()
        .map(|(i, (args, inputs, outputs))| {
            serde_json::json!({
                "id": i + 1, "tool": "memtouch", "program": "memtouch",
                "args": args, "cwd": ".", "env": {}, "inputs": inputs, "outputs": outputs,
            })
        })
        .collect();
    write_log(root, commands);
    root.join("log.json")
}

/// Copies the bundled example's IR into `root`.
pub fn copy_hello(root: &Path) {
    std::fs::copy(
        repo().join("examples/hello/hello.ll"),
        root.join("hello.ll"),
    )
    .expect("copy the bundled example");
}

/// Compiles the bundled example with `aotc` into a log under `root`, in
/// `partitions` partitions.
pub fn log_hello(root: &Path, partitions: &str) {
    copy_hello(root);
    let aotc = run(
        &bin("aotc"),
        &[
            "hello.ll",
            "-o",
            "hello",
            "--log",
            "log.json",
            "--partitions",
            partitions,
        ],
        root,
    );
    assert!(aotc.status.success(), "aotc failed: {}", text(&aotc.stderr));
}

/// Every file under `dir`, at any depth.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// Writes `root/log.json`: a Linux log of this machine's architecture with
/// `commands` (JSON objects, in order); returns its text.
pub fn write_log(root: &Path, commands: Vec<serde_json::Value>) -> String {
    // The header comes before `commands` (readers stream), so the document
    // is put together in order rather than from a key-sorted map.
    let log = format!(
        r#"{{"format":"replay-log","version":1,"producer":{{"name":"e2e","version":"0"}},"platform":{{"os":"linux","arch":"{}"}},"commands":{}}}"#,
        std::env::consts::ARCH,
        serde_json::Value::Array(commands)
    );
    std::fs::write(root.join("log.json"), &log).expect("write the log");
    log
}

/// The `--report` JSON of a run.
pub fn report(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("the report exists");
    serde_json::from_str(&text).expect("the report is JSON")
}

/// `replay ARGS` started in `root` with its output discarded, for tests
/// that signal or kill it while it runs.
pub fn spawn_replay(root: &Path, args: &[&str]) -> std::process::Child {
    crate::support::replay_command()
        .args(args)
        .current_dir(root)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start replay")
}
