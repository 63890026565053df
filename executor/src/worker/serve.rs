//! The worker's session with the farm: register a bot advertising
//! [`super::advertised`], then keep `UpdateBotSession` going (BuildGrid
//! takes a bot that stays silent past its keepalive for dead, and queues
//! its leases again) while up to `-j N` leases run, each on a thread of
//! its own (and in a mount namespace of its own: [`super::present`]).
//! Each lease: the action read from the CAS, verified ([`super::tree`]),
//! the host checked and the inputs written into a fresh lease root
//! ([`super::materialize`]), the one-command log ([`super::lease_log`])
//! judged by the worker's own policy and run on the executor's run path
//! ([`crate::session::run`]: the same checks, sandbox, limits and
//! measurement as a local run), the outputs, stdout and stderr uploaded,
//! and the lease completed ([`super::lease`]). Anything refused completes
//! the lease with the finding, and nothing runs.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use prost::Message as _;
use replay_cache::reapi::{Action, Command as ReapiCommand};
use replay_cache::remote::bots::{
    BotSession, Device, KeyValue, Lease, Worker, BOT_STATUS_OK, BOT_STATUS_TERMINATING,
    CAPACITY_KEY, LEASE_ACTIVE, LEASE_PENDING,
};
use replay_cache::remote::proto::OutputFile;
use replay_cache::remote::{Remote, RemoteConfig, RemoteError};
use replay_cache::{Cost, Digest, Store};

use super::lease::{action_of, completed, failed, refused, Payload, RunResult};
use super::lease_log::{client_root, document, to_command};
use super::materialize::{check_host, materialize};
use super::tree::read_tree;
use crate::report::{Format, Verbosity};
use crate::session::{Console, RunSettings, Target};

/// What `replay worker` was asked to do.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    /// The farm's Bots, CAS and ByteStream endpoint.
    pub remote: RemoteConfig,
    /// The worker's own policy: every lease is judged by it.
    pub policy: PathBuf,
    /// Where lease roots and the worker's blob store live.
    pub root: PathBuf,
    /// The bot id the farm knows this worker by.
    pub bot_id: String,
    /// Leases run at once (the capacity the farm is told), at least 1.
    pub jobs: usize,
}

