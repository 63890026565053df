//! The action cache on real runs: a rerun restores every output, an edit
//! reruns exactly what it changed, a changed file the tool read is a miss,
//! a tampered blob is caught and rerun, two runs share one cache, and a
//! tool that reads what it did not declare is reported.

use std::path::{Path, PathBuf};
use std::process::Output;

use crate::support::{bin, memtouch_policy, report, run, shipped_policy, text};

/// `replay --cache CACHE ARGS` in `root` (explicitly on the cache: the
/// other tests run without one).
fn cached(root: &Path, cache: &Path, args: &[&str]) -> Output {
    std::process::Command::new(bin("replay"))
        .env_remove("REPLAY_NO_CACHE")
        .arg("--cache")
        .arg(cache)
        .args(args)
        .current_dir(root)
        .output()
        .expect("run replay")
}

/// Each command's report status, by id order.
pub(crate) fn statuses(report: &serde_json::Value) -> Vec<String> {
    report["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// Writes a three-file C program under `root` and `aotc`'s log for it,
/// with `answer` as what `second()` returns.
pub(crate) fn c_program(root: &Path, answer: u32) {
    let files = [
        (
            "main.c",
            "int first(void); int second(void); int third(void);\n\
             int printf(const char *, ...);\n\
             int main(void) { printf(\"%d\\n\", first() + second() + third()); return 0; }\n"
                .to_owned(),
        ),
        ("one.c", "int first(void) { return 1; }\n".to_owned()),
        (
            "two.c",
            format!("int second(void) {{ return {answer}; }}\n"),
        ),
        ("three.c", "int third(void) { return 3; }\n".to_owned()),
    ];
    let mut lls = Vec::new();
    for (name, source) in &files {
        std::fs::write(root.join(name), source).unwrap();
        let ll = name.replace(".c", ".ll");
        let clang = crate::support::run(
            Path::new("/usr/bin/clang-14"),
            &["-S", "-emit-llvm", "-O1", name, "-o", &ll],
            root,
        );
        assert!(clang.status.success(), "{}", text(&clang.stderr));
        lls.push(ll);
    }
    let mut args: Vec<&str> = lls.iter().map(String::as_str).collect();
    args.extend(["-o", "prog", "--log", "log.json", "--partitions", "4"]);
    let aotc = crate::support::run(&bin("aotc"), &args, root);
    assert!(aotc.status.success(), "{}", text(&aotc.stderr));
}

/// The outputs a run of the aotc log leaves (what a fresh rerun removes).
pub(crate) fn built(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name == "prog" || name.ends_with(".o") || name.ends_with(".opt.bc")
        })
        .collect();
    out.sort();
    out
}

#[test]
fn a_rerun_is_all_hits_and_an_edit_reruns_only_its_partition_and_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let cache = dir.path().join("cache");
    std::fs::create_dir(&root).unwrap();
    c_program(&root, 2);
    let policy = shipped_policy("linux.toml");
    let policy = policy.to_str().unwrap();
    let args = ["--policy", policy, "--report", "report.json", "log.json"];

    let cold = cached(&root, &cache, &args);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let first = report(&root.join("report.json"));
    let n = statuses(&first).len();
    assert!(n >= 4, "at least two partitions and a link: {first:#}");
    assert!(statuses(&first).iter().all(|s| s == "ok"), "{first:#}");
    let outputs = built(&root);
    let bytes: Vec<Vec<u8>> = outputs.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let run_prog = |root: &Path| crate::support::run(&root.join("prog"), &[], root).stdout;
    assert_eq!(run_prog(&root), b"6\n");

    // Fresh outputs removed: every command is restored, byte for byte.
    for path in &outputs {
        std::fs::remove_file(path).unwrap();
    }
    let warm = cached(&root, &cache, &args);
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    // A restored command is not "running" (issue 19's rough edge).
    assert!(
        !text(&warm.stderr).contains("running command"),
        "{}",
        text(&warm.stderr)
    );
    let second = report(&root.join("report.json"));
    assert_eq!(statuses(&second), vec!["cached"; n], "{second:#}");
    assert_eq!(second["totals"]["cache_hits"], n as u64);
    for (path, before) in outputs.iter().zip(&bytes) {
        assert_eq!(&std::fs::read(path).unwrap(), before, "{}", path.display());
    }
    assert_eq!(run_prog(&root), b"6\n");
    // The journal says each was restored, not made.
    let journal = std::fs::read_to_string(root.join("log.json.journal")).unwrap();
    let restored = journal
        .lines()
        .filter(|line| line.contains("\"cached\":true"))
        .count();
    assert_eq!(restored, n, "{journal}");
    // The keys are replay's own, the same on both runs.
    for (a, b) in first["commands"]
        .as_array()
        .unwrap()
        .iter()
        .zip(second["commands"].as_array().unwrap())
    {
        assert_eq!(a["cache"]["key"], b["cache"]["key"]);
        assert!(a["cache"]["key"].as_str().is_some_and(|k| k.len() == 64));
    }

    // One function edited: its partition's opt and llc rerun, and the
    // link; every other partition is restored.
    c_program(&root, 40);
    let edited = cached(&root, &cache, &args);
    assert!(edited.status.success(), "{}", text(&edited.stderr));
    let third = report(&root.join("report.json"));
    let ran: Vec<(String, String)> = third["commands"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["status"] == "ok")
        .map(|c| (c["tool"].as_str().unwrap().to_owned(), c["id"].to_string()))
        .collect();
    let tools: Vec<&str> = ran.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tools, ["opt", "llc", "cc"], "{third:#}");
    assert_eq!(third["totals"]["cache_hits"], (n - 3) as u64, "{third:#}");
    assert_eq!(run_prog(&root), b"44\n");
}

