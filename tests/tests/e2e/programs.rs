//! A real multi-file C program (compiler/tests/programs/mixed: statics with
//! clashing names, globals, function pointers across files, constructors
//! and a destructor, varargs, thread-locals and a thread, weak symbols,
//! aliases, computed goto) through `aotc --log` and `replay`, compared with
//! the same program built by `clang-14` directly.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{bin, repo, run, shipped_policy, text};

const CLANG: &str = "clang-14";

fn sources() -> Vec<PathBuf> {
    let dir = repo().join("compiler/tests/programs/mixed");
    let mut sources: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    sources
}

/// Runs a program; its stdout and exit code.
fn output_of(program: &Path) -> (String, Option<i32>) {
    let out = Command::new(program).output().unwrap();
    (text(&out.stdout), out.status.code())
}

fn clang(args: &[&str], dir: &Path) {
    let out = run(Path::new(CLANG), args, dir);
    assert!(
        out.status.success(),
        "clang-14 {args:?}: {}",
        text(&out.stderr)
    );
}

#[test]
fn mixed_c_program_through_replay_matches_clang_for_1_2_and_auto_partitions() {
    let dir = tempfile::tempdir().unwrap();
    let sources = sources();
    let shared = repo().join("compiler/tests/programs/mixed");
    let include = format!("-I{}", shared.display());

    // The reference, built by clang-14 directly.
    let mut args: Vec<String> = sources.iter().map(|s| s.display().to_string()).collect();
    args.extend(["-O1", "-lpthread", "-o", "ref"].map(String::from));
    args.push(include.clone());
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    clang(&refs, dir.path());
    let expected = output_of(&dir.path().join("ref"));
    assert!(expected.0.contains("interpret="), "{expected:?}");

    // Bitcode made as the docs say: -O0 without optnone.
    let mut inputs = Vec::new();
    for source in &sources {
        let stem = source.file_stem().unwrap().to_str().unwrap();
        let bc = format!("{stem}.bc");
        clang(
            &[
                "-emit-llvm",
                "-c",
                "-O0",
                "-Xclang",
                "-disable-O0-optnone",
                &include,
                source.to_str().unwrap(),
                "-o",
                &bc,
            ],
            dir.path(),
        );
        inputs.push(dir.path().join(bc));
    }

    let policy = shipped_policy("linux.toml");
    for partitions in ["1", "2", "auto"] {
        let root = dir.path().join(format!("p{partitions}"));
        // A library directory inside the root: the log must name it
        // root-relative, or the policy refuses it as outside the root.
        std::fs::create_dir_all(root.join("lib")).unwrap();
        let mut args: Vec<String> = inputs.iter().map(|p| p.display().to_string()).collect();
        args.extend(
            [
                "-o",
                "prog",
                "--log",
                "log.json",
                "--partitions",
                partitions,
                "-l",
                "pthread",
                "-L",
                "lib",
            ]
            .map(String::from),
        );
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let aotc = run(&bin("aotc"), &refs, &root);
        assert!(aotc.status.success(), "aotc: {}", text(&aotc.stderr));
        let log = std::fs::read_to_string(root.join("log.json")).unwrap();
        assert!(log.contains("\"-Llib\""), "{log}");

        let replay = run(
            &bin("replay"),
            &["--policy", policy.to_str().unwrap(), "log.json"],
            &root,
        );
        assert!(
            replay.status.success(),
            "--partitions {partitions}: {}{}",
            text(&replay.stdout),
            text(&replay.stderr)
        );
        assert_eq!(
            output_of(&root.join("prog")),
            expected,
            "--partitions {partitions}"
        );
    }
}