/// Why the worker stopped.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// The connection could not be set up.
    #[error("cannot set up the connection to the farm `{url}`")]
    Connect {
        /// The farm.
        url: String,
        /// Why.
        #[source]
        source: RemoteError,
    },
    /// SIGINT and SIGTERM could not be handled.
    #[error("cannot handle SIGINT and SIGTERM")]
    Signals(#[source] std::io::Error),
    /// The worker's root is not usable.
    #[error("cannot use the worker root `{}`", path.display())]
    Root {
        /// The root.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The worker's blob store cannot be opened.
    #[error("cannot open the worker's blob store in `{}`", path.display())]
    Store {
        /// The store's directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: replay_cache::OpenError,
    },
    /// The farm refused or stopped answering the bot session.
    #[error("the farm `{url}` did not keep the bot session")]
    Session {
        /// The farm.
        url: String,
        /// Why.
        #[source]
        source: RemoteError,
    },
}

/// Calls to the farm that may fail in a row before the worker gives up.
const MAX_FAILURES: u32 = 20;
/// The worker's blob store cap.
const STORE_BYTES: u64 = 16 << 30;

/// Serves leases until `stop` is set (also by SIGINT, SIGTERM, SIGHUP or
/// SIGQUIT) or the farm is lost; a stopped worker tells the farm it is
/// terminating.
///
/// Each lease's run registers its own handlers for those four signals (to
/// stop its tool cleanly), which replace the default action of killing
/// the process: so the worker registers `stop` for all four first, and
/// each ends the loop whether or not a lease ran. (Handlers a run
/// registers stay registered: a few words per lease.)
pub fn serve(settings: &WorkerSettings, stop: Arc<AtomicBool>) -> Result<(), WorkerError> {
    for signal in [
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGHUP,
        signal_hook::consts::SIGQUIT,
    ] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).map_err(WorkerError::Signals)?;
    }
    let url = settings.remote.url.clone();
    let jobs = settings.jobs.max(1);
    std::fs::create_dir_all(&settings.root).map_err(|source| WorkerError::Root {
        path: settings.root.clone(),
        source,
    })?;
    let root = settings
        .root
        .canonicalize()
        .map_err(|source| WorkerError::Root {
            path: settings.root.clone(),
            source,
        })?;
    let store_dir = root.join("store");
    let store =
        Arc::new(
            Store::open(&store_dir, STORE_BYTES).map_err(|source| WorkerError::Store {
                path: store_dir,
                source,
            })?,
        );
    let remote = Remote::new(settings.remote.clone()).map_err(|source| WorkerError::Connect {
        url: url.clone(),
        source,
    })?;
    let pair = |(key, value): (String, String)| KeyValue { key, value };
    let mut session = remote
        .create_bot_session(BotSession {
            bot_id: settings.bot_id.clone(),
            status: BOT_STATUS_OK,
            worker: Some(Worker {
                devices: vec![Device {
                    handle: settings.bot_id.clone(),
                    properties: super::advertised().into_iter().map(pair).collect(),
                }],
                configs: vec![pair((CAPACITY_KEY.into(), jobs.to_string()))],
                ..Worker::default()
            }),
            ..BotSession::default()
        })
        .map_err(|source| WorkerError::Session {
            url: url.clone(),
            source,
        })?;
    let (tx, rx) = mpsc::channel::<Lease>();
    // The leases running now, each on a thread of its own.
    let mut busy: HashSet<String> = HashSet::new();
    let mut finished: HashMap<String, Lease> = HashMap::new();
    let mut failures = 0u32;
    let mut count = 0u64;
    while !stop.load(Ordering::Relaxed) {
        while let Ok(done) = rx.try_recv() {
            busy.remove(&done.id);
            finished.insert(done.id.clone(), done);
        }
        report_finished(&mut session.leases, &mut finished);
        while busy.len() < jobs {
            let Some(lease) = session.leases.iter_mut().find(|l| {
                (l.state == LEASE_PENDING || l.state == LEASE_ACTIVE)
                    && !finished.contains_key(&l.id)
                    && !busy.contains(&l.id)
            }) else {
                break;
            };
            lease.state = LEASE_ACTIVE;
            busy.insert(lease.id.clone());
            count += 1;
            let (lease, tx, store) = (lease.clone(), tx.clone(), Arc::clone(&store));
            let (settings, dir) = (
                settings.clone(),
                root.join(format!("lease-{count}-{}", std::process::id())),
            );
            std::thread::spawn(move || {
                // A panic fails the lease rather than keep its slot.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    run_lease(&settings, &store, &dir, &lease)
                }));
                let done = match ran {
                    Ok(Ok(done)) => done,
                    Ok(Err(NotRun::Refused(finding))) => refused(&lease, &finding),
                    Ok(Err(NotRun::Failed(why))) => failed(&lease, &why),
                    Err(_) => failed(&lease, "the lease's thread panicked"),
                };
                let _ = tx.send(done);
            });
        }
        match remote.update_bot_session(session.clone()) {
            Ok(next) => {
                failures = 0;
                finished.retain(|id, _| next.leases.iter().any(|l| &l.id == id));
                session = next;
            }
            Err(source) => {
                failures += 1;
                if failures > MAX_FAILURES {
                    return Err(WorkerError::Session { url, source });
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        }
        if busy.len() >= jobs {
            // At capacity the server answers at once: do not spin.
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    session.status = BOT_STATUS_TERMINATING;
    let _ = remote.update_bot_session(session);
    Ok(())
}

/// Puts each lease that ended here in place of the farm's copy, until the
/// farm drops it. A lease the farm hands out again as pending is a new try
/// of a job it retried (a retry keeps the job's id): the old ending is
/// forgotten so the try runs, instead of being answered with the last
/// try's result.
fn report_finished(leases: &mut [Lease], finished: &mut HashMap<String, Lease>) {
    for lease in leases {
        if lease.state == LEASE_PENDING {
            finished.remove(&lease.id);
        } else if let Some(done) = finished.get(&lease.id) {
            *lease = done.clone();
        }
    }
}

/// The most of a tool's stdout (and of its stderr) a worker keeps in
/// memory and uploads; the rest is dropped and the upload says so.
pub const MAX_STREAM_BYTES: usize = 64 << 20;

/// A [`Console`] stream kept in memory, up to [`MAX_STREAM_BYTES`].
#[derive(Default)]
struct Capped {
    bytes: Vec<u8>,
    dropped: u64,
}

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = MAX_STREAM_BYTES.saturating_sub(self.bytes.len());
        let kept = buf.len().min(room);
        self.bytes.extend_from_slice(&buf[..kept]);
        self.dropped += (buf.len() - kept) as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capped {
    /// What was kept, with a last line saying how much was dropped.
    fn contents(&self) -> Vec<u8> {
        let mut bytes = self.bytes.clone();
        if self.dropped > 0 {
            bytes.extend_from_slice(
                format!("\n[replay worker: {} more bytes dropped]\n", self.dropped).as_bytes(),
            );
        }
        bytes
    }
}

/// A shared [`Capped`] stream.
type Buffer = Arc<Mutex<Capped>>;

/// Why a lease did not run.
#[derive(Debug)]
enum NotRun {
    /// The action may not run here (its tree, its host, the worker's
    /// policy): `FAILED_PRECONDITION`, and it must not run elsewhere.
    Refused(String),
    /// The worker itself failed (the farm's CAS, this machine):
    /// `UNAVAILABLE`, so the client runs the command itself.
    Failed(String),
}

impl From<String> for NotRun {
    fn from(finding: String) -> NotRun {
        NotRun::Refused(finding)
    }
}

impl From<&str> for NotRun {
    fn from(finding: &str) -> NotRun {
        NotRun::Refused(finding.to_owned())
    }
}

/// The worker's own failure, said as `what: error`.
fn own<E: std::fmt::Display>(what: impl std::fmt::Display) -> impl FnOnce(E) -> NotRun {
    move |error| NotRun::Failed(format!("{what}: {error}"))
}

/// The blobs of one lease, fetched by `fetch` (`Ok(None)`: the farm lacks
/// or garbles it; `Err`: the farm could not be reached). A missing blob
/// refuses the lease, but a transport error is the worker's own failure
/// (retried elsewhere), so the first one is kept and wins over a refusal.
struct Blobs<F> {
    fetch: F,
    unreachable: std::cell::RefCell<Option<String>>,
}

impl<F: Fn(&Digest) -> Result<Option<Vec<u8>>, String>> Blobs<F> {
    fn new(fetch: F) -> Self {
        Blobs {
            fetch,
            unreachable: Default::default(),
        }
    }

    /// The blob, or `None` (why is kept if the farm was unreachable).
    fn get(&self, digest: &Digest) -> Option<Vec<u8>> {
        (self.fetch)(digest).unwrap_or_else(|failure| {
            self.unreachable.borrow_mut().get_or_insert(failure);
            None
        })
    }

    /// `refusal`, unless a fetch failed on the transport: then that.
    fn or_unreachable(&self, refusal: NotRun) -> NotRun {
        match self.unreachable.borrow_mut().take() {
            Some(failure) => NotRun::Failed(failure),
            None => refusal,
        }
    }
}

/// Runs one lease in `dir`.
fn run_lease(
    settings: &WorkerSettings,
    store: &Store,
    dir: &Path,
    lease: &Lease,
) -> Result<Lease, NotRun> {
    let remote = Remote::new(settings.remote.clone()).map_err(own("cannot reach the farm"))?;
    let blobs = Blobs::new(|digest: &Digest| {
        match remote.fetch_blobs(store, std::slice::from_ref(digest)) {
            Ok(Ok(_)) => Ok(store.blob_bytes(digest)),
            Ok(Err(_)) => Ok(None),
            Err(error) => Err(format!("cannot fetch {digest} from the CAS: {error}")),
        }
    });
    let fetch = |digest: &Digest| blobs.get(digest);
    let transport_first = |refusal: NotRun| blobs.or_unreachable(refusal);
    let action = match action_of(lease).map_err(|e| e.to_string())? {
        Payload::Action(action, _) => action,
        Payload::Digest(digest) => {
            let bytes = fetch(&digest)
                .ok_or_else(|| format!("the action {digest} is not in the CAS").into())
                .map_err(transport_first)?;
            Action::decode(bytes.as_slice())
                .map_err(|_| format!("the action {digest} is not a REAPI Action"))?
        }
    };
    let command_digest = action.command_digest.ok_or("the action names no command")?;
    let command = fetch(&command_digest)
        .and_then(|bytes| ReapiCommand::decode(bytes.as_slice()).ok())
        .ok_or_else(|| {
            format!("the command {command_digest} is not a REAPI Command in the CAS").into()
        })
        .map_err(transport_first)?;
    let input_root = action
        .input_root_digest
        .ok_or("the action names no input root")?;
    let tree = read_tree(&input_root, &fetch)
        .map_err(|e| e.to_string().into())
        .map_err(transport_first)?;
    let mut log_command = to_command(&command, &tree).map_err(|e| e.to_string())?;
    let own_policy = policy::Policy::load(&settings.policy).map_err(|e| {
        NotRun::Failed(format!(
            "cannot load the worker's policy: {}",
            crate::report::one_line(&e)
        ))
    })?;
    let root = client_root(&command);
    let workers = match root {
        Some(_) => own_dirs(&own_policy, dir)?,
        None => policy::HostDirs::default(),
    };
    let presented = super::present::target(root, &workers).map_err(|e| e.to_string())?;
    // A client sends the whole environment its policy resolved (it is
    // part of the key): what the worker's own policy sets to the same
    // value is its own, not the log's; anything else stays the log's, to
    // be judged (a value the policy sets differently is refused).
    log_command
        .env
        .retain(|name, value| own_policy.env_set().get(name) != Some(value));
    let program = resolve(&log_command.program)?;
    check_host(&tree, &program, &|p| {
        std::fs::read(p).map(|bytes| Digest::of(&bytes))
    })
    .map_err(|e| e.to_string())?;
    let digests: Vec<Digest> = tree.files.iter().map(|f| f.digest.clone()).collect();
    match remote.fetch_blobs(store, &digests) {
        Ok(Ok(_)) => {}
        Ok(Err(why)) => return Err(format!("an input is not what its digest names: {why}").into()),
        Err(e) => return Err(own("cannot fetch the inputs")(e)),
    }
    let work = dir.join("root");
    std::fs::create_dir_all(&work).map_err(own(format!(
        "cannot make the lease root `{}`",
        work.display()
    )))?;
    materialize(&tree, store, &work).map_err(|e| e.to_string())?;
    let outputs = log_command.outputs.clone();
    let log = dir.join("log.json");
    let doc = document(log_command).ok_or("this machine's OS is not one a log can name")?;
    let bytes = serde_json::to_vec(&doc).map_err(own("cannot write the lease's log"))?;
    std::fs::write(&log, bytes).map_err(own(format!("cannot write `{}`", log.display())))?;

    let (stdout, stderr): (Buffer, Buffer) = Default::default();
    let console = Console {
        stdout: stdout.clone() as crate::run::capture::Sink,
        stderr: stderr.clone() as crate::run::capture::Sink,
        bar: None,
    };
    let report_path = dir.join("report.json");
    let run_settings = RunSettings {
        report: vec![(report_path.clone(), Format::Json)],
        verbosity: Verbosity::Quiet,
        ..RunSettings::default()
    };
    // The run sees the lease at the client's root (the key names it, and
    // outputs can embed it); this thread ends with the lease.
    if let Some(at) = &presented {
        super::present::enter(&work, at).map_err(|e| e.to_string())?;
    }
    let target = Target {
        policy: settings.policy.clone(),
        root: Some(presented.unwrap_or_else(|| work.clone())),
    };
    let ran = crate::session::run(&target, &log, &run_settings, &console);
    let report: serde_json::Value = std::fs::read(&report_path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    if report["check"]["status"] == "refused" {
        return Err(format!(
            "the worker's policy refused the command: {}",
            findings(&report)
        )
        .into());
    }
    let record = &report["commands"][0];
    let outcome = &record["outcome"];
    if outcome.is_null() {
        let why = match &ran {
            Err(e) => chain(e),
            Ok(()) => "the run reported no outcome".to_owned(),
        };
        return Err(NotRun::Failed(format!("the command did not run: {why}")));
    }
    let exit_code = outcome["exit"]["code"]
        .as_i64()
        .or_else(|| outcome["exit"]["signal"].as_i64().map(|s| 128 + s))
        .and_then(|c| i32::try_from(c).ok())
        .unwrap_or(-1);
    let m = &outcome["measurements"];
    let number = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    let cost = Cost {
        wall_ms: number(&m["wall_ms"]),
        cpu_ms: number(&m["user_ms"]) + number(&m["system_ms"]),
        peak_rss_bytes: number(&m["peak_process"]["bytes"])
            .max(number(&m["peak_tree_rss_sampled"])),
    };
    let mut uploads = Vec::new();
    let mut keep = |bytes: &[u8]| -> Result<Digest, NotRun> {
        let digest = Digest::of(bytes);
        let mut sink = store
            .blob_sink(&digest)
            .map_err(own("cannot keep a result"))?;
        sink.write(bytes).map_err(own("cannot keep a result"))?;
        sink.finish().map_err(own("cannot keep a result"))?;
        uploads.push(digest.clone());
        Ok(digest)
    };
    let mut output_files = Vec::new();
    if exit_code == 0 && record["status"] == "ok" {
        for (path, reapi_path) in outputs.iter().zip(&command.output_paths) {
            let file = work.join(path);
            // Only a regular file is an output: a symlink the tool made is
            // never followed (it could name any file of this machine).
            let Ok(meta) = std::fs::symlink_metadata(&file) else {
                continue;
            };
            if !meta.is_file() {
                return Err(format!("the output `{path}` is not a regular file").into());
            }
            use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
            let mut bytes = Vec::new();
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&file)
                .and_then(|mut f| std::io::Read::read_to_end(&mut f, &mut bytes))
                .map_err(own(format!("cannot read the output `{path}`")))?;
            let executable = meta.permissions().mode() & 0o111 != 0;
            output_files.push(OutputFile {
                path: reapi_path.clone(),
                digest: Some(keep(&bytes)?),
                is_executable: executable,
                contents: Vec::new(),
            });
        }
    }
    let out = stdout.lock().map(|b| b.contents()).unwrap_or_default();
    let err = stderr.lock().map(|b| b.contents()).unwrap_or_default();
    let stdout_digest = keep(&out)?;
    let stderr_digest = keep(&err)?;
    remote
        .put_blobs_from(store, &uploads, &[])
        .map_err(own("cannot upload the results"))?;
    Ok(completed(
        lease,
        &RunResult {
            outputs: output_files,
            exit_code,
            stdout: stdout_digest,
            stderr: stderr_digest,
            cost,
            read_set: Vec::new(),
            worker: format!("replay worker {}", settings.bot_id),
        },
    ))
}

/// The worker's own directories a client's root may not overlap: its
/// `--root` (the parent of lease directory `dir`), its binary's directory
/// (the sandbox launcher sits beside it), its home and its plugin cache
/// (compiled modules it loads as native code), and every directory its
/// policy depends on ([`policy::Policy::host_dirs`]: the tools' directories
/// and install prefixes, the system inputs, the policy's own files, what
/// it extends and its plugins' modules; and the directories of the shared
/// libraries each tool loads, [`super::loaded`]), with every directory their
/// lookups pass through, links followed. A lease presented over one would
/// let the client choose the tools, headers, rules or code that judge and
/// build its own command, and so what is stored under its key.
fn own_dirs(policy: &policy::Policy, dir: &Path) -> Result<policy::HostDirs, String> {
    let mut own = policy.host_dirs();
    // Tools share most of their libraries: each is walked once.
    let mut files = std::collections::BTreeSet::new();
    let mut dirs = std::collections::BTreeSet::new();
    let path = policy.env_set().get("PATH").map(String::as_str);
    for binary in policy.binaries() {
        let loaded = super::loaded::loaded(&binary, path).map_err(|e| {
            format!(
                "cannot tell what the policy's tool `{}` loads, so no client root is taken: {}",
                binary.display(),
                crate::report::one_line(&e)
            )
        })?;
        files.extend(loaded.files);
        dirs.extend(loaded.dirs);
    }
    for file in &files {
        own.add_file(file);
    }
    for searched in &dirs {
        own.add_dir(searched);
    }
    own.add_dir(dir.parent().unwrap_or(dir));
    // `/` (a `HOME` of `/`, as a container gives a user with no entry)
    // would vouch for everything: the directories that matter in it are
    // named one by one.
    let mut vouch = |dir: &Path| {
        if dir.parent().is_some() {
            own.add_dir(dir);
        }
    };
    if let Some(exe) = std::env::current_exe()
        .ok()
        .as_deref()
        .and_then(Path::parent)
    {
        vouch(exe);
    }
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        vouch(Path::new(&home));
    }
    if let Some(cache) = policy::plugin::PluginHost::default_cache_dir() {
        vouch(&cache);
    }
    Ok(own)
}

/// The binary a log's `program` names here: an absolute path as it
/// resolves, a bare name as `PATH` finds it.
fn resolve(program: &str) -> Result<PathBuf, String> {
    let found = if program.contains('/') {
        Some(PathBuf::from(program))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|candidate| candidate.is_file())
        })
    };
    found
        .and_then(|p| p.canonicalize().ok())
        .ok_or(format!("the program `{program}` is not on this worker"))
}

