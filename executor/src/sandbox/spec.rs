//! What a sandboxed tool may do ([`SandboxSpec`]) and what the child
//! actually applied ([`AppliedLayers`]): the serde types both sides of the
//! double spawn share.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// System paths a tool may read and execute by default.
///
/// Missing entries (say `/lib32`) are skipped. `/proc` is readable because
/// compilers read `/proc/self/*` and `/proc/cpuinfo`; other processes' files
/// stay guarded by ptrace access checks. Of `/etc`, only what the dynamic
/// loader and the clang driver read (its distribution detection): a tool
/// that reads what it is given (`#include`, `.incbin`, a linker script)
/// could otherwise copy any of `/etc` into an output.
pub const DEFAULT_READABLE: &[&str] = &[
    "/usr",
    "/lib",
    "/lib64",
    "/lib32",
    "/bin",
    "/sbin",
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/os-release",
    "/etc/lsb-release",
    "/etc/debian_version",
    "/etc/redhat-release",
    "/etc/system-release",
    "/etc/localtime",
    "/opt",
    "/proc",
    "/sys/devices/system/cpu",
    "/dev/zero",
    "/dev/urandom",
    "/dev/random",
];

/// Device files a tool may write by default besides its work root.
pub const DEFAULT_WRITABLE_DEVICES: &[&str] = &["/dev/null"];

/// How much a layer is wanted: the policy's `require` maps to [`Want::Required`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Want {
    /// Do not apply the layer.
    Off,
    /// Apply the layer where the machine supports it, else record why not.
    IfAvailable,
    /// Apply the layer or refuse to run the tool.
    Required,
}

/// Resource limits for the tool, applied as both soft and hard limits;
/// the default disables core dumps and sets nothing else.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(deny_unknown_fields)]
pub struct Rlimits {
    /// `RLIMIT_CORE` in bytes; 0 disables core dumps.
    pub core: u64,
    /// `RLIMIT_FSIZE` in bytes: the largest file the tool may write.
    pub fsize: Option<u64>,
    /// `RLIMIT_NOFILE`: one more than the highest descriptor the tool may open.
    pub nofile: Option<u64>,
}

/// Everything the sandbox child needs to run one tool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// Absolute path of the validated binary to exec.
    pub program: PathBuf,
    /// The tool's `argv[0]`.
    pub argv0: String,
    /// The tool's arguments after `argv[0]`.
    pub args: Vec<String>,
    /// The tool's whole environment: nothing is inherited.
    pub env: BTreeMap<String, String>,
    /// The directory the tool starts in.
    pub cwd: PathBuf,
    /// Hierarchies the tool may read, write and execute: the work root (and
    /// device files such as `/dev/null`).
    pub writable: Vec<PathBuf>,
    /// Hierarchies (or single files) the tool may only read: system
    /// directories, its declared inputs and input directories. They may
    /// also be executed unless [`SandboxSpec::executable`] is set.
    pub readable: Vec<PathBuf>,
    /// When set, the only files the tool's processes may `execve` (and the
    /// ELF interpreters and script interpreters they need): the binaries
    /// the policy lets this tool run. When unset, anything readable.
    #[serde(default)]
    pub executable: Option<Vec<PathBuf>>,
    /// The Landlock layer.
    pub landlock: Want,
    /// No network: a new network namespace (and no TCP under Landlock).
    pub network: Want,
    /// Set `PR_SET_NO_NEW_PRIVS` (setuid binaries do not gain privileges).
    pub no_new_privs: bool,
    /// The seccomp filter (`sandbox::seccomp`, x86_64): what Landlock
    /// cannot see is refused (sockets only while the network is cut off).
    /// Off only to test the other layers alone.
    #[serde(default = "on")]
    pub seccomp: bool,
    /// Resource limits.
    pub rlimits: Rlimits,
    /// Kill the tool with SIGKILL when the thread that launched it exits.
    pub parent_death_signal: bool,
    /// Enter the network namespace the parent passes at
    /// [`super::NETNS_FD`] instead of making a new one (set by
    /// [`super::launch_joining`], never by a caller).
    #[serde(default)]
    pub join_network: bool,
}

impl SandboxSpec {
    /// A spec with every layer wanted where available, confined to `work_root`.
    pub fn new(
        program: impl Into<PathBuf>,
        argv0: impl Into<String>,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: impl Into<PathBuf>,
        work_root: &Path,
    ) -> Self {
        let mut writable = vec![work_root.to_path_buf()];
        writable.extend(DEFAULT_WRITABLE_DEVICES.iter().map(PathBuf::from));
        SandboxSpec {
            program: program.into(),
            argv0: argv0.into(),
            args,
            env,
            cwd: cwd.into(),
            writable,
            readable: DEFAULT_READABLE.iter().map(PathBuf::from).collect(),
            executable: None,
            landlock: Want::IfAvailable,
            network: Want::IfAvailable,
            no_new_privs: true,
            seccomp: true,
            rlimits: Rlimits::default(),
            parent_death_signal: true,
            join_network: false,
        }
    }
}

fn on() -> bool {
    true
}

/// A layer of the sandbox, as named in reports and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Layer {
    /// `PR_SET_PDEATHSIG`.
    ParentDeathSignal,
    /// No network (network namespace).
    Network,
    /// `PR_SET_NO_NEW_PRIVS`.
    NoNewPrivs,
    /// Landlock.
    Landlock,
    /// Resource limits.
    Rlimits,
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Layer::ParentDeathSignal => "parent_death_signal",
            Layer::Network => "network",
            Layer::NoNewPrivs => "no_new_privs",
            Layer::Landlock => "landlock",
            Layer::Rlimits => "rlimits",
        })
    }
}

/// Whether Landlock enforced everything requested.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    /// Every access right `replay` handles (up to its tested ABI) is enforced.
    Full,
    /// The kernel's older ABI enforces only some rights (for example no
    /// `truncate` control before ABI 3, no TCP control before ABI 4).
    Partial,
}

/// The Landlock layer as applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LandlockLayer {
    /// The Landlock ABI version in effect.
    pub abi: u32,
    /// Whether all requested rights are enforced.
    pub enforcement: Enforcement,
    /// Whether TCP bind and connect are denied (ABI 4 and later).
    pub tcp_denied: bool,
}

/// A wanted layer that was not applied, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    /// The layer.
    pub layer: Layer,
    /// Why it was not applied.
    pub reason: String,
}

impl fmt::Display for Skipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.layer, self.reason)
    }
}

/// The layers a tool runs under, as the child applied them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AppliedLayers {
    /// SIGKILL on the death of the launching thread.
    pub parent_death_signal: bool,
    /// Landlock, when applied.
    pub landlock: Option<LandlockLayer>,
    /// A new network namespace with no interfaces up.
    pub network_namespace: bool,
    /// The network namespace needed a user namespace (unprivileged `replay`).
    pub user_namespace: bool,
    /// `PR_SET_NO_NEW_PRIVS` is set.
    pub no_new_privs: bool,
    /// The rlimits of the spec are set.
    pub rlimits: bool,
    /// Wanted layers that were not applied, with the reason.
    pub skipped: Vec<Skipped>,
}
