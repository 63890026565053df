//! The path rule: a command's `cwd`, inputs and outputs must stay inside
//! the work root (or, for inputs, under the policy's system directories),
//! be what they say (no symlink out of the root, no fifo or device, no
//! protected file), and, across the whole log, each output has one writer
//! that runs before its readers and no output lands in a directory another
//! command reads whole. The directories a command reads whole are judged
//! here once its paths are known (`root_dir`).

use std::path::Path;

use cmdlog::path::{check_confined, is_absolute, normalize_under};
use cmdlog::path_ids::{PathIdMap, PathIds};
use cmdlog::{Command, ToolKind};

use super::dirs::{ancestors, is_under, walk_root};
use super::late::Late;
use crate::ctx::{under_any, Ctx, RootDir};
use crate::kind::{check_input_kind, InputKindError};
use crate::load::dir_key;
use crate::rootfs::{Kind, Lookup};
use crate::verdict::Mode;

/// What the path rules need of the checker's state.
pub(crate) struct LogState<'a> {
    /// Every output written so far, by its writer.
    pub written: &'a mut PathIdMap<u64>,
    /// Root paths read before any command wrote them, by first reader.
    pub read_early: &'a mut PathIdMap<u64>,
    /// Identities of the paths in `written` and `read_early`.
    pub ids: &'a PathIds,
    /// Whether to judge the whole-log rules (`Checker::whole_log_judged`).
    pub judge: bool,
    /// Lower-cased root-relative paths of protected files inside the root.
    pub protected: &'a [String],
    /// How many outputs so far each root directory holds.
    pub out_dirs: &'a mut PathIdMap<u64>,
    /// Root directories read as input directories, by first reader.
    pub read_dirs: &'a mut PathIdMap<u64>,
    /// Audit or run.
    pub mode: Mode,
    /// Whether the log's platform is this host's.
    pub here: bool,
    /// Once the tables outgrew memory: where each read and write of a path
    /// goes instead of `written` and `read_early` (frozen from then on),
    /// to be judged after the stream.
    pub late: Option<&'a mut Late>,
    /// The first error writing to `late` (the log is then refused).
    pub late_error: &'a mut Option<std::io::Error>,
}

impl LogState<'_> {
    /// Whether an earlier command writes `path`: `None` once spilled (it
    /// is judged after the stream).
    fn produced(&self, path: &cmdlog::path_ids::PathId) -> Option<bool> {
        if !self.judge {
            // Unjudged, every input may be an earlier command's output.
            return Some(true);
        }
        match self.late {
            Some(_) if !self.written.contains_key(path) => None,
            _ => Some(self.written.contains_key(path)),
        }
    }

    /// Keeps the outcome of writing a spill record.
    fn spilled(&mut self, outcome: std::io::Result<()>) {
        if let Err(error) = outcome {
            self.late_error.get_or_insert(error);
        }
    }
}

