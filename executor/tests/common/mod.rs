//! What the tests that call `run_tool` directly share: `/bin/sh` running
//! a script in a work root, and the options to run it with.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use replay::run::watch::ToolLimits;
use replay::run::RunOptions;
use replay::sandbox::{SandboxSpec, Want};

/// `sh -c script` in `root`, with `PATH` and without Landlock or the
/// network layer (the script runs helpers from `/usr/bin`).
pub fn sh(root: &Path, script: &str) -> SandboxSpec {
    let mut spec = SandboxSpec::new(
        PathBuf::from("/bin/sh"),
        "sh",
        vec!["-c".into(), script.into()],
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
        root.to_path_buf(),
        root,
    );
    spec.landlock = Want::Off;
    spec.network = Want::Off;
    spec
}

/// Options for one tool: a minute's timeout, its output dropped, traced
/// or not.
pub fn options(trace: bool) -> RunOptions {
    let sink: Arc<Mutex<dyn Write + Send>> = Arc::new(Mutex::new(std::io::sink()));
    RunOptions {
        launcher: PathBuf::from(env!("CARGO_BIN_EXE_replay")),
        limits: ToolLimits {
            timeout: Some(Duration::from_secs(60)),
            grace: Duration::from_secs(1),
            max_rss: None,
            max_output: None,
        },
        sample_interval: Duration::from_millis(5),
        prefix: String::new(),
        stdout: Arc::clone(&sink),
        stderr: sink,
        interrupted: Arc::new(AtomicBool::new(false)),
        trace,
        may_exec: None,
        gauge: None,
        on_read: None,
    }
}
