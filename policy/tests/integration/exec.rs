//! What a tool's process tree may execute (`Resolved::may_exec`): its own
//! binary under the names of its kind, and the binaries of the kinds its
//! `[tool.KIND] runs` names, each resolved and checked as a command's own
//! binary is.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use policy::{ExecAllowed, Policy, PolicyError, Status};
use serde_json::json;

use crate::support::{check_log, log, run, shipped, Root};

/// The `may_exec` of a single command, checked in Run mode.
fn may_exec(policy: &Policy, tool: &str, program: &str, args: &[&str]) -> Vec<ExecAllowed> {
    let root = Root::new();
    root.file("a.o", "\x7fELF");
    let text = log(
        "linux",
        &[
            json!({"id": 1, "tool": tool, "program": program, "args": args,
                 "inputs": ["a.o"], "outputs": ["out"]}),
        ],
    );
    let out = check_log(policy, root.path(), &text, run());
    let v = out.verdict(1);
    assert_eq!(v.status, Status::Allowed, "{v:#?}");
    v.resolved
        .as_ref()
        .map(|r| r.may_exec.clone())
        .unwrap_or_default()
}

fn allowed(path: &str, name: &str) -> ExecAllowed {
    ExecAllowed {
        path: PathBuf::from(path),
        name: name.to_owned(),
    }
}

#[test]
fn clang_may_run_itself_and_the_linkers_but_not_lld_link_or_dsymutil() {
    let policy = shipped("linux");
    let list = may_exec(&policy, "cc", "clang-14", &["a.o", "-o", "out"]);
    // Its own binary first, as the command runs it.
    assert_eq!(
        list.first(),
        Some(&allowed("/usr/lib/llvm-14/bin/clang", "clang-14"))
    );
    for (path, name) in [
        ("/usr/lib/llvm-14/bin/lld", "ld.lld"),
        ("/usr/bin/x86_64-linux-gnu-ld.bfd", "ld"),
        ("/usr/bin/x86_64-linux-gnu-ld.bfd", "ld.bfd"),
    ] {
        assert!(list.contains(&allowed(path, name)), "{name}: {list:#?}");
    }
    // `lld-link` is the same binary as `ld.lld`, dispatching on its name:
    // only the names `ld` allows are listed.
    assert!(list.iter().all(|e| e.name != "lld-link"), "{list:#?}");
    assert!(
        list.iter().all(|e| !e.path.ends_with("dsymutil")),
        "{list:#?}"
    );
    // Every entry is canonical.
    for e in &list {
        assert_eq!(std::fs::canonicalize(&e.path).ok().as_ref(), Some(&e.path));
    }
}

#[test]
fn a_tool_without_runs_may_execute_only_itself() {
    let policy = shipped("linux");
    let list = may_exec(&policy, "ld", "ld", &["-r", "a.o", "-o", "out"]);
    assert!(!list.is_empty());
    assert!(
        list.iter()
            .all(|e| e.path == Path::new("/usr/bin/x86_64-linux-gnu-ld.bfd")),
        "{list:#?}"
    );
    assert!(list.iter().any(|e| e.name == "ld"), "{list:#?}");
    assert!(list.iter().any(|e| e.name == "ld.bfd"), "{list:#?}");
    assert!(list.iter().all(|e| e.name != "ld.lld"), "{list:#?}");
}

/// Two directories of tools (copies of the real `opt`) and a policy over
/// them: kind `cc` (program `cc`) runs kind `ld` (programs `ld`, `ld2`).
struct Tools {
    top: tempfile::TempDir,
}

