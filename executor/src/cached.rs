//! The action cache as a run uses it: the key `replay` computes for a
//! command the policy allowed (never the log's `cache_key`: a log is
//! written by whoever wrote it), the read set a finished run leaves in its
//! entry, and what the report says of both.
//!
//! The key ([`replay_cache::ActionSpec`]) is made of what the policy
//! resolved: the canonical binary's content, `argv[0]` and the arguments
//! after response-file expansion as declared (not the staged output
//! paths), the whole environment the policy built, `cwd`, this host's
//! platform, every declared input's path and content, and the declared
//! outputs. What else the tool read (a system header, a library, a file of
//! an `-I` directory) it cannot know beforehand: the tracer sees every
//! `open`, `openat`, `openat2`, `creat`, `execve` and `execveat` of the
//! tool's tree (the seccomp filter stops them; `io_uring` and other
//! syscall ABIs are refused), and each file read, or looked for and not
//! found, goes into the entry with its digest. A lookup hits only if each
//! is still the same. The observation is advisory where a tool's threads
//! race it (a path swapped between the call and the tracer's read of it);
//! the sandbox, not the read set, is what confines a tool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use cmdlog::Command;
use policy::Resolved;
use replay_cache::{
    ActionKey, ActionSpec, Cost, InputFile, Lookup, LookupError, OpenError, ProducedFile, ReadFile,
    Record, Store,
};

use std::time::{SystemTime, UNIX_EPOCH};

use crate::run::trace::{Accessed, ReadHook};
use crate::run::Stamp;
use crate::run::ToolOutcome;
use crate::staging::Staging;

/// The cache's size cap unless `--cache-max-size` says otherwise: 5 GiB.
pub const DEFAULT_MAX_SIZE: u64 = 5 << 30;

/// Files a read set holds at most; a tool that read more is not cached.
pub const MAX_READ_SET: usize = 20_000;

/// Where the cache is and how large it may grow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheOptions {
    /// The cache directory.
    pub dir: PathBuf,
    /// Its size cap in bytes (least recently used entries go first).
    pub max_size: u64,
    /// A remote cache in front of it (`--remote-cache`), if any.
    pub remote: Option<crate::remote::RemoteOptions>,
    /// A build farm that runs what misses every cache
    /// (`--remote-executor`), if any.
    pub executor: Option<crate::remote::RemoteOptions>,
}

/// What the report says of one command and the cache.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct CacheRecord {
    /// The command's key (the REAPI `Action` digest, hex), if one was made.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// Whether the outputs were restored rather than made.
    pub hit: bool,
    /// Why a lookup missed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub miss: Option<String>,
    /// Whether this run's result was stored.
    pub stored: bool,
    /// Why it was not stored (or no key was made), if it ran and succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_stored: Option<String>,
    /// The tool's wall time the hit saved, in milliseconds.
    #[serde(skip_serializing_if = "is_zero")]
    pub saved_ms: u64,
    /// What the remote cache did: `hit`, `miss`, `refused: WHY`,
    /// `uploaded`, `failed: WHY`, `upload failed: WHY`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// With `--remote-executor`, where the command ran: `local`, or the
    /// worker's name from its result.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ran_on: Option<String>,
    /// The peak RSS the worker measured, in bytes, for a command that ran
    /// on the build farm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub worker_peak_rss_bytes: Option<u64>,
    /// Why a command meant for the build farm ran here instead.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote_execution: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a finished run read besides what its command declared.
#[derive(Debug)]
pub struct Reads {
    /// Every file read (or looked for) outside the declared inputs, the
    /// tool's binary and its staging, with its digest now: the entry's
    /// read set. `None` if it cannot be one (why).
    pub read_set: Result<Vec<ReadFile>, String>,
    /// Files inside the work root it read without declaring them
    /// (root-relative): the report lists them.
    pub undeclared: Vec<String>,
}