/// The report's findings as `RULE: MESSAGE` lines.
fn findings(report: &serde_json::Value) -> String {
    let list: Vec<String> = report["check"]["findings"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            format!(
                "{}: {}",
                f["rule"].as_str().unwrap_or("?"),
                f["message"].as_str().unwrap_or("")
            )
        })
        .collect();
    list.join("; ")
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    /// A client's root may not cover what the worker's policy vouches for,
    /// wherever it lies: a file it extends, a tool's directory, the
    /// directory a tool's link resolves into, a system input directory.
    #[test]
    fn a_client_root_may_not_cover_what_the_policy_vouches_for() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        for dir in [
            "conf",
            "base",
            "tools/bin",
            "llvm/bin",
            "sdk/include",
            "leases/1",
        ] {
            std::fs::create_dir_all(top.join(dir)).unwrap();
        }
        std::fs::write(top.join("llvm/bin/opt-14"), "").unwrap();
        std::os::unix::fs::symlink("../../llvm/bin/opt-14", top.join("tools/bin/opt")).unwrap();
        std::fs::write(
            top.join("base/base.toml"),
            "[policy]\nname = \"base\"\nos = \"linux\"\n",
        )
        .unwrap();
        std::fs::write(
            top.join("conf/policy.toml"),
            opt_policy(
                &format!(
                    "extends = [\"../base/base.toml\"]\nsystem_inputs = [\"{}\"]",
                    top.join("sdk/include").display()
                ),
                &top.join("tools/bin"),
            ),
        )
        .unwrap();
        let policy = policy::Policy::load(&top.join("conf/policy.toml")).unwrap();
        let own = own_dirs(&policy, &top.join("leases/1")).unwrap();
        refused_as_the_workers(
            &own,
            &top,
            &["base", "tools", "llvm", "llvm/bin", "sdk", "conf"],
        );
        std::fs::create_dir(top.join("elsewhere")).unwrap();
        accepted(&own, &top.join("elsewhere"));
    }

    /// A policy whose `[policy]` table holds `header` and whose one tool,
    /// `opt`, is found in `tools`.
    pub(super) fn opt_policy(header: &str, tools: &Path) -> String {
        format!(
            "[policy]\n{header}\n\
             [tool.opt]\nprograms = [\"opt\"]\ndirs = [\"{}\"]\nargs = \"g\"\n\
             [args.g]\npositional = \"refuse\"\n",
            tools.display()
        )
    }

    /// Asserts that a client root at each of `roots` (under `top`) is
    /// refused as one of the worker's own directories.
    pub(super) fn refused_as_the_workers(own: &policy::HostDirs, top: &Path, roots: &[&str]) {
        for covered in roots {
            let root = top.join(covered);
            let refused = super::super::present::target(root.to_str(), own);
            assert!(
                matches!(
                    refused,
                    Err(super::super::present::PresentError::Worker(..))
                ),
                "a client root at {covered} was {refused:?}"
            );
        }
    }

    /// Asserts that a lease may be presented at `root`.
    fn accepted(own: &policy::HostDirs, root: &Path) {
        assert_eq!(
            super::super::present::target(root.to_str(), own).unwrap(),
            Some(root.to_owned())
        );
    }

    /// Regression (review): only where the policy's paths ended was
    /// refused, so a root over the directory that holds a link on the way
    /// (the `--policy` file, an `extends`, a tool directory) replaced
    /// what the link leads to once the lease was presented; and a root
    /// beside the tool's binaries (its libraries and headers) or over the
    /// plugin cache (compiled modules, native code) was accepted.
    #[test]
    fn a_root_over_a_link_to_the_policy_or_its_tools_or_over_their_prefix_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        for dir in [
            "real/conf",
            "srv/ci",
            "data/llvm-14/bin",
            "data/llvm-14/lib",
            "srv/tools",
            "links",
            "base",
            "leases/1",
            "elsewhere",
        ] {
            std::fs::create_dir_all(top.join(dir)).unwrap();
        }
        std::fs::write(top.join("data/llvm-14/bin/opt"), "").unwrap();
        std::os::unix::fs::symlink(top.join("data/llvm-14"), top.join("srv/tools/llvm")).unwrap();
        std::fs::write(
            top.join("base/base.toml"),
            "[policy]\nname = \"base\"\nos = \"linux\"\n",
        )
        .unwrap();
        std::os::unix::fs::symlink(top.join("base/base.toml"), top.join("links/base.toml"))
            .unwrap();
        std::fs::write(
            top.join("real/conf/policy.toml"),
            opt_policy(
                "extends = [\"../../links/base.toml\"]",
                &top.join("srv/tools/llvm/bin"),
            ),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            top.join("real/conf/policy.toml"),
            top.join("srv/ci/policy.toml"),
        )
        .unwrap();
        let policy = policy::Policy::load(&top.join("srv/ci/policy.toml")).unwrap();
        let own = own_dirs(&policy, &top.join("leases/1")).unwrap();
        refused_as_the_workers(
            &own,
            &top,
            &["srv/ci", "links", "srv/tools", "data/llvm-14/lib", "data"],
        );
        if let Some(cache) = policy::plugin::PluginHost::default_cache_dir() {
            assert!(own.overlapping(&cache).is_some(), "{}", cache.display());
        }
        accepted(&own, &top.join("elsewhere"));
    }

    /// A tree the farm could not be asked for is the worker's failure (the
    /// farm retries it elsewhere); a tree the farm lacks is a refusal.
    #[test]
    fn a_transport_error_fetching_the_tree_fails_the_lease_rather_than_refusing_it() {
        let root = Digest::of(b"no such directory");
        let unreachable = Blobs::new(|_: &Digest| Err("connection refused".to_owned()));
        let why = read_tree(&root, &|d| unreachable.get(d)).unwrap_err();
        assert!(matches!(
            unreachable.or_unreachable(why.to_string().into()),
            NotRun::Failed(message) if message.contains("connection refused")
        ));
        let lacking = Blobs::new(|_: &Digest| Ok(None));
        let why = read_tree(&root, &|d| lacking.get(d)).unwrap_err();
        assert!(matches!(
            lacking.or_unreachable(why.to_string().into()),
            NotRun::Refused(_)
        ));
    }

    /// A job the farm retries on this worker keeps its lease id: the new
    /// try runs, rather than being answered with the last try's ending.
    #[test]
    fn a_retried_lease_is_run_again_not_answered_with_its_last_ending() {
        let lease = |state| Lease {
            id: "job-1".to_owned(),
            state,
            ..Lease::default()
        };
        use replay_cache::remote::bots::LEASE_COMPLETED;
        let mut finished = HashMap::from([("job-1".to_owned(), lease(LEASE_COMPLETED))]);
        // The farm still holds the ended try as active: it is reported.
        let mut leases = vec![lease(LEASE_ACTIVE)];
        report_finished(&mut leases, &mut finished);
        assert_eq!(leases[0].state, LEASE_COMPLETED);
        // The farm hands the job out again: it is pending, and runs.
        let mut leases = vec![lease(LEASE_PENDING)];
        report_finished(&mut leases, &mut finished);
        assert_eq!(leases[0].state, LEASE_PENDING);
        assert!(finished.is_empty());
    }

    /// A tool that prints without end cannot fill the worker's memory.
    #[test]
    fn a_stream_past_the_cap_is_kept_up_to_it_and_says_what_was_dropped() {
        let mut stream = Capped::default();
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..(MAX_STREAM_BYTES >> 20) + 3 {
            stream.write_all(&chunk).unwrap();
        }
        assert_eq!(stream.bytes.len(), MAX_STREAM_BYTES);
        let contents = stream.contents();
        let tail = String::from_utf8_lossy(&contents[MAX_STREAM_BYTES..]).into_owned();
        assert_eq!(
            tail,
            format!("\n[replay worker: {} more bytes dropped]\n", 3 << 20)
        );
    }
}

