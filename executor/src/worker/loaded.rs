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
//! Each program of the chain also vouches for its install prefix (the
//! parent of its directory): an interpreter finds its own library there
//! (Python's `lib/python3.X`). A `#!/usr/bin/env NAME` script's `NAME` is
//! found on the tool's `PATH`, as `env` finds it, and followed too.
//!
//! It fails closed: a binary whose libraries cannot all be found, whose
//! architecture has no known loader here, whose loader is not the
//! system's (a private glibc reads its own configuration, which cannot
//! be known from here), whose `env` line is more than one plain name, or
//! whose loader does not answer in time is an error, and the caller
//! refuses the client's root.
//!
//! Answers are kept for the next lease only while every file they name
//! and every directory searched is unchanged (device, inode, size,
//! modification and change times): a library upgraded, or one added to
//! a directory searched earlier, makes the loader run again.

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
    /// The binary's loader is not the system's for its architecture.
    #[error("`{}` is started by its own loader `{}`, whose configuration cannot be known here", binary.display(), loader.display())]
    PrivateLoader {
        /// The binary.
        binary: PathBuf,
        /// Its `PT_INTERP`.
        loader: PathBuf,
    },
    /// A `#!` line through `env` that is not one plain program name.
    #[error("`{}` starts through `env` with `{line}`: only `#!/usr/bin/env NAME` (one plain name) can be followed", .binary.display())]
    EnvLine {
        /// The script.
        binary: PathBuf,
        /// What follows `env` on its `#!` line.
        line: String,
    },
    /// The program a `#!/usr/bin/env NAME` line names is not on `PATH`.
    #[error("`{}` starts `{name}` through `env`, which is not on its `PATH`", .binary.display())]
    EnvNotFound {
        /// The script.
        binary: PathBuf,
        /// The program.
        name: String,
    },
    /// The loader could not resolve every library.
    #[error("the loader cannot start `{}`: {said}", binary.display())]
    Unresolved {
        /// The binary.
        binary: PathBuf,
        /// The loader's last words.
        said: String,
    },
}

/// What a file or directory is now: device, inode, size, modification
/// and change times (nanoseconds); `None` if it is not there.
type Stamp = Option<(u64, u64, u64, i128, i128)>;

fn stamp(path: &Path) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    let nanos = |secs: i64, nsec: i64| i128::from(secs) * 1_000_000_000 + i128::from(nsec);
    Some((
        meta.dev(),
        meta.ino(),
        meta.size(),
        nanos(meta.mtime(), meta.mtime_nsec()),
        nanos(meta.ctime(), meta.ctime_nsec()),
    ))
}

/// An answer, and the stamps of everything it depends on then.
type Kept = (Loaded, Vec<(PathBuf, Stamp)>);

/// Answers by binary (as named) and the tool's `PATH`.
type Memo = HashMap<(PathBuf, Option<String>), Kept>;

static MEMO: Mutex<Option<Memo>> = Mutex::new(None);

/// What the loader reads to start `binary` (see the module doc), for a
/// tool whose `PATH` is `path` (`None`: unset, as `env` then searches
/// `/bin:/usr/bin`); empty for a binary that is not there (it cannot
/// run).
pub(crate) fn loaded(binary: &Path, path: Option<&str>) -> Result<Loaded, LoadedError> {
    let key = (binary.to_owned(), path.map(str::to_owned));
    let kept = MEMO
        .lock()
        .ok()
        .and_then(|memo| memo.as_ref()?.get(&key).cloned());
    if let Some((found, stamps)) = kept {
        if stamps.iter().all(|(path, then)| stamp(path) == *then) {
            return Ok(found);
        }
    }
    let found = find(binary, path, 0)?;
    let stamps = std::iter::once(binary.to_owned())
        .chain(found.files.iter().cloned())
        .chain(found.dirs.iter().cloned())
        .map(|path| {
            let now = stamp(&path);
            (path, now)
        })
        .collect();
    if let Ok(mut memo) = MEMO.lock() {
        memo.get_or_insert_with(HashMap::new)
            .insert(key, (found.clone(), stamps));
    }
    Ok(found)
}

