//! The shared context of one command's check: [`Ctx`] holds what the
//! rules read (the policy, the work root, the command's cwd and declared
//! paths) and what they build up (the findings, with the strict mode
//! applied as each is recorded, the input directories and files that
//! passed, the linker's reads, the directories still to walk), and its
//! methods are the findings collector and the path keys every rule uses.
//! It sits below the rules and above the verdict types: it imports
//! nothing of the rules (`rules/`).

use std::path::{Path, PathBuf};

use cmdlog::path::{is_absolute, normalize_under};
use cmdlog::Os;

use crate::load::dir_key;
use crate::model::Policy;
use crate::rootfs::{Lookup, RootFs};
use crate::verdict::{Finding, LinkerReads, Status};

/// The per-command state rules share while one command is checked.
pub(crate) struct Ctx<'a> {
    /// The policy the command is judged against.
    pub policy: &'a Policy,
    /// The work root, opened once; every path in it is looked up here.
    pub fs: &'a mut RootFs,
    /// What the rules found so far, in the order they found it.
    pub findings: Vec<Finding>,
    /// The command's id, for its findings.
    pub id: u64,
    /// Whether unverified findings count as refused.
    pub strict: bool,
    /// Whether paths compare ignoring case (the policy is not for Linux).
    pub fold: bool,
    /// Whether the log's platform is this host's (paths outside the root
    /// can be looked at).
    pub here: bool,
    /// Canonical system input directories (those that exist here).
    pub system_canonical: &'a [PathBuf],
    /// Input directories that passed, absolute and canonical.
    pub input_dirs: Vec<PathBuf>,
    /// Declared inputs, resolved.
    pub input_files: Vec<PathBuf>,
    /// Directories in the root to check once the paths are known.
    pub root_dirs: Vec<RootDir>,
    /// Walks already made.
    pub dir_cache: &'a mut DirCache,
    /// The command's cwd, normalized (`.` for the root).
    pub cwd: String,
    /// The command's cwd as written.
    pub raw_cwd: &'a str,
    /// The declared inputs' keys: normalized, root-relative or absolute,
    /// lower-cased when `fold`.
    pub inputs: Vec<String>,
    /// The declared outputs' keys, made as the inputs' are.
    pub outputs: Vec<String>,
    /// What the linker will read from the root, to verify before it runs.
    pub linker_reads: LinkerReads,
}

