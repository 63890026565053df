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
/// an ifunc (which LLVM 14's `CloneModule` loses: partitions are re-read from
/// bitcode instead), a private constant whose address is compared.
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

    // The README says `main` calls a function in the other partition.
    let context = inkwell::context::Context::create();
    let defines = |i: usize, name: &str| {
        let path = tmp.path().join(format!("prog.aotc/p{i}.bc"));
        let module = inkwell::module::Module::parse_bitcode_from_path(&path, &context)
            .expect("partition bitcode reads back");
        module
            .get_function(name)
            .is_some_and(|f| f.count_basic_blocks() > 0)
    };
    let main_in = (0..2)
        .find(|&i| defines(i, "main"))
        .expect("main is defined");
    let add_in = (0..2).find(|&i| defines(i, "add")).expect("add is defined");
    assert_ne!(
        main_in, add_in,
        "main and add should be in different partitions"
    );
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

/// Writes a generated C program of `files` files with `fns` functions each:
/// same-named statics in every file, calls across files, tables of function
/// pointers, string literals (some identical across files) and a
/// constructor per file.
fn generate(dir: &Path, files: usize, fns: usize) -> Vec<std::path::PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut paths = Vec::new();
    let mut decls = String::new();
    for k in 0..files {
        for j in 0..fns {
            decls.push_str(&format!("int f_{k}_{j}(int x);\n"));
        }
        decls.push_str(&format!(
            "extern int (*table_{k}[{fns}])(int);\nconst char *name_{k}(void);\n"
        ));
    }
    std::fs::write(dir.join("gen.h"), &decls).expect("write header");
    for k in 0..files {
        let next = (k + 1) % files;
        let mut c = format!(
            "#include <stdio.h>\n#include \"gen.h\"\nstatic int state = {k};\nextern int ctor_hits;\n\
             static int helper(int x) {{ return x * 3 + state; }}\n\
             __attribute__((constructor)) static void init(void) {{ state += 1; ctor_hits++; }}\n\
             const char *name_{k}(void) {{ return \"file {k}\"; }}\n\
             static const char *shared_text(void) {{ return \"same in every file\"; }}\n"
        );
        for j in 0..fns {
            let call = if j > 0 {
                format!("f_{next}_{}(x - 1)", j - 1)
            } else {
                "(int)sizeof(\"same in every file\")".to_owned()
            };
            c.push_str(&format!(
                "int f_{k}_{j}(int x) {{ return helper(x) + {call} + (shared_text()[{j} % 18] & 7); }}\n"
            ));
        }
        let entries: Vec<String> = (0..fns).map(|j| format!("f_{k}_{j}")).collect();
        c.push_str(&format!(
            "int (*table_{k}[{fns}])(int) = {{{}}};\n",
            entries.join(", ")
        ));
        let path = dir.join(format!("gen{k:02}.c"));
        std::fs::write(&path, c).expect("write source");
        paths.push(path);
    }
    let mut main = String::from(
        "#include <stdio.h>\n#include \"gen.h\"\nint ctor_hits;\nint main(void) {\n  long sum = 0;\n",
    );
    for k in 0..files {
        main.push_str(&format!(
            "  for (int j = 0; j < {fns}; j++) sum += table_{k}[j](j + {k});\n  printf(\"%s %ld\\n\", name_{k}(), sum);\n"
        ));
    }
    main.push_str("  printf(\"constructors %d\\n\", ctor_hits);\n  return 0;\n}\n");
    let path = dir.join("main.c");
    std::fs::write(&path, main).expect("write main");
    paths.push(path);
    paths
}

/// A program of 25 files and about 1,000 functions, split into up to 16
/// partitions: scale, name clashes and cross-file references at once.
#[test]
fn generated_program_with_many_files_matches_clang() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let sources = generate(&tmp.path().join("src"), 25, 40);
    let inputs = bitcode(&sources, &tmp.path().join("bc"));
    let expected = run(&reference(&sources, &tmp.path().join("ref"), &[]));
    assert!(expected.0.contains("constructors 25"), "{}", expected.0);
    for partitions in ["auto", "5"] {
        let root = tmp.path().join(format!("p{partitions}"));
        let (stdout, code, count) = build_and_run(&inputs, &root, partitions, &["-O1"]);
        assert_eq!((stdout, code), expected, "--partitions {partitions}");
        if partitions == "auto" {
            assert_eq!(count, partition_count_for_auto(&root));
            assert!(
                count >= 8,
                "auto made {count} partitions for ~1,000 functions"
            );
        }
    }
}

/// The number of partition files `aotc` wrote under `root`.
fn partition_count_for_auto(root: &Path) -> usize {
    crate::support::partition_files(&root.join("prog.aotc")).len()
}

/// Regression: with `--emit obj`, statics shared across partitions become
/// hidden globals named after their source file, and stay global in the
/// relocatable object; two objects built from same-named sources then
/// failed to link together (`multiple definition of counter.aotc...`).
#[test]
fn two_objects_from_same_named_sources_link_together() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut objects = Vec::new();
    for prefix in ["first", "second"] {
        let dir = tmp.path().join(prefix);
        std::fs::create_dir_all(&dir).expect("mkdir");
        let source = dir.join("lib.c");
        let mut text =
            String::from("static int counter;\nstatic void bump(int n) { counter += n; }\n");
        for (i, f) in ["a", "b", "c", "d", "e", "f"].iter().enumerate() {
            text.push_str(&format!(
                "int {prefix}_{f}(void) {{ bump({}); return counter; }}\n",
                i + 1
            ));
        }
        std::fs::write(&source, text).expect("write source");
        let inputs = bitcode(std::slice::from_ref(&source), &dir.join("bc"));
        let out = dir.join("out");
        let object = out.join("lib.o");
        check(
            aotc()
                .args(&inputs)
                .arg("-o")
                .arg(&object)
                .arg("--log")
                .arg(out.join("log.json"))
                .args(["--emit", "obj", "--partitions", "6", "--exec"]),
        );
        objects.push(object);
    }
    let main = tmp.path().join("main.c");
    std::fs::write(
        &main,
        "#include <stdio.h>\nint first_a(void), first_f(void), second_a(void), second_f(void);\n\
         int main(void) { int x = first_a(); int y = first_f(); int z = second_f();\n\
         printf(\"%d %d %d %d\\n\", x, y, z, second_a()); return 0; }\n",
    )
    .expect("write main");
    let program = tmp.path().join("prog");
    check(
        std::process::Command::new("clang-14")
            .arg(&main)
            .args(&objects)
            .arg("-o")
            .arg(&program),
    );
    // Each object has its own counter: 1, 1+6, 6, 6+1.
    assert_eq!(run(&program), ("1 7 6 7\n".to_owned(), Some(0)));
}
