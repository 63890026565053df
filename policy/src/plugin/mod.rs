//! Policy plugins: WebAssembly modules that can refuse commands a TOML
//! policy would allow, run in wasmtime so that a plugin is as untrusted as a
//! log.
//!
//! A plugin is a WASI preview 1 command (`wasm32-wasip1`) speaking ABI v1
//! (see [`abi`] and `docs/plugin-abi-v1.md`: the request JSON on stdin,
//! `{"verdicts":[...]}` on stdout, exit 0) or, when its
//! `replay.plugin-abi` custom section says `2`, ABI v2
//! (`docs/plugin-abi-v2.md`: JSON Lines both ways, one instance per log,
//! see [`Session`]). [`PluginHost`] owns the one
//! shared [`wasmtime::Engine`] and [`wasmtime::Linker`], the epoch ticker
//! thread and the compiled-module cache; [`PluginHost::load`] turns a
//! [`PluginSpec`] (a `[[plugin]]` entry of a policy) into a
//! [`LoadedPlugin`], and [`LoadedPlugin::evaluate`] runs it once per log in
//! a fresh store, bounded by a wall-clock deadline, optional fuel, a memory
//! cap and an output cap.
//!
//! Fail closed: every way a plugin can go wrong is an [`EvalError`] naming
//! the plugin, and an error means every command of the log is denied.
//! Plugins only restrict: a command runs if the TOML rules and every plugin
//! allow it.

pub mod abi;
mod cache;
mod error;
mod sandbox;
mod spec;
mod stdio;
mod stream;

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use cmdlog::{Command, Platform};
use sha2::{Digest, Sha256};
use wasmtime::{Config, Engine, ExternType, InstancePre, Linker, Module};

pub use cache::CacheOutcome;
pub use error::{EvalError, Failure, HostError, LoadError, WasmError};
pub use spec::SpecError;
pub use stdio::MAX_VERDICT_LINE;
pub use stream::{Session, BATCH_BYTES, BATCH_COMMANDS};

use cache::ModuleCache;
use sandbox::State;

/// How often the ticker thread advances the engine's epoch; deadlines are
/// counted in these ticks.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The largest module file a plugin may be. Compiling a module is not
/// under the plugin's deadline (wasmtime compiles before anything runs),
/// and its cost grows with the module's size: this cap bounds it to
/// seconds. Real plugins are far smaller (the example is about 140 KiB);
/// pin a module by `sha256` to run only the one you reviewed.
pub const MAX_MODULE_BYTES: u64 = 16 * 1024 * 1024;

/// The longest deadline a policy may give a plugin.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(3600);

/// The most characters of a refusal reason kept; longer reasons are cut.
pub const MAX_REASON_CHARS: usize = 1024;

/// The deadline of a plugin whose policy entry sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The memory cap of a plugin whose policy entry sets none.
pub const DEFAULT_MAX_MEMORY: u64 = 256 * 1024 * 1024;

/// The batch deadline (ABI v2) of a plugin whose policy entry sets none
/// (never more than its `timeout`).
pub const DEFAULT_BATCH_TIMEOUT: Duration = Duration::from_secs(1);

/// The stdout cap of a plugin whose policy entry sets none.
pub const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024 * 1024;

/// The wasm stack a plugin may use before it traps with a stack overflow.
pub const MAX_WASM_STACK: usize = 512 * 1024;

