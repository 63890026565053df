//! Test fixtures: a temp work root, the shipped policies, and a runner that
//! streams a log through a [`Checker`] the way `replay check` does.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use cmdlog::LogReader;
use policy::{CheckOptions, Checker, Finding, Mode, Policy, Verdict};

/// The repository's `policies/` directory.
pub fn policies_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies")
}

/// A shipped policy by platform name.
pub fn shipped(name: &str) -> Policy {
    let path = policies_dir().join(format!("{name}.toml"));
    match Policy::load(&path) {
        Ok(p) => p,
        Err(e) => panic!("shipped policy {name} does not load: {e} ({e:?})"),
    }
}

/// A temp work root.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a file (and its parents) with `text`.
    pub fn file(&self, rel: &str, text: &str) -> PathBuf {
        let p = self.path().join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("mkdir");
        }
        std::fs::write(&p, text).expect("write");
        p
    }
}

/// Everything a check of one log produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub header: Vec<Finding>,
    pub verdicts: Vec<Verdict>,
    pub end: Vec<Finding>,
    /// Commands the end's findings refuse that were counted otherwise.
    pub recount: policy::Recount,
}

impl Outcome {
    /// The verdict for command `id`.
    pub fn verdict(&self, id: u64) -> &Verdict {
        match self.verdicts.iter().find(|v| v.id == id) {
            Some(v) => v,
            None => panic!("no verdict for command {id}: {:#?}", self.verdicts),
        }
    }

    /// The sorted, deduplicated rule names of command `id`'s findings.
    pub fn rules(&self, id: u64) -> Vec<&'static str> {
        let mut rules: Vec<_> = self.verdict(id).findings.iter().map(|f| f.rule).collect();
        rules.sort_unstable();
        rules.dedup();
        rules
    }
}

/// Streams the log text through a checker.
pub fn check_log(policy: &Policy, root: &Path, log: &str, options: CheckOptions) -> Outcome {
    check_with(Checker::new(policy, root, options).expect("checker"), log)
}

/// Streams the log text through `checker`.
pub fn check_with(mut checker: Checker<'_>, log: &str) -> Outcome {
    let mut out = Outcome::default();
    struct V<'a, 'p> {
        checker: &'a mut Checker<'p>,
        out: &'a mut Outcome,
    }
    impl cmdlog::Visit for V<'_, '_> {
        fn header(&mut self, header: &cmdlog::Header) -> ControlFlow<()> {
            self.out.header = self.checker.header(header);
            ControlFlow::Continue(())
        }
        fn command(&mut self, command: cmdlog::Command) -> ControlFlow<()> {
            self.out.verdicts.push(self.checker.command(&command));
            ControlFlow::Continue(())
        }
    }
    let mut v = V {
        checker: &mut checker,
        out: &mut out,
    };
    if let Err(e) = LogReader::new(log.as_bytes()).read(&mut v) {
        panic!("log does not read: {e}");
    }
    let mut end = Vec::new();
    out.recount = checker.finish(&mut |_, f| end.push(f)).recount;
    out.end = end;
    out
}

/// Audit options with nothing protected.
pub fn audit() -> CheckOptions {
    CheckOptions {
        mode: Mode::Audit,
        strict: false,
        protected: Vec::new(),
    }
}

/// Run options with nothing protected.
pub fn run() -> CheckOptions {
    CheckOptions {
        mode: Mode::Run,
        strict: false,
        protected: Vec::new(),
    }
}

/// A log with one header for `os` and the given commands (JSON objects
/// with `id`, `tool`, `program`, `args` ...; missing lists default empty).
pub fn log(os: &str, commands: &[serde_json::Value]) -> String {
    let commands: Vec<serde_json::Value> = commands
        .iter()
        .map(|c| {
            let mut c = c.clone();
            if let Some(obj) = c.as_object_mut() {
                for key in ["args", "inputs", "outputs"] {
                    obj.entry(key).or_insert_with(|| serde_json::json!([]));
                }
                obj.entry("cwd").or_insert_with(|| serde_json::json!("."));
                obj.entry("env").or_insert_with(|| serde_json::json!({}));
            }
            c
        })
        .collect();
    // The reader needs the header keys before `commands`, and serde_json
    // sorts object keys, so the document is assembled by hand.
    format!(
        r#"{{"format":"replay-log","version":1,"producer":{{"name":"test","version":"0"}},"platform":{{"os":"{os}","arch":"x86_64"}},"commands":{}}}"#,
        serde_json::Value::Array(commands)
    )
}
