//! Atomic outputs: a tool writes each declared output under a temporary
//! name in the same directory, and only after it succeeded are the
//! temporaries renamed into place. A tool that fails, is killed, or is
//! interrupted leaves the previous outputs exactly as they were.
//!
//! The executor knows which arguments name declared outputs (the policy
//! insists that outputs are named by arguments), so it rewrites those
//! arguments to the temporary names: a whole argument (`p0.o`), the value of
//! an `=` flag (`-Map=out.map`), or glued to `-o` (`-oout.o`). An output no
//! argument names is written in place; its previous version is moved aside
//! first and restored on failure, so it is not lost either.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cmdlog::path::normalize_under;

/// Why outputs could not be staged or committed.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// A declared output leaves the work root (the reader and the policy
    /// refuse this first; this is a last line of defence).
    #[error("output `{0}` is not inside the work root")]
    Escapes(String),
    /// The tool succeeded but did not write a declared output.
    #[error("the tool exited 0 but did not write the declared output `{0}`")]
    Missing(String),
    /// Moving a previous output aside failed.
    #[error("cannot move the previous `{path}` aside")]
    Backup {
        /// The output.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Renaming a finished output into place failed.
    #[error("cannot move the new `{path}` into place")]
    Commit {
        /// The output.
        path: String,
        /// Why.
        #[source]
        source: io::Error,
    },
}

/// One declared output and where the tool writes it meanwhile.
#[derive(Debug)]
struct Staged {
    /// The output as declared (root-relative).
    declared: String,
    /// Its final place.
    target: PathBuf,
    /// Where the tool writes it: a temporary name, or the target itself.
    written: PathBuf,
    /// Where its previous version waits, for outputs written in place.
    backup: Option<PathBuf>,
}

/// The outputs of one command while it runs; [`Staging::commit`] or
/// [`Staging::abort`] ends it.
#[derive(Debug)]
pub struct Staging {
    staged: Vec<Staged>,
    /// The command's id, in the names of its temporaries.
    id: u64,
}

/// The name a tool writes `basename` under: hidden, unique to this command
/// and this `replay` process, keeping the extension (some tools pick the
/// format from it).
fn temp_name(basename: &str, id: u64) -> String {
    format!(".replay-{id}-{}-{basename}", std::process::id())
}

/// Splits `candidate` into (directory part including the separator, name).
fn split_name(candidate: &str) -> (&str, &str) {
    match candidate.rfind(['/', '\\']) {
        Some(at) => candidate.split_at(at + 1),
        None => ("", candidate),
    }
}

/// The ways an argument can name a path: the part of `arg` that is the
/// path, and the text before it.
fn path_parts(arg: &str) -> Vec<(&str, &str)> {
    let mut parts = vec![("", arg)];
    if arg.starts_with('-') {
        if let Some(at) = arg.find('=') {
            parts.push(arg.split_at(at + 1));
        }
        if arg.len() > 2 && arg.starts_with("-o") && !arg.starts_with("-o=") {
            parts.push(arg.split_at(2));
        }
    }
    parts
}

impl Staging {
    /// Plans the outputs of command `id`, run in `cwd` (root-relative) under
    /// `root`, and returns the arguments rewritten to the temporary names.
    pub fn plan(
        root: &Path,
        cwd: &str,
        args: &[String],
        outputs: &[String],
        id: u64,
    ) -> Result<(Vec<String>, Staging), StagingError> {
        let mut staged = Vec::with_capacity(outputs.len());
        for declared in outputs {
            let normal = normalize_under(".", declared)
                .ok_or_else(|| StagingError::Escapes(declared.clone()))?;
            staged.push(Staged {
                declared: declared.clone(),
                target: root.join(&normal),
                written: root.join(&normal),
                backup: None,
            });
        }
        let mut rewritten = Vec::with_capacity(args.len());
        for arg in args {
            let mut new = arg.clone();
            for (head, candidate) in path_parts(arg) {
                let Some(resolved) = normalize_under(cwd, candidate) else {
                    continue;
                };
                let hit = staged.iter_mut().find(|s| {
                    normalize_under(".", &s.declared).as_deref() == Some(resolved.as_str())
                });
                if let Some(output) = hit {
                    let (dir, name) = split_name(candidate);
                    let temp = temp_name(name, id);
                    new = format!("{head}{dir}{temp}");
                    if let Some(parent) = output.target.parent() {
                        output.written = parent.join(&temp);
                    }
                    break;
                }
            }
            rewritten.push(new);
        }
        Ok((rewritten, Staging { staged, id }))
    }

