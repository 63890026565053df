//! Fixtures: plugins written in WAT, compiled to files in a temp dir, a host
//! with tight bounds, a tiny log, and the "good" plugin every hostile test
//! runs afterwards to prove the host is still healthy.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cmdlog::{Command, Os, Platform, ToolKind};
use policy::plugin::{EvalError, Failure, PluginHost, PluginSpec, PluginVerdict};
use tempfile::TempDir;

/// The deadline every hostile plugin gets.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The bound on one evaluation of a hostile plugin: its deadline plus slack
/// for a loaded machine (this is a bound, not a measurement).
pub const BOUND: Duration = Duration::from_secs(2);

/// The WASI imports every WAT plugin may use, and one page of memory.
const PRELUDE: &str = r#"
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1)
"#;

/// A temp dir holding plugin modules.
pub struct Fixture {
    dir: TempDir,
}

impl Fixture {
    /// An empty fixture.
    pub fn new() -> Fixture {
        Fixture {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// The fixture's directory.
    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Compiles a whole WAT module to `<name>.wasm` and returns its path.
    pub fn module(&self, name: &str, wat: &str) -> PathBuf {
        let bytes = wat::parse_str(wat).unwrap_or_else(|error| panic!("{name}: {error}"));
        let path = self.dir.path().join(format!("{name}.wasm"));
        std::fs::write(&path, bytes).expect("write module");
        path
    }

    /// A command module whose `_start` has `body` (the prelude's imports and
    /// memory in scope, plus `data`).
    pub fn plugin(&self, name: &str, data: &str, body: &str) -> PathBuf {
        self.module(
            name,
            &format!("(module {PRELUDE} {data} (func (export \"_start\") {body}))"),
        )
    }

    /// A plugin that writes `text` to stdout and returns (exit 0).
    pub fn writes(&self, name: &str, text: &str) -> PathBuf {
        self.plugin(
            name,
            &format!("(data (i32.const 64) \"{}\")", escape(text)),
            &format!(
                "(i32.store (i32.const 0) (i32.const 64))
                 (i32.store (i32.const 4) (i32.const {}))
                 (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))",
                text.len()
            ),
        )
    }

    /// The well-behaved plugin: allows command 1, refuses command 2.
    pub fn good(&self) -> PathBuf {
        self.writes("good", GOOD_RESPONSE)
    }
}

/// What the good plugin writes.
pub const GOOD_RESPONSE: &str =
    r#"{"verdicts":[{"id":1,"allow":true},{"id":2,"allow":false,"reason":"two is refused"}]}"#;

/// `text` as a WAT string literal body.
fn escape(text: &str) -> String {
    text.bytes().map(|b| format!("\\{b:02x}")).collect()
}

/// A spec with the tight test bounds: 1 s, 64 MiB memory, 1 MiB output.
pub fn spec(name: &str, path: PathBuf) -> PluginSpec {
    let mut spec = PluginSpec::new(name, path);
    spec.timeout = TIMEOUT;
    spec.max_memory = 64 * 1024 * 1024;
    spec.max_output = 1024 * 1024;
    spec
}

/// A host without a cache.
pub fn host() -> PluginHost {
    PluginHost::new(None).expect("plugin host")
}

/// The platform of every test log.
pub fn platform() -> Platform {
    Platform {
        os: Os::Linux,
        arch: "x86_64".into(),
    }
}

/// A command of `tool` with `args` and `outputs`.
pub fn command(id: u64, tool: ToolKind, args: &[&str], outputs: &[&str]) -> Command {
    Command {
        id,
        program: tool.name().to_owned(),
        tool,
        args: args.iter().map(|s| (*s).to_owned()).collect(),
        cwd: ".".into(),
        env: BTreeMap::new(),
        inputs: vec![],
        outputs: outputs.iter().map(|s| (*s).to_owned()).collect(),
        cache_key: None,
    }
}

/// The two-command log every WAT plugin is asked about.
pub fn log() -> Vec<Command> {
    vec![
        command(
            1,
            ToolKind::Opt,
            &["-O2", "p0.bc", "-o", "p0.opt.bc"],
            &["p0.opt.bc"],
        ),
        command(2, ToolKind::Llc, &["p0.opt.bc", "-o", "p0.o"], &["p0.o"]),
    ]
}

/// Evaluates `spec` on the two-command log in `host`, expecting a failure
/// within [`BOUND`]; then proves the host healthy by evaluating the good
/// plugin. Returns the failure.
pub fn denies(host: &PluginHost, fixture: &Fixture, spec: PluginSpec) -> EvalError {
    let plugin = host.load(&spec).expect("hostile plugin loads");
    let started = Instant::now();
    let result = plugin.evaluate(&platform(), &log());
    let elapsed = started.elapsed();
    let error = match result {
        Ok(verdicts) => panic!("`{}` should have failed: {verdicts:?}", spec.name),
        Err(error) => error,
    };
    assert!(
        elapsed < BOUND,
        "`{}` took {elapsed:?} to be denied, over the {BOUND:?} bound",
        spec.name
    );
    assert_eq!(error.plugin, spec.name);
    assert!(error
        .to_string()
        .contains(&format!("plugin `{}`", spec.name)));
    assert_healthy(host, fixture);
    error
}

/// The good plugin still gets its verdicts in `host`.
pub fn assert_healthy(host: &PluginHost, fixture: &Fixture) {
    let good = host
        .load(&spec("good", fixture.good()))
        .expect("good plugin loads");
    let verdicts = good
        .evaluate(&platform(), &log())
        .expect("good plugin evaluates after a hostile one");
    assert_eq!(
        verdicts,
        [
            PluginVerdict {
                id: 1,
                allow: true,
                reason: None
            },
            PluginVerdict {
                id: 2,
                allow: false,
                reason: Some("two is refused".into())
            },
        ]
    );
}

/// Shorthand to match on the failure of an [`EvalError`].
pub fn failure(error: &EvalError) -> &Failure {
    &error.failure
}

/// A `_start` body that grows memory to 1 GiB of zeros (every iovec there
/// is a valid `(0, 0)`), checks that `call` (`fd_read` on fd 0 or
/// `fd_write` on fd 1) refuses 1,025 iovecs with `EINVAL` (28), then calls
/// it with an iovec count of -1 forever. Regression (review of issue 20):
/// the host looped over 4 billion iovecs inside one host call, where no
/// deadline reached it, for 38 s (`fd_write`) or 64 s (`fd_read`).
pub fn iovec_flood(call: &str) -> String {
    let fd = if call == "fd_read" { 0 } else { 1 };
    format!(
        "(drop (memory.grow (i32.const 16383)))
         (if (i32.ne (call ${call} (i32.const {fd}) (i32.const 0) (i32.const 1025) (i32.const 16))
                     (i32.const 28))
           (then unreachable))
         (loop $more
           (drop (call ${call} (i32.const {fd}) (i32.const 0) (i32.const -1) (i32.const 16)))
           (br $more))"
    )
}

/// The memory [`iovec_flood`] needs.
pub const IOVEC_FLOOD_MEMORY: u64 = 1 << 30;
