//! The data-driven corpus: one case per file under `tests/corpus/<platform>/`.
//!
//! `NAME.json` is a log; `NAME.expect` says how to check it and what each
//! command's verdict must be. Adding a case is adding two files:
//!
//! ```text
//! # what the case guards
//! mode: run                 # default: audit
//! strict: true              # default: false
//! policy: custom.toml       # default: policies/<platform>.toml; else relative to the case
//! file: p0.bc               # an empty file in the work root
//! file: args.rsp = -O2 x.bc # a file with this content (`\n`, `\x7f` escaped)
//! dir: libdir
//! symlink: out -> {outside} # {outside} is a directory outside the root
//! hardlink: x.o -> {outside}/victim # a hard link to a new file there
//! fifo: pipe                # a named pipe
//! run: clang-14 -c a.c -o a.o   # a real tool, in the root, after `file:`s
//!                           # (clang-14, llvm-ar-14, llvm-objcopy-14 only)
//! header: refused platform.os-mismatch   # default: no header finding
//! 1: allowed
//! 2: refused args.forbidden-flag args.undeclared-input
//! ```
//!
//! A command's line lists its status and exactly the set of rules of its
//! findings; every command must have a line. The log is copied into the
//! root as `log.json`, which is protected (no command may write it).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use policy::{CheckOptions, Mode, Policy, Status};

use crate::support::{check_log, shipped, Root};

struct Expect {
    mode: Mode,
    strict: bool,
    policy: Option<PathBuf>,
    files: Vec<(String, String)>,
    dirs: Vec<String>,
    symlinks: Vec<(String, String)>,
    hardlinks: Vec<(String, String)>,
    fifos: Vec<String>,
    runs: Vec<Vec<String>>,
    header: Option<(Status, Vec<String>)>,
    commands: BTreeMap<u64, (Status, Vec<String>)>,
}

fn status(word: &str) -> Result<Status, String> {
    match word {
        "allowed" => Ok(Status::Allowed),
        "unverified" => Ok(Status::Unverified),
        "refused" => Ok(Status::Refused),
        other => Err(format!("unknown status `{other}`")),
    }
}

fn verdict(rest: &str) -> Result<(Status, Vec<String>), String> {
    let mut words = rest.split_whitespace();
    let s = status(words.next().ok_or("missing status")?)?;
    let mut rules: Vec<String> = words.map(str::to_owned).collect();
    rules.sort();
    rules.dedup();
    Ok((s, rules))
}

fn parse(case_dir: &Path, text: &str) -> Result<Expect, String> {
    let mut e = Expect {
        mode: Mode::Audit,
        strict: false,
        policy: None,
        files: Vec::new(),
        dirs: Vec::new(),
        symlinks: Vec::new(),
        hardlinks: Vec::new(),
        fifos: Vec::new(),
        runs: Vec::new(),
        header: None,
        commands: BTreeMap::new(),
    };
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("line {}: expected `key: value`", n + 1))?;
        let rest = rest.trim();
        match key.trim() {
            "mode" => {
                e.mode = match rest {
                    "audit" => Mode::Audit,
                    "run" => Mode::Run,
                    other => return Err(format!("line {}: mode `{other}`", n + 1)),
                }
            }
            "strict" => e.strict = rest == "true",
            "policy" => e.policy = Some(case_dir.join(rest)),
            "file" => match rest.split_once(" = ") {
                Some((name, content)) => e.files.push((name.to_owned(), content.to_owned())),
                None => e.files.push((rest.to_owned(), String::new())),
            },
            "dir" => e.dirs.push(rest.to_owned()),
            "symlink" => {
                let (link, target) = rest
                    .split_once(" -> ")
                    .ok_or_else(|| format!("line {}: expected `link -> target`", n + 1))?;
                e.symlinks.push((link.to_owned(), target.to_owned()));
            }
            "hardlink" => {
                let (link, target) = rest
                    .split_once(" -> ")
                    .ok_or_else(|| format!("line {}: expected `link -> target`", n + 1))?;
                e.hardlinks.push((link.to_owned(), target.to_owned()));
            }
            "fifo" => e.fifos.push(rest.to_owned()),
            "run" => {
                let argv: Vec<String> = rest.split_whitespace().map(str::to_owned).collect();
                let tool = argv.first().map(String::as_str);
                if !matches!(tool, Some("clang-14" | "llvm-ar-14" | "llvm-objcopy-14")) {
                    return Err(format!(
                        "line {}: `run:` takes clang-14, llvm-ar-14 or llvm-objcopy-14",
                        n + 1
                    ));
                }
                e.runs.push(argv);
            }
            "header" => e.header = Some(verdict(rest).map_err(|m| format!("line {}: {m}", n + 1))?),
            id => {
                let id: u64 = id
                    .parse()
                    .map_err(|_| format!("line {}: unknown key `{id}`", n + 1))?;
                e.commands.insert(
                    id,
                    verdict(rest).map_err(|m| format!("line {}: {m}", n + 1))?,
                );
            }
        }
    }
    Ok(e)
}