    /// Before the tool runs: removes temporaries that an earlier `replay`,
    /// killed while this command ran, left behind, and moves aside the
    /// previous version of each output that is written in place.
    pub fn prepare(&mut self, id: u64, stale: &mut StaleFiles) -> Result<(), StagingError> {
        for at in 0..self.staged.len() {
            let output = &mut self.staged[at];
            remove_stale(&output.target, id, stale);
            if output.written == output.target && output.target.exists() {
                let name = output
                    .target
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let backup = output
                    .target
                    .with_file_name(format!(".replay-backup-{id}-{}-{name}", std::process::id()));
                if let Err(source) = fs::rename(&output.target, &backup) {
                    let error = StagingError::Backup {
                        path: output.declared.clone(),
                        source,
                    };
                    // Put back only what was moved aside; nothing ran, so
                    // every target still holds its previous version.
                    for earlier in &self.staged[..at] {
                        if let Some(backup) = &earlier.backup {
                            let _ = fs::rename(backup, &earlier.target);
                        }
                    }
                    return Err(error);
                }
                output.backup = Some(backup);
            }
        }
        Ok(())
    }

    /// After the tool succeeded: checks every output was written, then
    /// moves each into place. On a missing output nothing is moved and the
    /// staging is aborted.
    pub fn commit(self) -> Result<(), StagingError> {
        if let Some(missing) = self.staged.iter().find(|s| !s.written.is_file()) {
            let error = StagingError::Missing(missing.declared.clone());
            self.abort();
            return Err(error);
        }
        // All outputs or none. A rename replaces the previous version, so
        // first move each previous version aside (as `prepare` does for
        // outputs written in place); delete those only once every output
        // is in place, and put them back if one cannot be.
        let mut kept: Vec<Option<PathBuf>> = Vec::with_capacity(self.staged.len());
        for output in &self.staged {
            let keep = match output.target.file_name() {
                Some(name) if output.written != output.target && output.target.is_file() => {
                    let keep = output.target.with_file_name(format!(
                        ".replay-keep-{}-{}-{}",
                        self.id,
                        std::process::id(),
                        name.to_string_lossy()
                    ));
                    if let Err(source) = fs::rename(&output.target, &keep) {
                        self.undo_commit(&kept, 0);
                        return Err(StagingError::Commit {
                            path: output.declared.clone(),
                            source,
                        });
                    }
                    Some(keep)
                }
                _ => None,
            };
            kept.push(keep);
        }
        for (done, output) in self.staged.iter().enumerate() {
            if output.written == output.target {
                continue;
            }
            if let Err(source) = fs::rename(&output.written, &output.target) {
                self.undo_commit(&kept, done);
                return Err(StagingError::Commit {
                    path: output.declared.clone(),
                    source,
                });
            }
        }
        for (output, keep) in self.staged.iter().zip(&kept) {
            if let Some(backup) = &output.backup {
                let _ = fs::remove_file(backup);
            }
            if let Some(keep) = keep {
                let _ = fs::remove_file(keep);
            }
        }
        Ok(())
    }

    /// Puts every output back as it was before the tool ran, after a commit
    /// that moved the first `done` outputs into place (and the previous
    /// versions in `kept` aside) failed.
    fn undo_commit(&self, kept: &[Option<PathBuf>], done: usize) {
        for (i, output) in self.staged.iter().enumerate() {
            let in_place = output.written == output.target;
            if !in_place {
                let _ = fs::remove_file(&output.written);
            }
            match (kept.get(i).and_then(Option::as_ref), &output.backup) {
                (Some(keep), _) => {
                    let _ = fs::rename(keep, &output.target);
                }
                (None, Some(backup)) => {
                    let _ = fs::rename(backup, &output.target);
                }
                // No previous version: what this run wrote goes.
                (None, None) if in_place || i < done => {
                    let _ = fs::remove_file(&output.target);
                }
                (None, None) => {}
            }
        }
    }

    /// After the tool failed or was stopped: removes what it wrote and puts
    /// back what was there before.
    pub fn abort(self) {
        for output in &self.staged {
            let _ = fs::remove_file(&output.written);
            if let Some(backup) = &output.backup {
                let _ = fs::rename(backup, &output.target);
            }
        }
    }

    /// The final paths of the outputs, in declared order.
    pub fn targets(&self) -> impl Iterator<Item = (&str, &Path)> {
        self.staged
            .iter()
            .map(|s| (s.declared.as_str(), s.target.as_path()))
    }
}