/// A memtouch log of `commands` (each `(args, inputs, outputs)`) under a
/// fresh root with the memtouch policy; returns the root and the policy.
fn memtouch_root(
    parent: &Path,
    name: &str,
    commands: &[(&[&str], &[&str], &[&str])],
) -> (PathBuf, String) {
    let root = parent.join(name);
    std::fs::create_dir(&root).unwrap();
    let root = root.canonicalize().unwrap();
    let policy = memtouch_policy(&root, "");
    crate::support::memtouch_commands(&root, commands);
    (root, policy.display().to_string())
}

#[test]
fn a_tampered_blob_is_caught_evicted_and_its_command_rerun() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (root, policy) = memtouch_root(
        dir.path(),
        "root",
        &[(&["--fill=4096", "--out=a.txt"], &[], &["a.txt"])],
    );
    let args = [
        "--policy",
        policy.as_str(),
        "--report",
        "r.json",
        "log.json",
    ];
    let cold = cached(&root, &cache, &args);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let good = std::fs::read(root.join("a.txt")).unwrap();
    // Flip a byte of the output's blob (the one as large as the output).
    let blob = crate::support::walk(&cache.join("cas"))
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() == good.len() as u64)
        .expect("the output's blob");
    let mut bytes = std::fs::read(&blob).unwrap();
    bytes[0] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    std::fs::remove_file(root.join("a.txt")).unwrap();

    let rerun = cached(&root, &cache, &args);
    let stderr = text(&rerun.stderr);
    assert!(rerun.status.success(), "{stderr}");
    assert!(stderr.contains("damaged and is evicted"), "{stderr}");
    let doc = report(&root.join("r.json"));
    assert_eq!(statuses(&doc), ["ok"], "it ran again: {doc:#}");
    assert!(
        doc["commands"][0]["cache"]["miss"]
            .as_str()
            .is_some_and(|m| m.contains("corrupt")),
        "{doc:#}"
    );
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), good);
    // What the rerun stored is whole again: the next run restores it.
    std::fs::remove_file(root.join("a.txt")).unwrap();
    let third = cached(&root, &cache, &args);
    assert!(third.status.success(), "{}", text(&third.stderr));
    assert_eq!(statuses(&report(&root.join("r.json"))), ["cached"]);
    assert_eq!(std::fs::read(root.join("a.txt")).unwrap(), good);
}

#[test]
fn a_changed_header_is_a_miss_and_an_undeclared_read_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    // `cc -c` reads the header through `-I inc`: a directory the policy
    // lets it search, not a file the command declares.
    let root = header_root(dir.path(), "root", "x.h", 1);
    let policy = shipped_policy("linux.toml");
    let args = linux_args(&policy);
    let args = args.each_ref().map(String::as_str);

    let cold = cached(&root, &cache, &args);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let doc = report(&root.join("r.json"));
    assert_eq!(
        doc["commands"][0]["undeclared_reads"],
        serde_json::json!(["inc/x.h"]),
        "{doc:#}"
    );
    assert!(
        text(&cold.stderr).contains("read `inc/x.h`, which it does not declare"),
        "{}",
        text(&cold.stderr)
    );
    let one = std::fs::read(root.join("main.o")).unwrap();

    let warm = cached(&root, &cache, &args);
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    assert_eq!(statuses(&report(&root.join("r.json"))), ["cached"]);

    std::fs::write(root.join("inc/x.h"), "#define X 2\n").unwrap();
    let changed = cached(&root, &cache, &args);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    let doc = report(&root.join("r.json"));
    assert_eq!(statuses(&doc), ["ok"], "it ran again: {doc:#}");
    assert!(
        doc["commands"][0]["cache"]["miss"]
            .as_str()
            .is_some_and(|m| m.contains("inc/x.h")),
        "{doc:#}"
    );
    assert_ne!(std::fs::read(root.join("main.o")).unwrap(), one);
}