/// One plugin as a policy names it: a `[[plugin]]` entry, validated (see
/// [`PluginSpec::from_table`]).
#[derive(Debug, Clone, PartialEq)]
pub struct PluginSpec {
    /// The name used in every verdict and error about the plugin.
    pub name: String,
    /// The module file (the policy's `path`, resolved against the policy).
    pub path: PathBuf,
    /// The module's expected sha256, 64 hex digits, if the policy pins it.
    pub sha256: Option<String>,
    /// The policy's `config` table, passed to the plugin as is.
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Wall-clock deadline of one evaluation (ABI v2: of the plugin's busy
    /// time over the whole log).
    pub timeout: Duration,
    /// ABI v2: wall-clock deadline of one batch of commands.
    pub batch_timeout: Duration,
    /// Fuel of one evaluation (about one unit per wasm instruction), if
    /// bounded.
    pub fuel: Option<u64>,
    /// ABI v2: fuel of one batch of commands, if bounded.
    pub batch_fuel: Option<u64>,
    /// Cap on the plugin's linear memory, in bytes.
    pub max_memory: u64,
    /// Cap on what the plugin writes to stdout, in bytes.
    pub max_output: u64,
}

impl PluginSpec {
    /// A spec with the default bounds, no pin and an empty config.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> PluginSpec {
        PluginSpec {
            name: name.into(),
            path: path.into(),
            sha256: None,
            config: serde_json::Map::new(),
            timeout: DEFAULT_TIMEOUT,
            batch_timeout: DEFAULT_BATCH_TIMEOUT,
            fuel: None,
            batch_fuel: None,
            max_memory: DEFAULT_MAX_MEMORY,
            max_output: DEFAULT_MAX_OUTPUT,
        }
    }
}

/// A plugin's decision on one command, checked and cleaned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginVerdict {
    /// The command's id.
    pub id: u64,
    /// Whether the plugin lets it run.
    pub allow: bool,
    /// Why not, as the plugin said it (control characters replaced, at most
    /// [`MAX_REASON_CHARS`]); `None` when allowed or no reason was given.
    pub reason: Option<String>,
}

/// The shared engine, linker, epoch ticker and module cache for every plugin
/// of a process.
pub struct PluginHost {
    engine: Engine,
    linker: Linker<State>,
    cache: Option<ModuleCache>,
    ticker: Arc<Ticker>,
}