/// Cleans up after a killed run of command `id` next to `target`: removes
/// its temporaries (`.replay-ID-PID-NAME`), and puts back its backup
/// (`.replay-backup-ID-PID-NAME`), which holds the last good version while
/// the target may hold a partial one.
fn remove_stale(target: &Path, id: u64, stale: &mut StaleFiles) {
    let (Some(dir), Some(name)) = (target.parent(), target.file_name()) else {
        return;
    };
    let name = name.to_string_lossy();
    let ours = |rest: Option<&str>| {
        rest.and_then(|rest| rest.split_once('-'))
            .is_some_and(|(pid, tail)| pid.bytes().all(|b| b.is_ascii_digit()) && tail == name)
    };
    stale.in_dir(dir).retain(|file| {
        let path = dir.join(file);
        if ours(file.strip_prefix(&format!(".replay-backup-{id}-"))) {
            let _ = fs::rename(&path, target);
        } else if ours(file.strip_prefix(&format!(".replay-keep-{id}-"))) {
            // The previous version, moved aside by a commit that a kill cut
            // short: put it back (the command reruns, as its journal entry
            // is missing).
            let _ = fs::rename(&path, target);
        } else if ours(file.strip_prefix(&format!(".replay-{id}-"))) {
            let _ = fs::remove_file(&path);
        } else {
            return true;
        }
        false
    });
}

/// What killed runs left in the output directories (`.replay-*` files),
/// each directory listed once per run: listing it for every command was
/// quadratic in a directory of many outputs. This run's own files never
/// need it (they are cleaned up as they go).
#[derive(Debug, Default)]
pub struct StaleFiles {
    by_dir: HashMap<PathBuf, Vec<String>>,
}

impl StaleFiles {
    fn in_dir(&mut self, dir: &Path) -> &mut Vec<String> {
        self.by_dir.entry(dir.to_owned()).or_insert_with(|| {
            fs::read_dir(dir)
                .map(|entries| {
                    entries
                        .flatten()
                        .filter_map(|e| e.file_name().into_string().ok())
                        .filter(|name| name.starts_with(".replay-"))
                        .collect()
                })
                .unwrap_or_default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A staging planned in `root` for command `id`, prepared to run.
    fn prepared(
        root: &Path,
        args: &[String],
        outputs: &[String],
        id: u64,
    ) -> (Vec<String>, Staging) {
        let (args, mut staging) = Staging::plan(root, ".", args, outputs, id).unwrap();
        staging.prepare(id, &mut StaleFiles::default()).unwrap();
        (args, staging)
    }

    #[test]
    fn output_arguments_are_rewritten_in_every_form() {
        let root = Path::new("/r");
        let args = strings(&[
            "-O2",
            "in.bc",
            "-o",
            "out/p0.o",
            "-Map=out/p0.map",
            "-oout/x.o",
        ]);
        let outputs = strings(&["out/p0.o", "out/p0.map", "out/x.o"]);
        let (args, staging) = Staging::plan(root, ".", &args, &outputs, 7).unwrap();
        let pid = std::process::id();
        assert_eq!(args[0], "-O2");
        assert_eq!(args[1], "in.bc");
        assert_eq!(args[3], format!("out/.replay-7-{pid}-p0.o"));
        assert_eq!(args[4], format!("-Map=out/.replay-7-{pid}-p0.map"));
        assert_eq!(args[5], format!("-oout/.replay-7-{pid}-x.o"));
        assert!(staging.staged.iter().all(|s| s.written != s.target));
    }

    #[test]
    fn arguments_are_resolved_against_the_cwd() {
        let (args, staging) = Staging::plan(
            Path::new("/r"),
            "sub",
            &strings(&["-o", "../top.o", "top.o"]),
            &strings(&["top.o"]),
            1,
        )
        .unwrap();
        // `../top.o` from `sub` is the declared `top.o`; `top.o` from `sub`
        // is `sub/top.o`, another file.
        assert_eq!(
            args[1],
            format!("../.replay-1-{}-top.o", std::process::id())
        );
        assert_eq!(args[2], "top.o");
        assert_eq!(staging.staged[0].target, Path::new("/r/top.o"));
    }

    #[test]
    fn an_output_no_argument_names_is_written_in_place() {
        let (_, staging) = Staging::plan(
            Path::new("/r"),
            ".",
            &strings(&["x"]),
            &strings(&["a.out"]),
            1,
        )
        .unwrap();
        assert_eq!(staging.staged[0].written, staging.staged[0].target);
    }

    #[test]
    fn commit_moves_outputs_into_place_and_abort_keeps_the_old_ones() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("p.o"), "old").unwrap();
        // A failed run: the temporary is removed, the old output stays.
        let (args, staging) = prepared(root, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 1);
        fs::write(root.join(&args[1]), "half").unwrap();
        staging.abort();
        assert_eq!(fs::read_to_string(root.join("p.o")).unwrap(), "old");
        assert!(!root.join(&args[1]).exists());
        // A successful run: the new output replaces it.
        let (args, staging) = prepared(root, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 2);
        fs::write(root.join(&args[1]), "new").unwrap();
        staging.commit().unwrap();
        assert_eq!(fs::read_to_string(root.join("p.o")).unwrap(), "new");
        assert_eq!(
            fs::read_dir(root).unwrap().count(),
            1,
            "no temporaries left"
        );
    }

    #[test]
    fn a_commit_that_fails_half_way_puts_every_previous_output_back() {
        // Regression: the first output was moved into place and its backup
        // dropped before the second failed: a new `a.o` beside an old `b.o`.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.o"), "old a").unwrap();
        fs::write(root.join("b.o"), "old b").unwrap();
        let (args, staging) = prepared(
            root,
            &strings(&["-o", "a.o", "-o", "b.o"]),
            &strings(&["a.o", "b.o"]),
            3,
        );
        fs::write(root.join(&args[1]), "new a").unwrap();
        fs::write(root.join(&args[3]), "new b").unwrap();
        // Something took `b.o`'s place meanwhile: its rename must fail.
        fs::remove_file(root.join("b.o")).unwrap();
        fs::create_dir(root.join("b.o")).unwrap();
        fs::write(root.join("b.o/x"), "").unwrap();
        assert!(staging.commit().is_err());
        assert_eq!(fs::read_to_string(root.join("a.o")).unwrap(), "old a");
        assert!(!root.join(&args[1]).exists() && !root.join(&args[3]).exists());
        // Nothing of the commit is left beside the outputs.
        let mut left: Vec<String> = fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.o", "b.o"]);
    }

    #[test]
    fn a_commit_cut_short_by_a_kill_is_put_back_by_the_next_run() {
        // A kill between moving the previous version aside and putting the
        // new one in place leaves `.replay-keep-*`; the rerun of the same
        // command restores it before anything else (and no hard link is
        // left for the checker's `outputs.hard-link` rule to refuse).
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join(".replay-keep-5-999-p.o"), "old").unwrap();
        let (_, _staging) = prepared(root, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 5);
        assert_eq!(fs::read_to_string(root.join("p.o")).unwrap(), "old");
        assert!(!root.join(".replay-keep-5-999-p.o").exists());
    }

