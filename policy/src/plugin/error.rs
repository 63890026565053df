//! What can go wrong in each step of hosting a plugin: setting up the host
//! ([`HostError`]), loading one plugin ([`LoadError`]) and evaluating a log
//! with it ([`EvalError`], whose [`Failure`] says why).
//!
//! Every one of these means deny: a caller that gets an error from a plugin
//! must refuse every command that plugin was asked about.

use std::path::PathBuf;
use std::time::Duration;

/// A boxed error from wasmtime, which has its own error type.
pub type WasmError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Setting up the [`PluginHost`](super::PluginHost) failed.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// wasmtime refused the engine configuration.
    #[error("cannot configure the WebAssembly engine")]
    Engine {
        /// What wasmtime said.
        #[source]
        source: WasmError,
    },
    /// The WASI functions could not be added to the linker.
    #[error("cannot link the WASI preview 1 functions")]
    Linker {
        /// What wasmtime said.
        #[source]
        source: WasmError,
    },
    /// The module cache directory could not be created or inspected.
    #[error("cannot create the plugin cache directory `{}`", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The module cache directory is writable by someone else; compiled code
    /// loaded from it could be theirs.
    #[error("refusing the plugin cache directory `{}`: {reason}", path.display())]
    InsecureCacheDir {
        /// The directory.
        path: PathBuf,
        /// Why it is refused (owner, mode, symlink).
        reason: String,
    },
    /// The epoch ticker thread could not be started.
    #[error("cannot start the plugin deadline ticker thread")]
    Ticker {
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// Loading a plugin (reading, pinning, compiling, linking) failed.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The module file could not be read.
    #[error("plugin `{plugin}`: cannot read `{}`", path.display())]
    Read {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The module file is larger than any plugin may be.
    #[error("plugin `{plugin}`: `{}` is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// The largest module accepted.
        limit: u64,
    },
    /// The policy's `sha256` pin is not 64 hexadecimal digits.
    #[error("plugin `{plugin}`: `sha256` pin `{pin}` is not 64 hexadecimal digits")]
    InvalidPin {
        /// The plugin's name in the policy.
        plugin: String,
        /// The pin as written.
        pin: String,
    },
    /// The module is not the one the policy pins.
    #[error("plugin `{plugin}`: `{}` has sha256 {actual} but the policy pins {expected}", path.display())]
    PinMismatch {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// The pin from the policy (lowercase).
        expected: String,
        /// The module's actual sha256 (lowercase).
        actual: String,
    },
    /// The file is not a valid WebAssembly module.
    #[error("plugin `{plugin}`: `{}` is not a valid WebAssembly module", path.display())]
    Compile {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// What wasmtime said.
        #[source]
        source: WasmError,
    },
    /// The module is valid but not a WASI preview 1 command.
    #[error("plugin `{plugin}`: `{}` is not a WASI command module: {reason}", path.display())]
    NotCommand {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// What is missing or extra (`_start`, an import the host lacks).
        reason: String,
    },
    /// The module's `replay.plugin-abi` custom section names an ABI this
    /// host does not speak.
    #[error("plugin `{plugin}`: `{}` asks for plugin ABI `{abi}` (its `replay.plugin-abi` section); this host speaks 1 and 2", path.display())]
    UnknownAbi {
        /// The plugin's name in the policy.
        plugin: String,
        /// The module file.
        path: PathBuf,
        /// The section's content, printable.
        abi: String,
    },
    /// A limit in the plugin's policy entry is out of range.
    #[error("plugin `{plugin}`: {reason}")]
    InvalidLimit {
        /// The plugin's name in the policy.
        plugin: String,
        /// Which limit and why.
        reason: String,
    },
}

/// Evaluating a log with a plugin failed: every command is denied.
///
/// Its message names the plugin and says why; its `source` is the cause
/// of the [`Failure`] (a JSON parser's complaint, a wasmtime error), if any.
#[derive(Debug)]
pub struct EvalError {
    /// The plugin's name in the policy.
    pub plugin: String,
    /// Why it failed.
    pub failure: Failure,
    /// The end of what the plugin wrote to stderr (at most a few KiB, control
    /// characters replaced), for the user to read; empty if nothing.
    pub stderr: String,
}

impl std::fmt::Display for EvalError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "plugin `{}` failed, so it denies every command: {}",
            self.plugin, self.failure
        )
    }
}

impl std::error::Error for EvalError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        // The failure itself is already in the message.
        std::error::Error::source(&self.failure)
    }
}