/// Roots over what the loader reads to start a tool (review 30: each
/// was accepted before `worker::loaded` followed the loader's search).
/// Each test builds a tool with the system C compiler.
#[cfg(test)]
mod loader_roots {
    #![allow(clippy::unwrap_used)]
    use super::own_dirs;
    use crate::worker::present::target;
    use std::path::{Path, PathBuf};
    use std::process::Command;

    /// A layout under a fresh temporary directory: `dirs` made, `libx.so`
    /// built into `libs` (unless `libs` is `None`).
    fn layout(dirs: &[&str]) -> (tempfile::TempDir, PathBuf) {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().canonicalize().unwrap();
        for dir in dirs.iter().chain(&["conf", "leases/1", "libs"]) {
            std::fs::create_dir_all(top.join(dir)).unwrap();
        }
        std::fs::write(top.join("x.c"), "int x(void) { return 7; }\n").unwrap();
        std::fs::write(
            top.join("main.c"),
            "int x(void);\nint main(void) { return x() - 7; }\n",
        )
        .unwrap();
        cc(&top, &["-shared", "-fPIC", "x.c", "-o", "libs/libx.so"]);
        (tmp, top)
    }

    /// Builds `main.c` against `libs/libx.so` into `out`, with `flags`.
    fn build_tool(top: &Path, out: &str, flags: &[&str]) {
        let mut args = vec!["main.c", "-Llibs", "-lx", "-o", out];
        args.extend_from_slice(flags);
        cc(top, &args);
    }

