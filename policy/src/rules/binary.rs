//! Which binary a command's `program` is: matched against the tool kind's
//! allowed names, looked up only in the policy's own directories (never
//! `PATH`), canonicalized, and checked on disk: a regular executable file,
//! not world-writable, in a directory that is not world-writable, and if the
//! policy pins it, with the pinned sha256.
//!
//! When the log was recorded for another platform, nothing here can look at
//! that platform's disk: the result is [`Status::Unverified`], never passed.

use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use cmdlog::Os;
use sha2::{Digest, Sha256};

use crate::load::dir_key;
use crate::model::{ProgramRule, ToolRules};
use crate::verdict::Status;

/// A finding about the binary, before it is tied to a command.
#[derive(Debug, Clone)]
pub(crate) struct BinaryFinding {
    pub rule: &'static str,
    pub subject: String,
    pub message: String,
    pub hint: String,
    pub status: Status,
}

/// What was found about one (tool, program).
#[derive(Debug, Clone)]
pub(crate) struct BinaryCheck {
    /// The canonical binary, when it was found and passed.
    pub program: Option<PathBuf>,
    /// The grammar of the program's arguments, if the name is allowed.
    pub grammar: Option<String>,
    /// The program's file name as the log gave it (the child's `argv[0]`).
    pub argv0: String,
    pub findings: Vec<BinaryFinding>,
}

/// Whether the binary can be looked at on this host.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Host {
    /// The log's platform is this host's: look.
    Here,
    /// It is not: nothing about the binary can be verified.
    Elsewhere { log: Os, host: Option<Os> },
}

/// Splits a program into its directory (if any) and file name.
fn split_program(program: &str) -> (Option<&str>, &str) {
    match program.rfind(['/', '\\']) {
        Some(i) => (
            Some(&program[..i.max(1)]).filter(|_| i > 0).or(Some("/")),
            &program[i + 1..],
        ),
        None => (None, program),
    }
}

fn same_name(os: Os, a: &str, b: &str) -> bool {
    match os {
        Os::Linux => a == b,
        // Case-insensitive file systems by default.
        Os::Macos | Os::Windows => a.eq_ignore_ascii_case(b),
    }
}

