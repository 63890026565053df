//! A temp-dir fixture and a `replay` command builder.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use tempfile::TempDir;

/// A work root in a temp dir, with a log and a policy file in it.
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes `name` under the root and returns its path.
    pub fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.path(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("parent dir");
        }
        std::fs::write(&path, contents).expect("write fixture file");
        path
    }

    /// `replay` with its working directory at the root.
    pub fn replay(&self) -> Command {
        let mut command = Command::cargo_bin("replay").expect("replay is built");
        command
            .current_dir(self.dir.path())
            .env_remove("NO_COLOR")
            .env("REPLAY_NO_CACHE", "1");
        command
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
}

/// A valid one-command log.
pub const GOOD_LOG: &str = r#"{"format":"replay-log","version":1,"producer":{"name":"t","version":"0"},"platform":{"os":"linux","arch":"x86_64"},"commands":[
{"id":1,"tool":"opt","program":"opt","args":["-O2","a.bc","-o","a.opt.bc"],"cwd":".","env":{},"inputs":["a.bc"],"outputs":["a.opt.bc"]}
]}
"#;

/// Replaces the fixture's temp path in `text` so snapshots are stable.
pub fn mask(text: &str, fixture: &Fixture) -> String {
    text.replace(&fixture.root().display().to_string(), "[ROOT]")
}
