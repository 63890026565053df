//! What the dynamic loader reads to start a tool's binary ([`loaded`]):
//! the worker refuses a client's root over any of it, wherever it lies (a
//! toolchain in `/nix/store` or `/srv` loads libraries through its
//! `RUNPATH` from directories no list of system directories names).
//!
//! The kernel runs a binary's `PT_INTERP` (or a script's `#!`
//! interpreter, and that one's), so every file of that chain is the
//! tool's ([`crate::confine::with_interpreters`]). For each dynamic ELF
//! of the chain, this machine's own loader for its architecture is run in
//! list mode (`ld.so --list`) on the binary's real path, with the
//! loader's own trace of its search (`LD_DEBUG=libs`): it finds and maps
//! the libraries, prints where it found them and exits before any is
//! initialized (the binary's code and its interpreter never run; `ldd`
//! may run the binary itself). Every directory the trace says it searched
//! (each `RUNPATH` entry and its `glibc-hwcaps` subdirectories, before
//! the one a library was found in) is vouched for too: a client's root
//! over an earlier one would put its own library first.
//!
//! It fails closed: a binary whose libraries cannot all be found, whose
//! architecture has no known loader here, or whose loader does not answer
//! in time is an error, and the caller refuses the client's root.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Each architecture's system loader: (ELF class, machine, path).
const LOADERS: [(u8, u16, &str); 3] = [
    (2, 62, "/lib64/ld-linux-x86-64.so.2"),
    (2, 183, "/lib/ld-linux-aarch64.so.1"),
    (1, 3, "/lib/ld-linux.so.2"),
];

/// How long the loader may take to list one binary.
const LIST_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything the loader reads to start a binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Loaded {
    /// The files it maps or reads: the binary, its interpreters, each
    /// library, the loader's cache.
    pub files: Vec<PathBuf>,
    /// The directories it searches for libraries, in any order.
    pub dirs: Vec<PathBuf>,
}

/// Why what a binary loads cannot be known.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoadedError {
    /// The binary is there but is not a regular file.
    #[error("`{}` is not a regular file", .0.display())]
    NotAFile(PathBuf),
    /// No loader for the binary's architecture is on this machine.
    #[error("no dynamic loader for `{}`'s architecture (ELF class {class}, machine {machine}) is on this machine", binary.display())]
    NoLoader {
        /// The binary.
        binary: PathBuf,
        /// Its ELF class.
        class: u8,
        /// Its ELF machine.
        machine: u16,
    },
    /// The loader could not be run.
    #[error("cannot run the loader `{loader}`")]
    Spawn {
        /// The loader.
        loader: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The loader did not answer in time (it was killed).
    #[error("the loader took more than {}s to list `{}`", LIST_TIMEOUT.as_secs(), .0.display())]
    TimedOut(PathBuf),
    /// The loader could not resolve every library.
    #[error("the loader cannot start `{}`: {said}", binary.display())]
    Unresolved {
        /// The binary.
        binary: PathBuf,
        /// The loader's last words.
        said: String,
    },
}

/// What was found for a binary, by its real path and its identity then (a
/// binary replaced since is listed again). Only answers are kept.
type Memo = HashMap<(PathBuf, u64, u64, i64, u64), Loaded>;

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// What the loader reads to start `binary` (see the module doc); empty
/// for a binary that is not there (it cannot run).
pub(crate) fn loaded(binary: &Path) -> Result<Loaded, LoadedError> {
    use std::os::unix::fs::MetadataExt;
    let Ok(real) = binary.canonicalize() else {
        return Ok(Loaded::default());
    };
    let meta = std::fs::metadata(&real).map_err(|_| LoadedError::NotAFile(real.clone()))?;
    if !meta.is_file() {
        return Err(LoadedError::NotAFile(real));
    }
    let key = (
        real.clone(),
        meta.dev(),
        meta.ino(),
        meta.mtime(),
        meta.size(),
    );
    if let Some(found) = MEMO
        .lock()
        .ok()
        .and_then(|memo| memo.as_ref()?.get(&key).cloned())
    {
        return Ok(found);
    }
    let mut found = Loaded::default();
    for file in crate::confine::with_interpreters(&real) {
        if let Some(interpreter) = elf_interpreter(&file) {
            // A loader of the binary's own (not the system's) looks in
            // its own directory by default.
            if let Some(dir) = interpreter.parent() {
                found.dirs.push(dir.to_owned());
            }
            let listed = list(&file)?;
            found.files.extend(listed.files);
            found.dirs.extend(listed.dirs);
        }
        found.files.push(file);
    }
    found.files.sort();
    found.files.dedup();
    found.dirs.sort();
    found.dirs.dedup();
    if let Ok(mut memo) = MEMO.lock() {
        memo.get_or_insert_with(HashMap::new)
            .insert(key, found.clone());
    }
    Ok(found)
}

/// `PT_INTERP` of `file` if it is a dynamic ELF binary.
fn elf_interpreter(file: &Path) -> Option<PathBuf> {
    elf_machine(file)?;
    crate::confine::interpreter_of(file)
}

/// The ELF class and machine of `file`, if it is an ELF file.
fn elf_machine(file: &Path) -> Option<(u8, u16)> {
    let mut head = [0u8; 20];
    std::fs::File::open(file).ok()?.read_exact(&mut head).ok()?;
    if &head[..4] != b"\x7fELF" {
        return None;
    }
    let machine = match head[5] {
        1 => u16::from_le_bytes([head[18], head[19]]),
        2 => u16::from_be_bytes([head[18], head[19]]),
        _ => return None,
    };
    Some((head[4], machine))
}