/// Checks `program` for a tool kind.
pub(crate) fn check(
    os: Os,
    tool: &ToolRules,
    tool_name: &str,
    program: &str,
    host: Host,
) -> BinaryCheck {
    let (dir, name) = split_program(program);
    let mut out = BinaryCheck {
        program: None,
        grammar: None,
        argv0: name.to_owned(),
        findings: Vec::new(),
    };
    let refuse = |out: &mut BinaryCheck, rule, message: String, hint: &str| {
        out.findings.push(BinaryFinding {
            rule,
            subject: program.to_owned(),
            message,
            hint: hint.to_owned(),
            status: Status::Refused,
        })
    };
    let rule: Option<&ProgramRule> = tool.programs.iter().find(|p| same_name(os, &p.name, name));
    let Some(rule) = rule else {
        let names: Vec<String> = tool
            .programs
            .iter()
            .map(|p| format!("`{}`", p.name))
            .collect();
        refuse(
            &mut out,
            "binary.not-allowed",
            format!("`{program}` may not serve as `{tool_name}`"),
            &format!("the policy allows {} for `{tool_name}`", names.join(", ")),
        );
        return out;
    };
    out.grammar = Some(rule.grammar.clone());
    let dirs: Vec<&String> = match dir {
        None => tool.dirs.iter().collect(),
        Some(d) => {
            let key = if cmdlog::path::is_absolute(d) {
                dir_key(d)
            } else {
                None
            };
            let listed = key
                .as_deref()
                .and_then(|k| tool.dirs.iter().find(|t| same_name(os, t, k)));
            match listed {
                Some(t) => vec![t],
                None => {
                    refuse(
                        &mut out,
                        "binary.not-allowed",
                        format!(
                            "`{program}` is not in a directory the policy lists for `{tool_name}`"
                        ),
                        &format!(
                            "use the bare name `{name}`; the policy resolves it in its own `dirs`"
                        ),
                    );
                    return out;
                }
            }
        }
    };
    if let Host::Elsewhere { log, host } = host {
        let host = host.map_or("this host".to_owned(), |h| format!("a {h} host"));
        out.findings.push(BinaryFinding {
            rule: "binary.unverified",
            subject: program.to_owned(),
            message: format!(
                "`{program}` cannot be looked at from {host}: the log is for {log}, so its existence, permissions and hash are unverified"
            ),
            hint: "audit on the log's platform to verify binaries; `--strict` refuses what is unverified".into(),
            status: Status::Unverified,
        });
        return out;
    }
    let found = dirs
        .iter()
        .map(|d| Path::new(d.as_str()).join(name))
        .find(|c| fs::symlink_metadata(c).is_ok());
    let Some(candidate) = found else {
        let list: Vec<String> = dirs.iter().map(|d| format!("`{d}`")).collect();
        out.findings.push(BinaryFinding {
            rule: "binary.not-found",
            subject: program.to_owned(),
            message: format!("`{name}` is not in {}", list.join(", ")),
            hint: "install the tool where the policy looks, or fix the policy's `dirs`".into(),
            status: Status::Unverified,
        });
        return out;
    };
    let canonical = match fs::canonicalize(&candidate) {
        Ok(c) => c,
        Err(e) => {
            refuse(
                &mut out,
                "binary.not-found",
                format!("`{}` cannot be resolved: {e}", candidate.display()),
                "a dangling symlink is not a binary",
            );
            return out;
        }
    };
    let allowed_dirs: Vec<PathBuf> = tool
        .dirs
        .iter()
        .filter_map(|d| fs::canonicalize(d).ok())
        .collect();
    let parent = canonical
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    if !allowed_dirs.contains(&parent) {
        refuse(
            &mut out,
            "binary.outside-dirs",
            format!(
                "`{}` resolves to `{}`, outside the policy's directories for `{tool_name}`",
                candidate.display(),
                canonical.display()
            ),
            "a symlink in a policy directory may only point into another policy directory; add the target's directory to `dirs` if it is trusted",
        );
        return out;
    }
    let before = out.findings.len();
    permissions(&mut out, program, &candidate, &canonical);
    if out.findings.len() > before {
        return out;
    }
    let key = canonical.to_string_lossy().into_owned();
    match tool.sha256.get(&key) {
        Some(pin) => match sha256_file(&canonical) {
            Ok(digest) if &digest == pin => {}
            Ok(digest) => refuse(
                &mut out,
                "binary.sha256-mismatch",
                format!(
                    "`{key}` has sha256 {}, not the pinned {}",
                    hex(&digest),
                    hex(pin)
                ),
                "the binary changed since the policy was written; check it and update the pin",
            ),
            Err(e) => refuse(
                &mut out,
                "binary.sha256-mismatch",
                format!("cannot hash `{key}`: {e}"),
                "the binary must be readable to check its pin",
            ),
        },
        None if tool.require_sha256 => refuse(
            &mut out,
            "binary.unpinned",
            format!("`{key}` has no sha256 pin and the policy requires one for `{tool_name}`"),
            "add its digest under the tool's `sha256` table",
        ),
        None => {}
    }
    if out.findings.is_empty() {
        out.program = Some(canonical);
    }
    out
}

/// Every binary that may serve `tool` here: each allowed program name
/// looked up in each of the kind's `dirs`, with exactly the checks of
/// [`check`] (canonical, inside the policy's directories, permissions,
/// pins). Returns `(canonical binary, program name)` pairs, without
/// duplicates; names that are not installed are left out.
pub(crate) fn allowed_binaries(
    os: Os,
    tool: &ToolRules,
    tool_name: &str,
) -> Vec<(PathBuf, String)> {
    let mut out: Vec<(PathBuf, String)> = Vec::new();
    for rule in &tool.programs {
        for dir in &tool.dirs {
            let program = if dir.ends_with('/') {
                format!("{dir}{}", rule.name)
            } else {
                format!("{dir}/{}", rule.name)
            };
            let found = check(os, tool, tool_name, &program, Host::Here);
            if let Some(path) = found.program {
                if !out.iter().any(|(p, n)| *p == path && *n == rule.name) {
                    out.push((path, rule.name.clone()));
                }
            }
        }
    }
    out
}