/// Runs one case; `Err` says every way it differs from its expectation.
fn run_case(platform: &str, log_path: &Path) -> Result<(), String> {
    let expect_path = log_path.with_extension("expect");
    let case_dir = log_path.parent().unwrap_or(Path::new("."));
    let text = std::fs::read_to_string(&expect_path).map_err(|e| format!("no expect file: {e}"))?;
    let expect = parse(case_dir, &text)?;
    let log = std::fs::read_to_string(log_path).map_err(|e| e.to_string())?;

    let outside = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = Root::new();
    for d in &expect.dirs {
        std::fs::create_dir_all(root.path().join(d)).map_err(|e| e.to_string())?;
    }
    for (name, content) in &expect.files {
        root.file(name, &content.replace("\\n", "\n").replace("\\x7f", "\x7f"));
    }
    for argv in &expect.runs {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| a.replace("{outside}", &outside.path().display().to_string()))
            .collect();
        let out = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .current_dir(root.path())
            .output()
            .map_err(|e| format!("cannot run `{}`: {e}", argv.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "`{}` failed: {}",
                argv.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    for (link, target) in &expect.symlinks {
        let target = target.replace("{outside}", &outside.path().display().to_string());
        let at = root.path().join(link);
        if let Some(parent) = at.parent() {
            std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
        }
        std::os::unix::fs::symlink(&target, &at).map_err(|e| e.to_string())?;
    }
    for (link, target) in &expect.hardlinks {
        let target =
            PathBuf::from(target.replace("{outside}", &outside.path().display().to_string()));
        std::fs::write(&target, "victim").map_err(|e| e.to_string())?;
        std::fs::hard_link(&target, root.path().join(link)).map_err(|e| e.to_string())?;
    }
    for fifo in &expect.fifos {
        let status = std::process::Command::new("mkfifo")
            .arg(root.path().join(fifo))
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            return Err(format!("mkfifo {fifo} failed"));
        }
    }
    root.file("log.json", &log);

    let policy = match &expect.policy {
        Some(p) => Policy::load(p).map_err(|e| format!("policy: {e}"))?,
        None => shipped(platform),
    };
    let options = CheckOptions {
        mode: expect.mode,
        strict: expect.strict,
        protected: vec![root.path().join("log.json")],
    };
    let out = check_log(&policy, root.path(), &log, options);

    let mut problems = Vec::new();
    let header_rules = |fs: &[policy::Finding]| {
        let mut r: Vec<String> = fs.iter().map(|f| f.rule.to_owned()).collect();
        r.sort();
        r.dedup();
        r
    };
    let header_status = out.header.iter().map(|f| f.status).max();
    match (&expect.header, header_status) {
        (None, None) => {}
        (Some((s, rules)), Some(got)) if *s == got && *rules == header_rules(&out.header) => {}
        (want, _) => problems.push(format!("header: want {want:?}, got {:#?}", out.header)),
    }
    for v in &out.verdicts {
        let mut rules: Vec<String> = v.findings.iter().map(|f| f.rule.to_owned()).collect();
        rules.sort();
        rules.dedup();
        match expect.commands.get(&v.id) {
            None => problems.push(format!(
                "command {}: no expectation; got {:?} {rules:?}",
                v.id, v.status
            )),
            Some((s, want)) if *s == v.status && *want == rules => {}
            Some((s, want)) => problems.push(format!(
                "command {}: want {} {want:?}, got {} {rules:?}\n    {}",
                v.id,
                s.as_str(),
                v.status.as_str(),
                v.findings
                    .iter()
                    .map(|f| f.message.clone())
                    .collect::<Vec<_>>()
                    .join("\n    ")
            )),
        }
    }
    for id in expect.commands.keys() {
        if !out.verdicts.iter().any(|v| v.id == *id) {
            problems.push(format!("command {id}: expected, but not in the log"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n  "))
    }
}

/// Runs every case of a platform; returns how many ran.
fn run_platform(platform: &str) -> usize {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(platform);
    let mut cases: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    cases.retain(|p| p.extension().is_some_and(|e| e == "json"));
    cases.sort();
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(why) = run_case(platform, case) {
            failures.push(format!("{}:\n  {why}", case.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    cases.len()
}

#[test]
fn corpus_linux() {
    assert!(run_platform("linux") >= 10);
}

#[test]
fn corpus_macos() {
    assert!(run_platform("macos") >= 3);
}

#[test]
fn corpus_windows() {
    assert!(run_platform("windows") >= 3);
}