#[test]
fn two_runs_share_one_cache_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let commands: &[(&[&str], &[&str], &[&str])] = &[
        (&["--fill=65536", "--out=a.txt"], &[], &["a.txt"]),
        (&["--copy=a.txt", "--out=b.txt"], &["a.txt"], &["b.txt"]),
        (&["--fill=1000", "--out=c.txt"], &[], &["c.txt"]),
    ];
    let roots: Vec<(PathBuf, String)> = ["one", "two"]
        .iter()
        .map(|name| memtouch_root(dir.path(), name, commands))
        .collect();
    // Both started before either is waited for: they race to store.
    let children: Vec<_> = roots
        .iter()
        .map(|(root, policy)| {
            std::process::Command::new(bin("replay"))
                .env_remove("REPLAY_NO_CACHE")
                .arg("--cache")
                .arg(&cache)
                .args(["--policy", policy, "log.json"])
                .current_dir(root)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for ((root, _), child) in roots.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        for file in ["a.txt", "b.txt", "c.txt"] {
            let here = std::fs::read(root.join(file)).unwrap();
            let there = std::fs::read(roots[0].0.join(file)).unwrap();
            assert!(here == there, "{file} differs between the two runs");
        }
    }
    let stats = std::process::Command::new(bin("replay"))
        .args(["cache", "stats", "--cache"])
        .arg(&cache)
        .output()
        .unwrap();
    assert!(stats.status.success(), "{}", text(&stats.stderr));
    // Each root's commands are its own entries: the root is keyed.
    assert!(
        text(&stats.stdout).contains("6 entries"),
        "{}",
        text(&stats.stdout)
    );
}

/// `--policy POLICY --report r.json log.json`.
fn linux_args(policy: &Path) -> [String; 5] {
    [
        "--policy".into(),
        policy.display().to_string(),
        "--report".into(),
        "r.json".into(),
        "log.json".into(),
    ]
}

/// The one-command `cc -c main.c -Iinc` log of the header test, in `root`.
fn header_root(parent: &Path, name: &str, include: &str, value: u32) -> PathBuf {
    let root = parent.join(name);
    std::fs::create_dir_all(root.join("inc")).unwrap();
    std::fs::write(
        root.join("main.c"),
        format!("#include \"{include}\"\nint main(void) {{ return X; }}\n"),
    )
    .unwrap();
    std::fs::write(root.join("inc/x.h"), format!("#define X {value}\n")).unwrap();
    crate::support::write_log(
        &root,
        vec![serde_json::json!({
            "id": 1, "tool": "cc", "program": "/usr/lib/llvm-14/bin/clang-14",
            "args": ["-c", "main.c", "-Iinc", "-o", "main.o"], "cwd": ".", "env": {},
            "inputs": ["main.c"], "outputs": ["main.o"],
        })],
    );
    root
}

#[test]
fn another_root_with_other_headers_is_a_miss_not_the_first_roots_result() {
    // Regression (review): the key left out the work root, and the read
    // set named the first root's header, so a second root with a header
    // of its own was restored the first root's object.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let policy = shipped_policy("linux.toml");
    let args = linux_args(&policy);
    let args = args.each_ref().map(String::as_str);
    let a = header_root(dir.path(), "a", "x.h", 1);
    let b = header_root(dir.path(), "b", "x.h", 2);
    for root in [&a, &b] {
        let out = cached(root, &cache, &args);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(statuses(&report(&root.join("r.json"))), ["ok"]);
    }
    assert_ne!(
        std::fs::read(a.join("main.o")).unwrap(),
        std::fs::read(b.join("main.o")).unwrap()
    );
}

#[test]
fn a_header_read_through_proc_self_cwd_is_keyed() {
    // Regression (review): paths under /proc were skipped as pseudo-files,
    // and `/proc/self/cwd/inc/x.h` is the root's header.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let policy = shipped_policy("linux.toml");
    let args = linux_args(&policy);
    let args = args.each_ref().map(String::as_str);
    let root = header_root(dir.path(), "root", "/proc/self/cwd/inc/x.h", 1);
    let cold = cached(&root, &cache, &args);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    let doc = report(&root.join("r.json"));
    assert_eq!(doc["commands"][0]["cache"]["stored"], true, "{doc:#}");
    std::fs::write(root.join("inc/x.h"), "#define X 7\n").unwrap();
    std::fs::remove_file(root.join("main.o")).unwrap();
    let changed = cached(&root, &cache, &args);
    assert!(changed.status.success(), "{}", text(&changed.stderr));
    assert_eq!(statuses(&report(&root.join("r.json"))), ["ok"], "a miss");
}

