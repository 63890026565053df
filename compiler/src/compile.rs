//! One `aotc` run: load and link the inputs, partition, write each
//! partition's bitcode, stream the commands into the log as they are decided,
//! and with `--exec` run them while the module is still in memory.
//!
//! [`run`] is the entry point; [`CompileError`] says which step failed.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use cmdlog::{Header, LogWriter, Os, Platform, Producer};
use inkwell::context::Context;

use crate::exec::{self, ExecError};
use crate::load::{self, LoadError};
use crate::options::{Emit, LogDest, Options, Partitions};
use crate::partition::{self, PartitionError, Partitioner};
use crate::plan::{self, Layout, Planner, Target};
use crate::sink::{self, DriverError, Sink};
use crate::toolchain::{Toolchain, ToolchainError};

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The work root could not be created or resolved.
    #[error("cannot use `{root}` as the work root")]
    Root {
        /// The root.
        root: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The output does not lie under the work root.
    #[error("the output `{output}` is not under the work root `{root}`")]
    OutputOutsideRoot {
        /// The output as given.
        output: PathBuf,
        /// The work root.
        root: PathBuf,
    },
    /// The output would overwrite the log.
    #[error("the output `{output}` is the log file")]
    OutputIsLog {
        /// The output as given.
        output: PathBuf,
    },
    /// A Windows relocatable object can only come from one partition.
    #[error(
        "`--emit obj` for Windows needs `--partitions 1` (there is no relocatable link on Windows)"
    )]
    WindowsObject,
    /// Driver mode could not start.
    #[error(transparent)]
    Driver(#[from] DriverError),
    /// The tools could not be found.
    #[error(transparent)]
    Toolchain(#[from] ToolchainError),
    /// An input could not be loaded or linked.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// Splitting failed.
    #[error(transparent)]
    Partition(#[from] PartitionError),
    /// A partition file could not be written.
    #[error("cannot write `{path}`")]
    WriteFile {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The log could not be written.
    #[error("cannot write the log to {dest}")]
    Log {
        /// Where the log was going.
        dest: String,
        /// Why.
        #[source]
        source: cmdlog::WriteError,
    },
    /// The log could not be closed or moved into place.
    #[error("cannot finish the log at {dest}")]
    CommitLog {
        /// Where the log was going.
        dest: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A command run by `--exec` failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
}

impl CompileError {
    /// What the user can do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            CompileError::Root { .. } => Some(
                "check that the directory of `--log` (or `REPLAY_ROOT`) can be created and written"
                    .to_owned(),
            ),
            CompileError::OutputOutsideRoot { root, .. } => Some(format!(
                "put OUTPUT under the directory of LOG, e.g. `-o {}/NAME`",
                root.display()
            )),
            CompileError::OutputIsLog { .. } => {
                Some("give `-o` and `--log` different files".to_owned())
            }
            CompileError::WindowsObject => {
                Some("pass `--partitions 1`, or `--emit exe|shared`".to_owned())
            }
            CompileError::Driver(e) => Some(e.hint().to_owned()),
            CompileError::Toolchain(e) => Some(e.hint().to_owned()),
            CompileError::Load(e) => e.hint().map(str::to_owned),
            CompileError::Partition(_) => {
                Some("this is a bug in `aotc`; `--partitions 1` avoids splitting".to_owned())
            }
            CompileError::WriteFile { .. }
            | CompileError::Log { .. }
            | CompileError::CommitLog { .. } => {
                Some("check free space and permissions in the work root".to_owned())
            }
            CompileError::Exec(_) => Some("the tool's own output above says why".to_owned()),
        }
    }

    /// Whether a tool run by `--exec` failed (as opposed to bad input).
    pub fn is_tool_failure(&self) -> bool {
        matches!(self, CompileError::Exec(_))
    }
}

/// What a successful run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Partitions made.
    pub partitions: usize,
    /// Commands in the log.
    pub commands: u64,
    /// Local symbols made hidden externals.
    pub externalized: usize,
    /// The work root.
    pub root: PathBuf,
}

/// The LLVM version `aotc` reports in the log's producer.
fn llvm_version(tools: &Toolchain) -> String {
    tools
        .llvm_version
        .clone()
        .unwrap_or_else(|| "14".to_owned())
}

fn resolve_root(dest: &LogDest) -> Result<PathBuf, CompileError> {
    let root = match dest {
        LogDest::File(log) => match log.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        },
        LogDest::Driver { root, .. } => root.clone(),
    };
    let err = |source| CompileError::Root {
        root: root.clone(),
        source,
    };
    if matches!(dest, LogDest::File(_)) {
        fs::create_dir_all(&root).map_err(err)?;
    }
    root.canonicalize().map_err(err)
}

