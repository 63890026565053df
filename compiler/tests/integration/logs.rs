//! The logs `aotc` writes: they read back with `cmdlog`, name the right
//! tools for each target, declare every file, and run nothing without
//! `--exec`.

use std::path::Path;

use crate::support::{aotc, bitcode, c_sources, check, program_dir, read_log};

fn hello() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll")
}

#[test]
fn log_only_runs_nothing_and_declares_every_file() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = bitcode(&c_sources(&program_dir("mixed")), &tmp.path().join("bc"));
    let root = tmp.path().join("out");
    check(
        aotc()
            .args(&inputs)
            .arg("-o")
            .arg(root.join("bin/prog"))
            .arg("--log")
            .arg(root.join("log.json"))
            .args(["--partitions", "3", "-l", "pthread", "-L", "/usr/lib"]),
    );
    assert!(
        !root.join("bin/prog").exists(),
        "nothing may run without --exec"
    );
    let doc = read_log(&root.join("log.json"));
    assert_eq!(doc.producer.name, "aotc");
    assert_eq!(doc.platform.os, cmdlog::Os::Linux);
    let kinds: Vec<&str> = doc.commands.iter().map(|c| c.tool.name()).collect();
    assert_eq!(kinds, ["opt", "llc", "opt", "llc", "opt", "llc", "cc"]);
    let ids: Vec<u64> = doc.commands.iter().map(|c| c.id).collect();
    assert_eq!(ids, (1..=7).collect::<Vec<u64>>());
    // Each command reads what the one before produced, and aotc wrote the
    // partition bitcode the first command of each pair reads.
    for pair in doc.commands[..6].chunks(2) {
        assert!(
            root.join(&pair[0].inputs[0]).is_file(),
            "{:?}",
            pair[0].inputs
        );
        assert_eq!(pair[0].outputs, pair[1].inputs);
        assert!(pair[1].args.contains(&"-filetype=obj".to_owned()));
        assert!(pair[1].args.contains(&"-relocation-model=pic".to_owned()));
        assert!(pair[1]
            .args
            .iter()
            .any(|a| a.starts_with("-mtriple=x86_64")));
        assert!(pair.iter().all(|c| c
            .cache_key
            .as_deref()
            .is_some_and(|k| k.starts_with("sha256:"))));
    }
    let link = &doc.commands[6];
    assert_eq!(link.outputs, ["bin/prog"]);
    assert_eq!(link.inputs.len(), 3);
    assert!(link.program.ends_with("clang-14") || link.program.ends_with("clang"));
    assert!(link.args.contains(&"-lpthread".to_owned()));
    assert!(link.args.contains(&"-L/usr/lib".to_owned()));
    for c in &doc.commands {
        assert!(Path::new(&c.program).is_absolute(), "{}", c.program);
        assert_eq!(c.cwd, ".");
    }
    assert!(
        !root.join("log.json.aotc-partial").exists(),
        "the temporary log must be renamed away"
    );
}

#[test]
fn macos_and_windows_logs_name_their_platform_tools() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for (os, linker, object, triple) in [
        ("macos", "ld64.lld", ".o", "-mtriple=x86_64-apple-macosx"),
        (
            "windows",
            "lld-link.exe",
            ".obj",
            "-mtriple=x86_64-pc-windows-msvc",
        ),
    ] {
        for emit in ["exe", "shared"] {
            let root = tmp.path().join(format!("{os}-{emit}"));
            check(
                aotc()
                    .arg(hello())
                    .arg("-o")
                    .arg(root.join("hello"))
                    .arg("--log")
                    .arg(root.join("log.json"))
                    .args(["--target-os", os, "--emit", emit, "--partitions", "2"]),
            );
            let doc = read_log(&root.join("log.json"));
            assert_eq!(doc.platform.os.as_str(), os);
            let link = doc.commands.last().expect("link");
            assert_eq!(link.tool.name(), "ld", "{os}");
            // Bare names: the foreign policy resolves them in its own dirs.
            assert_eq!(link.program, linker, "{os}");
            assert!(
                doc.commands.iter().all(|c| !c.program.contains('/')),
                "{os}: a host path leaked into a foreign log"
            );
            assert!(
                link.inputs.iter().all(|i| i.ends_with(object)),
                "{os}: {:?}",
                link.inputs
            );
            let llc = &doc.commands[1];
            assert!(
                llc.args.iter().any(|a| a.starts_with(triple)),
                "{os}: {:?}",
                llc.args
            );
            let shared_flag = if os == "macos" { "-dylib" } else { "-dll" };
            assert_eq!(
                link.args.iter().any(|a| a == shared_flag),
                emit == "shared",
                "{os} {emit}"
            );
        }
    }
}

#[test]
fn every_emit_kind_and_target_writes_a_readable_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    for os in ["linux", "macos", "windows"] {
        for emit in ["exe", "shared", "obj"] {
            let partitions = if os == "windows" && emit == "obj" {
                "1"
            } else {
                "auto"
            };
            let root = tmp.path().join(format!("{os}-{emit}"));
            check(
                aotc()
                    .arg(hello())
                    .arg("-o")
                    .arg(root.join("out"))
                    .arg("--log")
                    .arg(root.join("log.json"))
                    .args([
                        "--target-os",
                        os,
                        "--emit",
                        emit,
                        "--partitions",
                        partitions,
                    ]),
            );
            let doc = read_log(&root.join("log.json"));
            assert!(!doc.commands.is_empty(), "{os} {emit}");
            assert!(
                doc.commands.iter().any(|c| c.outputs == ["out"]),
                "{os} {emit}: nothing writes the output"
            );
        }
    }
}