/// [`loaded`] without the memo; `depth` counts `env` hops.
fn find(binary: &Path, path: Option<&str>, depth: usize) -> Result<Loaded, LoadedError> {
    let Ok(real) = binary.canonicalize() else {
        return Ok(Loaded::default());
    };
    let meta = std::fs::metadata(&real).map_err(|_| LoadedError::NotAFile(real.clone()))?;
    if !meta.is_file() {
        return Err(LoadedError::NotAFile(real));
    }
    let mut found = Loaded::default();
    for file in crate::confine::with_interpreters(&real) {
        // Its install prefix: `/srv/py` for `/srv/py/bin/python3`.
        if let Some(prefix) = file
            .parent()
            .and_then(Path::parent)
            .filter(|prefix| prefix.parent().is_some())
        {
            found.dirs.push(prefix.to_owned());
        }
        if let Some(interpreter) = elf_interpreter(&file) {
            let listed = list(&file, &interpreter)?;
            found.files.extend(listed.files);
            found.dirs.extend(listed.dirs);
        } else if let Some(name) = env_program(&file)? {
            let program = on_path(&name, path).ok_or_else(|| LoadedError::EnvNotFound {
                binary: file.clone(),
                name: name.clone(),
            })?;
            // `env` looks in each `PATH` directory in turn: a root over
            // an earlier one would put the client's program first.
            found.dirs.extend(path_dirs(path));
            if depth < 4 {
                let more = find(&program, path, depth + 1)?;
                found.files.extend(more.files);
                found.dirs.extend(more.dirs);
            }
        }
        found.files.push(file);
    }
    found.files.sort();
    found.files.dedup();
    found.dirs.sort();
    found.dirs.dedup();
    Ok(found)
}

/// The directories of `path` (unset: `env`'s default, `/bin:/usr/bin`).
fn path_dirs(path: Option<&str>) -> Vec<PathBuf> {
    path.unwrap_or("/bin:/usr/bin")
        .split(':')
        .filter(|dir| dir.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Where `env` finds program `name` on `path`.
fn on_path(name: &str, path: Option<&str>) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    path_dirs(path)
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// If `file` is a script whose `#!` line runs `env`: the one plain
/// program name `env` is given (an error for anything else: options,
/// assignments such as `LD_PRELOAD=...`, or several words).
fn env_program(file: &Path) -> Result<Option<String>, LoadedError> {
    let mut head = [0u8; 256];
    let read = std::fs::File::open(file)
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let Some(line) = head[..read].strip_prefix(b"#!") else {
        return Ok(None);
    };
    let line = line.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split_whitespace();
    let interpreter = words.next().unwrap_or_default();
    if Path::new(interpreter).file_name() != Some("env".as_ref()) {
        return Ok(None);
    }
    let rest: Vec<&str> = words.collect();
    match rest[..] {
        [name] if !name.starts_with('-') && !name.contains(['=', '/']) => Ok(Some(name.to_owned())),
        _ => Err(LoadedError::EnvLine {
            binary: file.to_owned(),
            line: rest.join(" "),
        }),
    }
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
/// its search traced, and reads both; `interpreter` (its `PT_INTERP`)
/// must be that loader.
fn list(binary: &Path, interpreter: &Path) -> Result<Loaded, LoadedError> {
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
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(interpreter, Path::new(loader)) {
        return Err(LoadedError::PrivateLoader {
            binary: binary.to_owned(),
            loader: interpreter.to_owned(),
        });
    }
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
        let found = loaded(opt, None).unwrap();
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
        assert_eq!(
            loaded(opt, None).unwrap(),
            found,
            "the memo answers the same"
        );
        assert_eq!(
            loaded(Path::new("/nonexistent/tool"), None).unwrap(),
            Loaded::default()
        );
    }
}
