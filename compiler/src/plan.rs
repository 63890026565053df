//! The commands of a build: for each partition `opt` then `llc`, then one
//! link, spelled the way the target platform's toolchain spells them, with
//! every file declared and a content key for caching.
//!
//! [`Target`] is the platform (triple, object suffix); [`Layout`] places
//! partition files and the output under the work root; [`Planner`] makes
//! the [`cmdlog::Command`]s, numbering them in order.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use cmdlog::{Command, Os, ToolKind};
use sha2::{Digest, Sha256};

use crate::options::{Emit, OptLevel};
use crate::toolchain::Toolchain;

/// The platform the commands are for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The operating system.
    pub os: Os,
    /// The architecture, as Rust names it (`x86_64`, `aarch64`).
    pub arch: String,
    /// The triple given to `llc -mtriple`.
    pub triple: String,
}

impl Target {
    /// The target for `os`, taking the architecture (and, for Linux, the
    /// whole triple) from the module's triple when it has one.
    pub fn new(os: Os, module_triple: &str) -> Target {
        let first = module_triple.split('-').next().unwrap_or_default();
        let arch = match first {
            "x86_64" | "amd64" => "x86_64",
            "aarch64" | "arm64" => "aarch64",
            "" => std::env::consts::ARCH,
            other => other,
        }
        .to_owned();
        let triple = match os {
            Os::Linux if module_triple.contains("linux") => module_triple.to_owned(),
            Os::Linux if arch == "x86_64" => "x86_64-pc-linux-gnu".to_owned(),
            Os::Linux => format!("{arch}-unknown-linux-gnu"),
            Os::Macos => format!("{}-apple-macosx11.0.0", macos_arch(&arch)),
            Os::Windows => format!("{arch}-pc-windows-msvc"),
        };
        Target { os, arch, triple }
    }

    /// The suffix of object files.
    pub fn object_suffix(&self) -> &'static str {
        match self.os {
            Os::Windows => "obj",
            _ => "o",
        }
    }
}

/// Apple's name for an architecture.
fn macos_arch(arch: &str) -> &str {
    match arch {
        "aarch64" => "arm64",
        other => other,
    }
}

/// Where files go under the work root; every path is root-relative with `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// The work root, absolute.
    pub root: PathBuf,
    /// The output, relative to the root.
    pub output: String,
    /// The directory of partition files, relative to the root
    /// (`<output>.aotc`).
    pub parts: String,
}