#[test]
fn a_directory_the_tool_listed_is_keyed_by_its_names() {
    // Regression (review): clang picks its GCC by listing a directory;
    // a new entry there changed the result but not the key.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let (root, policy) = memtouch_root(
        dir.path(),
        "root",
        &[(&["--list=in", "--out=a.txt"], &["in"], &["a.txt"])],
    );
    std::fs::create_dir_all(root.join("in/12")).unwrap();
    let args = [
        "--policy",
        policy.as_str(),
        "--report",
        "r.json",
        "log.json",
    ];
    let cold = cached(&root, &cache, &args);
    assert!(cold.status.success(), "{}", text(&cold.stderr));
    assert_eq!(
        report(&root.join("r.json"))["commands"][0]["cache"]["stored"],
        true
    );
    let warm = cached(&root, &cache, &args);
    assert!(warm.status.success(), "{}", text(&warm.stderr));
    assert_eq!(statuses(&report(&root.join("r.json"))), ["cached"]);

    std::fs::create_dir(root.join("in/99")).unwrap();
    let listed = cached(&root, &cache, &args);
    assert!(listed.status.success(), "{}", text(&listed.stderr));
    assert_eq!(statuses(&report(&root.join("r.json"))), ["ok"], "a miss");
    let out = std::fs::read_to_string(root.join("a.txt")).unwrap();
    assert!(out.contains("12 99"), "{out}");
}

#[test]
fn a_policy_can_make_an_undeclared_read_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    let root = header_root(dir.path(), "root", "x.h", 1);
    let policy = root.join("strict.toml");
    std::fs::write(
        &policy,
        format!(
            "[policy]\nname = \"strict\"\nextends = [\"{}\"]\nrefuse_undeclared_reads = true\n",
            shipped_policy("linux.toml").display()
        ),
    )
    .unwrap();
    let out = run(
        &bin("replay"),
        &["--policy", "strict.toml", "--report", "r.json", "log.json"],
        &root,
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let doc = report(&root.join("r.json"));
    assert_eq!(doc["commands"][0]["status"], "denied", "{doc:#}");
    assert_eq!(doc["commands"][0]["path"], "inc/x.h", "{doc:#}");
    assert!(!root.join("main.o").exists(), "its output is discarded");
}

/// The tracer tells the cache of each file a traced tool opens to read or
/// runs, found, once each, while it runs (the cache hashes them then).
#[test]
fn the_tracer_tells_of_each_file_a_tool_reads_once() {
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, Mutex};

    let dir = tempfile::tempdir().expect("work root");
    let root = dir.path().canonicalize().expect("canonical root");
    std::fs::write(root.join("in.txt"), b"hello\n").expect("write input");
    // `cat` reads its input twice over and one missing file: the hook
    // hears of the input once and never of the missing file.
    let mut spec = replay::sandbox::SandboxSpec::new(
        PathBuf::from("/bin/sh"),
        "sh",
        vec![
            "-c".into(),
            "cat in.txt in.txt; cat missing.txt 2>/dev/null; true".into(),
        ],
        [("PATH".to_owned(), "/usr/bin:/bin".to_owned())].into(),
        root.clone(),
        &root,
    );
    spec.landlock = replay::sandbox::Want::Off;
    spec.network = replay::sandbox::Want::Off;
    let heard: Arc<Mutex<Vec<String>>> = Arc::default();
    let hook_heard = Arc::clone(&heard);
    let sink: Arc<Mutex<dyn std::io::Write + Send>> = Arc::new(Mutex::new(std::io::sink()));
    let options = replay::run::RunOptions {
        launcher: bin("replay"),
        limits: replay::run::watch::ToolLimits {
            timeout: Some(std::time::Duration::from_secs(60)),
            grace: std::time::Duration::from_secs(1),
            max_rss: None,
            max_output: None,
        },
        sample_interval: std::time::Duration::from_millis(5),
        prefix: String::new(),
        stdout: Arc::clone(&sink),
        stderr: sink,
        interrupted: Arc::new(AtomicBool::new(false)),
        trace: true,
        may_exec: None,
        gauge: None,
        on_read: Some(Arc::new(move |path: &str| {
            hook_heard.lock().expect("lock").push(path.to_owned());
        })),
    };
    let outcome = replay::run::run_tool(&spec, &options).expect("runs");
    assert!(outcome.success(), "{outcome:?}");
    let heard = heard.lock().expect("lock").clone();
    let input = root.join("in.txt").display().to_string();
    assert_eq!(
        heard.iter().filter(|p| **p == input).count(),
        1,
        "the input, read twice, is told once: {heard:?}"
    );
    assert_eq!(
        heard.iter().filter(|p| p.contains("libc.so")).count(),
        1,
        "the C library both sh and cat map is told once: {heard:?}"
    );
    assert!(
        !heard.iter().any(|p| p.ends_with("missing.txt")),
        "a file that was not found is not: {heard:?}"
    );
}
