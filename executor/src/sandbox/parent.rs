//! The `replay` side of the double spawn: [`launch`] starts `replay
//! __sandbox-exec` with the protocol socket as its stdin, and [`Launch`] walks it
//! through the protocol (spec, report, `go`, exec result).

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::protocol::{read_line, to_line, ExecFailure, Report, MAX_LINE};
use super::spec::{AppliedLayers, Layer, SandboxSpec};
use super::{CHILD_ARG, GO, GO_OBSERVED};

/// Why a sandboxed tool could not be started, one variant per step.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The spec could not be serialized (a path that is not UTF-8).
    #[error("cannot encode the sandbox spec for `{program}`")]
    EncodeSpec {
        /// The tool.
        program: PathBuf,
        /// The serializer's error.
        #[source]
        source: serde_json::Error,
    },
    /// The protocol socket could not be created.
    #[error("cannot create the sandbox's control socket")]
    Pipe {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `replay __sandbox-exec` could not be spawned.
    #[error("cannot start the sandbox `{exe} {CHILD_ARG}`", exe = exe.display())]
    Spawn {
        /// The `replay` binary.
        exe: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The spec could not be written to the child.
    #[error("cannot send the sandbox spec to the sandbox child")]
    SendSpec {
        /// The OS error (EPIPE: the child is gone).
        #[source]
        source: io::Error,
    },
    /// The child's report or exec result could not be read.
    #[error("cannot read the sandbox child's report")]
    ReadReport {
        /// The OS error, or a line that is cut short or too long.
        #[source]
        source: io::Error,
    },
    /// The child closed its report pipe without a word.
    #[error("the sandbox child exited before reporting its layers (is `{exe}` a `replay` binary?)", exe = exe.display())]
    NoReport {
        /// The binary that was started.
        exe: PathBuf,
    },
    /// The child's report is not one the protocol knows.
    #[error("the sandbox child sent a malformed report: `{line}`")]
    MalformedReport {
        /// The line (cut to a readable length).
        line: String,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// A layer the spec requires cannot be applied on this machine.
    #[error("required sandbox layer `{layer}` is not available: {reason}")]
    LayerUnavailable {
        /// The layer.
        layer: Layer,
        /// Why, as the child found it.
        reason: String,
    },
    /// The child could not prepare the tool (bad spec, missing `cwd`).
    #[error("the sandbox child could not {step}")]
    Setup {
        /// What it was doing.
        step: String,
        /// The error it met.
        #[source]
        source: io::Error,
    },
    /// `go` could not be written to the child.
    #[error("cannot tell the sandbox child to start the tool")]
    SendGo {
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `execve` of the tool failed.
    #[error("cannot execute `{program}`", program = program.display())]
    Exec {
        /// The tool.
        program: PathBuf,
        /// The `execve` error.
        #[source]
        source: io::Error,
    },
    /// A [`Launch`] method was called out of the protocol's order.
    #[error("sandbox protocol misuse: `{called}` called {state}")]
    OutOfOrder {
        /// The method called.
        called: &'static str,
        /// Where the launch stood.
        state: &'static str,
    },
}

impl SandboxError {
    /// The layer a refusal names, if this is one.
    pub fn unavailable_layer(&self) -> Option<Layer> {
        match self {
            SandboxError::LayerUnavailable { layer, .. } => Some(*layer),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Spawned,
    Prepared,
    Running,
    Failed,
}

impl Phase {
    fn describe(self) -> &'static str {
        match self {
            Phase::Spawned => "before `prepare`",
            Phase::Prepared => "after `prepare`",
            Phase::Running => "after the tool started",
            Phase::Failed => "after a failure",
        }
    }
}

/// A sandbox child on its way to becoming the tool.
///
/// Call [`Launch::prepare`] (the child applies its layers and reports),
/// attach ptrace if wanted, then [`Launch::go`] (the child execs the tool);
/// or [`Launch::start`] for both. The caller reaps the child through
/// [`Launch::child`] in every case, success or error. Dropping a `Launch`
/// before `go` closes the control pipe, and the child exits 126.
#[derive(Debug)]
pub struct Launch {
    child: Child,
    exe: PathBuf,
    program: PathBuf,
    spec_line: Vec<u8>,
    control: Option<File>,
    report: BufReader<File>,
    phase: Phase,
    /// Ask the child to report its file-system calls to its tracer.
    observe: bool,
}

/// Spawns `exe __sandbox-exec` for `spec`, with the tool's stdout and stderr.
///
/// The child gets its own process group, an empty
/// environment, and the protocol socket as its stdin; it then waits for
/// [`Launch::prepare`]. `exe` must be a `replay` binary (usually
/// `std::env::current_exe()`).
///
/// The parent-death signal fires when the *thread* that called `launch`
/// exits (that is how `PR_SET_PDEATHSIG` works): launch from a thread that
/// outlives the tool.
pub fn launch(
    exe: &Path,
    spec: &SandboxSpec,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Launch, SandboxError> {
    launch_joining(exe, spec, None, stdout, stderr)
}

/// [`launch`], with a network namespace for the child to enter (at
/// [`super::NETNS_FD`]) instead of making its own, when `network` is given and
/// the spec wants the network cut off.
pub fn launch_joining(
    exe: &Path,
    spec: &SandboxSpec,
    network: Option<BorrowedFd<'_>>,
    stdout: Stdio,
    stderr: Stdio,
) -> Result<Launch, SandboxError> {
    let network = network.filter(|_| spec.network != super::spec::Want::Off);
    let encoded = if network.is_some() {
        to_line(&SandboxSpec {
            join_network: true,
            ..spec.clone()
        })
    } else {
        to_line(spec)
    };
    let spec_line = encoded.map_err(|source| SandboxError::EncodeSpec {
        program: spec.program.clone(),
        source,
    })?;
    // One stream socket carries the spec and `go` to the child and its
    // report back: the child's end is its stdin, so std spawns it with
    // `posix_spawn` (no `pre_exec` hook: `fork` would copy `replay`'s page
    // tables first, about 0.7 ms a command; `bench/tools` `spawn_cost`).
    let (ours, theirs) =
        std::os::unix::net::UnixStream::pair().map_err(|source| SandboxError::Pipe { source })?;
    let report = ours
        .try_clone()
        .map_err(|source| SandboxError::Pipe { source })?;
    let mut command = Command::new(exe);
    command
        .arg(CHILD_ARG)
        .arg(std::process::id().to_string())
        .env_clear()
        .stdin(Stdio::from(OwnedFd::from(theirs)))
        .stdout(stdout)
        .stderr(stderr)
        .process_group(0);
    // The namespace stays open here for the tool's whole run; the child
    // opens it again through this process's `/proc` entry.
    if let Some(network) = network {
        command.arg(network.as_raw_fd().to_string());
    }
    let child = command.spawn().map_err(|source| SandboxError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    // Only the child may hold its end, so its exit (or exec) is our EOF.
    drop(command);

    Ok(Launch {
        child,
        exe: exe.to_path_buf(),
        program: spec.program.clone(),
        spec_line,
        control: Some(File::from(OwnedFd::from(ours))),
        report: BufReader::new(File::from(OwnedFd::from(report))),
        observe: false,
        phase: Phase::Spawned,
    })
}

impl Launch {
    /// The child's pid: the sandbox child now, the tool after `go`.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The child, to wait for or kill (its process group is its pid).
    pub fn child(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Gives up the protocol and keeps the child.
    pub fn into_child(self) -> Child {
        self.child
    }

    /// Sends the spec and reads the report: the layers are in place when
    /// this returns `Ok`, and the child waits for [`Launch::go`].
    pub fn prepare(&mut self) -> Result<AppliedLayers, SandboxError> {
        self.send_spec()?;
        self.receive_report()
    }

    /// The first half of [`Launch::prepare`]: the spec goes to the child.
    fn send_spec(&mut self) -> Result<(), SandboxError> {
        let spec_line = self.spec_line.clone();
        let control = self.step("prepare", Phase::Spawned)?;
        control
            .write_all(&spec_line)
            .and_then(|()| control.flush())
            .map_err(|source| SandboxError::SendSpec { source })
    }

    /// The second half of [`Launch::prepare`]: the child's report.
    fn receive_report(&mut self) -> Result<AppliedLayers, SandboxError> {
        let line = self
            .read_report()
            .map_err(|source| SandboxError::ReadReport { source })?
            .ok_or_else(|| SandboxError::NoReport {
                exe: self.exe.clone(),
            })?;
        let report: Report =
            serde_json::from_str(&line).map_err(|source| SandboxError::MalformedReport {
                line: shorten(&line),
                source,
            })?;
        match report {
            Report::Applied(layers) => {
                self.phase = Phase::Prepared;
                Ok(layers)
            }
            Report::Refused(refusal) => Err(SandboxError::LayerUnavailable {
                layer: refusal.layer,
                reason: refusal.reason,
            }),
            Report::SetupFailed(failure) => Err(SandboxError::Setup {
                step: failure.step,
                source: match failure.errno {
                    Some(errno) => io::Error::from_raw_os_error(errno),
                    None => io::Error::other(failure.message),
                },
            }),
        }
    }

    /// Lets the child exec the tool; `Ok` once the tool is running.
    ///
    /// Returns at EOF on the report pipe, which the exec's close-on-exec
    /// causes (it also comes if the child is killed before its exec; the
    /// wait status then tells).
    pub fn go(&mut self) -> Result<(), SandboxError> {
        self.send_go()?;
        self.receive_exec()
    }

    /// The first half of [`Launch::go`]: `go` goes to the child.
    fn send_go(&mut self) -> Result<(), SandboxError> {
        let go = if self.observe { GO_OBSERVED } else { GO };
        let control = self.step("go", Phase::Prepared)?;
        control
            .write_all(go.as_bytes())
            .and_then(|()| control.write_all(b"\n"))
            .and_then(|()| control.flush())
            .map_err(|source| SandboxError::SendGo { source })?;
        self.control = None;
        Ok(())
    }

    /// [`Launch::go`] for a child this thread traces (attached after
    /// [`Launch::prepare`]): `await_event` blocks until the child stops
    /// or exits, `release` lets it out of any stop. After `go`, every
    /// outcome stops the child or ends it (the `execve` call the filter
    /// reports, the exec event, its exit), so this blocks in
    /// `await_event` and answers each stop at once: no poll interval is
    /// added to any command's start.
    pub fn go_traced(
        &mut self,
        release: &mut dyn FnMut(),
        await_event: &mut dyn FnMut(),
    ) -> Result<(), SandboxError> {
        self.send_go()?;
        while !self.report_ready(0) {
            await_event();
            release();
        }
        self.receive_exec()
    }

    /// The child's next line; `None` once it closed its end (exited, or
    /// exec'd the tool). A child that exits without reading all it was
    /// sent resets the socket instead of closing it: the same end.
    fn read_report(&mut self) -> io::Result<Option<String>> {
        match read_line(&mut self.report, MAX_LINE) {
            Err(error) if error.kind() == io::ErrorKind::ConnectionReset => Ok(None),
            read => read,
        }
    }

    /// Whether the report socket has a line or its end to read, waiting at
    /// most `timeout_ms`.
    fn report_ready(&self, timeout_ms: i32) -> bool {
        if !self.report.buffer().is_empty() {
            return true;
        }
        let mut fd = libc::pollfd {
            fd: self.report.get_ref().as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid `pollfd`, live for the call, on a descriptor
        // this `Launch` owns and keeps open.
        let ready = unsafe { libc::poll(&mut fd, 1, timeout_ms) };
        // An error (EINTR) counts as not ready: the caller asks again. Any
        // event (data, hang-up, error) means a read will not block.
        ready > 0
    }

    /// The second half of [`Launch::go`]: the exec's result.
    fn receive_exec(&mut self) -> Result<(), SandboxError> {
        let line = self
            .read_report()
            .map_err(|source| SandboxError::ReadReport { source })?;
        let Some(line) = line else {
            self.phase = Phase::Running;
            return Ok(());
        };
        let failure: ExecFailure =
            serde_json::from_str(&line).map_err(|source| SandboxError::MalformedReport {
                line: shorten(&line),
                source,
            })?;
        Err(SandboxError::Exec {
            program: self.program.clone(),
            source: match failure.errno {
                Some(errno) => io::Error::from_raw_os_error(errno),
                None => io::Error::other(failure.exec_error),
            },
        })
    }

    /// Makes [`Launch::go`] ask the child to stop each file-system call
    /// the sandbox may refuse at its tracer (`PTRACE_EVENT_SECCOMP`), for
    /// the tracer to report refused ones. Only for a tracer that set
    /// `PTRACE_O_TRACESECCOMP`: to any other, such calls fail with `ENOSYS`.
    pub fn observe_calls(&mut self) {
        self.observe = true;
    }

    /// [`Launch::prepare`] then [`Launch::go`], for callers that attach nothing.
    pub fn start(&mut self) -> Result<AppliedLayers, SandboxError> {
        let layers = self.prepare()?;
        self.go()?;
        Ok(layers)
    }

    /// Checks the phase, marks the launch failed until the step succeeds,
    /// and hands out the control pipe.
    fn step(&mut self, called: &'static str, expected: Phase) -> Result<&mut File, SandboxError> {
        let state = self.phase.describe();
        match (self.phase == expected, self.control.as_mut()) {
            (true, Some(control)) => {
                self.phase = Phase::Failed;
                Ok(control)
            }
            _ => Err(SandboxError::OutOfOrder { called, state }),
        }
    }
}

/// A report line cut to a length fit for an error message.
fn shorten(line: &str) -> String {
    const MAX: usize = 200;
    match line.char_indices().nth(MAX) {
        Some((end, _)) => format!("{}...", &line[..end]),
        None => line.to_owned(),
    }
}