/// Why a plugin evaluation failed.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// The module could not be instantiated (a start function trapped, a
    /// table or memory was too large from the start, ...).
    #[error("cannot instantiate the module")]
    Instantiate {
        /// What wasmtime said.
        #[source]
        source: WasmError,
    },
    /// The plugin ran past its wall-clock deadline.
    #[error("ran past its deadline of {} ms", timeout.as_millis())]
    Deadline {
        /// The deadline from the policy.
        timeout: Duration,
    },
    /// The plugin (ABI v2) spent longer than its batch deadline on one
    /// batch of commands.
    #[error("ran past its deadline of {} ms for one batch of commands", timeout.as_millis())]
    BatchDeadline {
        /// The batch deadline from the policy.
        timeout: Duration,
    },
    /// The plugin (ABI v2) used all the fuel one batch gets.
    #[error("ran out of fuel on one batch of commands ({fuel} units a batch)")]
    BatchOutOfFuel {
        /// The batch fuel from the policy.
        fuel: u64,
    },
    /// The plugin used all the fuel the policy gives it.
    #[error("ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The fuel from the policy.
        fuel: u64,
    },
    /// The plugin tried to grow its linear memory past its cap.
    #[error("tried to grow its memory to {requested} bytes, over its cap of {limit} bytes")]
    OverMemoryCap {
        /// The size it asked for, in bytes.
        requested: u64,
        /// The cap from the policy, in bytes.
        limit: u64,
    },
    /// The plugin tried to grow a table past the host's cap.
    #[error("tried to grow a table to {requested} elements, over the cap of {limit}")]
    OverTableCap {
        /// The size it asked for, in elements.
        requested: u64,
        /// The cap, in elements.
        limit: u64,
    },
    /// The plugin executed an `unreachable` instruction (a Rust panic or
    /// abort ends this way).
    #[error("trapped: reached an `unreachable` instruction (a panic or abort)")]
    Unreachable,
    /// The plugin exhausted its stack (deep or infinite recursion).
    #[error("trapped: stack overflow")]
    StackOverflow,
    /// The plugin trapped for another reason.
    #[error("{trap}")]
    Trap {
        /// The trap.
        trap: wasmtime::Trap,
    },
    /// A host function refused the plugin's call in a way that ends it
    /// (an invalid pointer or flag, say).
    #[error("stopped by the host: {message}")]
    Host {
        /// What the host said (the innermost cause).
        message: String,
    },
    /// The plugin exited with a non-zero status.
    #[error("exited with status {code}")]
    Exit {
        /// The exit status.
        code: i32,
    },
    /// The plugin wrote more than its output cap to stdout.
    #[error("wrote more than {limit} bytes to stdout")]
    OutputTooLarge {
        /// The cap.
        limit: u64,
    },
    /// What the plugin wrote to stdout is not a v1 response.
    #[error("wrote a response that is not valid ABI v1 JSON")]
    InvalidJson {
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// The response has no verdict for some commands.
    #[error("gave no verdict for {count} command(s), starting with ids {first:?}")]
    MissingVerdicts {
        /// How many commands have no verdict.
        count: usize,
        /// The first few ids without one.
        first: Vec<u64>,
    },
    /// The response has a verdict for a command the request did not have.
    #[error("gave a verdict for command id {id}, which is not in the log")]
    UnknownId {
        /// The id.
        id: u64,
    },
    /// The response has two verdicts for the same command.
    #[error("gave more than one verdict for command id {id}")]
    DuplicateVerdict {
        /// The id.
        id: u64,
    },
    /// A verdict line (ABI v2) is not a verdict.
    #[error("wrote a verdict line that is not ABI v2 JSON{}", after.map(|id| format!(" (after the verdict on command id {id})")).unwrap_or_default())]
    MalformedVerdict {
        /// The id of the last good verdict, if any.
        after: Option<u64>,
        /// What the JSON parser said.
        #[source]
        source: serde_json::Error,
    },
    /// A verdict line (ABI v2) is longer than any verdict may be.
    #[error("wrote a verdict line longer than {limit} bytes")]
    VerdictTooLong {
        /// The longest line accepted.
        limit: usize,
    },
    /// The plugin (ABI v2) ended in the middle of a verdict line.
    #[error("ended in the middle of a verdict line{}", after.map(|id| format!(" (after the verdict on command id {id})")).unwrap_or_default())]
    UnfinishedLine {
        /// The id of the last good verdict, if any.
        after: Option<u64>,
    },
    /// The plugin (ABI v2) gave a verdict on a command before it read it.
    #[error("gave a verdict (on command id {id}) before reading the command it is about")]
    EarlyVerdict {
        /// The id in the verdict.
        id: u64,
    },
    /// The plugin (ABI v2) gave a verdict after the last command.
    #[error("gave a verdict (on command id {id}) after the last command")]
    ExtraVerdict {
        /// The id in the verdict.
        id: u64,
    },
    /// The plugin (ABI v2) answered out of order.
    #[error("gave a verdict on command id {got} where the one on command id {expected} was due (verdicts come in the order of the commands)")]
    OutOfOrder {
        /// The id whose verdict was due.
        expected: u64,
        /// The id it gave.
        got: u64,
    },
    /// The plugin (ABI v2) asked for more commands before answering the
    /// ones it had read.
    #[error("asked for more commands before giving its verdict on command id {id}")]
    ReadAhead {
        /// The first id without a verdict.
        id: u64,
    },
    /// The host stopped the plugin (an earlier failure, or the host gave up
    /// waiting).
    #[error("was stopped by the host")]
    Cancelled,
    /// The plugin's thread could not be started.
    #[error("cannot start the plugin's thread")]
    Thread {
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The caller passed two commands with the same id (a log reader never
    /// does), so verdicts cannot be matched to commands.
    #[error("was asked about command id {id} twice")]
    DuplicateCommand {
        /// The id.
        id: u64,
    },
    /// The request could not be written as JSON.
    #[error("cannot encode the request")]
    Request {
        /// What the JSON writer said.
        #[source]
        source: serde_json::Error,
    },
}
