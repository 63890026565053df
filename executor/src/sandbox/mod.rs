//! The sandbox each tool runs in, built as a double spawn.
//!
//! `replay` cannot apply Landlock, namespaces or rlimits to itself (they
//! would bind `replay` too), and it cannot apply them between `fork` and
//! `exec` of a multi-threaded process (only async-signal-safe calls are
//! allowed there, and the `landlock` crate allocates). So [`launch`]
//! re-executes the `replay` binary as `replay __sandbox-exec` ([`CHILD_ARG`]):
//! a fresh, single-threaded process that runs [`child_main`], applies the
//! layers with ordinary Rust, reports what it applied, waits for the parent's
//! `go`, and `execve`s the tool. This is nextest's `double_spawn.rs` pattern.
//!
//! # Protocol
//!
//! One stream socket joins the two: the child's end is its stdin, so std
//! spawns it with `posix_spawn` (a `pre_exec` hook would make it `fork`,
//! copying `replay`'s page tables first: `bench/tools` `spawn_cost`).
//! The child moves it first thing to fd 3 ([`CONTROL_FD`], read) and fd 4
//! ([`REPORT_FD`], write), both close-on-exec, and puts `/dev/null` on
//! its stdin (the tool's).
//!
//! - The parent writes: line 1 is the [`SandboxSpec`] as one line of
//!   JSON; line 2 is `go`.
//! - The child writes, after applying the layers, one line of JSON:
//!   `{"applied": AppliedLayers}`, or `{"refused": {"layer", "reason"}}`
//!   when a [`Want::Required`] layer cannot be applied (then exit 126), or
//!   `{"setup_failed": {"step", "message", "errno"}}` when the child
//!   cannot prepare the tool (exit 126). After `go`, the tool is
//!   `execve`d, which closes the child's end; if that fails the child
//!   writes `{"exec_error": "...", "errno": N}` and exits 127.
//!
//! The parent therefore sees the report line, then either the socket's
//! end (the tool is running) or an `exec_error` line. Between the report
//! and `go` the parent attaches to the child with `PTRACE_SEIZE` (the
//! child keeps itself dumpable and installs no seccomp filter until
//! then): the child sets up untraced, so nothing stops it meanwhile.
//!
//! - A network namespace to enter with `setns` instead of making a new
//!   one (see `run::netns`), when the spec says
//!   [`SandboxSpec::join_network`]: the parent holds it open and names
//!   its descriptor as the child's third argument; the child opens it
//!   again through `/proc/PARENT/fd/N` at fd 5 ([`NETNS_FD`]).

//! # Layers
//!
//! In the order the child applies them: the parent-death signal (SIGKILL),
//! no network (a new network namespace, with a user namespace when not
//! privileged), `PR_SET_NO_NEW_PRIVS`, Landlock (read and execute on
//! [`SandboxSpec::readable`], everything on [`SandboxSpec::writable`], and no
//! TCP when the network is not wanted), then rlimits (last: a low
//! `RLIMIT_NOFILE` would stop Landlock from opening its rule paths). The
//! decisions (what to do when a wanted layer is missing) live in `layers`,
//! over a small kernel seam so they are unit-tested without a kernel.

mod child;
mod kernel;
mod layers;
mod parent;
mod probe;
mod protocol;
mod seccomp;
mod spec;

pub use child::child_main;
pub use parent::{launch, launch_joining, Launch, SandboxError};
pub use probe::probe;
pub use spec::{
    AppliedLayers, Enforcement, LandlockLayer, Layer, Rlimits, SandboxSpec, Skipped, Want,
    DEFAULT_READABLE, DEFAULT_WRITABLE_DEVICES,
};

/// The hidden subcommand that makes `replay` act as the sandbox child.
pub const CHILD_ARG: &str = "__sandbox-exec";

/// Where the child keeps its end of the socket to read the spec and `go`.
pub const CONTROL_FD: i32 = 3;

/// Where the child keeps its end of the socket to write its report (and
/// any exec error).
pub const REPORT_FD: i32 = 4;

/// Where the child keeps the network namespace it enters (when its spec
/// says [`SandboxSpec::join_network`]) instead of making one.
pub const NETNS_FD: i32 = 5;

/// The line the parent sends to let the child exec the tool.
pub const GO: &str = "go";

/// The same, asking the child to report its file-system calls to its
/// tracer first (`sandbox::seccomp`).
pub const GO_OBSERVED: &str = "go observed";

/// Exit status of the child when it refused or failed before exec.
pub const EXIT_REFUSED: u8 = 126;

/// Exit status of the child when the `execve` of the tool failed.
pub const EXIT_EXEC_FAILED: u8 = 127;