#[cfg(unix)]
fn permissions(out: &mut BinaryCheck, program: &str, candidate: &Path, canonical: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mut refuse = |rule, message: String, hint: &str| {
        out.findings.push(BinaryFinding {
            rule,
            subject: program.to_owned(),
            message,
            hint: hint.to_owned(),
            status: Status::Refused,
        })
    };
    let md = match fs::metadata(canonical) {
        Ok(md) => md,
        Err(e) => {
            refuse(
                "binary.not-found",
                format!("cannot stat `{}`: {e}", canonical.display()),
                "",
            );
            return;
        }
    };
    let mode = md.permissions().mode();
    if !md.is_file() {
        refuse(
            "binary.not-regular",
            format!("`{}` is not a regular file", canonical.display()),
            "a tool must be a regular executable file",
        );
        return;
    }
    if mode & 0o111 == 0 {
        refuse(
            "binary.not-executable",
            format!(
                "`{}` is not executable (mode {:o})",
                canonical.display(),
                mode & 0o7777
            ),
            "a tool must be an executable file",
        );
    }
    if mode & 0o002 != 0 {
        refuse(
            "binary.world-writable",
            format!(
                "`{}` is world-writable (mode {:o})",
                canonical.display(),
                mode & 0o7777
            ),
            "anyone could replace the tool; remove the write bit for others (`chmod o-w`)",
        );
    }
    let mut dirs = vec![canonical.parent()];
    if candidate.parent() != canonical.parent() {
        dirs.push(candidate.parent());
    }
    for dir in dirs.into_iter().flatten() {
        if let Ok(dmd) = fs::metadata(dir) {
            if dmd.permissions().mode() & 0o002 != 0 {
                refuse(
                    "binary.dir-world-writable",
                    format!("`{}` is in `{}`, which is world-writable", canonical.display(), dir.display()),
                    "anyone could swap the tool; keep tools in directories only their owner can write",
                );
            }
        }
    }
    // Above the binary's directory, a world-writable directory without the
    // sticky bit lets anyone rename the whole tree away and put another in
    // its place (`/tmp` itself is sticky, so it passes).
    for dir in canonical.ancestors().skip(2) {
        if let Ok(dmd) = fs::metadata(dir) {
            let mode = dmd.permissions().mode();
            if mode & 0o002 != 0 && mode & 0o1000 == 0 {
                refuse(
                    "binary.dir-world-writable",
                    format!(
                        "`{}` is below `{}`, which is world-writable and not sticky",
                        canonical.display(),
                        dir.display()
                    ),
                    "anyone could replace the directory holding the tool; fix the directory's permissions",
                );
                break;
            }
        }
    }
}

#[cfg(not(unix))]
fn permissions(out: &mut BinaryCheck, program: &str, _candidate: &Path, canonical: &Path) {
    out.findings.push(BinaryFinding {
        rule: "binary.unverified",
        subject: program.to_owned(),
        message: format!(
            "permissions of `{}` cannot be checked on this host",
            canonical.display()
        ),
        hint: String::new(),
        status: Status::Unverified,
    });
}

/// The sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> io::Result<[u8; 32]> {
    let mut file = fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().into())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn programs_split_into_dir_and_name() {
        assert_eq!(split_program("opt"), (None, "opt"));
        assert_eq!(split_program("/usr/bin/opt"), (Some("/usr/bin"), "opt"));
        assert_eq!(split_program("/opt"), (Some("/"), "opt"));
        assert_eq!(
            split_program("C:\\LLVM\\bin\\opt.exe"),
            (Some("C:\\LLVM\\bin"), "opt.exe")
        );
        assert_eq!(split_program("./opt"), (Some("."), "opt"));
    }

    #[test]
    fn sha256_of_a_known_file() {
        let tmp = tempfile::NamedTempFile::new().expect("temp file");
        std::fs::write(tmp.path(), b"abc").expect("write");
        assert_eq!(
            hex(&sha256_file(tmp.path()).expect("hash")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