/// The rules on `cwd`, inputs and outputs, and the whole-log rules.
pub(crate) fn paths(ctx: &mut Ctx<'_>, log: &mut LogState<'_>, command: &Command) {
    let id = command.id;
    let run = log.mode == Mode::Run;
    // A built-in replaces an output's name itself (`renameat2`, `unlinkat`
    // from its physical directory), never writing through it: a symlink
    // inside the root in an output's place (the link an earlier run made)
    // is replaced, not followed. `rename` and `remove` take over a path an
    // earlier command wrote.
    let replaces_name = command.tool.is_builtin();
    let takes_over = matches!(command.tool, ToolKind::Rename | ToolKind::Remove);
    if check_confined(&command.cwd).is_err() {
        ctx.refuse(
            "paths.outside-root",
            &command.cwd,
            format!("cwd `{}` is outside the work root", command.cwd),
            "use a cwd inside the work root",
        );
    } else {
        match ctx.lookup(&command.cwd) {
            Lookup::Escapes { via } => ctx.symlink_escape(&command.cwd, &via),
            Lookup::Inside { kind: Kind::Dir } => {}
            Lookup::Inside {
                kind: Kind::Missing,
            } if !run => {}
            Lookup::Inside { kind } => ctx.refuse(
                "paths.cwd-not-dir",
                &command.cwd,
                format!(
                    "cwd `{}` is {}",
                    command.cwd,
                    if kind == Kind::Missing {
                        "missing"
                    } else {
                        "not a directory"
                    }
                ),
                "run commands in an existing directory inside the work root",
            ),
        }
    }

    for input in &command.inputs {
        if input.is_empty() {
            ctx.refuse(
                "paths.empty",
                input,
                "an input is the empty string".into(),
                "remove it",
            );
            continue;
        }
        if is_absolute(input) {
            let Some(key) =
                dir_key(input).filter(|k| under_any(&ctx.policy.system_inputs, k, ctx.fold))
            else {
                ctx.refuse(
                    "inputs.outside-root",
                    input,
                    format!("input `{input}` is outside the work root and the policy's system directories"),
                    "inputs must be inside the work root, or under one of the policy's `system_inputs`",
                );
                continue;
            };
            if !log.here {
                continue;
            }
            match std::fs::canonicalize(&key) {
                Ok(real) => {
                    let listed = real
                        .to_str()
                        .is_some_and(|r| under_any(&ctx.policy.system_inputs, r, ctx.fold));
                    if !listed && !ctx.system_canonical.iter().any(|d| real.starts_with(d)) {
                        ctx.refuse(
                            "inputs.outside-root",
                            input,
                            format!("input `{input}` resolves to `{}`, outside the policy's system directories", real.display()),
                            "a symlink in a system directory may not lead out of them",
                        );
                    } else if let Err(InputKindError::NotRegular { kind, .. }) =
                        check_input_kind(&real)
                    {
                        ctx.refuse(
                            "inputs.not-a-file",
                            input,
                            format!("input `{input}` is a {kind}, not a regular file or directory: the tool would block on it or read a device"),
                            "inputs are regular files or directories",
                        );
                    } else {
                        ctx.input_files.push(real);
                    }
                }
                Err(_) if run => ctx.refuse(
                    "inputs.missing",
                    input,
                    format!("input `{input}` does not exist"),
                    "install it, or fix the command's `inputs`",
                ),
                Err(_) => {}
            }
            continue;
        }
        if check_confined(input).is_err() {
            ctx.refuse(
                "inputs.outside-root",
                input,
                format!("input `{input}` is outside the work root"),
                "inputs must be inside the work root",
            );
            continue;
        }
        let Some(key) =
            normalize_under(".", input).map(|k| if ctx.fold { k.to_lowercase() } else { k })
        else {
            continue;
        };
        if key == "." {
            // The root itself (lexically): physically it may be elsewhere.
            if let Lookup::Escapes { via } = ctx.lookup(input) {
                ctx.symlink_escape(input, &via);
                continue;
            }
            // Everything beneath it, judged as an input directory (it
            // holds the log and every output: refused).
            if !ctx.root_dirs.iter().any(|d| d.physical == "." && !d.source) {
                ctx.root_dirs.push(RootDir {
                    subject: input.clone(),
                    physical: ".".to_owned(),
                    source: false,
                    exists: true,
                });
            }
            continue;
        }
        if is_reserved(&key) {
            refuse_reserved(ctx, input, "input");
            continue;
        }
        let input_id = log.ids.of(&key);
        // Spilled, whether an earlier command writes it is judged after
        // the stream: so is the refusal of a missing input.
        let known = log.produced(&input_id);
        let produced = known.unwrap_or(true);
        let looked = ctx.lookup(input);
        let missing = matches!(
            looked,
            Lookup::Inside {
                kind: Kind::Missing
            }
        );
        match looked {
            Lookup::Escapes { via } => {
                ctx.symlink_escape(input, &via);
                continue;
            }
            Lookup::Inside {
                kind: Kind::Missing,
            } if run && !produced => ctx.refuse(
                "inputs.missing",
                input,
                format!("input `{input}` does not exist and no earlier command writes it"),
                "create it before running, or order the command after the one that writes it",
            ),
            Lookup::Inside { kind: Kind::Other } => {
                let at = ctx.fs.root().join(ctx.native(input).as_ref());
                let kind = match check_input_kind(&at) {
                    Err(InputKindError::NotRegular { kind, .. }) => kind,
                    _ => "special file",
                };
                ctx.refuse(
                    "inputs.not-a-file",
                    input,
                    format!(
                        "input `{input}` is a {kind}, not a regular file or directory: the tool would block on it or read a device"
                    ),
                    "inputs are regular files or directories; the executor checks again right before the command runs (`policy::check_input_kind`)",
                );
                continue;
            }
            Lookup::Inside { kind } => {
                let native = ctx.native(input).into_owned();
                if let Some(physical) = ctx.fs.physical(&native) {
                    if is_reserved(&physical) {
                        refuse_reserved(ctx, input, "input");
                        continue;
                    }
                    let lower = physical.to_lowercase();
                    if let Some(p) = log.protected.iter().find(|p| **p == lower) {
                        // Regression (hardening): a symlink to the log, or
                        // the log itself, declared as an input was granted.
                        ctx.refuse(
                            "inputs.protected",
                            input,
                            format!(
                                "input `{input}` is `{p}`, which replay itself reads or writes"
                            ),
                            "the log, the policy, the journal and replay's lock are never inputs",
                        );
                        continue;
                    }
                    if kind == Kind::Dir {
                        // A directory grants everything beneath it: judged
                        // as `-I` and `-L` values are (regression: `.` as
                        // an input gave a tool the whole root).
                        let physical = if physical.is_empty() {
                            ".".to_owned()
                        } else {
                            physical
                        };
                        if !ctx
                            .root_dirs
                            .iter()
                            .any(|d| d.physical == physical && !d.source)
                        {
                            ctx.root_dirs.push(RootDir {
                                subject: input.clone(),
                                physical,
                                source: false,
                                exists: true,
                            });
                        }
                    } else {
                        let at = if physical.is_empty() {
                            ctx.fs.root().to_path_buf()
                        } else {
                            ctx.fs.root().join(physical)
                        };
                        if !ctx.input_files.contains(&at) {
                            ctx.input_files.push(at);
                        }
                    }
                }
            }
        }
        if known.is_none() {
            if let Some(late) = log.late.as_deref_mut() {
                let outcome = late.read(input_id, id, input, run && missing);
                log.spilled(outcome);
            }
        } else if !produced && !log.read_early.contains_key(&input_id) {
            if let Some(late) = log.late.as_deref_mut() {
                // Frozen: the spill keeps the rest.
                let outcome = late.read(input_id, id, input, false);
                log.spilled(outcome);
            } else {
                log.read_early.insert(input_id, id);
            }
        }
    }

    // Input directories in the root, now that this command's outputs and
    // the earlier ones are known.
    for dir in std::mem::take(&mut ctx.root_dirs) {
        root_dir(ctx, log, &dir);
    }

    for output in &command.outputs {
        if output.is_empty() {
            ctx.refuse(
                "paths.empty",
                output,
                "an output is the empty string".into(),
                "remove it",
            );
            continue;
        }
        let key = if check_confined(output).is_ok() {
            normalize_under(".", output)
        } else {
            None
        };
        let Some(key) = key.map(|k| if ctx.fold { k.to_lowercase() } else { k }) else {
            ctx.refuse(
                "outputs.outside-root",
                output,
                format!("output `{output}` is not a file inside the work root"),
                "write outputs inside the work root",
            );
            continue;
        };
        if is_reserved(&key) {
            refuse_reserved(ctx, output, "output");
            continue;
        }
        let lower = key.to_lowercase();
        if let Some(p) = log.protected.iter().find(|p| {
            **p == lower
                || p.strip_prefix(lower.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }) {
            ctx.refuse(
                "outputs.protected",
                output,
                format!(
                    "output `{output}` would overwrite `{p}`, which replay itself reads or writes"
                ),
                "the log, the policy and the journal are never outputs; write elsewhere",
            );
            continue;
        }
        match ctx.lookup(output) {
            Lookup::Escapes { via } => {
                ctx.symlink_escape(output, &via);
                continue;
            }
            Lookup::Inside {
                kind: Kind::Dir | Kind::Other,
            } => {
                ctx.refuse(
                    "outputs.not-a-file",
                    output,
                    format!("output `{output}` exists and is not a regular file"),
                    "outputs are regular files",
                );
                continue;
            }
            Lookup::Inside { kind: Kind::Linked } => {
                ctx.refuse(
                    "outputs.hard-link",
                    output,
                    format!(
                        "output `{output}` has other hard links; writing it would change them too"
                    ),
                    "remove the file (or its other links) before running",
                );
                continue;
            }
            Lookup::Inside { .. } => {}
        }
        // Every check above and below compares paths as written; a path
        // through a symlink inside the root (`here/log.json` with `here ->
        // .`) would name a protected file, or another command's output,
        // under a second spelling. Outputs are therefore written only
        // where they physically are.
        let through = if replaces_name {
            ctx.symlinked_parent(output)
        } else {
            ctx.symlinked_as(output)
        };
        if let Some(physical) = through {
            ctx.refuse(
                "outputs.through-symlink",
                output,
                format!("output `{output}` goes through a symlink (it is `{physical}`)"),
                "name outputs by their real path inside the work root",
            );
            continue;
        }
        if !log.judge {
            continue;
        }
        let output_id = log.ids.of(&key);
        if !log.written.contains_key(&output_id) {
            if let Some(late) = log.late.as_deref_mut() {
                // Spilled: its writer and readers are judged after the
                // stream. Its directories are counted here, as the first
                // writer's (a second writer refuses the log anyway).
                let outcome = late.write(output_id, id, output);
                log.spilled(outcome);
                count_dirs(ctx, log, output, &key, id);
                continue;
            }
        }
        if let Some(&writer) = log
            .written
            .get(&output_id)
            .filter(|w| !(takes_over && **w != id))
        {
            let message = if writer == id {
                format!("output `{output}` is listed twice")
            } else {
                format!("output `{output}` is already written by command {writer}")
            };
            ctx.refuse(
                "outputs.duplicate",
                output,
                message,
                "each file may be written by one command only",
            );
            continue;
        }
        if let Some(&reader) = log.read_early.get(&output_id).filter(|r| **r != id) {
            ctx.refuse(
                "outputs.read-before-write",
                output,
                format!("command {reader} reads `{output}` before this command writes it"),
                "order the commands so each file is written before it is read",
            );
        }
        log.written.insert(output_id, id);
        count_dirs(ctx, log, output, &key, id);
    }
}

/// Counts `output` (normalized `key`, written by command `id`) in each
/// directory above it; no output may land in a directory an earlier
/// command reads whole: it would read (or have read) a file nobody
/// declared.
fn count_dirs(ctx: &mut Ctx<'_>, log: &mut LogState<'_>, output: &str, key: &str, id: u64) {
    {
        let mut refused = false;
        for dir in ancestors(key) {
            let dir_id = log.ids.of(dir);
            if let Some(&reader) = log.read_dirs.get(&dir_id).filter(|r| **r != id) {
                if !refused {
                    ctx.refuse(
                        "outputs.in-input-dir",
                        output,
                        format!("output `{output}` is in `{dir}`, which command {reader} reads as an input directory"),
                        "write outputs outside the directories commands give as `-I`, `-L` ...",
                    );
                    refused = true;
                }
            }
            let n = log.out_dirs.get(&dir_id).copied().unwrap_or(0);
            log.out_dirs.insert(dir_id, n + 1);
        }
    }
}

/// The directories in the root that are `replay`'s own: its staging,
/// where other commands' outputs wait under `-j` (and a tool's outputs
/// are written before they are committed).
pub(crate) const RESERVED_DIRS: &[&str] = &[".replay-stage"];

/// Whether root-relative, normalized `key` is a reserved directory or
/// beneath one (compared ignoring case: a folding file system would
/// find it under any case).
fn is_reserved(key: &str) -> bool {
    let lower = key.to_lowercase();
    RESERVED_DIRS.iter().any(|dir| {
        lower
            .strip_prefix(dir)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// Refuses `path`, an input or output in a reserved directory.
fn refuse_reserved(ctx: &mut Ctx<'_>, path: &str, role: &str) {
    ctx.refuse(
        "paths.reserved",
        path,
        format!(
            "{role} `{path}` is in `{}`, replay's own staging: no command reads or writes there",
            RESERVED_DIRS.join("`, `")
        ),
        "name a path outside replay's staging directory",
    );
}

/// Checks a directory in the root the tool will read whole: it may not
/// hold a protected file (the log), a declared output of this or an
/// earlier command (besides this command's declared inputs), a fifo, a
/// socket, a device or a symlink out of the root. A compile's source
/// directory that fails is left out, not refused.
fn root_dir(ctx: &mut Ctx<'_>, log: &mut LogState<'_>, dir: &RootDir) {
    let key = if ctx.fold {
        dir.physical.to_lowercase()
    } else {
        dir.physical.clone()
    };
    let lower = key.to_lowercase();
    let mut problem: Option<(&'static str, String)> = None;
    let mut unknown = Vec::new();
    let mut deferred = None;
    if let Some(p) = log.protected.iter().find(|p| is_under(p, &lower)) {
        problem = Some((
            "inputs.dir-holds-output",
            format!("it holds `{p}`, which replay itself reads or writes"),
        ));
    } else if let Some(o) = ctx.outputs.iter().find(|o| is_under(o, &key)) {
        problem = Some((
            "inputs.dir-holds-output",
            format!("it holds `{o}`, an output of this command"),
        ));
    } else if log.judge {
        let held = log.out_dirs.get(&log.ids.of(&key)).copied().unwrap_or(0);
        // The inputs beneath it an earlier command writes: known from the
        // tables, or (spilled) unknown until after the stream.
        let mut declared = 0u64;
        for input in ctx.inputs.iter().filter(|i| is_under(i, &key)) {
            let id = log.ids.of(input);
            if log.written.contains_key(&id) {
                declared += 1;
            } else if log.late.is_some() {
                unknown.push(id);
            }
        }
        let at_most = declared + unknown.len() as u64;
        if held > declared && (held > at_most || dir.source) {
            // Certainly a problem, or (a compile's source directory, which
            // is only left out) possibly one: left out.
            problem = Some(("inputs.dir-holds-output", DIR_HOLDS_EARLIER_OUTPUTS.into()));
        } else if held > declared {
            // Judged after the stream, when the unknown inputs are known.
            deferred = Some((held, declared));
        }
    }
    if problem.is_none() && dir.exists {
        problem = match ctx.dir_cache.root.get(&dir.physical).filter(|_| log.judge) {
            Some(hit) => hit.clone(),
            None => {
                let found = walk_root(ctx, &dir.physical);
                if log.judge {
                    ctx.dir_cache.remember_root(&dir.physical, &found);
                }
                found
            }
        };
    }
    if let Some((rule, message)) = problem {
        if !dir.source {
            let shown = shown_dir(dir);
            ctx.refuse(
                rule,
                &dir.subject,
                format!("input directory `{}` ({shown}): {message}", dir.subject),
                "a tool may read everything beneath an input directory; use one that holds only inputs",
            );
        }
        return;
    }
    if let (Some((held, declared)), Some(late)) = (deferred, log.late.as_deref_mut()) {
        let shown = shown_dir(dir);
        let message = format!(
            "input directory `{}` ({shown}): {DIR_HOLDS_EARLIER_OUTPUTS}",
            dir.subject
        );
        let outcome = late.dir_check(ctx.id, held, declared, &unknown, &dir.subject, &message);
        log.spilled(outcome);
    }
    if log.judge && !dir.source {
        let dir_id = log.ids.of(&key);
        if !log.read_dirs.contains_key(&dir_id) {
            log.read_dirs.insert(dir_id, ctx.id);
        }
    }
    let at = if dir.physical == "." {
        ctx.fs.root().to_path_buf()
    } else {
        ctx.fs.root().join(&dir.physical)
    };
    if dir.exists && at.is_dir() && !ctx.input_dirs.contains(&at) {
        ctx.input_dirs.push(at);
    }
}

/// Why an input directory is refused when earlier commands wrote into it.
const DIR_HOLDS_EARLIER_OUTPUTS: &str =
    "it holds outputs of earlier commands that this command does not declare as inputs";

/// How a finding names an input directory physically.
fn shown_dir(dir: &RootDir) -> String {
    if dir.physical == "." {
        "the work root".to_owned()
    } else {
        format!("`{}`", dir.physical)
    }
}

/// The root-relative path of `p` if it is inside `root` (canonical).
pub(crate) fn inside_root(root: &Path, p: &Path) -> Option<String> {
    let abs = match std::fs::canonicalize(p) {
        Ok(c) => c,
        Err(_) => {
            let parent = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            std::fs::canonicalize(parent).ok()?.join(p.file_name()?)
        }
    };
    let rel = abs.strip_prefix(root).ok()?;
    Some(rel.to_str()?.to_owned())
}