/// A command on its way to the build farm, owning all it needs on a
/// thread of its own: [`RemoteJob::run`] uploads, executes, and commits
/// a usable result into the store (nothing of the work root is touched).
pub struct RemoteJob {
    #[cfg(feature = "remote-cache")]
    store: Arc<Store>,
    #[cfg(feature = "remote-cache")]
    executor: Arc<crate::remote::RunRemote>,
    /// The action the farm is asked to run (the key, with `memory_kb`).
    #[cfg(feature = "remote-cache")]
    sent: ActionKey,
    /// The key its result is stored under.
    #[cfg(feature = "remote-cache")]
    stored_as: replay_cache::Digest,
    /// The binary and the declared inputs, here.
    #[cfg(feature = "remote-cache")]
    files: Vec<PathBuf>,
    #[cfg(feature = "remote-cache")]
    expected: Vec<String>,
    #[cfg(feature = "remote-cache")]
    readable: Vec<PathBuf>,
    #[cfg(feature = "remote-cache")]
    root: PathBuf,
    #[cfg(feature = "remote-cache")]
    wait: std::time::Duration,
}

impl RemoteJob {
    /// Sends the command to the farm and waits for it (at most the wait
    /// it was given); a usable result is in the store when it returns
    /// [`crate::remote::Remotely::Stored`].
    pub fn run(self) -> crate::remote::Remotely {
        #[cfg(not(feature = "remote-cache"))]
        {
            crate::remote::Remotely::Local(None)
        }
        #[cfg(feature = "remote-cache")]
        {
            use crate::remote::Remotely;
            let memo = self.store.memo();
            let mut files = Vec::with_capacity(self.files.len());
            for file in &self.files {
                if file.is_dir() {
                    continue;
                }
                match memo.digest(file) {
                    Ok(digest) => files.push((digest, file.clone())),
                    Err(e) => {
                        return Remotely::Local(Some(format!(
                            "cannot hash `{}` to send it: {e}",
                            file.display()
                        )))
                    }
                }
            }
            self.executor.execute(
                &self.store,
                &self.sent,
                &self.stored_as,
                &files,
                self.wait,
                &self.expected,
                &self.readable,
                &self.root,
            )
        }
    }

    /// The `memory_kb` the farm is asked for, if any.
    pub fn memory_kb(&self) -> Option<u64> {
        #[cfg(feature = "remote-cache")]
        {
            memory_property(&self.sent)
        }
        #[cfg(not(feature = "remote-cache"))]
        None
    }
}

/// The platform property a farm's action carries for the memory it
/// needs (README "Platform properties").
pub const MEMORY_KB: &str = "memory_kb";

/// What the build farm is asked to run for `key`: `key` itself, or, when
/// the cache measured a `peak` (bytes) for it, `key` with `memory_kb`
/// (KiB, rounded up) in its platform, for a scheduler to place it by.
pub fn farm_key(key: &ActionKey, peak: Option<u64>) -> ActionKey {
    match peak.filter(|p| *p > 0) {
        Some(peak) => key
            .with_property(MEMORY_KB, &peak.div_ceil(1024).to_string())
            .unwrap_or_else(|| key.clone()),
        None => key.clone(),
    }
}

/// The `memory_kb` property of `key`'s `Action`, if it has one.
pub fn memory_property(key: &ActionKey) -> Option<u64> {
    use prost::Message as _;
    let bytes = key
        .blobs
        .iter()
        .find(|(d, _)| *d == key.action)
        .map(|(_, b)| b.as_slice())?;
    let action = replay_cache::reapi::Action::decode(bytes).ok()?;
    action
        .platform?
        .properties
        .into_iter()
        .find(|p| p.name == MEMORY_KB)
        .and_then(|p| p.value.parse().ok())
}

/// A run's handle on the cache.
pub struct RunCache {
    store: Arc<Store>,
    /// Hashes what tools read while they run; started at the first miss.
    warmer: std::sync::OnceLock<Option<Arc<replay_cache::Warmer>>>,
    #[cfg(feature = "remote-cache")]
    remote: Option<crate::remote::RunRemote>,
    #[cfg(feature = "remote-cache")]
    executor: Option<Arc<crate::remote::RunRemote>>,
}

/// What a lookup found, locally or remotely.
pub struct Looked {
    /// The local store's answer (after a remote hit filled it).
    pub lookup: Result<Lookup, LookupError>,
    /// What the remote did, for the report.
    pub remote: Option<String>,
}