impl std::fmt::Debug for PluginHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginHost")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl PluginHost {
    /// A host whose compiled modules are cached in `cache_dir` (created
    /// with mode 0700; refused if someone else could write to it), or not
    /// cached at all with `None`.
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginHost, HostError> {
        let mut config = Config::new();
        config
            .epoch_interruption(true)
            .consume_fuel(true)
            .max_wasm_stack(MAX_WASM_STACK)
            // One function compiled at a time: a cold compile (once per
            // module and engine; the result is cached) then holds one
            // function's compiler state, not one per core, in the memory a
            // check is measured by.
            .parallel_compilation(false);
        // Wasm threads are not compiled into this wasmtime (its `threads`
        // feature is off), and only core modules are loaded, never
        // components.
        let engine = Engine::new(&config).map_err(|error| HostError::Engine {
            source: error.into(),
        })?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state: &mut State| &mut state.wasi)
            .map_err(|error| HostError::Linker {
                source: error.into(),
            })?;
        // `poll_oneoff` is how WASI sleeps; a sleeping plugin is in the host,
        // where the epoch deadline cannot interrupt it. Plugins get no clock
        // anyway, so they get no sleep: it fails with ENOSYS.
        linker.allow_shadowing(true);
        linker
            .func_wrap(
                "wasi_snapshot_preview1",
                "poll_oneoff",
                |_: i32, _: i32, _: i32, _: i32| -> i32 { sandbox::ERRNO_NOSYS },
            )
            .map_err(|error| HostError::Linker {
                source: error.into(),
            })?;
        // stdio is the host's own: every byte written is counted as it is
        // written (an output cap stops the plugin at once), and v2's stdin
        // waits for the next batch.
        linker
            .func_wrap("wasi_snapshot_preview1", "fd_write", stdio::fd_write)
            .and_then(|linker| {
                linker.func_wrap("wasi_snapshot_preview1", "fd_read", stdio::fd_read)
            })
            .map_err(|error| HostError::Linker {
                source: error.into(),
            })?;
        linker.allow_shadowing(false);
        let cache = cache_dir
            .map(|dir| ModuleCache::open(dir, &engine))
            .transpose()?;
        let ticker = Ticker::start(engine.clone())?;
        Ok(PluginHost {
            engine,
            linker,
            cache,
            ticker: Arc::new(ticker),
        })
    }

    /// The conventional cache directory: `$XDG_CACHE_HOME/replay/plugins`,
    /// else `$HOME/.cache/replay/plugins`.
    pub fn default_cache_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .filter(|dir| dir.is_absolute())
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(|home| PathBuf::from(home).join(".cache"))
            })?;
        Some(base.join("replay").join("plugins"))
    }

    /// Reads, checks the pin of, compiles (or loads from the cache) and
    /// links one plugin.
    pub fn load(&self, spec: &PluginSpec) -> Result<LoadedPlugin, LoadError> {
        let plugin = || spec.name.clone();
        check_limits(spec)?;
        let pin = spec
            .sha256
            .as_deref()
            .map(|pin| {
                normalize_pin(pin).ok_or_else(|| LoadError::InvalidPin {
                    plugin: plugin(),
                    pin: pin.to_owned(),
                })
            })
            .transpose()?;
        let bytes = read_module(spec)?;
        let sha256 = cache::hex(&Sha256::digest(&bytes));
        if let Some(expected) = pin {
            if expected != sha256 {
                return Err(LoadError::PinMismatch {
                    plugin: plugin(),
                    path: spec.path.clone(),
                    expected,
                    actual: sha256,
                });
            }
        }
        let abi = module_abi(&bytes).map_err(|abi| LoadError::UnknownAbi {
            plugin: plugin(),
            path: spec.path.clone(),
            abi,
        })?;
        let (module, cache_outcome) = self.module(spec, &bytes, &sha256)?;
        check_command(&module).map_err(|reason| LoadError::NotCommand {
            plugin: plugin(),
            path: spec.path.clone(),
            reason,
        })?;
        let pre = self
            .linker
            .instantiate_pre(&module)
            .map_err(|error| LoadError::NotCommand {
                plugin: plugin(),
                path: spec.path.clone(),
                reason: format!("it needs imports the host does not give: {error}"),
            })?;
        Ok(LoadedPlugin {
            spec: spec.clone(),
            abi,
            sha256,
            pre,
            engine: self.engine.clone(),
            cache_outcome,
            _ticker: Arc::clone(&self.ticker),
        })
    }

    /// The compiled module: from the cache if it has it, else compiled (and
    /// stored).
    fn module(
        &self,
        spec: &PluginSpec,
        bytes: &[u8],
        sha256: &str,
    ) -> Result<(Module, CacheOutcome), LoadError> {
        if let Some(module) = self
            .cache
            .as_ref()
            .and_then(|cache| cache.load(&self.engine, sha256))
        {
            return Ok((module, CacheOutcome::Hit));
        }
        let module =
            Module::from_binary(&self.engine, bytes).map_err(|error| LoadError::Compile {
                plugin: spec.name.clone(),
                path: spec.path.clone(),
                source: error.into(),
            })?;
        let outcome = match &self.cache {
            None => CacheOutcome::Disabled,
            Some(cache) => match cache.store(&module, sha256) {
                Ok(()) => CacheOutcome::Stored,
                Err(reason) => CacheOutcome::NotStored(reason),
            },
        };
        Ok((module, outcome))
    }
}

/// A plugin ready to evaluate logs: compiled, pinned, linked.
pub struct LoadedPlugin {
    spec: PluginSpec,
    abi: u32,
    sha256: String,
    pre: InstancePre<State>,
    engine: Engine,
    cache_outcome: CacheOutcome,
    // Keeps the epoch ticking while the plugin exists, even if the host is
    // dropped first; without it no deadline would ever fire.
    _ticker: Arc<Ticker>,
}

impl std::fmt::Debug for LoadedPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedPlugin")
            .field("spec", &self.spec)
            .field("abi", &self.abi)
            .field("sha256", &self.sha256)
            .field("cache_outcome", &self.cache_outcome)
            .finish_non_exhaustive()
    }
}

impl LoadedPlugin {
    /// The plugin's name in the policy.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// The spec it was loaded from.
    pub fn spec(&self) -> &PluginSpec {
        &self.spec
    }

    /// The plugin ABI its module speaks: 1, or 2 (streaming) when its
    /// `replay.plugin-abi` custom section says so.
    pub fn abi(&self) -> u32 {
        self.abi
    }

    /// Starts an ABI v2 plugin on a log of `platform`: push its commands
    /// into the [`Session`], in log order, then finish it. `None` for a v1
    /// plugin, which must see the whole log at once ([`Self::evaluate`]).
    pub fn session(&self, platform: &Platform) -> Option<Result<Session, EvalError>> {
        (self.abi == abi::v2::ABI_VERSION).then(|| Session::start(self, platform))
    }