    #[test]
    fn a_missing_output_fails_the_commit_and_restores_in_place_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("a.out"), "old").unwrap();
        let (_, staging) = prepared(root, &[], &strings(&["a.out", "b.o"]), 3);
        assert!(
            !root.join("a.out").exists(),
            "moved aside while the tool runs"
        );
        fs::write(root.join("a.out"), "new").unwrap();
        let error = staging.commit().unwrap_err();
        assert!(
            matches!(error, StagingError::Missing(ref o) if o == "b.o"),
            "{error}"
        );
        assert_eq!(fs::read_to_string(root.join("a.out")).unwrap(), "old");
    }

    #[test]
    fn stale_temporaries_of_a_killed_run_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for name in [
            ".replay-5-999-p.o",
            ".replay-5-999-q.o",
            ".replay-6-999-p.o",
        ] {
            fs::write(root.join(name), "stale").unwrap();
        }
        let (_, _staging) = prepared(root, &strings(&["-o", "p.o"]), &strings(&["p.o"]), 5);
        assert!(
            !root.join(".replay-5-999-p.o").exists(),
            "this command's temporary"
        );
        assert!(root.join(".replay-5-999-q.o").exists(), "another output's");
        assert!(root.join(".replay-6-999-p.o").exists(), "another command's");
    }

    #[test]
    fn a_killed_runs_backup_is_put_back_not_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        // Killed while writing `a.out` in place: a partial target, and the
        // good version aside.
        fs::write(root.join("a.out"), "partial").unwrap();
        fs::write(root.join(".replay-backup-4-999-a.out"), "good").unwrap();
        let (_, staging) = prepared(root, &[], &strings(&["a.out"]), 4);
        // The tool fails again: the good version is what stays.
        staging.abort();
        assert_eq!(fs::read_to_string(root.join("a.out")).unwrap(), "good");
    }
}