    /// `tools/bin/opt`, whose `RUNPATH` lists the empty `empty` before
    /// `libs`.
    fn tool_with_an_earlier_runpath(top: &Path) {
        let runpath = format!("-Wl,-rpath,{}/empty:{}/libs", top.display(), top.display());
        build_tool(top, "tools/bin/opt", &["-Wl,--enable-new-dtags", &runpath]);
    }

    fn cc(top: &Path, args: &[&str]) {
        let built = Command::new("cc")
            .current_dir(top)
            .args(args)
            .status()
            .unwrap();
        assert!(built.success(), "cc {args:?}");
    }

    /// The policy whose one tool `opt` is found in `tools`, written to
    /// and loaded from `top/conf`.
    fn policy_for(top: &Path, tools: &Path) -> policy::Policy {
        let text = super::tests::opt_policy("name = \"t\"\nos = \"linux\"", tools);
        std::fs::write(top.join("conf/policy.toml"), text).unwrap();
        policy::Policy::load(&top.join("conf/policy.toml")).unwrap()
    }

    /// The worker's own directories for a policy whose tool `opt` is
    /// found in `tools`.
    fn own(top: &Path, tools: &Path) -> policy::HostDirs {
        own_dirs(&policy_for(top, tools), &top.join("leases/1")).unwrap()
    }