    /// The sha256 of its module file, lowercase hex.
    pub fn sha256(&self) -> &str {
        &self.sha256
    }

    /// Whether its compiled module came from the cache.
    pub fn cache_outcome(&self) -> &CacheOutcome {
        &self.cache_outcome
    }

    /// Asks the plugin about every command of a log (v1: at once, in one
    /// request; v2: streamed through a [`Session`]), in a fresh store;
    /// returns one verdict per command, in the order of `commands`.
    ///
    /// Command ids must be unique (every log reader guarantees it). Any
    /// error means the plugin denies every command.
    pub fn evaluate(
        &self,
        platform: &Platform,
        commands: &[Command],
    ) -> Result<Vec<PluginVerdict>, EvalError> {
        if let Some(session) = self.session(platform) {
            let mut session = session?;
            let mut verdicts = Vec::with_capacity(commands.len());
            for command in commands {
                verdicts.extend(session.push(command)?);
            }
            verdicts.extend(session.finish()?);
            return Ok(verdicts);
        }
        let fail = |failure, stderr| EvalError {
            plugin: self.spec.name.clone(),
            failure,
            stderr,
        };
        let slots = index_commands(commands).map_err(|failure| fail(failure, String::new()))?;
        let request = serde_json::to_vec(&abi::RequestRef {
            abi: abi::ABI_VERSION,
            platform,
            config: &self.spec.config,
            commands,
        })
        .map_err(|source| fail(Failure::Request { source }, String::new()))?;
        let (stdout, stderr, outcome) = self.run(request);
        let stderr = sandbox::printable_tail(&stderr);
        // A plugin that overflowed its output cap may then have trapped or
        // exited in any way; the overflow is the cause worth reporting.
        if stdout.len() as u64 > self.spec.max_output {
            return Err(fail(
                Failure::OutputTooLarge {
                    limit: self.spec.max_output,
                },
                stderr,
            ));
        }
        if let Err(failure) = outcome {
            return Err(fail(failure, stderr));
        }
        let response: abi::Response = serde_json::from_slice(&stdout)
            .map_err(|source| fail(Failure::InvalidJson { source }, stderr.clone()))?;
        match_verdicts(response, commands, &slots).map_err(|failure| fail(failure, stderr))
    }

    /// Runs the plugin once on `request` (ABI v1): its stdout, its stderr,
    /// and how it ended.
    fn run(&self, request: Vec<u8>) -> (Vec<u8>, Vec<u8>, Result<(), Failure>) {
        let spec = &self.spec;
        // It fits: `check_limits` refused caps that do not.
        let memory_cap = usize::try_from(spec.max_memory).unwrap_or(usize::MAX);
        let stdio = stdio::Stdio::whole(request, spec.max_output, spec.timeout);
        let mut store = match sandbox::new_store(
            &self.engine,
            &spec.name,
            stdio,
            memory_cap,
            spec.fuel.unwrap_or(u64::MAX),
        ) {
            Ok(store) => store,
            Err(error) => {
                return (
                    Vec::new(),
                    Vec::new(),
                    Err(Failure::Instantiate {
                        source: error.into(),
                    }),
                )
            }
        };
        store.set_epoch_deadline(deadline_ticks(spec.timeout));
        store.epoch_deadline_trap();
        let outcome = run_start(&mut store, &self.pre, spec.timeout, spec.fuel);
        let state = store.data_mut();
        let stderr = state.stdio.take_stderr();
        let stdout = match &mut state.stdio.mode {
            stdio::Mode::Whole { stdout, .. } => std::mem::take(stdout),
            stdio::Mode::Stream(_) => Vec::new(),
        };
        (stdout, stderr, outcome)
    }
}

