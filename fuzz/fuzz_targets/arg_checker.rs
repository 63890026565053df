//! The argument grammar checker: whatever argv the fuzzer makes, a command
//! the checker allows holds no flag its grammar does not list (and no
//! panic). The oracle below is the grammar read the simplest way: a
//! switch matches exactly, a joined flag by prefix, a separate flag takes
//! the next argument as its value, and `-Wl,` parts are flags of the `ld`
//! grammar.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

const SWITCHES: &[&str] = &["-c", "-g", "-shared"];
const JOINED: &[&str] = &["-O", "-std=", "-l"];
const SEPARATE: &[&str] = &["-o", "-include"];
const LD_SWITCHES: &[&str] = &["--gc-sections", "-s"];
const LD_JOINED: &[&str] = &["-O"];

const POLICY: &str = r#"
[policy]
name = "fuzz"
os = "linux"

[tool.cc]
programs = ["true"]
dirs = ["/usr/bin", "/bin"]
args = "fz"

[args.fz]
positional = "input"
flags = [
  { name = "-c" },
  { name = "-g" },
  { name = "-shared" },
  { name = "-O", form = "joined", enum = ["0", "1", "2", "3"] },
  { name = "-std=", form = "joined", enum = ["c11", "c17"] },
  { name = "-l", form = "joined", pattern = "[a-z]+" },
  { name = "-o", form = "separate", path = "output" },
  { name = "-include", form = "separate", path = "input" },
  { name = "-Wl,", form = "joined", grammar = "fzld", split = "," },
]

[args.fzld]
positional = "refuse"
flags = [
  { name = "--gc-sections" },
  { name = "-s" },
  { name = "-O", form = "joined", enum = ["0", "1", "2"] },
]
"#;

struct Setup {
    _dir: tempfile::TempDir,
    root: std::path::PathBuf,
    policy: policy::Policy,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().canonicalize().expect("canonical");
        std::fs::write(root.join("a.c"), "int a;\n").expect("input");
        std::fs::write(root.join("b.h"), "int b;\n").expect("input");
        let path = root.join("policy.toml");
        std::fs::write(&path, POLICY).expect("policy");
        let policy = policy::Policy::load(&path).expect("the fuzz policy loads");
        Setup {
            _dir: dir,
            root,
            policy,
        }
    })
}

/// Whether every flag of `args` is one the grammar lists.
fn only_listed_flags(args: &[String]) -> bool {
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_str();
        if SEPARATE.contains(&arg) {
            i += 2;
            continue;
        }
        if let Some(parts) = arg.strip_prefix("-Wl,") {
            for part in parts.split(',') {
                let listed =
                    LD_SWITCHES.contains(&part) || LD_JOINED.iter().any(|j| part.starts_with(j));
                if part.starts_with('-') && !listed {
                    return false;
                }
            }
        } else if arg.starts_with('-') {
            let listed = SWITCHES.contains(&arg) || JOINED.iter().any(|j| arg.starts_with(j));
            if !listed {
                return false;
            }
        }
        i += 1;
    }
    true
}

fuzz_target!(|data: &[u8]| {
    let setup = setup();
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<String> = text
        .split('\n')
        .filter(|a| !a.contains('\0'))
        .take(64)
        .map(str::to_owned)
        .collect();
    let command = cmdlog::Command {
        id: 1,
        tool: cmdlog::ToolKind::Cc,
        program: "true".into(),
        args: args.clone(),
        cwd: ".".into(),
        env: Default::default(),
        inputs: vec!["a.c".into(), "b.h".into()],
        outputs: vec!["a.o".into()],
        cache_key: None,
    };
    let options = policy::CheckOptions {
        mode: policy::Mode::Run,
        strict: true,
        protected: vec![setup.root.join("policy.toml")],
    };
    let Ok(mut checker) = policy::Checker::new(&setup.policy, &setup.root, options) else {
        return;
    };
    let verdict = checker.command(&command);
    // `FUZZ_SHOW=1 ./arg_checker FILE` prints the verdict: to see that
    // the setup allows commands at all (else the property is vacuous).
    if std::env::var_os("FUZZ_SHOW").is_some() {
        eprintln!("{:?}: {:?}", verdict.status, verdict.findings);
    }
    if verdict.status == policy::Status::Allowed {
        assert!(
            only_listed_flags(&args),
            "the checker allowed a flag the grammar does not list: {args:?}"
        );
    }
});