/// `output` (relative to the current directory or absolute) as a path
/// relative to `root` (absolute, canonical), if it lies under it.
pub fn relative_to_root(root: &Path, output: &Path) -> Option<String> {
    let absolute = if output.is_absolute() {
        output.to_owned()
    } else {
        std::env::current_dir().ok()?.join(output)
    };
    // Resolve symlinks in the part that exists (e.g. `/tmp`), then `..`.
    let parent = absolute.parent()?;
    let name = absolute.file_name()?;
    let parent = parent.canonicalize().unwrap_or_else(|_| lexical(parent));
    let rel = parent.join(name);
    let rel = rel.strip_prefix(root).ok()?;
    let parts: Vec<String> = rel
        .components()
        .map(|c| match c {
            Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Option<_>>()?;
    (!parts.is_empty()).then(|| parts.join("/"))
}

/// `path` with `.` and `..` resolved without touching the file system.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Layout {
    /// The layout for `output` (root-relative) under `root`.
    pub fn new(root: PathBuf, output: String) -> Layout {
        let parts = format!("{output}.aotc");
        Layout {
            root,
            output,
            parts,
        }
    }

    /// Partition `i`'s bitcode as `aotc` writes it.
    pub fn bitcode(&self, i: usize) -> String {
        format!("{}/p{i}.bc", self.parts)
    }

    /// Partition `i`'s bitcode after `opt`.
    pub fn optimized(&self, i: usize) -> String {
        format!("{}/p{i}.opt.bc", self.parts)
    }

    /// Partition `i`'s object file.
    pub fn object(&self, i: usize, target: &Target) -> String {
        format!("{}/p{i}.{}", self.parts, target.object_suffix())
    }

    /// A root-relative path as a real path.
    pub fn absolute(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
}

/// A content key: the hash of what came before and of the command line.
fn cache_key(previous: &[u8], program: &str, args: &[String]) -> (String, Vec<u8>) {
    let mut h = Sha256::new();
    h.update((previous.len() as u64).to_le_bytes());
    h.update(previous);
    for part in std::iter::once(program).chain(args.iter().map(String::as_str)) {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    let digest = h.finalize().to_vec();
    let text = digest
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>();
    (format!("sha256:{text}"), digest)
}

/// Makes the commands of one build, in order.
pub struct Planner<'a> {
    target: &'a Target,
    tools: &'a Toolchain,
    layout: &'a Layout,
    opt_level: OptLevel,
    emit: Emit,
    libs: &'a [String],
    lib_dirs: Vec<String>,
    next_id: u64,
    /// Content keys of the objects, in partition order, for the link's key.
    object_keys: Vec<u8>,
}

/// A command and the content digest behind its cache key.
pub struct Planned {
    /// The command.
    pub command: Command,
    /// The digest its `cache_key` shows, to chain into the next command.
    pub digest: Vec<u8>,
}

impl<'a> Planner<'a> {
    /// A planner; `lib_dirs` inside the work root become root-relative (a
    /// log names nothing in the root absolutely), others absolute, so they
    /// mean the same from the work root.
    pub fn new(
        target: &'a Target,
        tools: &'a Toolchain,
        layout: &'a Layout,
        opt_level: OptLevel,
        emit: Emit,
        libs: &'a [String],
        lib_dirs: &[PathBuf],
    ) -> Self {
        let cwd = std::env::current_dir().unwrap_or_default();
        let lib_dirs = lib_dirs
            .iter()
            .map(|d| {
                let absolute = lexical(&cwd.join(d));
                if absolute.canonicalize().ok().as_deref() == Some(layout.root.as_path()) {
                    return ".".to_owned();
                }
                relative_to_root(&layout.root, &absolute)
                    .unwrap_or_else(|| absolute.to_string_lossy().into_owned())
            })
            .collect();
        Planner {
            target,
            tools,
            layout,
            opt_level,
            emit,
            libs,
            lib_dirs,
            next_id: 1,
            object_keys: Vec::new(),
        }
    }

    fn command(
        &mut self,
        tool: ToolKind,
        program: &Path,
        args: Vec<String>,
        inputs: Vec<String>,
        outputs: Vec<String>,
        previous: &[u8],
    ) -> Planned {
        let program = program.to_string_lossy().into_owned();
        let (key, digest) = cache_key(previous, &program, &args);
        let id = self.next_id;
        self.next_id += 1;
        Planned {
            command: Command {
                id,
                tool,
                program,
                args,
                cwd: ".".to_owned(),
                env: BTreeMap::new(),
                inputs,
                outputs,
                cache_key: Some(key),
            },
            digest,
        }
    }

    /// `opt` for partition `i`, whose bitcode is `bitcode`.
    pub fn opt(&mut self, i: usize, bitcode: &[u8]) -> Planned {
        let input = self.layout.bitcode(i);
        let output = self.layout.optimized(i);
        let args = vec![
            self.opt_level.flag(),
            input.clone(),
            "-o".to_owned(),
            output.clone(),
        ];
        let content = Sha256::digest(bitcode).to_vec();
        let opt = self.tools.opt.clone();
        self.command(
            ToolKind::Opt,
            &opt,
            args,
            vec![input],
            vec![output],
            &content,
        )
    }

    /// `llc` for partition `i`, after `opt` whose digest is `previous`;
    /// `single_output` writes the object straight to the output (a
    /// one-partition Windows object).
    pub fn llc(&mut self, i: usize, previous: &[u8], single_output: bool) -> Planned {
        let input = self.layout.optimized(i);
        let output = if single_output {
            self.layout.output.clone()
        } else {
            self.layout.object(i, self.target)
        };
        let args = vec![
            self.opt_level.flag(),
            "-filetype=obj".to_owned(),
            format!("-mtriple={}", self.target.triple),
            // Position-independent code everywhere, as clang 14 defaults to
            // on these targets (PIE executables on Linux, always on macOS,
            // and on 64-bit Windows).
            "-relocation-model=pic".to_owned(),
            input.clone(),
            "-o".to_owned(),
            output.clone(),
        ];
        let llc = self.tools.llc.clone();
        let planned = self.command(
            ToolKind::Llc,
            &llc,
            args,
            vec![input],
            vec![output],
            previous,
        );
        self.object_keys.extend_from_slice(&planned.digest);
        planned
    }

    /// The link of `count` partition objects into the output, if the run
    /// links.
    pub fn link(&mut self, count: usize) -> Option<Planned> {
        let program = self.tools.link.clone()?;
        let objects: Vec<String> = (0..count)
            .map(|i| self.layout.object(i, self.target))
            .collect();
        let out = self.layout.output.clone();
        let (tool, args) = match self.target.os {
            Os::Linux => self.linux_link(&objects, &out),
            Os::Macos => self.macos_link(&objects, &out),
            Os::Windows => self.windows_link(&objects, &out),
        };
        let previous = std::mem::take(&mut self.object_keys);
        Some(self.command(tool, &program, args, objects, vec![out], &previous))
    }

    fn lib_args(&self, dir_flag: &str) -> Vec<String> {
        let mut args: Vec<String> = self
            .lib_dirs
            .iter()
            .map(|d| format!("{dir_flag}{d}"))
            .collect();
        args.extend(self.libs.iter().map(|l| format!("-l{l}")));
        args
    }

    fn linux_link(&self, objects: &[String], out: &str) -> (ToolKind, Vec<String>) {
        let mut args = Vec::new();
        match self.emit {
            Emit::Obj => {
                args.extend(["-r".to_owned(), "-o".to_owned(), out.to_owned()]);
                args.extend(objects.iter().cloned());
                return (ToolKind::Ld, args);
            }
            Emit::Shared => args.push("-shared".to_owned()),
            Emit::Exe => {}
        }
        args.extend(["-o".to_owned(), out.to_owned()]);
        args.extend(objects.iter().cloned());
        args.extend(self.lib_args("-L"));
        (ToolKind::Cc, args)
    }

    fn macos_link(&self, objects: &[String], out: &str) -> (ToolKind, Vec<String>) {
        let arch = macos_arch(&self.target.arch).to_owned();
        let mut args = Vec::new();
        match self.emit {
            Emit::Obj => args.push("-r".to_owned()),
            Emit::Shared => args.push("-dylib".to_owned()),
            Emit::Exe => args.push("-dynamic".to_owned()),
        }
        args.extend(["-arch".to_owned(), arch]);
        if self.emit != Emit::Obj {
            args.extend(
                ["-platform_version", "macos", "11.0.0", "11.0.0"]
                    .iter()
                    .map(|s| (*s).to_owned()),
            );
        }
        args.extend(["-o".to_owned(), out.to_owned()]);
        args.extend(objects.iter().cloned());
        if self.emit != Emit::Obj {
            args.extend(self.lib_args("-L"));
            args.push("-lSystem".to_owned());
        }
        (ToolKind::Ld, args)
    }

    fn windows_link(&self, objects: &[String], out: &str) -> (ToolKind, Vec<String>) {
        let mut args = vec![format!("-out:{out}"), "-nologo".to_owned()];
        if self.emit == Emit::Shared {
            args.push("-dll".to_owned());
        }
        args.extend(
            ["-defaultlib:libcmt", "-defaultlib:oldnames"]
                .iter()
                .map(|s| (*s).to_owned()),
        );
        args.extend(objects.iter().cloned());
        args.extend(self.lib_dirs.iter().map(|d| format!("-libpath:{d}")));
        // Libraries as `-defaultlib:`, not positional `NAME.lib`: a positional
        // argument is a file the command reads, and these are found by the
        // linker in its search path, not in the work root.
        args.extend(self.libs.iter().map(|l| format!("-defaultlib:{l}.lib")));
        (ToolKind::Ld, args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_keeps_the_module_triple_and_others_get_their_own() {
        let t = Target::new(Os::Linux, "x86_64-pc-linux-gnu");
        assert_eq!(t.triple, "x86_64-pc-linux-gnu");
        let t = Target::new(Os::Macos, "x86_64-pc-linux-gnu");
        assert_eq!(t.triple, "x86_64-apple-macosx11.0.0");
        assert_eq!(t.arch, "x86_64");
        let t = Target::new(Os::Macos, "aarch64-unknown-linux-gnu");
        assert_eq!(t.triple, "arm64-apple-macosx11.0.0");
        let t = Target::new(Os::Windows, "x86_64-pc-linux-gnu");
        assert_eq!(t.triple, "x86_64-pc-windows-msvc");
        assert_eq!(t.object_suffix(), "obj");
    }

    #[test]
    fn cache_keys_change_with_content_and_command() {
        let args = vec!["-O2".to_owned()];
        let (a, _) = cache_key(b"one", "opt", &args);
        let (b, _) = cache_key(b"two", "opt", &args);
        let (c, _) = cache_key(b"one", "opt", &["-O3".to_owned()]);
        assert!(a.starts_with("sha256:"));
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a, cache_key(b"one", "opt", &args).0);
    }

    #[test]
    fn outputs_outside_the_root_are_refused() {
        let root = std::env::temp_dir().canonicalize().unwrap();
        let inside = root.join("sub/out");
        assert_eq!(relative_to_root(&root, &inside).as_deref(), Some("sub/out"));
        assert_eq!(relative_to_root(&root.join("sub"), &root.join("x")), None);
        assert_eq!(
            relative_to_root(&root, &root.join("a/../b")).as_deref(),
            Some("b")
        );
    }
}