/// Instantiates `pre` in `store` and runs its `_start`: how it ended.
fn run_start(
    store: &mut wasmtime::Store<State>,
    pre: &InstancePre<State>,
    timeout: Duration,
    fuel: Option<u64>,
) -> Result<(), Failure> {
    match pre.instantiate(&mut *store) {
        Err(error) => {
            let limiter = &mut store.data_mut().limiter;
            if error.downcast_ref::<wasmtime::Trap>().is_some() || limiter.was_hit() {
                // A start function that traps or a memory over the cap.
                sandbox::classify(error, limiter, timeout, fuel).and(Err(Failure::Instantiate {
                    source: "the module stopped during instantiation".into(),
                }))
            } else {
                Err(Failure::Instantiate {
                    source: error.into(),
                })
            }
        }
        Ok(instance) => match instance.get_typed_func::<(), ()>(&mut *store, "_start") {
            Err(error) => Err(Failure::Instantiate {
                source: error.into(),
            }),
            Ok(start) => match start.call(&mut *store, ()) {
                Ok(()) => Ok(()),
                Err(error) => {
                    sandbox::classify(error, &mut store.data_mut().limiter, timeout, fuel)
                }
            },
        },
    }
}

/// Advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct Ticker {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker, HostError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("replay-plugin-epoch".into())
            .spawn(move || {
                // Ends when the sender is dropped (or sends).
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(EPOCH_TICK) {
                    engine.increment_epoch();
                }
            })
            .map_err(|source| HostError::Ticker { source })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The epoch deadline for `timeout`: rounded up to whole ticks, plus one
/// because the first tick may come at once.
fn deadline_ticks(timeout: Duration) -> u64 {
    let ticks = timeout.as_nanos().div_ceil(EPOCH_TICK.as_nanos());
    u64::try_from(ticks).unwrap_or(u64::MAX).saturating_add(1)
}