impl Tools {
    fn new() -> Tools {
        let top = tempfile::tempdir().expect("temp dir");
        let t = Tools { top };
        for dir in ["cc", "ld"] {
            std::fs::create_dir(t.dir(dir)).expect("mkdir");
            std::fs::set_permissions(t.dir(dir), std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        t.install("cc/cc", 0o755);
        t
    }

    fn dir(&self, name: &str) -> PathBuf {
        std::fs::canonicalize(self.top.path())
            .expect("canonical")
            .join(name)
    }

    fn install(&self, rel: &str, mode: u32) -> PathBuf {
        let p = self.dir(rel);
        std::fs::copy("/usr/lib/llvm-14/bin/opt", &p).expect("copy opt");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn policy_text(&self, ld_extra: &str, cc_extra: &str) -> String {
        format!(
            r#"
[policy]
os = "linux"
[tool.cc]
programs = ["cc"]
dirs = ["{cc}"]
{cc_extra}
[tool.ld]
programs = ["ld", "ld2"]
dirs = ["{ld}"]
{ld_extra}
[args.cc]
positional = "input"
flags = [{{ name = "-o", form = "separate", path = "output" }}]
[args.ld]
flags = []
"#,
            cc = self.dir("cc").display(),
            ld = self.dir("ld").display(),
        )
    }

    fn load(&self, text: &str) -> Result<Policy, PolicyError> {
        let p = self.dir("policy.toml");
        std::fs::write(&p, text).expect("write policy");
        Policy::load(&p)
    }

    fn policy(&self, ld_extra: &str, cc_extra: &str) -> Policy {
        match self.load(&self.policy_text(ld_extra, cc_extra)) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }

    fn may_exec(&self, policy: &Policy) -> Vec<ExecAllowed> {
        may_exec(policy, "cc", "cc", &["a.o", "-o", "out"])
    }
}

#[test]
fn sub_tools_are_listed_only_when_runs_names_their_kind() {
    let tools = Tools::new();
    let ld = tools.install("ld/ld", 0o755);
    let cc = tools.dir("cc/cc");
    let without = tools.may_exec(&tools.policy("", ""));
    assert_eq!(
        without,
        vec![ExecAllowed {
            path: cc.clone(),
            name: "cc".into()
        }]
    );
    let with = tools.may_exec(&tools.policy("", "runs = [\"ld\"]"));
    assert_eq!(
        with,
        vec![
            ExecAllowed {
                path: cc,
                name: "cc".into()
            },
            ExecAllowed {
                path: ld,
                name: "ld".into()
            },
        ]
    );
}

#[test]
fn one_binary_under_two_names_is_listed_under_each_allowed_name_only() {
    let tools = Tools::new();
    let ld = tools.install("ld/ld", 0o755);
    symlink("ld", tools.dir("ld/ld2")).expect("symlink");
    // A name the kind does not allow, for the same binary.
    symlink("ld", tools.dir("ld/lld-link")).expect("symlink");
    let list = tools.may_exec(&tools.policy("", "runs = [\"ld\"]"));
    let names: Vec<&str> = list
        .iter()
        .filter(|e| e.path == ld)
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(names, vec!["ld", "ld2"]);
}

#[test]
fn sub_tools_that_fail_the_binary_checks_are_left_out() {
    // World-writable: anyone could replace it.
    let tools = Tools::new();
    tools.install("ld/ld", 0o757);
    let list = tools.may_exec(&tools.policy("", "runs = [\"ld\"]"));
    assert_eq!(list.len(), 1, "{list:#?}");

    // A pin it does not match.
    let tools = Tools::new();
    let ld = tools.install("ld/ld", 0o755);
    let pin = format!(
        "sha256 = {{ \"{}\" = \"{}\" }}",
        ld.display(),
        "0".repeat(64)
    );
    let list = tools.may_exec(&tools.policy(&pin, "runs = [\"ld\"]"));
    assert_eq!(list.len(), 1, "{list:#?}");

    // A symlink out of the kind's directories.
    let tools = Tools::new();
    let elsewhere = tools.install("cc/other", 0o755);
    symlink(&elsewhere, tools.dir("ld/ld")).expect("symlink");
    let list = tools.may_exec(&tools.policy("", "runs = [\"ld\"]"));
    assert_eq!(list.len(), 1, "{list:#?}");
}

#[test]
fn runs_must_name_a_defined_kind_and_a_disabled_one_adds_nothing() {
    let tools = Tools::new();
    tools.install("ld/ld", 0o755);
    let err = tools
        .load(&tools.policy_text("", "runs = [\"linker\"]"))
        .err()
        .map(|e| {
            format!(
                "{e} / {:?}",
                std::error::Error::source(&e).map(|s| s.to_string())
            )
        });
    let err = err.unwrap_or_default();
    assert!(
        err.contains("tool.cc.runs[0]") && err.contains("`linker`"),
        "{err}"
    );

    // A derived policy that disables `ld` keeps `runs` valid, and empty.
    let base = tools.dir("base.toml");
    std::fs::write(&base, tools.policy_text("", "runs = [\"ld\"]")).expect("write");
    let derived = tools.dir("derived.toml");
    std::fs::write(
        &derived,
        format!(
            "[policy]\nextends = [\"{}\"]\n[tool.ld]\ndisabled = true\n",
            base.display()
        ),
    )
    .expect("write");
    let policy = Policy::load(&derived).expect("derived policy loads");
    assert_eq!(tools.may_exec(&policy).len(), 1);
}
