//! Real programs through `aotc --exec`, compared with the same program
//! built by `clang-14` directly.

use std::path::Path;

use crate::support::{
    aotc, bitcode, bitcode_with, c_sources, check, program_dir, read_log, reference, run,
};

/// Builds `inputs` with `aotc --exec --partitions <n>` and returns the
/// program's output and the number of partitions in the log.
fn build_and_run(
    inputs: &[std::path::PathBuf],
    root: &Path,
    partitions: &str,
    extra: &[&str],
) -> (String, Option<i32>, usize) {
    let output = root.join("prog");
    let log = root.join("log.json");
    check(
        aotc()
            .args(inputs)
            .arg("-o")
            .arg(&output)
            .arg("--log")
            .arg(&log)
            .args(["--partitions", partitions, "--exec"])
            .args(extra),
    );
    let doc = read_log(&log);
    let opts = doc
        .commands
        .iter()
        .filter(|c| c.tool.name() == "opt")
        .count();
    let (stdout, code) = run(&output);
    (stdout, code, opts)
}

/// The `mixed` program: static functions and globals with clashing names,
/// function pointers across files, constructors with priorities, a
/// destructor, varargs, thread-locals (and a thread), weak and extern-weak
/// symbols, aliases to external and static functions, and computed goto.
#[test]
fn mixed_c_program_matches_clang_for_1_2_and_auto_partitions() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = c_sources(&program_dir("mixed"));
    let inputs = bitcode(&sources, &tmp.path().join("bc"));
    let expected = run(&reference(
        &sources,
        &tmp.path().join("ref"),
        &["-lpthread"],
    ));
    assert!(
        expected.0.contains("interpret=18"),
        "reference output: {}",
        expected.0
    );

    for (partitions, want) in [("1", Some(1)), ("2", Some(2)), ("auto", None)] {
        let root = tmp.path().join(format!("p{partitions}"));
        let (stdout, code, count) = build_and_run(&inputs, &root, partitions, &["-l", "pthread"]);
        assert_eq!((stdout, code), expected, "--partitions {partitions}");
        if let Some(want) = want {
            assert_eq!(count, want, "--partitions {partitions}");
        } else {
            assert!(count > 1, "auto should split this program, made {count}");
        }
    }
}

/// Many partitions put almost every symbol in its own module, which is where
/// externalized statics, TLS declarations and blockaddress tables break
/// first; also at -O0 and -O3.
#[test]
fn mixed_c_program_survives_many_partitions_at_every_level() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = c_sources(&program_dir("mixed"));
    let inputs = bitcode(&sources, &tmp.path().join("bc"));
    let expected = run(&reference(
        &sources,
        &tmp.path().join("ref"),
        &["-lpthread"],
    ));
    for (partitions, level) in [("7", "-O0"), ("16", "-O3"), ("3", "-O1")] {
        let root = tmp.path().join(format!("p{partitions}{level}"));
        let (stdout, code, count) =
            build_and_run(&inputs, &root, partitions, &["-l", "pthread", level]);
        assert_eq!(
            (stdout, code),
            expected,
            "--partitions {partitions} {level}"
        );
        assert_eq!(count.to_string(), partitions);
    }
}

/// Hand-written IR: comdat with linkonce_odr members, `llvm.used`,
/// `llvm.global_ctors`, module assembly defining a symbol, an internal alias,
/// a private constant whose address is compared.
#[test]
fn special_ir_matches_clang_for_every_partition_count() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = program_dir("ir").join("special.ll");
    let expected = run(&reference(
        std::slice::from_ref(&input),
        &tmp.path().join("ref"),
        &[],
    ));
    assert!(
        expected.0.contains("asm=42"),
        "reference output: {}",
        expected.0
    );
    for partitions in ["1", "2", "3", "8", "auto"] {
        let root = tmp.path().join(format!("p{partitions}"));
        let (stdout, code, _) = build_and_run(std::slice::from_ref(&input), &root, partitions, &[]);
        assert_eq!((stdout, code), expected, "--partitions {partitions}");
    }
}

/// The README's quick-start example builds and prints what it should.
#[test]
fn hello_example_builds_and_runs() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll");
    let expected = run(&reference(
        std::slice::from_ref(&input),
        &tmp.path().join("ref"),
        &[],
    ));
    let (stdout, code, count) = build_and_run(std::slice::from_ref(&input), tmp.path(), "2", &[]);
    assert_eq!((stdout, code), expected);
    assert_eq!(count, 2);
}

/// `--emit obj` links the partitions with `ld -r` into one object that a C
/// compiler can link into the same program.
#[test]
fn obj_output_links_into_a_working_program() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = c_sources(&program_dir("mixed"));
    let inputs = bitcode(&sources, &tmp.path().join("bc"));
    let expected = run(&reference(
        &sources,
        &tmp.path().join("ref"),
        &["-lpthread"],
    ));

    let obj = tmp.path().join("obj/all.o");
    check(
        aotc()
            .args(&inputs)
            .arg("-o")
            .arg(&obj)
            .arg("--log")
            .arg(tmp.path().join("obj/log.json"))
            .args(["--partitions", "3", "--emit", "obj", "--exec"]),
    );
    let linked = tmp.path().join("from-obj");
    check(
        std::process::Command::new("clang-14")
            .arg(&obj)
            .arg("-o")
            .arg(&linked)
            .arg("-lpthread"),
    );
    assert_eq!(run(&linked), expected);
    let log = read_log(&tmp.path().join("obj/log.json"));
    let last = log.commands.last().expect("commands");
    assert_eq!(last.tool.name(), "ld");
    assert_eq!(last.args[0], "-r");
}

/// `--emit shared` makes a library (from `-fPIC` bitcode) that the program's
/// `main` links against and runs with, exactly as the all-in-one build.
#[test]
fn shared_output_serves_a_program_linked_against_it() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = c_sources(&program_dir("mixed"));
    let expected = run(&reference(
        &sources,
        &tmp.path().join("ref"),
        &["-lpthread"],
    ));
    let (main, rest): (Vec<_>, Vec<_>) = sources
        .iter()
        .cloned()
        .partition(|p| p.file_name().is_some_and(|n| n == "main.c"));
    let inputs = bitcode_with(&rest, &tmp.path().join("bc"), &["-fPIC"]);
    let lib_dir = tmp.path().join("lib");
    check(
        aotc()
            .args(&inputs)
            .arg("-o")
            .arg(lib_dir.join("libmixed.so"))
            .arg("--log")
            .arg(lib_dir.join("log.json"))
            .args(["--partitions", "3", "--emit", "shared", "--exec"]),
    );
    let program = tmp.path().join("prog");
    check(
        std::process::Command::new("clang-14")
            .args(&main)
            .arg("-o")
            .arg(&program)
            .arg("-L")
            .arg(&lib_dir)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .args(["-lmixed", "-lpthread"]),
    );
    assert_eq!(run(&program), expected);
    let log = read_log(&lib_dir.join("log.json"));
    assert_eq!(log.commands.last().expect("link").args[0], "-shared");
}
