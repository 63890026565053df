//! `replay import compdb` on a real CMake+Ninja C project (issue 18): the
//! database `ninja -t compdb` writes is imported, checked and run by
//! `replay` under `policies/linux-cc.toml`, and the programs it built
//! behave as the ones Ninja built; the same database with one injected
//! attack is refused with nothing run.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{replay_command, shipped_policy, text, walk};

/// A small C project: a static library, a program and a test program,
/// with the flags an ordinary hardened CMake build gives, and a define
/// whose value CMake must quote in the command string.
const FILES: &[(&str, &str)] = &[
    (
        "CMakeLists.txt",
        r#"cmake_minimum_required(VERSION 3.13)
project(calc C)
set(CMAKE_C_STANDARD 11)
add_compile_options(-Wall -Wextra -fstack-protector-strong)
add_compile_definitions(_FORTIFY_SOURCE=2 "GREETING=\"hello, world\"")
add_library(calc STATIC src/calc.c)
target_include_directories(calc PUBLIC include)
add_executable(calcprog src/main.c)
target_link_libraries(calcprog calc)
target_link_options(calcprog PRIVATE -Wl,-z,relro,-z,now)
add_executable(calctest tests/test_calc.c)
target_link_libraries(calctest calc)
"#,
    ),
    ("include/calc.h", "int calc_add(int a, int b);\nint calc_mul(int a, int b);\n"),
    (
        "src/calc.c",
        "#include \"calc.h\"\nint calc_add(int a, int b) { return a + b; }\nint calc_mul(int a, int b) { return a * b; }\n",
    ),
    (
        "src/main.c",
        r#"#include <stdio.h>
#include <stdlib.h>
#include "calc.h"
int main(int argc, char **argv) {
  int a = argc > 2 ? atoi(argv[1]) : 6, b = argc > 2 ? atoi(argv[2]) : 7;
  printf("%s: %d + %d = %d, %d * %d = %d\n", GREETING, a, b, calc_add(a, b), a, b, calc_mul(a, b));
  return 0;
}
"#,
    ),
    (
        "tests/test_calc.c",
        r#"#include <stdio.h>
#include "calc.h"
int main(void) {
  int failed = 0;
  if (calc_add(2, 3) != 5) { puts("calc_add failed"); failed = 1; }
  if (calc_mul(4, 5) != 20) { puts("calc_mul failed"); failed = 1; }
  if (!failed) puts("calc tests: 2 passed");
  return failed;
}
"#,
    ),
];

/// Writes the project into `root`, configures it with CMake for Ninja
/// and clang-14 in `root/build`, and writes `ninja -t compdb` there.
fn configure(root: &Path) -> PathBuf {
    configure_project(root, FILES, "-DCMAKE_C_COMPILER=clang-14")
}

/// Writes `files` into `root`, configures them with CMake for Ninja and
/// `compiler` (a `-DCMAKE_..._COMPILER=` flag) in `root/build`, and
/// writes `ninja -t compdb` there.
fn configure_project(root: &Path, files: &[(&str, &str)], compiler: &str) -> PathBuf {
    for (path, body) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, body).unwrap();
    }
    let build = root.join("build");
    let out = Command::new("cmake")
        .args(["-G", "Ninja", compiler, "-DCMAKE_BUILD_TYPE=Release"])
        .args(["-DCMAKE_EXPORT_COMPILE_COMMANDS=ON", "-S"])
        .arg(root)
        .arg("-B")
        .arg(&build)
        .output()
        .expect("cmake (run scripts/install-deps.sh: it installs cmake and ninja-build)");
    assert!(
        out.status.success(),
        "cmake: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let out = Command::new("ninja")
        .args(["-t", "compdb"])
        .current_dir(&build)
        .output()
        .expect("ninja (run scripts/install-deps.sh: it installs ninja-build)");
    assert!(
        out.status.success(),
        "ninja -t compdb: {}",
        text(&out.stderr)
    );
    let db = build.join("compdb.json");
    std::fs::write(&db, &out.stdout).unwrap();
    db
}

