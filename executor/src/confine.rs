//! What one command may touch, as the sandbox's second layer enforces it:
//! write only its own staging directory, read only its declared inputs,
//! input directories and the system directories, and run only the
//! programs the policy lets its tool run. The policy (the first layer)
//! judged the command's text; this turns that verdict into a
//! [`SandboxSpec`] so that a tool that does something its arguments did
//! not say is stopped by the kernel (Landlock) and the tracer, whatever
//! the flag.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use policy::Resolved;

use crate::run::trace::ExecRule;
use crate::sandbox::{SandboxSpec, DEFAULT_WRITABLE_DEVICES};
use crate::staging::Staging;

/// Confines `spec` to what the command whose verdict is `resolved`
/// declared: see the module doc.
pub fn confine(spec: &mut SandboxSpec, resolved: &Resolved, staging: &Staging) {
    spec.writable = std::iter::once(staging.dir().to_owned())
        .chain(DEFAULT_WRITABLE_DEVICES.iter().map(PathBuf::from))
        .collect();
    spec.env.insert(
        "TMPDIR".into(),
        staging.tmp_dir().to_string_lossy().into_owned(),
    );
    // The tool's own directory, wherever the policy allowed it to live
    // (its libraries and data may sit beside it).
    if let Some(dir) = resolved.program.parent() {
        push_new(&mut spec.readable, dir.to_owned());
    }
    // The inputs as the policy resolved them (where they physically are),
    // and the directories it checked like inputs (`-I`, `-L`, a compile's
    // own source directory when that holds nothing but inputs).
    for path in resolved.input_files.iter().chain(&resolved.input_dirs) {
        push_new(&mut spec.readable, path.clone());
    }
    let mut executable = Vec::new();
    let programs = std::iter::once(resolved.program.clone())
        .chain(resolved.may_exec.iter().map(|allowed| allowed.path.clone()));
    for program in programs {
        for file in with_interpreters(program.as_path()) {
            push_new(&mut executable, file);
        }
    }
    spec.executable = Some(executable);
}

/// The programs the tracer lets `resolved`'s tool run after itself.
pub fn exec_rules(resolved: &Resolved) -> Vec<ExecRule> {
    resolved
        .may_exec
        .iter()
        .map(|allowed| ExecRule {
            path: allowed.path.clone(),
            name: allowed.name.clone(),
        })
        .collect()
}

fn push_new(list: &mut Vec<PathBuf>, path: PathBuf) {
    if !list.iter().any(|p| path.starts_with(p)) {
        list.push(path);
    }
}

/// `program` (canonical) and what the kernel opens to run it: its ELF
/// interpreter (`PT_INTERP`, the dynamic loader), or a script's `#!`
/// interpreter and that one's loader, canonical, at most a few deep.
pub fn with_interpreters(program: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut next = Some(program.to_owned());
    // The kernel itself allows four levels of `#!` and one loader.
    for _ in 0..6 {
        let Some(path) = next.take() else { break };
        let Ok(canonical) = path.canonicalize() else {
            break;
        };
        if files.contains(&canonical) {
            break;
        }
        next = interpreter_of(&canonical);
        files.push(canonical);
    }
    files
}

/// The interpreter the kernel loads to run `path`, if any.
pub(crate) fn interpreter_of(path: &Path) -> Option<PathBuf> {
    let mut file = File::open(path).ok()?;
    let mut head = [0u8; 256];
    let read = read_up_to(&mut file, &mut head)?;
    let head = &head[..read];
    if let Some(line) = head.strip_prefix(b"#!") {
        let line = line.split(|b| *b == b'\n').next()?;
        let text = std::str::from_utf8(line).ok()?.trim();
        let interpreter = text.split_whitespace().next()?;
        return Some(PathBuf::from(interpreter));
    }
    elf_interpreter(&mut file, head)
}

/// `PT_INTERP` of a little-endian ELF file whose first bytes are `head`.
fn elf_interpreter(file: &mut File, head: &[u8]) -> Option<PathBuf> {
    const PT_INTERP: u32 = 3;
    if head.len() < 64 || &head[..4] != b"\x7fELF" || head[5] != 1 {
        return None;
    }
    let u16_at = |at: usize| Some(u16::from_le_bytes(head.get(at..at + 2)?.try_into().ok()?));
    let u32_at = |at: usize| Some(u32::from_le_bytes(head.get(at..at + 4)?.try_into().ok()?));
    let u64_at = |at: usize| Some(u64::from_le_bytes(head.get(at..at + 8)?.try_into().ok()?));
    let wide = match head[4] {
        1 => false,
        2 => true,
        _ => return None,
    };
    let (phoff, phentsize, phnum) = if wide {
        (u64_at(32)?, u16_at(54)?, u16_at(56)?)
    } else {
        (u64::from(u32_at(28)?), u16_at(42)?, u16_at(44)?)
    };
    let entry = usize::from(phentsize);
    if entry < if wide { 56 } else { 32 } || phnum > 256 {
        return None;
    }
    let mut table = vec![0u8; entry * usize::from(phnum)];
    file.seek(SeekFrom::Start(phoff)).ok()?;
    file.read_exact(&mut table).ok()?;
    for header in table.chunks_exact(entry) {
        let field32 =
            |at: usize| Some(u32::from_le_bytes(header.get(at..at + 4)?.try_into().ok()?));
        let field64 =
            |at: usize| Some(u64::from_le_bytes(header.get(at..at + 8)?.try_into().ok()?));
        if field32(0)? != PT_INTERP {
            continue;
        }
        let (offset, size) = if wide {
            (field64(8)?, field64(32)?)
        } else {
            (u64::from(field32(4)?), u64::from(field32(16)?))
        };
        if size == 0 || size > 4096 {
            return None;
        }
        let mut name = vec![0u8; size as usize];
        file.seek(SeekFrom::Start(offset)).ok()?;
        file.read_exact(&mut name).ok()?;
        let name = name.split(|b| *b == 0).next()?;
        return Some(PathBuf::from(std::str::from_utf8(name).ok()?));
    }
    None
}

fn read_up_to(file: &mut File, buffer: &mut [u8]) -> Option<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match file.read(&mut buffer[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(filled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dynamic_binary_needs_its_loader() {
        // `/bin/sh` on every Linux this runs on is a dynamic ELF binary.
        let files = with_interpreters(Path::new("/bin/sh"));
        assert!(files.len() >= 2, "{files:?}");
        let loader = files[1].to_string_lossy().into_owned();
        assert!(
            loader.contains("ld-linux") || loader.contains("ld-musl"),
            "{files:?}"
        );
    }

    #[test]
    fn a_script_needs_its_interpreter_and_that_ones_loader() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("tool");
        std::fs::write(&script, "#!/bin/sh -e\necho hi\n").unwrap();
        let files = with_interpreters(&script);
        assert_eq!(files[0], script.canonicalize().unwrap());
        assert_eq!(files[1], Path::new("/bin/sh").canonicalize().unwrap());
        assert!(files.len() >= 3, "{files:?}");
    }

    #[test]
    fn a_file_that_is_neither_has_no_interpreter() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        std::fs::write(&data, b"\x7fELF\x02\x01garbage").unwrap();
        assert_eq!(with_interpreters(&data).len(), 1);
    }
}