/// Why the cache cannot be used at all.
#[derive(Debug, thiserror::Error)]
pub enum RunCacheError {
    /// The local store.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The remote cache's client could not be set up (a bad URL, header
    /// or CA file).
    #[cfg(feature = "remote-cache")]
    #[error(transparent)]
    Remote(#[from] replay_cache::remote::RemoteError),
}

impl RunCache {
    /// Opens (or makes, 0700) the cache at `options.dir`; refused if
    /// another user can write to it. Sets up the remote client if one is
    /// configured (no call is made yet).
    pub fn open(options: &CacheOptions) -> Result<RunCache, RunCacheError> {
        Ok(RunCache {
            store: Arc::new(Store::open(&options.dir, options.max_size)?),
            warmer: std::sync::OnceLock::new(),
            #[cfg(feature = "remote-cache")]
            remote: options
                .remote
                .as_ref()
                .map(crate::remote::RunRemote::new)
                .transpose()?,
            #[cfg(feature = "remote-cache")]
            executor: options
                .executor
                .as_ref()
                .map(crate::remote::RunRemote::farm)
                .transpose()?
                .map(Arc::new),
        })
    }

    /// Whether a build farm takes this run's misses.
    pub fn has_executor(&self) -> bool {
        #[cfg(feature = "remote-cache")]
        return self.executor.is_some();
        #[cfg(not(feature = "remote-cache"))]
        false
    }

    /// Runs `key`'s command (a miss of every cache, `resolved` by the
    /// policy, under `root`) on the build farm, waiting at most `wait`; a
    /// result it commits into the store is restored into `staging` by the
    /// same lookup as a remote cache hit. `None` without a farm.
    pub fn execute_remotely(
        &self,
        key: &ActionKey,
        resolved: &Resolved,
        staging: &Staging,
        readable: &[PathBuf],
        root: &Path,
        wait: std::time::Duration,
    ) -> Option<(crate::remote::Remotely, Option<Result<Lookup, LookupError>>)> {
        let job = self.remote_job(key, resolved, staging, readable, root, wait)?;
        let remotely = job.run();
        let lookup = self.remote_lookup(&remotely, key, staging);
        Some((remotely, lookup))
    }

    /// What [`RunCache::execute_remotely`] sends to the farm, to run on a
    /// thread of its own ([`RemoteJob::run`]); its result is restored
    /// into `staging` afterwards by [`RunCache::remote_lookup`]. The
    /// action carries the peak this cache measured for `key`, if any, as
    /// `memory_kb`. `None` without a farm.
    pub fn remote_job(
        &self,
        key: &ActionKey,
        resolved: &Resolved,
        staging: &Staging,
        readable: &[PathBuf],
        root: &Path,
        wait: std::time::Duration,
    ) -> Option<RemoteJob> {
        #[cfg(not(feature = "remote-cache"))]
        {
            let _ = (key, resolved, staging, readable, root, wait);
            None
        }
        #[cfg(feature = "remote-cache")]
        {
            let executor = Arc::clone(self.executor.as_ref()?);
            let files = std::iter::once(&resolved.program)
                .chain(&resolved.input_files)
                .cloned()
                .collect();
            Some(RemoteJob {
                store: Arc::clone(&self.store),
                executor,
                sent: farm_key(key, self.peak(key)),
                stored_as: key.action.clone(),
                files,
                expected: staging.staged_files().map(|(p, _)| p.to_owned()).collect(),
                readable: readable.to_vec(),
                root: root.to_owned(),
                wait,
            })
        }
    }

    /// The lookup that restores into `staging` what a [`RemoteJob`] that
    /// ended `remotely` stored under `key`; `None` if it stored nothing.
    pub fn remote_lookup(
        &self,
        remotely: &crate::remote::Remotely,
        key: &ActionKey,
        staging: &Staging,
    ) -> Option<Result<Lookup, LookupError>> {
        matches!(remotely, crate::remote::Remotely::Stored { .. }).then(|| {
            let expected: Vec<String> = staging.staged_files().map(|(p, _)| p.to_owned()).collect();
            self.store
                .lookup(&key.action, &staging.out_dir(), &expected)
        })
    }

    /// The build farm's failure, the first time it fails: the run warns
    /// once and runs the rest here.
    pub fn take_executor_warning(&self) -> Option<String> {
        #[cfg(feature = "remote-cache")]
        if let Some(executor) = &self.executor {
            return executor.take_warning();
        }
        None
    }

