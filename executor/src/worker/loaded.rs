//! The shared libraries a tool's binary loads, as this machine's own
//! dynamic loader resolves them ([`libraries`]): the worker refuses a
//! client's root over their directories, wherever they lie (a toolchain
//! in `/nix/store` or `/srv` loads libraries through its `RUNPATH` from
//! directories no list of system directories names).
//!
//! The system's loader is run in list mode on the binary (`ld.so --list`):
//! it finds and maps the binary's libraries, prints where it found them
//! and exits before any of them is initialized; the binary's own
//! interpreter is not run (`ldd` may run the binary itself).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

/// The system's dynamic loaders, the first one present is used.
const LOADERS: [&str; 3] = [
    "/lib64/ld-linux-x86-64.so.2",
    "/lib/ld-linux-aarch64.so.1",
    "/lib/ld-linux.so.2",
];

/// What was found for a binary, by its path and its identity then (a
/// binary replaced since is listed again).
type Memo = HashMap<(PathBuf, u64, i64, u64), Vec<PathBuf>>;

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// The shared libraries `binary` loads (absolute, as the loader found
/// them), the loader itself included; empty for a binary that is not a
/// dynamic executable, that is not there, or where no loader is known.
pub(crate) fn libraries(binary: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(binary) else {
        return Vec::new();
    };
    let key = (binary.to_owned(), meta.ino(), meta.mtime(), meta.size());
    if let Some(found) = MEMO
        .lock()
        .ok()
        .and_then(|memo| memo.as_ref()?.get(&key).cloned())
    {
        return found;
    }
    let found = list(binary);
    if let Ok(mut memo) = MEMO.lock() {
        memo.get_or_insert_with(HashMap::new)
            .insert(key, found.clone());
    }
    found
}

/// Runs the loader in list mode on `binary` and reads its answer.
fn list(binary: &Path) -> Vec<PathBuf> {
    let Some(loader) = LOADERS.iter().map(Path::new).find(|l| l.exists()) else {
        return Vec::new();
    };
    let output = Command::new(loader)
        .arg("--list")
        .arg(binary)
        .env_clear()
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output();
    match output {
        Ok(output) if output.status.success() => parse(&String::from_utf8_lossy(&output.stdout)),
        _ => Vec::new(),
    }
}

/// The paths in the loader's list: `name => /path (0x...)` and
/// `/path (0x...)` lines; `name (0x...)` (the vDSO) and `not found` name
/// no file.
fn parse(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let line = line.trim();
            let path = line.split_once("=> ").map_or(line, |(_, to)| to);
            let path = path.rsplit_once(" (0x").map_or(path, |(path, _)| path);
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaders_list_names_each_library_it_found() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd5a5f2000)\n\
                    \tlibLLVM-14.so.1 => /lib/x86_64-linux-gnu/libLLVM-14.so.1 (0x00007f0e2a400000)\n\
                    \tlibffi.so.8 => not found\n\
                    \tlibz.so.1 => /nix/store/abc-zlib/lib/libz.so.1 (0x00007f0e2a3e0000)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f0e31b8a000)\n";
        assert_eq!(
            parse(text),
            [
                "/lib/x86_64-linux-gnu/libLLVM-14.so.1",
                "/nix/store/abc-zlib/lib/libz.so.1",
                "/lib64/ld-linux-x86-64.so.2",
            ]
            .map(PathBuf::from)
        );
    }

    /// The real loader on a real tool: `opt` loads LLVM's library.
    #[test]
    fn opt_loads_llvm() {
        let opt = Path::new("/usr/lib/llvm-14/bin/opt");
        let found = libraries(opt);
        assert!(
            found.iter().any(|lib| lib
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM"))),
            "{found:?}"
        );
        assert_eq!(libraries(opt), found, "the memo answers the same");
        assert!(libraries(Path::new("/nonexistent/tool")).is_empty());
    }
}