impl Ctx<'_> {
    /// Records a finding; unverified ones count as refused when strict.
    pub(crate) fn push(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
        status: Status,
    ) {
        let status = if status == Status::Unverified && self.strict {
            Status::Refused
        } else {
            status
        };
        self.findings.push(Finding {
            id: Some(self.id),
            rule,
            subject: subject.to_owned(),
            message,
            hint: hint.to_owned(),
            status,
        });
    }

    /// Records a broken rule.
    pub(crate) fn refuse(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
    ) {
        self.push(rule, subject, message, hint, Status::Refused);
    }

    /// Records a rule that cannot be checked here.
    pub(crate) fn unverified(
        &mut self,
        rule: &'static str,
        subject: &str,
        message: String,
        hint: &str,
    ) {
        self.push(rule, subject, message, hint, Status::Unverified);
    }

    /// Records a path that leaves the root through a symlink.
    pub(crate) fn symlink_escape(&mut self, subject: &str, via: &str) {
        self.refuse(
            "paths.symlink-escape",
            subject,
            format!("`{subject}` leads out of the work root through `{via}`"),
            "remove the symlink, or use a path that stays inside the work root",
        );
    }

    /// The root-relative key of a path relative to the command's cwd.
    pub(crate) fn relative_key(&self, path: &str) -> Option<String> {
        if is_absolute(path) {
            return None;
        }
        let k = normalize_under(&self.cwd, path)?;
        Some(if self.fold { k.to_lowercase() } else { k })
    }

    /// The key of an absolute path (no `.` or `..` allowed).
    pub(crate) fn absolute_key(&self, path: &str) -> Option<String> {
        dir_key(path).map(|k| if self.fold { k.to_lowercase() } else { k })
    }

    /// Where a root-relative path leads on disk. A Windows log's `\\` is a
    /// separator there, so it is one here too.
    pub(crate) fn lookup(&mut self, raw: &str) -> Lookup {
        let native = self.native(raw);
        self.fs.lookup(&native)
    }

    /// Where the root-relative `raw` physically is, if that is not where
    /// it says (it goes through a symlink inside the root).
    pub(crate) fn symlinked_as(&mut self, raw: &str) -> Option<String> {
        let native = self.native(raw);
        let physical = self.fs.physical(&native)?;
        let written = normalize_under(".", &native).filter(|w| w != ".");
        (Some(&physical) != written.as_ref()).then_some(physical)
    }

    /// Like [`Ctx::symlinked_as`] for the directory that holds `raw`:
    /// `Some(physical)` when it is reached through a symlink. The last
    /// component itself may be a link (a built-in replaces it).
    pub(crate) fn symlinked_parent(&mut self, raw: &str) -> Option<String> {
        let native = self.native(raw);
        let written = normalize_under(".", &native).filter(|w| w != ".")?;
        let (parent, _) = written.rsplit_once('/')?;
        let physical = self.fs.physical(parent)?;
        (physical != parent).then_some(physical)
    }

    /// `raw` with the log platform's separators made `/`.
    pub(crate) fn native<'s>(&self, raw: &'s str) -> std::borrow::Cow<'s, str> {
        if self.policy.os == Os::Windows && raw.contains('\\') {
            std::borrow::Cow::Owned(raw.replace('\\', "/"))
        } else {
            std::borrow::Cow::Borrowed(raw)
        }
    }

    /// The path under the cwd as the kernel would follow it from the root.
    pub(crate) fn raw_under_cwd(&self, path: &str) -> String {
        match self.raw_cwd {
            "." | "" => path.to_owned(),
            cwd => format!("{cwd}/{path}"),
        }
    }

    /// Whether `key` is one of the command's declared inputs.
    pub(crate) fn is_declared_input(&self, key: &str) -> bool {
        self.inputs.iter().any(|i| i == key)
    }

    /// Whether `key` is one of the command's declared outputs.
    pub(crate) fn is_declared_output(&self, key: &str) -> bool {
        self.outputs.iter().any(|o| o == key)
    }

    /// Whether the absolute `key` is under one of the system input dirs.
    pub(crate) fn under_system(&self, key: &str) -> bool {
        under_any(&self.policy.system_inputs, key, self.fold)
    }

    /// Whether a canonical path is under the policy's system directories
    /// (as listed, or as they resolve here).
    pub(crate) fn under_system_resolved(&self, real: &Path) -> bool {
        real.to_str()
            .is_some_and(|r| under_any(&self.policy.system_inputs, r, self.fold))
            || self.system_canonical.iter().any(|d| real.starts_with(d))
    }
}

/// Whether `key` is one of `dirs` or under one.
/// With `fold`, both sides compare ignoring case.
pub(crate) fn under_any(dirs: &[String], key: &str, fold: bool) -> bool {
    let key = if fold {
        key.to_lowercase()
    } else {
        key.to_owned()
    };
    dirs.iter().any(|d| {
        let d = if fold { d.to_lowercase() } else { d.clone() };
        d == "/" || key == d || key.strip_prefix(&d).is_some_and(|r| r.starts_with('/'))
    })
}

/// A directory in the root to check once the command's paths are known.
#[derive(Debug, Clone)]
pub(crate) struct RootDir {
    /// The value as the log gave it, for findings.
    pub subject: String,
    /// Where it physically is, root-relative (`.` for the root).
    pub physical: String,
    /// A compile's source directory: left out, not refused, if it fails.
    pub source: bool,
    /// Whether it exists now (else it is judged by name only).
    pub exists: bool,
}

/// What a walk found: `None`, or (rule, message).
pub(crate) type WalkResult = Option<(&'static str, String)>;

/// How many walks are remembered.
pub(crate) const CACHE_MAX: usize = 4096;

/// The walks a checker remembers.
#[derive(Debug, Default)]
pub(crate) struct DirCache {
    /// System directories, by canonical path: they do not change while a
    /// log is checked.
    pub system: std::collections::HashMap<PathBuf, WalkResult>,
    /// Directories in the root, by physical path; only while the whole
    /// log is judged (no output may land in an input directory, so what
    /// one holds does not change between commands), never in a run's
    /// second pass.
    pub root: std::collections::HashMap<String, WalkResult>,
}

impl DirCache {
    /// Remembers a root walk, within bounds.
    pub(crate) fn remember_root(&mut self, physical: &str, found: &WalkResult) {
        if self.root.len() >= CACHE_MAX {
            self.root.clear();
        }
        self.root.insert(physical.to_owned(), found.clone());
    }
}