    /// The remote cache's failure, the first time it fails: the run
    /// warns once and goes on without it.
    pub fn take_remote_warning(&self) -> Option<String> {
        #[cfg(feature = "remote-cache")]
        if let Some(remote) = &self.remote {
            return remote.take_warning();
        }
        None
    }

    /// Adds what the remote did in this run to the store's counters.
    pub fn save_remote_counts(&self) {
        #[cfg(feature = "remote-cache")]
        if let Some(remote) = &self.remote {
            remote.save_counts(&self.store);
        }
    }

    /// What the tracer tells of each file a missed command's tool reads:
    /// a file outside `root` (a system library, the tool's own files) is
    /// hashed in the background while the tool runs, so storing its read
    /// set afterwards finds the digest taken. Files in the root are left
    /// alone (other commands may be writing them); `None` if no thread
    /// could be started.
    pub fn read_hook(&self, root: &Path) -> Option<ReadHook> {
        let warmer = self
            .warmer
            .get_or_init(|| {
                replay_cache::Warmer::start(self.store.shared_memo())
                    .ok()
                    .map(Arc::new)
            })
            .clone()?;
        let root = root.to_owned();
        Some(Arc::new(move |path: &str| {
            let file = Path::new(path);
            if file.is_absolute()
                && !file.starts_with(&root)
                && !PSEUDO.iter().any(|p| path.starts_with(p))
            {
                warmer.warm(file);
            }
        }))
    }

    /// The key of `command` as the policy resolved it, run under `root`.
    pub fn key(
        &self,
        command: &Command,
        resolved: &Resolved,
        root: &Path,
    ) -> Result<ActionKey, String> {
        let memo = self.store.memo();
        let program_digest = memo.digest(&resolved.program).map_err(|e| {
            format!(
                "cannot hash the binary `{}`: {e}",
                resolved.program.display()
            )
        })?;
        let mut inputs = Vec::with_capacity(resolved.input_files.len());
        for file in &resolved.input_files {
            let path = match file.strip_prefix(root) {
                Ok(inside) => inside.to_string_lossy().into_owned(),
                Err(_) => file.to_string_lossy().into_owned(),
            };
            // A declared directory (`-I .` as an input) is no file: what
            // the tool reads in it is in the read set.
            if file.is_dir() {
                continue;
            }
            let input: InputFile = memo
                .input_file(&path, file)
                .map_err(|e| format!("cannot hash the input `{}`: {e}", file.display()))?;
            inputs.push(input);
        }
        let mut argv = Vec::with_capacity(resolved.args.len() + 1);
        argv.push(resolved.argv0.clone());
        argv.extend(resolved.args.iter().cloned());
        ActionSpec {
            program_digest,
            argv,
            env: resolved.env.clone(),
            cwd: command.cwd.clone(),
            platform: platform(root, &resolved.program),
            inputs,
            outputs: command.outputs.clone(),
        }
        .key()
        .map_err(|e| e.to_string())
    }

    /// Keeps the digests this run took for the next (a hit then rehashes
    /// no system library whose stamp is unchanged); best effort.
    pub fn save_memo(&self) {
        let _ = self.store.save_memo();
    }

    /// The content digest (hex) of the binary at `path`, memoized.
    pub fn program_digest(&self, path: &Path) -> Option<String> {
        self.store.memo().digest(path).ok().map(|d| d.hash)
    }

    /// The peak memory the cache measured for `key`'s run, if it has one.
    pub fn peak(&self, key: &ActionKey) -> Option<u64> {
        self.store.cost(&key.action).map(|c| c.peak_rss_bytes)
    }

