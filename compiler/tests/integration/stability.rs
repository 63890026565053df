//! Stable partitioning: the same input gives byte-identical partitions and
//! log, and editing one function's body changes one partition only.

use std::path::{Path, PathBuf};

use crate::support::{aotc, bitcode, c_sources, check, partition_files, program_dir, read_log};

/// Runs `aotc` (log only) on `inputs` into `root` with `partitions`.
fn build(inputs: &[PathBuf], root: &Path, partitions: &str) {
    check(
        aotc()
            .args(inputs)
            .arg("-o")
            .arg(root.join("prog"))
            .arg("--log")
            .arg(root.join("log.json"))
            .args(["--partitions", partitions]),
    );
}

/// An edit of one source file of the `mixed` program.
type Edit<'a> = (&'a str, &'a dyn Fn(String) -> String);

/// Copies the `mixed` program to `dir`, applying `edit` to its file.
fn copy_mixed(dir: &Path, edit: Option<Edit<'_>>) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut out = Vec::new();
    for src in c_sources(&program_dir("mixed")) {
        let name = src.file_name().expect("name");
        let mut text = std::fs::read_to_string(&src).expect("read source");
        if let Some((_, edit)) = edit.filter(|(file, _)| name == *file) {
            let edited = edit(text.clone());
            assert_ne!(edited, text, "the edit must change {name:?}");
            text = edited;
        }
        std::fs::write(dir.join(name), text).expect("write source");
        out.push(dir.join(name));
    }
    std::fs::copy(program_dir("mixed").join("shared.h"), dir.join("shared.h"))
        .expect("copy header");
    out
}

#[test]
fn two_runs_give_byte_identical_partitions_and_log() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let inputs = bitcode(&c_sources(&program_dir("mixed")), &tmp.path().join("bc"));
    for partitions in ["1", "4", "auto"] {
        let (a, b) = (
            tmp.path().join(format!("a{partitions}")),
            tmp.path().join(format!("b{partitions}")),
        );
        build(&inputs, &a, partitions);
        build(&inputs, &b, partitions);
        let (pa, pb) = (
            partition_files(&a.join("prog.aotc")),
            partition_files(&b.join("prog.aotc")),
        );
        assert!(!pa.is_empty());
        assert_eq!(pa, pb, "--partitions {partitions}: partition files differ");
        let (la, lb) = (
            std::fs::read(a.join("log.json")).expect("log a"),
            std::fs::read(b.join("log.json")).expect("log b"),
        );
        assert_eq!(la, lb, "--partitions {partitions}: logs differ");
    }
}

/// Builds the program before and after `edit` with 2, 4 and 8 partitions
/// and checks that exactly one partition file changed, and that only its
/// two commands and the link got new cache keys.
fn assert_one_partition_changes(tmp: &Path, label: &str, edit: Edit<'_>) {
    let before = copy_mixed(&tmp.join(format!("{label}-src-before")), None);
    let before = bitcode(&before, &tmp.join(format!("{label}-bc-before")));
    let after = copy_mixed(&tmp.join(format!("{label}-src-after")), Some(edit));
    let after = bitcode(&after, &tmp.join(format!("{label}-bc-after")));

    for partitions in ["2", "4", "8"] {
        let a = tmp.join(format!("{label}-before{partitions}"));
        let b = tmp.join(format!("{label}-after{partitions}"));
        build(&before, &a, partitions);
        build(&after, &b, partitions);
        let (pa, pb) = (
            partition_files(&a.join("prog.aotc")),
            partition_files(&b.join("prog.aotc")),
        );
        assert_eq!(pa.len(), pb.len());
        let changed: Vec<&str> = pa
            .iter()
            .zip(&pb)
            .filter(|(x, y)| x.1 != y.1)
            .map(|(x, _)| x.0.as_str())
            .collect();
        assert_eq!(
            changed.len(),
            1,
            "{label}, --partitions {partitions}: changed {changed:?}"
        );

        let (la, lb) = (read_log(&a.join("log.json")), read_log(&b.join("log.json")));
        let rekeyed: Vec<u64> = la
            .commands
            .iter()
            .zip(&lb.commands)
            .filter(|(x, y)| x.cache_key != y.cache_key)
            .map(|(x, _)| x.id)
            .collect();
        assert_eq!(
            rekeyed.len(),
            3,
            "{label}, --partitions {partitions}: rekeyed {rekeyed:?}"
        );
    }
}

/// Editing `sum_ints` (a new string literal, a new call to `printf`) changes
/// only the partition that holds it.
#[test]
fn editing_one_function_changes_exactly_one_partition() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edit = |t: String| {
        t.replace(
            "  int total = 0;\n",
            "  int total = 0;\n  if (n < 0)\n    printf(\"negative count %d\\n\", n);\n",
        )
    };
    assert_one_partition_changes(tmp.path(), "util", ("util.c", &edit));
}

/// Regression guard: clang numbers string literals per file (`.str`,
/// `.str.1`, ...), so a literal added to the first function of `state.c`
/// renumbers the literals of every later function there. Those must not
/// change other partitions: constants are named by content.
#[test]
fn a_new_string_literal_does_not_rename_the_others() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let edit = |t: String| {
        t.replace(
            "static void init_late(void) { strcat(init_log, \"late;\"); }",
            "static void init_late(void) {\n  if (init_log[0] == 'x')\n    puts(\"never\");\n  strcat(init_log, \"late;\");\n}",
        )
    };
    assert_one_partition_changes(tmp.path(), "state", ("state.c", &edit));
}
