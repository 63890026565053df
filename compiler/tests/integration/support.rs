//! Fixtures: a temporary work directory, C sources compiled to bitcode with
//! `clang-14`, reference builds, and an `aotc` command builder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use cmdlog::{Document, Limits};

/// The `aotc` binary under test, with the driver protocol's variables
/// removed so an outer `replay drive` cannot leak into a test.
pub fn aotc() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_aotc"));
    cmd.env_remove("REPLAY_LOG_FD").env_remove("REPLAY_ROOT");
    cmd
}

/// `tests/programs/<name>`.
pub fn program_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/programs")
        .join(name)
}

/// The `.c` files of a test program, sorted.
pub fn c_sources(dir: &Path) -> Vec<PathBuf> {
    let mut sources: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("program directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "c"))
        .collect();
    sources.sort();
    sources
}

/// Runs a command and panics with its output if it fails.
pub fn check(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Compiles each source to bitcode in `dir` the way the issue says
/// (`-O0 -Xclang -disable-O0-optnone`). clang runs in the source's directory
/// on its bare file name, so `source_filename` (which names local symbols)
/// does not depend on where the test's temporary directory is.
pub fn bitcode(sources: &[PathBuf], dir: &Path) -> Vec<PathBuf> {
    bitcode_with(sources, dir, &[])
}

/// [`bitcode`] with extra clang flags (e.g. `-fPIC`).
pub fn bitcode_with(sources: &[PathBuf], dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    sources
        .iter()
        .map(|src| {
            let out = dir
                .join(src.file_stem().expect("stem"))
                .with_extension("bc");
            check(
                Command::new("clang-14")
                    .current_dir(src.parent().expect("source directory"))
                    .args(["-emit-llvm", "-c", "-O0", "-Xclang", "-disable-O0-optnone"])
                    .args(extra)
                    .arg(src.file_name().expect("file name"))
                    .arg("-o")
                    .arg(&out),
            );
            out
        })
        .collect()
}

/// Builds the program with `clang-14` directly, for reference.
pub fn reference(sources: &[PathBuf], out: &Path, extra: &[&str]) -> PathBuf {
    check(
        Command::new("clang-14")
            .arg("-Wno-override-module")
            .args(sources)
            .arg("-o")
            .arg(out)
            .args(extra),
    );
    out.to_owned()
}

/// Runs a built program and returns its stdout and exit code.
pub fn run(program: &Path) -> (String, Option<i32>) {
    let out = Command::new(program).output().expect("run program");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        out.status.code(),
    )
}

/// Reads a log back with the `cmdlog` reader, panicking on any error.
pub fn read_log(path: &Path) -> Document {
    let file = std::fs::File::open(path).expect("open log");
    cmdlog::read_document(std::io::BufReader::new(file), Limits::default())
        .unwrap_or_else(|e| panic!("`{}` does not read back: {e}", path.display()))
}

/// The partition bitcode files under `parts`, as (name, bytes), sorted.
pub fn partition_files(parts: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(parts)
        .expect("partition directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(".bc") && !n.ends_with(".opt.bc"))
        })
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read partition"))
        })
        .collect();
    files.sort();
    files
}