    /// Looks `key` up, restoring a hit's outputs into `staging`'s mirror of
    /// them (committed from there exactly as a run's are).
    /// A local miss asks the remote cache, if any; a usable remote result
    /// becomes a local entry and is restored by the same local lookup.
    /// `readable`: what the command's sandbox lets its tool read (the
    /// files a remote read set may name, besides absent ones in `root`).
    pub fn lookup(
        &self,
        key: &ActionKey,
        staging: &Staging,
        readable: &[PathBuf],
        root: &Path,
    ) -> Looked {
        #[cfg(not(feature = "remote-cache"))]
        let _ = (readable, root);
        let expected: Vec<String> = staging.staged_files().map(|(p, _)| p.to_owned()).collect();
        let lookup = self
            .store
            .lookup(&key.action, &staging.out_dir(), &expected);
        #[cfg(feature = "remote-cache")]
        if let (Ok(Lookup::Miss(_)), Some(remote)) = (&lookup, &self.remote) {
            let said = remote.fetch(&self.store, &key.action, &expected, readable, root);
            if said.as_deref() == Some("hit") {
                let lookup = self
                    .store
                    .lookup(&key.action, &staging.out_dir(), &expected);
                // The entry was checked before it was kept; a file it
                // names could still change before this lookup.
                let said = match &lookup {
                    Ok(Lookup::Hit(_)) => said,
                    Ok(Lookup::Miss(reason)) => Some(format!("refused: {reason}")),
                    Err(e) => Some(format!("refused: {}", policy::report::one_line(e))),
                };
                return Looked {
                    lookup,
                    remote: said,
                };
            }
            return Looked {
                lookup,
                remote: said,
            };
        }
        Looked {
            lookup,
            remote: None,
        }
    }

    /// What the finished run of `resolved` read besides what it declared.
    pub fn reads(
        &self,
        outcome: &ToolOutcome,
        resolved: &Resolved,
        root: &Path,
        staging: &Staging,
    ) -> Reads {
        let mut reads = reads(
            outcome.accessed.as_ref(),
            resolved,
            root,
            staging.dir(),
            outcome.started_at,
            |path| self.store.memo().digest(path),
        );
        // A run the sandbox refused something is not a result to reuse:
        // what it did without may differ where it is allowed.
        if !outcome.denied.is_empty() {
            reads.read_set = Err("the sandbox refused some of what it tried".into());
        }
        reads
    }

    /// Stores the successful run `outcome`, whose outputs are still in
    /// `staging`, under `key`, with `read_set`, and uploads it to the
    /// remote cache in read-write mode; what the remote did, for the
    /// report.
    pub fn store(
        &self,
        key: &ActionKey,
        outcome: &ToolOutcome,
        staging: &Staging,
        read_set: Vec<ReadFile>,
    ) -> Result<Option<String>, String> {
        let (Some(stdout), Some(stderr)) = (&outcome.stdout, &outcome.stderr) else {
            return Err("it printed more than the cache keeps".into());
        };
        let m = &outcome.measurements;
        let record = Record {
            outputs: staging
                .staged_files()
                .map(|(path, file)| ProducedFile {
                    path: path.to_owned(),
                    file: file.to_owned(),
                })
                .collect(),
            stdout: stdout.clone(),
            stderr: stderr.clone(),
            exit_code: 0,
            cost: Cost {
                wall_ms: m.wall_ms,
                cpu_ms: m.user_ms + m.system_ms,
                // What the scheduler admits: the larger of the exact
                // largest process and the sampled sum of the tree.
                peak_rss_bytes: m
                    .peak_process
                    .as_ref()
                    .map_or(0, |p| p.bytes)
                    .max(m.peak_tree_rss_sampled),
            },
            read_set,
        };
        let entry = self
            .store
            .put(&key.action, &record)
            .map_err(|e| policy::report::one_line(&e))?;
        #[cfg(feature = "remote-cache")]
        if let Some(remote) = &self.remote {
            return Ok(remote.upload(&self.store, key, &entry));
        }
        drop(entry);
        Ok(None)
    }
}

/// The files inside `root` that the finished run of `resolved` read
/// without declaring them (root-relative), for a run without a cache.
pub fn undeclared(
    outcome: &ToolOutcome,
    resolved: &Resolved,
    root: &Path,
    staging: &Staging,
) -> Vec<String> {
    // No digest is needed for the list: every file "hashes" alike.
    reads(
        outcome.accessed.as_ref(),
        resolved,
        root,
        staging.dir(),
        outcome.started_at,
        |_| Ok(replay_cache::Digest::of(b"")),
    )
    .undeclared
}

/// This host's platform and more that a result can depend on without a
/// file saying so: the `replay` that confines the tool (the sandbox's
/// system directories, its environment), the work root (a result records
/// it: `DW_AT_comp_dir`; and read sets name files under it), the binary's
/// canonical path (clang finds its resource directory and sibling tools
/// from it) and the CPU (`-march=native`, `/proc/cpuinfo`).
pub(crate) fn platform(root: &Path, program: &Path) -> Vec<(String, String)> {
    let mut platform = replay_cache::host_platform();
    platform.push(("replay".into(), env!("CARGO_PKG_VERSION").into()));
    platform.push(("root".into(), root.display().to_string()));
    platform.push(("program".into(), program.display().to_string()));
    platform.push(("cpu".into(), cpu().to_owned()));
    platform
}

/// The CPU as `/proc/cpuinfo`'s first processor names it (vendor,
/// family, model, flags), hashed; computed once.
fn cpu() -> &'static str {
    static CPU: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    CPU.get_or_init(|| {
        let text = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let first = text.split("\n\n").next().unwrap_or_default();
        let identity: Vec<&str> = first
            .lines()
            .filter(|line| {
                [
                    "vendor_id",
                    "cpu family",
                    "model",
                    "model name",
                    "flags",
                    "isa",
                    "uarch",
                ]
                .iter()
                .any(|key| line.split(':').next().is_some_and(|k| k.trim() == *key))
            })
            .collect();
        replay_cache::Digest::of(identity.join("\n").as_bytes()).hash
    })
}

