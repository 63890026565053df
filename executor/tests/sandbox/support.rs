//! Fixtures for the sandbox tests: a work root and a directory outside it,
//! specs for common tools, and a runner that launches, starts and reaps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use replay::sandbox::{launch, probe, AppliedLayers, Layer, SandboxError, SandboxSpec, Want};
use tempfile::TempDir;

/// The `replay` binary under test, which serves as the sandbox child.
pub fn replay() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_replay"))
}

/// A work root, and a directory outside it that tools must not touch.
pub struct Fixture {
    _root: TempDir,
    _outside: TempDir,
    root_path: PathBuf,
    outside_path: PathBuf,
}

impl Fixture {
    pub fn new() -> Self {
        let root = TempDir::new().expect("creates the work root");
        let outside = TempDir::new().expect("creates the outside dir");
        let root_path = root.path().canonicalize().expect("canonical root");
        let outside_path = outside.path().canonicalize().expect("canonical outside");
        Fixture {
            _root: root,
            _outside: outside,
            root_path,
            outside_path,
        }
    }

    pub fn root(&self) -> &Path {
        &self.root_path
    }

    pub fn outside(&self) -> &Path {
        &self.outside_path
    }
}

/// A spec running `program` with `args` in the work root, default layers.
pub fn spec(fx: &Fixture, program: &str, args: &[&str]) -> SandboxSpec {
    let argv0 = Path::new(program).file_name().map_or_else(
        || program.to_owned(),
        |name| name.to_string_lossy().into_owned(),
    );
    let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
    let args = args.iter().map(|a| (*a).to_owned()).collect();
    SandboxSpec::new(program, argv0, args, env, fx.root(), fx.root())
}

/// A spec running `/bin/sh -c script`.
pub fn sh(fx: &Fixture, script: &str) -> SandboxSpec {
    spec(fx, "/bin/sh", &["-c", script])
}

/// A finished sandboxed tool.
#[derive(Debug)]
pub struct Ran {
    pub layers: AppliedLayers,
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

/// Launches, starts and reaps; the tool's output is captured.
pub fn run(spec: &SandboxSpec) -> Result<Ran, SandboxError> {
    let (result, status, (stdout, stderr)) = run_raw(spec);
    result.map(|layers| Ran {
        layers,
        status,
        stdout,
        stderr,
    })
}

/// Like [`run`], but the child is reaped whatever `start` said.
pub fn run_raw(
    spec: &SandboxSpec,
) -> (
    Result<AppliedLayers, SandboxError>,
    ExitStatus,
    (String, String),
) {
    let mut launched =
        launch(&replay(), spec, Stdio::piped(), Stdio::piped()).expect("spawns the sandbox child");
    let result = launched.start();
    let output = launched.into_child().wait_with_output().expect("reaps");
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    (
        result,
        output.status,
        (text(output.stdout), text(output.stderr)),
    )
}

/// Whether this machine has Landlock.
pub fn has_landlock() -> bool {
    probe().landlock.is_some()
}

/// Landlock as strongly as this machine allows: required where it exists.
pub fn want_landlock() -> Want {
    if has_landlock() {
        Want::Required
    } else {
        Want::IfAvailable
    }
}

/// Says the machine lacks `layer`, and checks that the report says why.
pub fn lacks(layer: Layer, layers: &AppliedLayers) {
    let skipped = layers
        .skipped
        .iter()
        .find(|s| s.layer == layer)
        .unwrap_or_else(|| panic!("`{layer}` neither applied nor skipped: {layers:?}"));
    assert!(!skipped.reason.is_empty());
    eprintln!(
        "note: this machine lacks `{layer}`; checked its skipped reason instead: {}",
        skipped.reason
    );
}