/// Runs the system loader for `binary`'s architecture in list mode, with
/// its search traced, and reads both.
fn list(binary: &Path) -> Result<Loaded, LoadedError> {
    let (class, machine) = elf_machine(binary).unwrap_or_default();
    let loader = LOADERS
        .iter()
        .find(|(c, m, path)| *c == class && *m == machine && Path::new(path).is_file())
        .map(|(_, _, path)| *path)
        .ok_or_else(|| LoadedError::NoLoader {
            binary: binary.to_owned(),
            class,
            machine,
        })?;
    let spawn_error = |source| LoadedError::Spawn {
        loader: loader.to_owned(),
        source,
    };
    // Counted as a running tool while it lives, so another lease's orphan
    // reaper neither kills nor reaps it.
    let _counted = crate::run::Running::enter();
    let mut child = Command::new(loader)
        .arg("--list")
        .arg(binary)
        .env_clear()
        .env("LD_DEBUG", "libs")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_error)?;
    // Both pipes drained on threads of their own, so neither fills.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut text = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.by_ref().take(1 << 20).read_to_end(&mut text);
            }
            String::from_utf8_lossy(&text).into_owned()
        })
    };
    let stdout = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let stderr = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let deadline = Instant::now() + LIST_TIMEOUT;
    let status = loop {
        match child.try_wait().map_err(spawn_error)? {
            Some(status) => break status,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LoadedError::TimedOut(binary.to_owned()));
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    };
    let stdout = stdout.join().unwrap_or_default();
    let stderr = stderr.join().unwrap_or_default();
    if !status.success() {
        let said = stderr
            .lines()
            .chain(stdout.lines())
            .rfind(|line| !line.contains(":\t") && !line.trim().is_empty())
            .unwrap_or("it failed without a word")
            .trim()
            .to_owned();
        return Err(LoadedError::Unresolved {
            binary: binary.to_owned(),
            said,
        });
    }
    let (dirs, mut files) = parse_search(&stderr);
    files.extend(parse_list(&stdout));
    Ok(Loaded { files, dirs })
}

/// The paths in the loader's list: `name => /path (0x...)` and
/// `/path (0x...)` lines, and an absolute name before `=>` (the binary's
/// own interpreter, as its `PT_INTERP` names it); `name (0x...)` (the
/// vDSO) names no file.
fn parse_list(text: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let (name, to) = line.split_once(" => ").unwrap_or((line, ""));
        for path in [name, to] {
            let path = path.rsplit_once(" (0x").map_or(path, |(path, _)| path);
            if path.starts_with('/') {
                found.push(PathBuf::from(path));
            }
        }
    }
    found
}

/// The directories of each `search path=A:B:C\t\t(RUNPATH from ...)`
/// line of the loader's trace, and the file of each `search cache=`.
fn parse_search(text: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for line in text.lines() {
        if let Some((_, list)) = line.split_once("search path=") {
            let list = list.split('\t').next().unwrap_or_default();
            dirs.extend(
                list.split(':')
                    .filter(|dir| dir.starts_with('/'))
                    .map(PathBuf::from),
            );
        } else if let Some((_, cache)) = line.split_once("search cache=") {
            let cache = cache.trim();
            if cache.starts_with('/') {
                files.push(PathBuf::from(cache));
            }
        }
    }
    (dirs, files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loaders_list_names_each_library_it_found_and_the_binarys_interpreter() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd5a5f2000)\n\
                    \tlibLLVM-14.so.1 => /lib/x86_64-linux-gnu/libLLVM-14.so.1 (0x00007f0e2a400000)\n\
                    \tlibz.so.1 => /nix/store/abc-zlib/lib/libz.so.1 (0x00007f0e2a3e0000)\n\
                    \t/opt/own/ld.so => /lib64/ld-linux-x86-64.so.2 (0x00007f0e31b8a000)\n";
        assert_eq!(
            parse_list(text),
            [
                "/lib/x86_64-linux-gnu/libLLVM-14.so.1",
                "/nix/store/abc-zlib/lib/libz.so.1",
                "/opt/own/ld.so",
                "/lib64/ld-linux-x86-64.so.2",
            ]
            .map(PathBuf::from)
        );
    }

    #[test]
    fn the_loaders_trace_names_every_directory_it_searched() {
        let text = "     20827:\tfind library=libffi.so.8 [0]; searching\n\
                    \x20    20827:\t search path=/srv/a/glibc-hwcaps/x86-64-v3:/srv/a:/srv/b\t\t(RUNPATH from file /srv/tool)\n\
                    \x20    20827:\t  trying file=/srv/a/glibc-hwcaps/x86-64-v3/libffi.so.8\n\
                    \x20    20827:\t search cache=/etc/ld.so.cache\n";
        let (dirs, files) = parse_search(text);
        assert_eq!(
            dirs,
            ["/srv/a/glibc-hwcaps/x86-64-v3", "/srv/a", "/srv/b"].map(PathBuf::from)
        );
        assert_eq!(files, [PathBuf::from("/etc/ld.so.cache")]);
    }

    /// The real loader on a real tool: `opt` loads LLVM's library, and
    /// the loader searched `libLLVM`'s `RUNPATH` for `libffi`.
    #[test]
    fn opt_loads_llvm() {
        let opt = Path::new("/usr/lib/llvm-14/bin/opt");
        let found = loaded(opt).unwrap();
        assert!(
            found.files.iter().any(|lib| lib
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("libLLVM"))),
            "{found:?}"
        );
        assert!(
            found.files.contains(&opt.canonicalize().unwrap()),
            "{found:?}"
        );
        assert!(!found.dirs.is_empty(), "{found:?}");
        assert_eq!(loaded(opt).unwrap(), found, "the memo answers the same");
        assert_eq!(
            loaded(Path::new("/nonexistent/tool")).unwrap(),
            Loaded::default()
        );
    }
}