    /// Asserts the tool runs on the host as built, then that a client root
    /// at each of `roots` is refused.
    fn refused(own: &policy::HostDirs, tool: &Path, top: &Path, roots: &[&str]) {
        let ran = Command::new(tool).status().unwrap();
        assert!(ran.success(), "{} runs on the host", tool.display());
        super::tests::refused_as_the_workers(own, top, roots);
    }

    /// Regression (review, stop 29): a root over the directory of a
    /// library the tool loads through its `RUNPATH` (a `/nix/store`
    /// toolchain: no directory the policy names) replaced the tool's code.
    #[test]
    fn a_root_over_a_library_the_tool_loads_is_refused() {
        let (_tmp, top) = layout(&["tools/bin"]);
        let runpath = format!("-Wl,-rpath,{}/libs", top.display());
        build_tool(&top, "tools/bin/opt", &[&runpath]);
        let own = own(&top, &top.join("tools/bin"));
        refused(&own, &top.join("tools/bin/opt"), &top, &["libs"]);
    }

    /// The loader tries each `RUNPATH` directory in order: a root over one
    /// that comes before the library's own (here an empty one) puts the
    /// client's `libx.so` first.
    #[test]
    fn a_root_over_an_earlier_runpath_directory_is_refused() {
        let (_tmp, top) = layout(&["empty", "tools/bin"]);
        tool_with_an_earlier_runpath(&top);
        let own = own(&top, &top.join("tools/bin"));
        refused(&own, &top.join("tools/bin/opt"), &top, &["libs", "empty"]);
    }

