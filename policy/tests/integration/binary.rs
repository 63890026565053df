//! Binary resolution on real files: only the policy's directories, never
//! `PATH`; canonical, regular, executable, not world-writable, in a
//! directory that is not world-writable; sha256 pins.

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::{Path, PathBuf};

use policy::{Policy, Status};
use serde_json::json;

use crate::support::{audit, check_log, log, run, Root};

/// A directory of tools and a policy that looks only there.
struct Bin {
    dir: tempfile::TempDir,
    extra: String,
}

impl Bin {
    fn new() -> Bin {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755))
            .expect("chmod");
        Bin {
            dir,
            extra: String::new(),
        }
    }

    fn path(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path()).expect("canonical")
    }

    /// Installs a copy of the real `opt` as `name` with `mode`.
    fn install(&self, name: &str, mode: u32) -> PathBuf {
        let p = self.path().join(name);
        std::fs::copy("/usr/lib/llvm-14/bin/opt", &p).expect("copy opt");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        p
    }

    fn policy(&self) -> Policy {
        let text = format!(
            r#"
[policy]
os = "linux"
[tool.opt]
programs = ["opt", "sh"]
dirs = ["{}"]
{}
[args.opt]
flags = [{{ name = "-O", form = "joined", enum = ["2"] }}]
"#,
            self.path().display(),
            self.extra
        );
        let p = self.path().join("policy.toml");
        std::fs::write(&p, text).expect("write policy");
        match Policy::load(&p) {
            Ok(p) => p,
            Err(e) => panic!("{e:?}"),
        }
    }
}

/// Checks one `opt -O2` command with `program` and returns (status, rules).
fn judge(policy: &Policy, program: &str, run_mode: bool) -> (Status, Vec<&'static str>) {
    let root = Root::new();
    let text = log(
        "linux",
        &[json!({"id": 1, "tool": "opt", "program": program, "args": ["-O2"]})],
    );
    let out = check_log(
        policy,
        root.path(),
        &text,
        if run_mode { run() } else { audit() },
    );
    (out.verdict(1).status, out.rules(1))
}

#[test]
fn a_good_binary_resolves_to_its_canonical_path() {
    let bin = Bin::new();
    let real = bin.install("opt", 0o755);
    let policy = bin.policy();
    let root = Root::new();
    let text = log(
        "linux",
        &[json!({"id": 1, "tool": "opt", "program": "opt", "args": ["-O2"]})],
    );
    let out = check_log(&policy, root.path(), &text, run());
    let v = out.verdict(1);
    assert_eq!(v.status, Status::Allowed, "{v:#?}");
    assert_eq!(v.resolved.as_ref().map(|r| r.program.clone()), Some(real));
}

#[test]
fn world_writable_binaries_are_refused() {
    let bin = Bin::new();
    bin.install("opt", 0o757);
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.world-writable"])
    );
}

#[test]
fn binaries_in_world_writable_directories_are_refused() {
    let bin = Bin::new();
    bin.install("opt", 0o755);
    let policy = bin.policy();
    std::fs::set_permissions(bin.path(), std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert_eq!(
        judge(&policy, "opt", false),
        (Status::Refused, vec!["binary.dir-world-writable"])
    );
}

#[test]
fn non_executable_files_are_refused() {
    let bin = Bin::new();
    bin.install("opt", 0o644);
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.not-executable"])
    );
}

#[test]
fn directories_are_not_binaries() {
    let bin = Bin::new();
    std::fs::create_dir(bin.path().join("opt")).expect("mkdir");
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.not-regular"])
    );
}

#[test]
fn symlinks_out_of_the_policy_dirs_are_refused() {
    // A symlink in a trusted directory may not point at an untrusted one.
    let bin = Bin::new();
    let elsewhere = Bin::new();
    let real = elsewhere.install("opt", 0o755);
    symlink(&real, bin.path().join("opt")).expect("symlink");
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.outside-dirs"])
    );
}

#[test]
fn path_is_never_searched() {
    // `sh` is an allowed name here and is on this machine's PATH, but not
    // in the policy's directory: it is not found.
    let bin = Bin::new();
    let policy = bin.policy();
    assert!(Path::new("/bin/sh").exists());
    assert_eq!(
        judge(&policy, "sh", false),
        (Status::Unverified, vec!["binary.not-found"])
    );
    assert_eq!(
        judge(&policy, "sh", true),
        (Status::Refused, vec!["binary.not-found"])
    );
}

#[test]
fn explicit_paths_must_be_in_the_policy_dirs() {
    let bin = Bin::new();
    let real = bin.install("opt", 0o755);
    let policy = bin.policy();
    assert_eq!(
        judge(&policy, &real.display().to_string(), false),
        (Status::Allowed, vec![])
    );
    let dotted = format!(
        "{}/../{}/opt",
        bin.path().display(),
        bin.path()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    );
    assert_eq!(
        judge(&policy, &dotted, false),
        (Status::Refused, vec!["binary.not-allowed"])
    );
    assert_eq!(
        judge(&policy, "/bin/sh", false),
        (Status::Refused, vec!["binary.not-allowed"])
    );
}

#[test]
fn sha256_pins_are_enforced() {
    let mut bin = Bin::new();
    let real = bin.install("opt", 0o755);
    let digest = {
        use sha2::Digest;
        let bytes = std::fs::read(&real).expect("read");
        sha2::Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    bin.extra = format!(
        "sha256 = {{ \"{}\" = \"{digest}\" }}\nrequire_sha256 = true",
        real.display()
    );
    assert_eq!(judge(&bin.policy(), "opt", true), (Status::Allowed, vec![]));

    let wrong = "0".repeat(64);
    bin.extra = format!("sha256 = {{ \"{}\" = \"{wrong}\" }}", real.display());
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.sha256-mismatch"])
    );

    bin.extra = "require_sha256 = true".into();
    assert_eq!(
        judge(&bin.policy(), "opt", false),
        (Status::Refused, vec!["binary.unpinned"])
    );
}

#[test]
fn binaries_below_a_world_writable_non_sticky_directory_are_refused() {
    // Anyone could rename `tools/` away and put another one in its place.
    let top = tempfile::tempdir().expect("temp dir");
    let top_path = std::fs::canonicalize(top.path()).expect("canonical");
    let bin_dir = top_path.join("tools");
    std::fs::create_dir(&bin_dir).expect("mkdir");
    std::fs::set_permissions(&bin_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    std::fs::copy("/usr/lib/llvm-14/bin/opt", bin_dir.join("opt")).expect("copy");
    std::fs::set_permissions(bin_dir.join("opt"), std::fs::Permissions::from_mode(0o755))
        .expect("chmod");
    let text = format!(
        "[policy]\nos = \"linux\"\n[tool.opt]\nprograms = [\"opt\"]\ndirs = [\"{}\"]\n[args.opt]\nflags = [{{ name = \"-O\", form = \"joined\", enum = [\"2\"] }}]\n",
        bin_dir.display()
    );
    let policy_path = top_path.join("p.toml");
    std::fs::write(&policy_path, text).expect("write");
    let policy = Policy::load(&policy_path).expect("policy");
    std::fs::set_permissions(&top_path, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    assert_eq!(
        judge(&policy, "opt", false),
        (Status::Refused, vec!["binary.dir-world-writable"])
    );
    std::fs::set_permissions(&top_path, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    assert_eq!(judge(&policy, "opt", false), (Status::Allowed, vec![]));
}