fn check_limits(spec: &PluginSpec) -> Result<(), LoadError> {
    let invalid = |reason: String| LoadError::InvalidLimit {
        plugin: spec.name.clone(),
        reason,
    };
    if spec.timeout.is_zero() || spec.timeout > MAX_TIMEOUT {
        return Err(invalid(format!(
            "`timeout` must be more than 0 and at most {} s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    if spec.batch_timeout.is_zero() || spec.batch_timeout > MAX_TIMEOUT {
        return Err(invalid(format!(
            "`batch_timeout` must be more than 0 and at most {} s",
            MAX_TIMEOUT.as_secs()
        )));
    }
    if spec.fuel == Some(0) || spec.batch_fuel == Some(0) {
        return Err(invalid(
            "`fuel` and `batch_fuel` must be more than 0".into(),
        ));
    }
    if spec.max_memory < 65536 || usize::try_from(spec.max_memory).is_err() {
        return Err(invalid(
            "`max_memory` must be at least 65536 bytes (one wasm page) and fit in memory".into(),
        ));
    }
    if spec.max_output == 0 || usize::try_from(spec.max_output.saturating_add(1)).is_err() {
        return Err(invalid(
            "`max_output` must be more than 0 and fit in memory".into(),
        ));
    }
    Ok(())
}

/// The plugin ABI a module speaks, from its `replay.plugin-abi` custom
/// section: 2 when it says `2`, 1 without the section; the section's text
/// (printable) when it says anything else. A module the parser cannot read
/// is left to the compiler to refuse.
fn module_abi(bytes: &[u8]) -> Result<u32, String> {
    for payload in wasmparser::Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { break };
        if let wasmparser::Payload::CustomSection(section) = payload {
            if section.name() == abi::v2::CUSTOM_SECTION {
                if section.data() == abi::v2::custom_section_value() {
                    return Ok(abi::v2::ABI_VERSION);
                }
                let text: String = String::from_utf8_lossy(section.data())
                    .chars()
                    .take(32)
                    .map(|c| {
                        if c.is_control() {
                            char::REPLACEMENT_CHARACTER
                        } else {
                            c
                        }
                    })
                    .collect();
                return Err(text);
            }
        }
    }
    Ok(abi::ABI_VERSION)
}

/// A pin as 64 lowercase hex digits, or `None` if it is not one.
fn normalize_pin(pin: &str) -> Option<String> {
    let pin = pin.trim().to_ascii_lowercase();
    (pin.len() == 64 && pin.bytes().all(|b| b.is_ascii_hexdigit())).then_some(pin)
}

fn read_module(spec: &PluginSpec) -> Result<Vec<u8>, LoadError> {
    let read_error = |source| LoadError::Read {
        plugin: spec.name.clone(),
        path: spec.path.clone(),
        source,
    };
    let file = std::fs::File::open(&spec.path).map_err(read_error)?;
    let mut bytes = Vec::new();
    file.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(LoadError::TooLarge {
            plugin: spec.name.clone(),
            path: spec.path.clone(),
            limit: MAX_MODULE_BYTES,
        });
    }
    Ok(bytes)
}

/// Refuses a module that is not a WASI command: it must export a `_start`
/// function taking and returning nothing.
fn check_command(module: &Module) -> Result<(), String> {
    match module.get_export("_start") {
        None => Err("it exports no `_start` function (is it a library or a reactor?)".into()),
        Some(ExternType::Func(func)) if func.params().len() == 0 && func.results().len() == 0 => {
            Ok(())
        }
        Some(ExternType::Func(_)) => Err("its `_start` takes or returns values".into()),
        Some(_) => Err("its `_start` export is not a function".into()),
    }
}

/// Each command id's position in `commands`.
fn index_commands(commands: &[Command]) -> Result<HashMap<u64, usize>, Failure> {
    let mut slots = HashMap::with_capacity(commands.len());
    for (slot, command) in commands.iter().enumerate() {
        if slots.insert(command.id, slot).is_some() {
            return Err(Failure::DuplicateCommand { id: command.id });
        }
    }
    Ok(slots)
}

/// Checks that `response` has exactly one verdict per command and returns
/// them in the order of `commands`.
fn match_verdicts(
    response: abi::Response,
    commands: &[Command],
    slots: &HashMap<u64, usize>,
) -> Result<Vec<PluginVerdict>, Failure> {
    let mut ordered: Vec<Option<PluginVerdict>> = vec![None; commands.len()];
    for verdict in response.verdicts {
        let slot = *slots
            .get(&verdict.id)
            .ok_or(Failure::UnknownId { id: verdict.id })?;
        let entry = &mut ordered[slot];
        if entry.is_some() {
            return Err(Failure::DuplicateVerdict { id: verdict.id });
        }
        *entry = Some(PluginVerdict {
            id: verdict.id,
            allow: verdict.allow,
            reason: if verdict.allow {
                None
            } else {
                verdict.reason.as_deref().and_then(clean_reason)
            },
        });
    }
    let missing: Vec<u64> = ordered
        .iter()
        .zip(commands)
        .filter(|(verdict, _)| verdict.is_none())
        .map(|(_, command)| command.id)
        .collect();
    if !missing.is_empty() {
        return Err(Failure::MissingVerdicts {
            count: missing.len(),
            first: missing.into_iter().take(5).collect(),
        });
    }
    Ok(ordered.into_iter().flatten().collect())
}

/// A reason fit for a terminal: control characters replaced, whitespace
/// trimmed, at most [`MAX_REASON_CHARS`]; `None` if nothing is left.
fn clean_reason(reason: &str) -> Option<String> {
    let mut cleaned: String = reason
        .trim()
        .chars()
        .map(|c| {
            if c.is_control() {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .take(MAX_REASON_CHARS + 1)
        .collect();
    if cleaned.chars().count() > MAX_REASON_CHARS {
        cleaned = cleaned.chars().take(MAX_REASON_CHARS).collect();
        cleaned.push('…');
    }
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Resolves a plugin's `path` against the directory of the policy file
/// that names it (absolute paths stay as they are).
pub fn resolve_plugin_path(policy_file: &Path, path: &Path) -> PathBuf {
    match policy_file.parent() {
        Some(dir) => dir.join(path),
        None => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdlog::ToolKind;
    use std::collections::BTreeMap;

    fn command(id: u64) -> Command {
        Command {
            id,
            tool: ToolKind::Llc,
            program: "llc".into(),
            args: vec![],
            cwd: ".".into(),
            env: BTreeMap::new(),
            inputs: vec![],
            outputs: vec![],
            cache_key: None,
        }
    }

    fn response(json: &str) -> abi::Response {
        serde_json::from_str(json).unwrap()
    }

    fn check(json: &str) -> Result<Vec<PluginVerdict>, Failure> {
        let commands = [command(1), command(2), command(3)];
        let slots = index_commands(&commands).unwrap();
        match_verdicts(response(json), &commands, &slots)
    }

    #[test]
    fn verdicts_come_back_in_command_order() {
        let verdicts = check(
            r#"{"verdicts":[{"id":3,"allow":true},{"id":1,"allow":false,"reason":"no"},{"id":2,"allow":true,"reason":"ignored"}]}"#,
        )
        .unwrap();
        let ids: Vec<u64> = verdicts.iter().map(|v| v.id).collect();
        assert_eq!(ids, [1, 2, 3]);
        assert_eq!(verdicts[0].reason.as_deref(), Some("no"));
        assert!(!verdicts[0].allow);
        assert_eq!(verdicts[1].reason, None);
    }

    #[test]
    fn missing_unknown_and_duplicate_verdicts_fail() {
        assert!(matches!(
            check(r#"{"verdicts":[{"id":1,"allow":true}]}"#),
            Err(Failure::MissingVerdicts { count: 2, ref first }) if first == &[2, 3]
        ));
        assert!(matches!(
            check(r#"{"verdicts":[{"id":9,"allow":true}]}"#),
            Err(Failure::UnknownId { id: 9 })
        ));
        assert!(matches!(
            check(r#"{"verdicts":[{"id":2,"allow":true},{"id":2,"allow":false}]}"#),
            Err(Failure::DuplicateVerdict { id: 2 })
        ));
    }

    #[test]
    fn duplicate_command_ids_are_refused() {
        assert!(matches!(
            index_commands(&[command(1), command(1)]),
            Err(Failure::DuplicateCommand { id: 1 })
        ));
    }

    #[test]
    fn reasons_are_cleaned_and_cut() {
        assert_eq!(
            clean_reason("  \x1b[2Jbad\n").as_deref(),
            Some("\u{fffd}[2Jbad")
        );
        assert_eq!(clean_reason("   "), None);
        let long = "x".repeat(MAX_REASON_CHARS * 3);
        let cut = clean_reason(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_REASON_CHARS + 1);
        assert!(cut.ends_with('…'));
    }

    #[test]
    fn pins_are_64_hex_digits() {
        let pin = "AB".repeat(32);
        assert_eq!(normalize_pin(&pin), Some("ab".repeat(32)));
        assert_eq!(normalize_pin("abc"), None);
        assert_eq!(normalize_pin(&"g".repeat(64)), None);
    }

    #[test]
    fn deadline_rounds_up_to_ticks() {
        assert_eq!(deadline_ticks(Duration::from_secs(1)), 101);
        assert_eq!(deadline_ticks(Duration::from_millis(1)), 2);
    }

    #[test]
    fn limits_out_of_range_are_refused() {
        let mut spec = PluginSpec::new("p", "p.wasm");
        spec.timeout = Duration::ZERO;
        assert!(matches!(
            check_limits(&spec),
            Err(LoadError::InvalidLimit { .. })
        ));
        let mut spec = PluginSpec::new("p", "p.wasm");
        spec.max_memory = 1000;
        assert!(matches!(
            check_limits(&spec),
            Err(LoadError::InvalidLimit { .. })
        ));
        assert!(check_limits(&PluginSpec::new("p", "p.wasm")).is_ok());
    }

    #[test]
    fn host_and_plugins_can_be_shared_across_threads() {
        // A compile-time check: the executor may evaluate plugins from
        // worker threads.
        fn shareable<T: Send + Sync>() {}
        shareable::<PluginHost>();
        shareable::<LoadedPlugin>();
        shareable::<EvalError>();
    }

    #[test]
    fn plugin_paths_are_relative_to_the_policy() {
        assert_eq!(
            resolve_plugin_path(
                Path::new("policies/linux.toml"),
                Path::new("plugins/n.wasm")
            ),
            PathBuf::from("policies/plugins/n.wasm")
        );
        assert_eq!(
            resolve_plugin_path(Path::new("policies/linux.toml"), Path::new("/abs/n.wasm")),
            PathBuf::from("/abs/n.wasm")
        );
    }
}