/// Removes partition files a previous run with more partitions left behind.
fn clear_parts(dir: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return fs::create_dir_all(dir),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let ours = name
            .strip_prefix('p')
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(digits, _)| {
                !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
            });
        if ours && entry.file_type()?.is_file() {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// Runs `aotc` with `options`.
pub fn run(options: &Options) -> Result<Outcome, CompileError> {
    let root = resolve_root(&options.log)?;
    let output = plan::relative_to_root(&root, &options.output).ok_or_else(|| {
        CompileError::OutputOutsideRoot {
            output: options.output.clone(),
            root: root.clone(),
        }
    })?;
    if let LogDest::File(log) = &options.log {
        if plan::relative_to_root(&root, log).as_deref() == Some(output.as_str()) {
            return Err(CompileError::OutputIsLog {
                output: options.output.clone(),
            });
        }
    }
    if options.target_os == Os::Windows
        && options.emit == Emit::Obj
        && options.partitions != Partitions::Fixed(1)
    {
        return Err(CompileError::WindowsObject);
    }
    let single_output = options.target_os == Os::Windows && options.emit == Emit::Obj;
    let tools = Toolchain::find(
        options.llvm_bin.as_deref(),
        options.target_os,
        options.emit,
        !single_output,
    )?;

    let context = Context::create();
    let mut count = 1;
    // Externalized statics stay global (hidden) in a relocatable object:
    // name them after the object's absolute path too, so two objects (even
    // of the same name, from same-named sources) link together. Stable for
    // rebuilds in place, which is what a cache of partitions sees.
    let salt = if options.emit == Emit::Obj {
        root.join(&output).to_string_lossy().into_owned()
    } else {
        String::new()
    };
    let linked = load::load_all(&context, &options.inputs, &salt, |instructions| {
        count = match options.partitions {
            Partitions::Fixed(n) => n,
            Partitions::Auto => partition::auto_count(instructions),
        };
        count > 1
    })?;
    let module = &linked.module;
    let target = Target::new(
        options.target_os,
        &module.get_triple().as_str().to_string_lossy(),
    );
    let layout = Layout::new(root.clone(), output);
    let parts_dir = layout.absolute(&layout.parts);
    clear_parts(&parts_dir).map_err(|source| CompileError::WriteFile {
        path: parts_dir.clone(),
        source,
    })?;

    let (mut sink, dest) = match &options.log {
        LogDest::File(path) => {
            let sink = Sink::file(path).map_err(|source| CompileError::WriteFile {
                path: path.clone(),
                source,
            })?;
            (sink, format!("`{}`", path.display()))
        }
        LogDest::Driver { fd, .. } => (
            Sink::driver(sink::take_driver_fd(*fd)?),
            format!("descriptor {fd} (`{}`)", sink::LOG_FD_VAR),
        ),
    };
    let header = Header {
        producer: Producer {
            name: "aotc".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            llvm: Some(llvm_version(&tools)),
        },
        platform: Platform {
            os: target.os,
            arch: target.arch.clone(),
        },
    };

    let result = write_log(&mut sink, &header, &dest, |writer| {
        let (partitioner, summary) = Partitioner::new(module, count);
        let mut planner = Planner::new(
            &target,
            &tools,
            &layout,
            options.opt_level,
            options.emit,
            &options.libs,
            &options.lib_dirs,
        );
        let mut commands = Vec::new();
        for i in 0..partitioner.count() {
            let part = partitioner.build(i)?;
            let bitcode = part.write_bitcode_to_memory();
            drop(part);
            let path = layout.absolute(&layout.bitcode(i));
            fs::write(&path, bitcode.as_slice())
                .map_err(|source| CompileError::WriteFile { path, source })?;
            let opt = planner.opt(i, bitcode.as_slice());
            let llc = planner.llc(i, &opt.digest, single_output);
            for planned in [opt, llc] {
                writer(&planned.command)?;
                commands.push(planned.command);
            }
        }
        if let Some(link) = planner.link(partitioner.count()) {
            writer(&link.command)?;
            commands.push(link.command);
        }
        Ok((commands, summary))
    });
    let (commands, summary) = match result {
        Ok(done) => done,
        Err(e) => {
            sink.abandon();
            return Err(e);
        }
    };
    sink.commit()
        .map_err(|source| CompileError::CommitLog { dest, source })?;

    if options.exec {
        // The context and module are still alive here, on purpose: this is
        // the memory profile of a compiler that runs its tools itself.
        for command in &commands {
            exec::run(&root, command)?;
        }
    }
    Ok(Outcome {
        partitions: summary.count,
        commands: commands.len() as u64,
        externalized: summary.externalized,
        root,
    })
}

type Emitted = (Vec<cmdlog::Command>, partition::Summary);

/// Opens a log on `sink`, lets `body` write commands through the closure it
/// is given, and closes the document.
fn write_log(
    sink: &mut Sink,
    header: &Header,
    dest: &str,
    body: impl FnOnce(
        &mut dyn FnMut(&cmdlog::Command) -> Result<(), CompileError>,
    ) -> Result<Emitted, CompileError>,
) -> Result<Emitted, CompileError> {
    let log_err = |source| CompileError::Log {
        dest: dest.to_owned(),
        source,
    };
    let mut writer = LogWriter::new(&mut *sink, header).map_err(log_err)?;
    let emitted = {
        let mut write = |command: &cmdlog::Command| {
            writer.write_command(command).map_err(log_err)?;
            writer.flush().map_err(log_err)
        };
        body(&mut write)?
    };
    writer.finish().map_err(log_err)?;
    Ok(emitted)
}