/// Runs a program built in `build`, returning (exit code, stdout).
fn program(build: &Path, name: &str) -> (Option<i32>, String) {
    let out = Command::new(build.join(name)).output().unwrap();
    (out.status.code(), text(&out.stdout))
}

fn policy() -> String {
    shipped_policy("linux-cc.toml").display().to_string()
}

/// `replay import compdb DB --root ROOT --policy linux-cc.toml [-o LOG]`.
fn import(root: &Path, db: &Path, log: &str) -> std::process::Output {
    replay_command()
        .args(["import", "compdb"])
        .arg(db)
        .args(["--root", ".", "--policy", &policy(), "-o", log])
        .current_dir(root)
        .output()
        .unwrap()
}

/// What the build directory holds that CMake's configure step did not
/// write: objects, archives, programs.
fn built(build: &Path) -> Vec<PathBuf> {
    walk(build)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            name.ends_with(".o") || name.ends_with(".a") || name == "calcprog" || name == "calctest"
        })
        .collect()
}

#[test]
fn a_cmake_ninja_project_builds_through_import_and_replay_as_ninja_builds_it() {
    // The reference: the same project built by Ninja itself.
    let reference = tempfile::tempdir().unwrap();
    configure(reference.path());
    let ref_build = reference.path().join("build");
    let out = Command::new("ninja")
        .current_dir(&ref_build)
        .output()
        .unwrap();
    assert!(out.status.success(), "ninja: {}", text(&out.stdout));

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure(root);
    let build = root.join("build");

    let out = import(root, &db, "replay.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    // Compiles, one archive, two links; CMake's regeneration rule and the
    // phony rules are left out and said so.
    assert!(said.contains("imported 6 commands"), "{said}");
    assert!(said.contains("--regenerate-during-build"), "{said}");
    assert!(said.contains("folded into the archiver"), "{said}");
    assert!(built(&build).is_empty(), "import runs nothing");

    let out = replay_command()
        .args(["--policy", &policy(), "replay.log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let ours = program(&build, "calcprog");
    assert_eq!(ours, program(&ref_build, "calcprog"));
    assert_eq!(
        ours,
        (Some(0), "hello, world: 6 + 7 = 13, 6 * 7 = 42\n".to_owned())
    );
    let tests = program(&build, "calctest");
    assert_eq!(tests, program(&ref_build, "calctest"));
    assert_eq!(tests, (Some(0), "calc tests: 2 passed\n".to_owned()));
}

#[test]
fn an_injected_plugin_is_refused_at_import_and_nothing_runs() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure(root);
    let build = root.join("build");
    let clean = std::fs::read_to_string(&db).unwrap();
    let attacked = clean.replacen(" -c ", " -fplugin=/tmp/x.so -c ", 1);
    assert_ne!(attacked, clean);
    std::fs::write(&db, attacked).unwrap();

    let out = import(root, &db, "attack.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{said}{}", text(&out.stderr));
    assert!(said.contains("of the database (it writes"), "{said}");
    assert!(said.contains("-fplugin=/tmp/x.so"), "{said}");

    let out = replay_command()
        .args(["--policy", &policy(), "attack.log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("args.forbidden-flag"),
        "{}",
        text(&out.stderr)
    );
    assert!(built(&build).is_empty(), "nothing ran: {:?}", built(&build));
}

#[test]
fn an_output_outside_the_root_is_left_out_and_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure(root);
    let evil = outside.path().join("calcprog");
    let clean = std::fs::read_to_string(&db).unwrap();
    let attacked = clean.replacen("-o calcprog", &format!("-o {}", evil.display()), 1);
    assert_ne!(attacked, clean);
    std::fs::write(&db, attacked).unwrap();

    let out = import(root, &db, "attack.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(
        said.contains(&format!(
            "writes `{}`, outside the work root",
            evil.display()
        )),
        "{said}"
    );
    assert!(said.contains("imported 5 commands"), "{said}");
    let log = std::fs::read_to_string(root.join("attack.log.json")).unwrap();
    assert!(
        !log.contains(&evil.display().to_string()),
        "never rewritten into the log"
    );
    assert!(!evil.exists());
}

/// A small C++ project: a static library using the standard library, and
/// a program.
const CXX_FILES: &[(&str, &str)] = &[
    (
        "CMakeLists.txt",
        "cmake_minimum_required(VERSION 3.13)\nproject(p CXX)\nset(CMAKE_CXX_STANDARD 17)\n\
         add_library(shapes STATIC src/shapes.cpp)\nadd_executable(p src/main.cpp)\n\
         target_link_libraries(p shapes)\n",
    ),
    (
        "src/shapes.h",
        "#include <string>\n#include <vector>\nstd::string describe(const std::vector<int>& v);\n",
    ),
    (
        "src/shapes.cpp",
        "#include \"shapes.h\"\n#include <numeric>\n#include <sstream>\n\
         std::string describe(const std::vector<int>& v) {\n  std::ostringstream s;\n  \
         s << \"n=\" << v.size() << \" sum=\" << std::accumulate(v.begin(), v.end(), 0);\n  return s.str();\n}\n",
    ),
    (
        "src/main.cpp",
        "#include <iostream>\n#include \"shapes.h\"\nint main() { std::cout << describe({1, 2, 3, 4}) << std::endl; }\n",
    ),
];

#[test]
fn a_cmake_ninja_cxx_project_builds_through_import_and_replay() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure_project(root, CXX_FILES, "-DCMAKE_CXX_COMPILER=clang++-14");
    let out = import(root, &db, "replay.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    assert!(said.contains("imported 4 commands"), "{said}");
    let log = std::fs::read_to_string(root.join("replay.log.json")).unwrap();
    assert!(log.contains(r#""tool":"c++""#), "{log}");
    let out = replay_command()
        .args(["--policy", &policy(), "replay.log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(
        program(&root.join("build"), "p"),
        (Some(0), "n=4 sum=10\n".to_owned())
    );
}

#[test]
fn a_shared_library_with_soname_links_builds_and_loads_through_replay() {
    // The calc project with `calc` shared, versioned: CMake links it as
    // `libcalc.so.1.2.3` and makes `libcalc.so.1` and `libcalc.so` with
    // `cmake -E cmake_symlink_library`, imported as built-in symlinks.
    let cmake = FILES[0].1.replace(
        "add_library(calc STATIC src/calc.c)",
        "add_library(calc SHARED src/calc.c)\nset_target_properties(calc PROPERTIES VERSION 1.2.3 SOVERSION 1)",
    );
    let mut files = FILES.to_vec();
    files[0] = ("CMakeLists.txt", cmake.as_str());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure_project(root, &files, "-DCMAKE_C_COMPILER=clang-14");
    let build = root.join("build");
    let out = import(root, &db, "replay.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    let log = std::fs::read_to_string(root.join("replay.log.json")).unwrap();
    assert_eq!(log.matches("\"tool\":\"symlink\"").count(), 2, "{log}");
    assert!(!said.contains("cmake_symlink_library"), "{said}");

    // In parallel, so the links are scheduled by what they read and write.
    let out = replay_command()
        .args(["--policy", &policy(), "-j", "2", "replay.log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let link = |name: &str| std::fs::read_link(build.join(name)).unwrap();
    assert_eq!(link("libcalc.so.1"), Path::new("libcalc.so.1.2.3"));
    assert_eq!(link("libcalc.so"), Path::new("libcalc.so.1"));
    assert_eq!(
        program(&build, "calcprog"),
        (Some(0), "hello, world: 6 + 7 = 13, 6 * 7 = 42\n".to_owned())
    );
    // The program loads the library replay linked, by its soname link.
    let ldd = Command::new("ldd")
        .arg(build.join("calctest"))
        .output()
        .unwrap();
    let ldd = text(&ldd.stdout);
    let expected = format!("{} ", build.join("libcalc.so.1").display());
    assert!(ldd.contains(&expected), "{ldd}");
    assert_eq!(
        program(&build, "calctest"),
        (Some(0), "calc tests: 2 passed\n".to_owned())
    );
}

#[test]
fn meson_and_autotools_flags_run_on_real_clang_with_split_dwarf_declared() {
    // Flags Meson and autotools builds emit: split DWARF (its `.dwo`
    // declared by the importer, its recorded name pinned by replay),
    // hidden visibility, `--as-needed`, `--no-undefined`, a soname.
    let cmake = FILES[0].1.replace(
        "add_library(calc STATIC src/calc.c)",
        "add_library(calc SHARED src/calc.c)\nset_target_properties(calc PROPERTIES SOVERSION 1)\nadd_compile_options(-g -gsplit-dwarf)\ntarget_compile_options(calc PRIVATE -MQ calc-target)\ntarget_link_options(calc PRIVATE -Wl,--as-needed -Wl,--no-undefined)",
    ) + "target_compile_options(calcprog PRIVATE -fvisibility=hidden)\n";
    let mut files = FILES.to_vec();
    files[0] = ("CMakeLists.txt", cmake.as_str());
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let db = configure_project(root, &files, "-DCMAKE_C_COMPILER=clang-14");
    let build = root.join("build");
    let out = import(root, &db, "replay.log.json");
    let said = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{}", text(&out.stderr));
    let log = std::fs::read_to_string(root.join("replay.log.json")).unwrap();
    for flag in [
        "-gsplit-dwarf",
        "-fvisibility=hidden",
        "-Wl,--as-needed",
        "-Wl,--no-undefined",
        "-Wl,-soname,libcalc.so.1",
        "-MQ",
    ] {
        assert!(log.contains(flag), "{flag} not in {log}");
    }
    let out = replay_command()
        .args(["--policy", &policy(), "replay.log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {}\nstderr: {}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(
        program(&build, "calctest"),
        (Some(0), "calc tests: 2 passed\n".to_owned())
    );
    // The object names its `.dwo` as an unstaged compile would, and the
    // `.dwo` is committed beside it.
    let object = build.join("CMakeFiles/calctest.dir/tests/test_calc.c.o");
    let dwo = build.join("CMakeFiles/calctest.dir/tests/test_calc.c.dwo");
    assert!(dwo.is_file(), "{}", dwo.display());
    let dump = Command::new("llvm-dwarfdump-14")
        .arg(&object)
        .output()
        .unwrap();
    let dump = text(&dump.stdout);
    assert!(
        dump.contains("DW_AT_dwo_name\t(\"CMakeFiles/calctest.dir/tests/test_calc.c.dwo\")"),
        "{dump}"
    );
    assert!(!dump.contains(".replay-stage"), "{dump}");
}

#[test]
fn split_dwarf_without_its_dwo_declared_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(root.join("a.c"), "int f(void) { return 1; }\n").unwrap();
    crate::support::write_log(
        root,
        vec![
            serde_json::json!({"id": 1, "tool": "cc", "program": "clang-14",
            "args": ["-g", "-gsplit-dwarf", "-c", "a.c", "-o", "a.o"], "cwd": ".", "env": {},
            "inputs": ["a.c"], "outputs": ["a.o"]}),
        ],
    );
    let out = replay_command()
        .args(["--policy", &policy(), "log.json"])
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("args.undeclared-output"), "{stderr}");
    assert!(stderr.contains("a.dwo"), "{stderr}");
    assert!(!root.join("a.o").exists());
}