/// Pseudo-file systems: what is read there is no file content to key.
const PSEUDO: &[&str] = &["/proc/", "/sys/", "/dev/"];

/// The read set and the undeclared reads of `accessed` (`None`: not
/// observed, so nothing can be cached), hashing with `digest`. A file that
/// changed after the tool opened it, or since the tool started, makes the
/// result one not to store (it may hold either content).
fn reads(
    accessed: Option<&Accessed>,
    resolved: &Resolved,
    root: &Path,
    stage_dir: &Path,
    started: SystemTime,
    digest: impl Fn(&Path) -> std::io::Result<replay_cache::Digest>,
) -> Reads {
    let Some(accessed) = accessed else {
        return Reads {
            read_set: Err("its reads were not observed (no ptrace here)".into()),
            undeclared: Vec::new(),
        };
    };
    let mut undeclared = Vec::new();
    let mut read_set = Vec::new();
    let mut problem = (!accessed.complete).then(|| "it opened too many files to list".to_owned());
    let started_ns = started
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128);
    // The loader the kernel maps to start the tool is opened by no call.
    let loaders = crate::confine::with_interpreters(&resolved.program);
    let files = accessed
        .files
        .iter()
        .map(|a| (a.action, a.path.as_str(), a.found, a.stamp));
    let loaders = loaders
        .iter()
        .skip(1)
        .filter_map(|p| p.to_str())
        .map(|p| ("read", p, true, None));
    for (action, shown, found, stamp) in files.chain(loaders) {
        if action == "write" {
            continue;
        }
        let path = Path::new(shown);
        if !path.is_absolute() {
            problem.get_or_insert_with(|| {
                format!("it used `{shown}`, a path the tracer could not resolve")
            });
            continue;
        }
        if PSEUDO.iter().any(|p| shown.starts_with(p))
            || path.starts_with(stage_dir)
            || path == resolved.program
            || resolved.input_files.iter().any(|f| f == path)
        {
            continue;
        }
        if !found {
            read_set.push(ReadFile {
                path: path.to_owned(),
                digest: None,
                listing: false,
            });
            continue;
        }
        let meta = match std::fs::metadata(path) {
            Ok(meta) => meta,
            Err(e) => {
                problem
                    .get_or_insert_with(|| format!("cannot look at `{shown}`, which it read: {e}"));
                continue;
            }
        };
        if action == "list" {
            match replay_cache::listing_digest(path) {
                Ok(d) => read_set.push(ReadFile {
                    path: path.to_owned(),
                    digest: Some(d),
                    listing: true,
                }),
                Err(e) => {
                    problem.get_or_insert_with(|| {
                        format!("cannot list `{shown}`, which it listed: {e}")
                    });
                }
            }
            continue;
        }
        if !meta.is_file() {
            // A directory opened (to list, or as a base for `openat`) or a
            // device: what it read there is observed on its own.
            continue;
        }
        if let Ok(inside) = path.strip_prefix(root) {
            undeclared.push(inside.to_string_lossy().into_owned());
        }
        let now = Stamp::of(&meta);
        if stamp.is_some_and(|then| then != now) || now.ctime_ns >= started_ns {
            problem
                .get_or_insert_with(|| format!("`{shown}`, which it read, changed while it ran"));
            continue;
        }
        match digest(path) {
            // The digest must be of the file whose stamp was checked: one
            // replaced or rewritten between that check and the hash (a
            // path swapped under it) would key content the tool never
            // read.
            Ok(_) if !std::fs::metadata(path).is_ok_and(|m| Stamp::of(&m) == now) => {
                problem.get_or_insert_with(|| {
                    format!("`{shown}`, which it read, changed while it ran")
                });
            }
            Ok(d) => read_set.push(ReadFile {
                path: path.to_owned(),
                digest: Some(d),
                listing: false,
            }),
            Err(e) => {
                problem.get_or_insert_with(|| format!("cannot hash `{shown}`, which it read: {e}"));
            }
        }
    }
    if read_set.len() > MAX_READ_SET {
        problem.get_or_insert_with(|| format!("it read more than {MAX_READ_SET} files"));
    }
    undeclared.sort();
    undeclared.dedup();
    Reads {
        read_set: match problem {
            Some(problem) => Err(problem),
            None => Ok(read_set),
        },
        undeclared,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::run::Access;

    fn a_key() -> ActionKey {
        ActionSpec {
            program_digest: replay_cache::Digest::of(b"opt"),
            argv: vec!["opt".into(), "a.bc".into()],
            env: Default::default(),
            cwd: ".".into(),
            platform: platform(Path::new("/work"), Path::new("/usr/bin/opt")),
            inputs: Vec::new(),
            outputs: vec!["a.opt.bc".into()],
        }
        .key()
        .expect("a key")
    }

    /// The farm is asked for `memory_kb` exactly when the cache measured
    /// a peak for the command, in KiB rounded up; without one the action
    /// sent is the cache's key itself.
    #[test]
    fn the_memory_request_is_sent_iff_a_peak_is_known() {
        let key = a_key();
        let plain = farm_key(&key, None);
        assert_eq!(plain, key);
        assert_eq!(memory_property(&plain), None);
        assert_eq!(memory_property(&farm_key(&key, Some(0))), None);
        let hinted = farm_key(&key, Some(1_000_000));
        assert_ne!(hinted.action, key.action);
        assert_eq!(
            memory_property(&hinted),
            Some(977),
            "1,000,000 B is 977 KiB up"
        );
        assert_eq!(memory_property(&farm_key(&key, Some(2048))), Some(2));
        assert_eq!(memory_property(&farm_key(&key, Some(1))), Some(1));
    }

    fn resolved(root: &Path) -> Resolved {
        Resolved {
            program: PathBuf::from("/usr/bin/tool"),
            argv0: "tool".into(),
            args: Vec::new(),
            env: Default::default(),
            limits: Default::default(),
            linker_reads: Default::default(),
            may_exec: Vec::new(),
            input_dirs: Vec::new(),
            input_files: vec![root.join("in.c")],
        }
    }

    fn read(path: &Path, found: bool) -> Access {
        Access {
            action: "read",
            path: path.display().to_string(),
            found,
            stamp: std::fs::metadata(path).ok().map(|m| Stamp::of(&m)),
        }
    }

    #[test]
    fn the_read_set_is_what_was_read_besides_the_declared() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let stage = root.join(".replay-stage/1-1");
        std::fs::create_dir_all(root.join("include")).unwrap();
        std::fs::create_dir_all(&stage).unwrap();
        for file in ["in.c", "include/x.h"] {
            std::fs::write(root.join(file), file).unwrap();
        }
        let system = dir.path().join("system.h");
        std::fs::write(&system, "s").unwrap();
        let accessed = Accessed {
            files: vec![
                read(&root.join("in.c"), true),
                read(&root.join("include/x.h"), true),
                read(&root.join("include"), true),
                read(&system, true),
                read(&dir.path().join("absent.h"), false),
                read(Path::new("/proc/self/status"), true),
                read(&stage.join("out/a.o"), true),
                read(Path::new("/usr/bin/tool"), true),
                Access {
                    action: "write",
                    path: stage.join("out/a.o").display().to_string(),
                    found: true,
                    stamp: None,
                },
            ],
            complete: true,
        };
        let started = SystemTime::now() + std::time::Duration::from_secs(1);
        let got = reads(
            Some(&accessed),
            &resolved(&root),
            &root,
            &stage,
            started,
            |p| Ok(replay_cache::Digest::of(p.display().to_string().as_bytes())),
        );
        let set = got.read_set.unwrap();
        let paths: Vec<(&Path, bool)> = set
            .iter()
            .map(|r| (r.path.as_path(), r.digest.is_some()))
            .collect();
        assert_eq!(
            paths,
            [
                (root.join("include/x.h").as_path(), true),
                (system.as_path(), true),
                (dir.path().join("absent.h").as_path(), false),
            ]
        );
        assert_eq!(got.undeclared, ["include/x.h"]);
    }

    /// Regression: the file's stamp was checked, then the file hashed by
    /// path; one rewritten in between was keyed with the new content,
    /// which the tool never read.
    #[test]
    fn a_file_rewritten_between_its_check_and_its_hash_is_no_read_set() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        let stage = root.join(".replay-stage/1-1");
        std::fs::create_dir_all(&stage).unwrap();
        let system = dir.path().join("system.h");
        std::fs::write(&system, "old").unwrap();
        let accessed = Accessed {
            files: vec![read(&system, true)],
            complete: true,
        };
        let started = SystemTime::now() + std::time::Duration::from_secs(1);
        let got = reads(
            Some(&accessed),
            &resolved(&root),
            &root,
            &stage,
            started,
            |p| {
                // Someone swaps the file just before it is hashed.
                std::fs::write(p, "newer").unwrap();
                Ok(replay_cache::Digest::of(&std::fs::read(p).unwrap()))
            },
        );
        let why = got.read_set.unwrap_err();
        assert!(why.contains("changed while it ran"), "{why}");
    }

    #[test]
    fn what_was_not_observed_or_not_listed_whole_is_never_a_read_set() {
        let root = Path::new("/r");
        let unobserved = reads(
            None,
            &resolved(root),
            root,
            Path::new("/r/s"),
            SystemTime::now(),
            |_| unreachable!(),
        );
        assert!(unobserved.read_set.is_err());
        let incomplete = Accessed {
            files: Vec::new(),
            complete: false,
        };
        let cut = reads(
            Some(&incomplete),
            &resolved(root),
            root,
            Path::new("/r/s"),
            SystemTime::now(),
            |_| unreachable!(),
        );
        assert!(cut.read_set.is_err());
    }

    #[test]
    fn a_file_changed_after_the_tool_opened_it_or_since_it_started_is_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(&root).unwrap();
        let header = dir.path().join("x.h");
        std::fs::write(&header, "#define X 1\n").unwrap();
        let opened = read(&header, true);
        let after = SystemTime::now() + std::time::Duration::from_secs(1);
        let stage = root.join(".replay-stage/1-1");
        let hash = |p: &Path| Ok(replay_cache::Digest::of(p.display().to_string().as_bytes()));
        let accessed = Accessed {
            files: vec![opened.clone()],
            complete: true,
        };
        // Unchanged and older than the run: stored.
        assert!(reads(
            Some(&accessed),
            &resolved(&root),
            &root,
            &stage,
            after,
            hash
        )
        .read_set
        .is_ok());
        // Created after the tool started: it may have read either content.
        let before = SystemTime::now() - std::time::Duration::from_secs(60);
        assert!(reads(
            Some(&accessed),
            &resolved(&root),
            &root,
            &stage,
            before,
            hash
        )
        .read_set
        .is_err());
        // Rewritten after the tool opened it.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&header, "#define X 22\n").unwrap();
        let got = reads(
            Some(&accessed),
            &resolved(&root),
            &root,
            &stage,
            after,
            hash,
        );
        assert!(
            got.read_set
                .as_ref()
                .is_err_and(|e| e.contains("changed while it ran")),
            "{:?}",
            got.read_set
        );
    }
}