    /// End to end, as root: the root `empty` is accepted, presented, and
    /// the worker's own tool then runs the client's `libx.so`.
    #[test]
    fn presented_at_an_earlier_runpath_directory_the_tool_runs_its_own_code() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let (_tmp, top) = layout(&["empty", "tools/bin", "lease"]);
        tool_with_an_earlier_runpath(&top);
        std::fs::write(top.join("evil.c"), "int x(void) { return 8; }\n").unwrap();
        cc(&top, &["-shared", "-fPIC", "evil.c", "-o", "lease/libx.so"]);
        let own = own(&top, &top.join("tools/bin"));
        let at = top.join("empty");
        let Ok(Some(at)) = target(at.to_str(), &own) else {
            return; // refused: fixed
        };
        let (lease, tool) = (top.join("lease"), top.join("tools/bin/opt"));
        let code = std::thread::spawn(move || {
            crate::worker::present::enter(&lease, &at).unwrap();
            Command::new(&tool).status().unwrap().code()
        })
        .join()
        .unwrap();
        assert_eq!(code, Some(0), "the worker's tool ran the client's x()");
    }

    /// Regression (review 31): a tool started by a loader of its own (a
    /// glibc under its own prefix) reads that loader's configuration
    /// (`PREFIX/etc/ld.so.preload`, its cache, its default directories),
    /// which cannot be known from here: a root over it made the tool
    /// preload the client's library. Such a tool takes no client root.
    #[test]
    fn a_tool_started_by_its_own_loader_takes_no_client_root() {
        let (_tmp, top) = layout(&["interp", "tools/bin"]);
        std::fs::copy("/lib64/ld-linux-x86-64.so.2", top.join("interp/ld.so")).unwrap();
        let runpath = format!("-Wl,-rpath,{}/libs", top.display());
        let interpreter = format!("-Wl,--dynamic-linker={}/interp/ld.so", top.display());
        build_tool(&top, "tools/bin/opt", &[&runpath, &interpreter]);
        let policy = policy_for(&top, &top.join("tools/bin"));
        let refused = own_dirs(&policy, &top.join("leases/1")).unwrap_err();
        assert!(
            refused.contains("interp/ld.so") && refused.contains("its own loader"),
            "{refused}"
        );
    }

    /// A tool that is a `#!` script: its interpreter and that one's
    /// libraries are code the tool runs.
    #[test]
    fn a_root_over_a_scripts_interpreter_and_its_libraries_is_refused() {
        let (_tmp, top) = layout(&["py/bin", "tools/bin"]);
        let runpath = format!("-Wl,-rpath,{}/libs", top.display());
        build_tool(&top, "py/bin/interp", &[&runpath]);
        let script = top.join("tools/bin/opt");
        std::fs::write(&script, format!("#!{}/py/bin/interp\n", top.display())).unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let own = own(&top, &top.join("tools/bin"));
        refused(&own, &script, &top, &["py/bin", "libs"]);
    }

    /// The tool's directory holds a link to the real binary, whose
    /// `RUNPATH` is `$ORIGIN`-relative. The kernel runs it with `$ORIGIN`
    /// the real binary's directory; `ld.so --list LINK` takes the link's,
    /// finds nothing, exits 127 with an empty list, and no library
    /// directory is refused at all.
    #[test]
    fn a_root_over_the_library_of_a_linked_tool_is_refused() {
        let (_tmp, top) = layout(&["tc/bin", "shared/lib", "a/b/c/bin"]);
        std::fs::rename(top.join("libs/libx.so"), top.join("shared/lib/libx.so")).unwrap();
        cc(
            &top,
            &[
                "main.c",
                "-Lshared/lib",
                "-lx",
                "-o",
                "tc/bin/opt",
                "-Wl,-rpath,$ORIGIN/../../shared/lib",
            ],
        );
        std::os::unix::fs::symlink(top.join("tc/bin/opt"), top.join("a/b/c/bin/opt")).unwrap();
        let own = own(&top, &top.join("a/b/c/bin"));
        refused(
            &own,
            &top.join("a/b/c/bin/opt"),
            &top,
            &["shared/lib", "shared"],
        );
    }

    /// One library the system loader cannot find (it would come from a
    /// `RUNPATH` directory the client's root can fill, `build`) makes
    /// `ld.so --list` exit 127 with nothing on its output: every other
    /// library directory of the tool (`libs`) is dropped too.
    #[test]
    fn a_tool_with_a_missing_library_takes_no_client_root() {
        let (_tmp, top) = layout(&["tools/bin", "build", "stub"]);
        std::fs::write(top.join("y.c"), "int y(void) { return 0; }\n").unwrap();
        std::fs::write(
            top.join("main2.c"),
            "int x(void); int y(void);\nint main(void) { return x() - 7 + y(); }\n",
        )
        .unwrap();
        cc(&top, &["-shared", "-fPIC", "y.c", "-o", "stub/liby.so"]);
        cc(
            &top,
            &[
                "main2.c",
                "-Llibs",
                "-Lstub",
                "-lx",
                "-ly",
                "-o",
                "tools/bin/opt",
                &format!("-Wl,-rpath,{}/libs:{}/build", top.display(), top.display()),
            ],
        );
        std::fs::remove_file(top.join("stub/liby.so")).unwrap();
        let policy = policy_for(&top, &top.join("tools/bin"));
        let refused = own_dirs(&policy, &top.join("leases/1")).unwrap_err();
        assert!(
            refused.contains("tools/bin/opt") && refused.contains("liby.so"),
            "{refused}"
        );
    }

    fn executable(path: &Path) {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// Regression (review 31): the answer was kept by the policy's binary
    /// alone. A library upgraded while the worker runs (the tool the
    /// same) gains a dependency through a new `RUNPATH`: the next lease
    /// must see its search directories.
    #[test]
    fn a_library_replaced_since_the_last_lease_is_walked_again() {
        let (_tmp, top) = layout(&["tools/bin", "empty", "ylibs"]);
        let runpath = format!("-Wl,-rpath,{}/libs", top.display());
        build_tool(&top, "tools/bin/opt", &[&runpath]);
        let policy = policy_for(&top, &top.join("tools/bin"));
        own_dirs(&policy, &top.join("leases/1")).unwrap();
        std::fs::write(top.join("y.c"), "int y(void) { return 0; }\n").unwrap();
        cc(&top, &["-shared", "-fPIC", "y.c", "-o", "ylibs/liby.so"]);
        std::fs::write(
            top.join("x2.c"),
            "int y(void);\nint x(void) { return 7 + y(); }\n",
        )
        .unwrap();
        let upgraded_runpath =
            format!("-Wl,-rpath,{}/empty:{}/ylibs", top.display(), top.display());
        cc(
            &top,
            &[
                "-shared",
                "-fPIC",
                "x2.c",
                "-Lylibs",
                "-ly",
                "-o",
                "libs/libx.so.new",
                "-Wl,--enable-new-dtags",
                &upgraded_runpath,
            ],
        );
        std::fs::rename(top.join("libs/libx.so.new"), top.join("libs/libx.so")).unwrap();
        let own = own_dirs(&policy, &top.join("leases/2")).unwrap();
        refused(&own, &top.join("tools/bin/opt"), &top, &["ylibs", "empty"]);
    }

    /// Regression (review 31): Python finds its standard library beside
    /// its own binary (`../lib/python3.X`); a root there made the worker's
    /// script tool import the client's modules. The interpreter's install
    /// prefix is vouched for.
    #[test]
    fn a_root_over_a_script_interpreters_own_library_is_refused() {
        let python = Path::new("/usr/bin/python3.11");
        if !python.is_file() {
            return;
        }
        let (_tmp, top) = layout(&["py/bin", "py/lib/python3.11", "tools/bin"]);
        std::fs::copy(python, top.join("py/bin/python3")).unwrap();
        let script = top.join("tools/bin/opt");
        std::fs::write(
            &script,
            format!("#!{}/py/bin/python3\nimport json\n", top.display()),
        )
        .unwrap();
        executable(&script);
        let own = own(&top, &top.join("tools/bin"));
        refused(&own, &script, &top, &["py/lib/python3.11", "py/lib", "py"]);
    }

    /// Regression (review 31): `#!/usr/bin/env interp` runs `interp` as
    /// `env` finds it on the tool's `PATH`; what it loads was never
    /// listed, and a root over its earlier `RUNPATH` directory was
    /// accepted. Anything but one plain name after `env` (options,
    /// `LD_PRELOAD=...`) takes no client root.
    #[test]
    fn an_env_found_interpreter_is_followed_and_other_env_lines_take_no_root() {
        let (_tmp, top) = layout(&["py/bin", "empty", "tools/bin"]);
        let runpath = format!("-Wl,-rpath,{}/empty:{}/libs", top.display(), top.display());
        build_tool(&top, "py/bin/interp", &["-Wl,--enable-new-dtags", &runpath]);
        let script = top.join("tools/bin/opt");
        std::fs::write(&script, "#!/usr/bin/env interp\n").unwrap();
        executable(&script);
        let path = format!("{}/py/bin:/usr/bin:/bin", top.display());
        let text = super::tests::opt_policy("name = \"t\"\nos = \"linux\"", &top.join("tools/bin"))
            + &format!("[env]\nset = {{ PATH = \"{path}\" }}\n");
        std::fs::write(top.join("conf/policy.toml"), text).unwrap();
        let policy = policy::Policy::load(&top.join("conf/policy.toml")).unwrap();
        let own = own_dirs(&policy, &top.join("leases/1")).unwrap();
        let ran = Command::new(&script).env("PATH", &path).status().unwrap();
        assert!(ran.success(), "the script runs with the policy's PATH");
        super::tests::refused_as_the_workers(&own, &top, &["libs", "empty", "py"]);

        std::fs::write(&script, "#!/usr/bin/env -S LD_PRELOAD=/x/evil.so interp\n").unwrap();
        let refused = own_dirs(&policy, &top.join("leases/2")).unwrap_err();
        assert!(refused.contains("LD_PRELOAD"), "{refused}");
    }
}
