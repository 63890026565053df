//! Remote execution on a real build farm (issue 22): PostgreSQL, BuildGrid
//! with its SQL scheduler and Bots service. This file starts with the
//! harness itself: the farm serves execution with the property set
//! `replay`'s keys need, and leaves nothing running once dropped.

use std::process::Command;

use replay_e2e::buildgrid::bgd;
use replay_e2e::farm::{Farm, MATCH_KEYS, WILDCARD_KEYS};

/// Whether process `pid` still exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The farm answers with execution enabled, its scheduler knows exactly
/// the platform keys `replay` sends (and refuses others before queueing),
/// and dropping the guard stops BuildGrid and PostgreSQL.
#[test]
fn a_farm_serves_execution_and_stops_everything_on_drop() {
    let farm = Farm::start();
    let url = farm.url().replace("grpc://", "http://");
    let capabilities = Command::new(bgd())
        .args(["capabilities", "--remote", &url])
        .output()
        .unwrap();
    assert!(
        capabilities.status.success(),
        "{capabilities:?}\n{}",
        farm.log()
    );
    let doc: serde_json::Value = serde_json::from_slice(&capabilities.stdout).unwrap();
    assert_eq!(doc["executionCapabilities"]["execEnabled"], true, "{doc}");

    // An action with a key the property set lacks is refused at once, and
    // the refusal lists the keys the farm was configured with.
    let inputs = tempfile::tempdir().unwrap();
    let refused = Command::new(bgd())
        .args(["execute", "--remote", &url, "command"])
        .args([
            "-p",
            "OSFamily",
            std::env::consts::OS,
            "-p",
            "colour",
            "blue",
        ])
        .arg(inputs.path())
        .arg("true")
        .current_dir(inputs.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("Unregistered platform property [colour="),
        "{stderr}"
    );
    for key in MATCH_KEYS.iter().chain(WILDCARD_KEYS) {
        assert!(
            stderr.contains(&format!("'{key}'")),
            "`{key}` is not configured: {stderr}"
        );
    }

    let pids = farm.pids();
    assert_eq!(pids.len(), 2, "server and postmaster: {pids:?}");
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
    drop(farm);
    let still: Vec<u32> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(still.is_empty(), "still running after drop: {still:?}");
}

/// A `bgd execute` client killed and reaped when dropped.
struct Client(std::process::Child);

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A bot registered through `replay`'s Bots calls is handed the lease of
/// an action a client queued with `replay`'s platform keys, reads its
/// `Action` and `Command` from the CAS (verified), and completing the lease
/// with an `ActionResult` finishes the client's execution.
#[test]
fn a_bot_session_takes_a_lease_and_completes_it() {
    use prost::Message as _;
    use replay_cache::reapi::{Action, Command as ReapiCommand};
    use replay_cache::remote::bots::{
        BotSession, Device, KeyValue, Lease, Worker, ACTION_RESULT_TYPE, ACTION_TYPE,
        BOT_STATUS_OK, CAPACITY_KEY, DIGEST_TYPE, LEASE_ACTIVE, LEASE_COMPLETED, LEASE_PENDING,
    };
    use replay_cache::remote::proto::{ActionResult, Any, Status};
    use replay_cache::remote::{Mode, Remote, RemoteConfig};
    use replay_cache::{Digest, Store};
    use std::time::{Duration, Instant};

    // A farm of its own: tests running at once on one farm take each
    // other's leases, and this one asserts which worker took its own.
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("in")).unwrap();
    let platform = [
        ("OSFamily", std::env::consts::OS),
        ("ISA", std::env::consts::ARCH),
        ("replay", "test"),
        ("cpu", "c0ffee"),
        ("root", "/somewhere/else"),
    ];
    let mut execute = Command::new(bgd());
    execute.args([
        "execute",
        "--remote",
        &farm.url().replace("grpc://", "http://"),
        "command",
    ]);
    for (key, value) in platform {
        execute.args(["-p", key, value]);
    }
    let client = Client(
        execute
            .arg(dir.path().join("in"))
            .args(["echo", "leased"])
            .current_dir(dir.path())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );

    let remote = Remote::new(RemoteConfig {
        url: farm.url(),
        instance: String::new(),
        headers: Vec::new(),
        ca: None,
        timeout: Duration::from_secs(30),
        mode: Mode::ReadWrite,
    })
    .unwrap();
    let store = Store::open(&dir.path().join("store"), 1 << 30).unwrap();
    let pair = |(key, value): (&str, &str)| KeyValue {
        key: key.into(),
        value: value.into(),
    };
    let mut session = remote
        .create_bot_session(BotSession {
            bot_id: "replay-e2e-bot".into(),
            status: BOT_STATUS_OK,
            worker: Some(Worker {
                devices: vec![Device {
                    handle: "replay-e2e-bot".into(),
                    properties: platform[..4].iter().copied().map(pair).collect(),
                }],
                configs: vec![pair((CAPACITY_KEY, "1"))],
                ..Worker::default()
            }),
            ..BotSession::default()
        })
        .unwrap();
    assert!(!session.name.is_empty(), "the server names the session");
    let started = Instant::now();
    let lease: Lease = loop {
        if let Some(lease) = session
            .leases
            .iter()
            .find(|l| l.state == LEASE_ACTIVE || l.state == LEASE_PENDING)
        {
            break lease.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no lease within 60 s: {session:?}\n{}",
            farm.log()
        );
        session = remote.update_bot_session(session).unwrap();
    };

    let payload = lease.payload.clone().expect("a lease carries its action");
    let action = match payload.type_url.as_str() {
        ACTION_TYPE => Action::decode(payload.value.as_slice()).unwrap(),
        DIGEST_TYPE => {
            let digest = Digest::decode(payload.value.as_slice()).unwrap();
            assert_eq!(
                remote
                    .fetch_blobs(&store, std::slice::from_ref(&digest))
                    .unwrap(),
                Ok(digest.size())
            );
            Action::decode(store.blob_bytes(&digest).unwrap().as_slice()).unwrap()
        }
        other => panic!("a payload of type `{other}`"),
    };
    let command_digest = action.command_digest.unwrap();
    remote
        .fetch_blobs(&store, std::slice::from_ref(&command_digest))
        .unwrap()
        .unwrap();
    let command =
        ReapiCommand::decode(store.blob_bytes(&command_digest).unwrap().as_slice()).unwrap();
    assert_eq!(command.arguments, ["echo", "leased"]);

    let mut done = lease;
    done.state = LEASE_COMPLETED;
    done.status = Some(Status::default());
    done.result = Some(Any {
        type_url: ACTION_RESULT_TYPE.into(),
        value: ActionResult {
            exit_code: 0,
            ..ActionResult::default()
        }
        .encode_to_vec(),
    });
    session.leases = vec![done];
    let mut client = client;
    session = remote.update_bot_session(session).unwrap();
    let status = loop {
        if let Some(status) = client.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the client did not finish after the lease completed\n{}",
            farm.log()
        );
        session = remote.update_bot_session(session).unwrap();
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = client.0.stderr.take() {
        use std::io::Read as _;
        pipe.read_to_string(&mut stderr).unwrap();
    }
    assert!(status.success(), "{status}: {stderr}");
}

/// The farm's scheduler matches on exactly the keys a `replay` worker
/// advertises: a key matched but not advertised would place no action.
#[test]
fn the_farm_matches_on_the_keys_a_worker_advertises() {
    assert_eq!(MATCH_KEYS, replay::worker::MATCH_KEYS);
}

/// An action as a `replay` client makes one, queued with `bgd execute`:
/// the input root holds `files` and `.replay-program` (a copy of
/// `program`, so its digest is the binary's), and the platform carries
/// the keys a worker matches on plus `root`, `program` and `tool`.
/// Returns the client's exit status, stdout and stderr.
fn execute(
    farm: &Farm,
    dir: &std::path::Path,
    tool: &str,
    program: &str,
    argv: &[&str],
    files: &[(&str, &str)],
    output: &str,
) -> (std::process::ExitStatus, String, String) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::copy(program, input.join(".replay-program")).unwrap();
    for (name, text) in files {
        std::fs::write(input.join(name), text).unwrap();
    }
    let mut command = Command::new(bgd());
    command.args([
        "execute",
        "--remote",
        &farm.url().replace("grpc://", "http://"),
        "command",
    ]);
    for (key, value) in replay::worker::advertised() {
        command.args(["-p", &key, &value]);
    }
    // The client's root: a worker presents the lease there, and makes
    // nothing on its host, so it exists (as on a CI runner's farm).
    std::fs::create_dir_all(dir.join("client-root")).unwrap();
    let client_root = dir.join("client-root").display().to_string();
    command.args([
        "-p",
        "root",
        &client_root,
        "-p",
        "program",
        program,
        "-p",
        "tool",
        tool,
    ]);
    // `-c`: the action may be cached (the farm stores the worker's result).
    command.args(["-c", "--output-file", output, "--output-directory"]);
    command.arg(dir.join("out"));
    let out = command
        .arg("--")
        .arg(&input)
        .args(argv)
        .current_dir(dir)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `replay worker --server URL --policy linux.toml --root DIR` on `farm`.
fn worker(farm: &Farm, dir: &std::path::Path, name: &str) -> replay_e2e::farm::Worker {
    worker_with(farm, dir, name, &[])
}

/// [`worker`] with `more` arguments.
fn worker_with(
    farm: &Farm,
    dir: &std::path::Path,
    name: &str,
    more: &[&str],
) -> replay_e2e::farm::Worker {
    let mut command = Command::new(crate::support::bin("replay"));
    command
        .args([
            "worker",
            "--server",
            &farm.url(),
            "--bot-id",
            name,
            "--policy",
        ])
        .arg(crate::support::shipped_policy("linux.toml"))
        .arg("--root")
        .arg(dir.join(name))
        .args(more);
    farm.worker(command, name)
}

const MODULE: &str = "define i32 @f(i32 %x) {\n  %y = add i32 %x, 0\n  ret i32 %y\n}\n";

/// A worker runs a leased `opt` in its sandbox, and the client gets the
/// output byte for byte as `opt` makes it here.
#[test]
fn a_worker_runs_a_leased_command_and_the_client_gets_its_output() {
    // A farm of its own: tests running at once on one farm take each
    // other's leases, and this one asserts which worker took its own.
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let _worker = worker(&farm, dir.path(), "w-run");
    let (status, stdout, stderr) = execute(
        &farm,
        dir.path(),
        "opt",
        "/usr/lib/llvm-14/bin/opt",
        &["opt-14", "-O2", "m.ll", "-o", "m.bc"],
        &[("m.ll", MODULE)],
        "m.bc",
    );
    assert!(
        status.success(),
        "{status}\n{stdout}\n{stderr}\n{}",
        _worker.log()
    );
    std::fs::write(dir.path().join("m.ll"), MODULE).unwrap();
    let local = Command::new("/usr/lib/llvm-14/bin/opt")
        .args(["-O2", "m.ll", "-o", "local.bc"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(local.success());
    let remote = std::fs::read(dir.path().join("out/m.bc")).unwrap();
    assert_eq!(remote, std::fs::read(dir.path().join("local.bc")).unwrap());

    // The farm's action cache holds the worker's result: it names the
    // worker and carries the peak RSS it measured.
    use prost::Message as _;
    use replay_cache::remote::proto::{ReplayMetadata, METADATA_TYPE};
    let action = sent_action(&stdout);
    let client = replay_cache::remote::Remote::new(replay_cache::remote::RemoteConfig {
        url: farm.url(),
        instance: String::new(),
        headers: Vec::new(),
        ca: None,
        timeout: std::time::Duration::from_secs(30),
        mode: replay_cache::remote::Mode::Read,
    })
    .unwrap();
    let result = client
        .get_action_result(&action)
        .unwrap()
        .expect("a cached result");
    let metadata = result.execution_metadata.unwrap();
    assert_eq!(metadata.worker, "replay worker w-run");
    let ours = metadata
        .auxiliary_metadata
        .iter()
        .find(|any| any.type_url == METADATA_TYPE)
        .expect("replay's metadata");
    let ours = ReplayMetadata::decode(ours.value.as_slice()).unwrap();
    assert!(
        (1 << 20..8 << 30).contains(&ours.peak_rss_bytes),
        "opt's measured peak: {} bytes",
        ours.peak_rss_bytes
    );
}

/// The action digest `bgd execute` printed (`Sent action=[hash: "H"
/// size_bytes: N]`).
fn sent_action(stdout: &str) -> replay_cache::Digest {
    let rest = stdout
        .split("Sent action=[hash: \"")
        .nth(1)
        .unwrap_or_else(|| panic!("no action in: {stdout}"));
    let hash = rest[..64].to_owned();
    let size = rest
        .split("size_bytes: ")
        .nth(1)
        .and_then(|s| s.lines().next())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size in: {stdout}"));
    replay_cache::Digest {
        hash,
        size_bytes: size,
    }
}

/// A command the worker's policy refuses (a Windows target makes clang
/// run tools the policy never judged) fails with the worker's finding,
/// and nothing runs: the lease root holds no output.
#[test]
fn a_worker_refuses_what_its_own_policy_refuses_and_runs_nothing() {
    // A farm of its own: tests running at once on one farm take each
    // other's leases, and this one asserts which worker took its own.
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&farm, dir.path(), "w-refuse");
    let (status, stdout, stderr) = execute(
        &farm,
        dir.path(),
        "cc",
        "/usr/lib/llvm-14/bin/clang",
        &[
            "clang-14",
            "--target=x86_64-pc-windows-msvc",
            "-c",
            "a.c",
            "-o",
            "a.o",
        ],
        &[("a.c", "int f(void) { return 0; }\n")],
        "a.o",
    );
    let said = format!("{status}\n{stdout}\n{stderr}");
    // `bgd` exits 0 whatever the action's status; it prints the status:
    // FAILED_PRECONDITION (9) with the worker's finding.
    assert!(
        said.contains("Response status code: code: 9"),
        "{said}\n{}",
        worker.log()
    );
    assert!(
        said.contains("the worker\\'s policy refused the command: args.bad-value"),
        "the finding is not reported: {said}\n{}",
        worker.log()
    );
    let made: Vec<_> = walk(&dir.path().join("w-refuse"))
        .into_iter()
        .filter(|p| p.ends_with("a.o"))
        .collect();
    assert!(made.is_empty(), "an output was made: {made:?}");
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        } else {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// A module `opt -O3` takes a while on: calls in a ring to inline.
fn slow_module() -> String {
    (0..1500)
        .map(|i| {
            format!(
                "define i32 @f{i}(i32 %x) {{\n  %a = mul i32 %x, {}\n  %b = add i32 %a, %x\n  %c = call i32 @f{}(i32 %b)\n  ret i32 %c\n}}\n",
                i + 3,
                (i + 1) % 1500
            )
        })
        .collect()
}

/// The live processes `pid` started, at any depth: a worker's are the
/// sandbox launcher and the tool of its lease (which runs at the client's
/// root, so its working directory does not tell whose it is).
fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // `PID (COMM) STATE PPID ...`: COMM may hold spaces.
            let after = &stat[stat.rfind(')')? + 2..];
            let parent: u32 = after.split(' ').nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut at = 0;
    while at < found.len() {
        let parent = found[at];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(c, _)| *c),
        );
        at += 1;
    }
    found.remove(0);
    found.retain(|&p| alive(p));
    found
}

/// A worker SIGKILLed while its tool runs loses nothing: the farm hands
/// the lease to another worker once the dead one's keepalive passes, the
/// client's action finishes there, and the killed worker's tool does not
/// outlive it. (Its own farm: another test's worker must not take the
/// lease.)
#[test]
fn a_worker_killed_mid_lease_loses_nothing_and_leaves_no_tool_running() {
    use std::time::{Duration, Instant};
    let farm = std::sync::Arc::new(Farm::start());
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let mut first = worker(&farm, &base, "w-kill-1");
    let client = {
        let (farm, base) = (std::sync::Arc::clone(&farm), base.clone());
        std::thread::spawn(move || {
            let module = slow_module();
            execute(
                &farm,
                &base,
                "opt",
                "/usr/lib/llvm-14/bin/opt",
                &["opt-14", "-O3", "slow.ll", "-o", "slow.bc"],
                &[("slow.ll", module.as_str())],
                "slow.bc",
            )
        })
    };
    // Kill the first worker once its tool runs.
    let first_pid = first.pid().unwrap();
    let started = Instant::now();
    let tool = loop {
        let pids = descendants(first_pid);
        if !pids.is_empty() {
            break pids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the first worker ran nothing within 120 s:\n{}\n{}",
            first.log(),
            farm.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    first.kill();
    // `opt` alone runs for seconds here: gone at once, it was killed.
    let killed = Instant::now();
    while tool.iter().any(|&pid| alive(pid)) {
        assert!(
            killed.elapsed() < Duration::from_millis(1500),
            "the killed worker's tool outlived it: {tool:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let _second = worker(&farm, &base, "w-kill-2");
    let (status, stdout, stderr) = client.join().unwrap();
    assert!(
        status.success(),
        "{status}\n{stdout}\n{stderr}\n{}",
        _second.log()
    );
    let output = std::fs::read(base.join("out/slow.bc")).unwrap();
    assert!(
        output.starts_with(b"BC"),
        "not bitcode: {} bytes",
        output.len()
    );
    assert!(
        !tool.iter().any(|&pid| alive(pid)),
        "the killed worker's tool outlived it: {tool:?}"
    );
}

/// SIGHUP stops a worker (it tells the farm it is terminating) even
/// though each lease's run handles SIGHUP itself (so do SIGINT, SIGTERM
/// and SIGQUIT: the worker registers all four alike).
#[test]
fn a_worker_stops_on_sighup_after_serving_a_lease() {
    use std::time::{Duration, Instant};
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let worker = worker(&farm, &base, "w-term");
    let (status, stdout, stderr) = execute(
        &farm,
        &base,
        "opt",
        "/usr/lib/llvm-14/bin/opt",
        &["opt-14", "-O1", "m.ll", "-o", "m.bc"],
        &[("m.ll", MODULE)],
        "m.bc",
    );
    assert!(
        status.success(),
        "{status}\n{stdout}\n{stderr}\n{}",
        worker.log()
    );
    let pid = i32::try_from(worker.pid().unwrap()).unwrap();
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGHUP) }, 0);
    let sent = Instant::now();
    while alive(u32::try_from(pid).unwrap()) {
        assert!(
            sent.elapsed() < Duration::from_secs(30),
            "the worker ignored SIGHUP:\n{}",
            worker.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The farm the client tests (`replay`'s Execute client,
/// `--remote-executor`) share ([`Farm::shared`]); the worker tests have
/// farms of their own, as they assert which of their workers took their
/// leases. Any worker here runs the shipped `linux.toml`, so whichever
/// takes a client test's action judges it alike.
fn client_farm() -> std::sync::Arc<Farm> {
    Farm::shared()
}

/// `opt -O2 m.ll -o m.bc` (or clang with `argv`) as a `replay` client
/// keys it: the key, and the input files to upload with it.
fn client_action(
    program: &str,
    tool: &str,
    argv: &[&str],
    files: &[(&str, &str)],
    output: &str,
    dir: &std::path::Path,
) -> (
    replay_cache::ActionKey,
    Vec<(replay_cache::Digest, std::path::PathBuf)>,
) {
    use replay_cache::{ActionSpec, Digest, InputFile};
    let mut uploads = vec![(
        Digest::of(&std::fs::read(program).unwrap()),
        std::path::PathBuf::from(program),
    )];
    let mut inputs = Vec::new();
    for (name, text) in files {
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        let digest = Digest::of(text.as_bytes());
        inputs.push(InputFile {
            path: (*name).to_owned(),
            digest: digest.clone(),
            executable: false,
        });
        uploads.push((digest, path));
    }
    std::fs::create_dir_all(dir.join("client-root")).unwrap();
    let mut platform = replay::worker::advertised();
    platform.extend([
        (
            "root".to_owned(),
            dir.join("client-root").display().to_string(),
        ),
        ("program".to_owned(), program.to_owned()),
        ("tool".to_owned(), tool.to_owned()),
    ]);
    let spec = ActionSpec {
        program_digest: uploads[0].0.clone(),
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        env: Default::default(),
        cwd: ".".into(),
        platform,
        inputs,
        outputs: vec![output.to_owned()],
    };
    (spec.key().unwrap(), uploads)
}

/// `replay`'s own Execute client: the inputs are uploaded, the operation
/// followed to its end, and the worker's `ActionResult` comes back with
/// the output as `opt` makes it here; the same action again is served
/// from the farm's action cache. A command the worker's policy refuses
/// comes back as `FAILED_PRECONDITION` with the worker's finding.
#[test]
fn the_execute_client_gets_a_workers_result_and_its_refusal() {
    use replay_cache::remote::execution::ExecuteError;
    use replay_cache::remote::{Mode, Remote, RemoteConfig};
    use std::time::Duration;

    let farm = client_farm();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&farm, dir.path(), "w-exec");
    let remote = Remote::new(RemoteConfig {
        url: farm.url(),
        instance: String::new(),
        headers: Vec::new(),
        ca: None,
        timeout: Duration::from_secs(30),
        mode: Mode::ReadWrite,
    })
    .unwrap();
    let store = replay_cache::Store::open(&dir.path().join("store"), 1 << 30).unwrap();
    let (key, files) = client_action(
        "/usr/lib/llvm-14/bin/opt",
        "opt",
        &["opt-14", "-O2", "m.ll", "-o", "m.bc"],
        &[("m.ll", MODULE)],
        "m.bc",
        dir.path(),
    );
    let executed = remote
        .execute(&store, &key, &files, Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}\n{}", worker.log()));
    assert!(!executed.cached);
    let result = &executed.result;
    assert_eq!(result.exit_code, 0, "{result:?}");
    let metadata = result.execution_metadata.as_ref().unwrap();
    assert!(
        metadata.worker.starts_with("replay worker "),
        "{}",
        metadata.worker
    );
    let [output] = result.output_files.as_slice() else {
        panic!("one output: {result:?}");
    };
    assert_eq!(output.path, "m.bc");
    let got = remote
        .fetch_blobs(&store, &[output.digest.clone().unwrap()])
        .unwrap()
        .unwrap();
    assert!(got > 0);
    let local = Command::new("/usr/lib/llvm-14/bin/opt")
        .args(["-O2", "m.ll", "-o", "local.bc"])
        .current_dir(dir.path())
        .status()
        .unwrap();
    assert!(local.success());
    assert_eq!(
        store.blob_bytes(output.digest.as_ref().unwrap()).unwrap(),
        std::fs::read(dir.path().join("local.bc")).unwrap()
    );

    let again = remote
        .execute(&store, &key, &files, Duration::from_secs(120))
        .unwrap();
    assert!(
        again.cached,
        "the second execution was not served from the cache"
    );
    assert_eq!(again.result.output_files, result.output_files);

    let (refused, files) = client_action(
        "/usr/lib/llvm-14/bin/clang",
        "cc",
        &[
            "clang-14",
            "--target=x86_64-pc-windows-msvc",
            "-c",
            "a.c",
            "-o",
            "a.o",
        ],
        &[("a.c", "int f(void) { return 0; }\n")],
        "a.o",
        dir.path(),
    );
    match remote.execute(&store, &refused, &files, Duration::from_secs(120)) {
        Err(error @ ExecuteError::Refused { code: 9, .. }) => {
            let said = error.to_string();
            assert!(
                said.contains("FAILED_PRECONDITION")
                    && said.contains("the worker's policy refused the command: args.bad-value"),
                "{said}"
            );
        }
        other => panic!("{other:?}\n{}", worker.log()),
    }
}

/// `replay --cache CACHE --remote-executor URL --policy POLICY --report
/// report.json log.json` in `root` (or without the farm when `url` is
/// `None`, and without a cache).
fn farm_run(
    root: &std::path::Path,
    cache: &std::path::Path,
    url: Option<&str>,
    policy: &std::path::Path,
) -> std::process::Output {
    let mut command = Command::new(crate::support::bin("replay"));
    command.env_remove("REPLAY_NO_CACHE");
    match url {
        Some(url) => {
            command
                .arg("--cache")
                .arg(cache)
                .args(["--remote-executor", url]);
        }
        None => {
            command.arg("--no-cache");
        }
    }
    command
        .arg("--policy")
        .arg(policy)
        .args(["--report", "report.json", "log.json"])
        .current_dir(root)
        .output()
        .unwrap()
}

/// Each command's `cache.FIELD` as text ("" if none).
fn cache_field(doc: &serde_json::Value, field: &str) -> Vec<String> {
    doc["commands"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| match &c["cache"][field] {
            serde_json::Value::String(s) => s.clone(),
            serde_json::Value::Null => String::new(),
            other => other.to_string(),
        })
        .collect()
}

/// A partitioned C program built with `--remote-executor` through the
/// farm and two `replay worker`s: every command ran on a worker, which
/// measured its peak, and the outputs are byte for byte a local build's.
/// The same build again in a fresh checkout with an empty local cache is
/// served from the farm's action cache: nothing runs again.
#[test]
fn a_program_built_on_the_farm_is_a_local_builds_byte_for_byte() {
    let farm = client_farm();
    let dir = tempfile::tempdir().unwrap();
    let one = worker(&farm, dir.path(), "w-build-1");
    let two = worker(&farm, dir.path(), "w-build-2");
    let policy = crate::support::shipped_policy("linux.toml");
    let root = dir.path().join("checkout");
    std::fs::create_dir(&root).unwrap();
    crate::cache::c_program(&root, 2);
    let url = farm.url();
    let built = farm_run(&root, &dir.path().join("cache-a"), Some(&url), &policy);
    let said = format!(
        "{}\n{}\n{}",
        crate::support::text(&built.stderr),
        one.log(),
        two.log()
    );
    assert!(built.status.success(), "{said}");
    let first = crate::support::report(&root.join("report.json"));
    let n = crate::cache::statuses(&first).len();
    assert!(n >= 4, "at least two partitions and a link: {first:#}");
    let ran_on = cache_field(&first, "ran_on");
    assert!(
        ran_on.iter().all(|w| w.starts_with("replay worker ")),
        "{first:#}\n{said}"
    );
    assert_eq!(first["totals"]["farm_ran"], n, "{first:#}");
    assert_eq!(first["totals"]["cache_hits"], 0, "ran, not hits: {first:#}");
    for peak in cache_field(&first, "worker_peak_rss_bytes") {
        let peak: u64 = peak.parse().unwrap_or(0);
        assert!((1 << 20..8 << 30).contains(&peak), "{first:#}");
    }
    // The program and every partition's object and bitcode.
    let mut made = walk(&root.join("prog.aotc"));
    made.push(root.join("prog"));
    let remote: Vec<(std::path::PathBuf, Vec<u8>)> = made
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p, bytes)
        })
        .collect();
    assert!(remote.len() >= n, "{first:#}\n{remote:?}");
    let prog = crate::support::run(&root.join("prog"), &[], &root);
    assert_eq!(prog.stdout, b"6\n");

    // The same checkout built here, at the same path, without the farm.
    std::fs::rename(&root, dir.path().join("farm-built")).unwrap();
    std::fs::create_dir(&root).unwrap();
    crate::cache::c_program(&root, 2);
    let local = farm_run(&root, &dir.path().join("unused"), None, &policy);
    assert!(
        local.status.success(),
        "{}",
        crate::support::text(&local.stderr)
    );
    for (path, bytes) in &remote {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }

    // A fresh checkout and an empty local cache: the farm's action cache
    // serves every command, none runs again.
    std::fs::remove_dir_all(&root).unwrap();
    std::fs::create_dir(&root).unwrap();
    crate::cache::c_program(&root, 2);
    let again = farm_run(&root, &dir.path().join("cache-b"), Some(&url), &policy);
    assert!(
        again.status.success(),
        "{}",
        crate::support::text(&again.stderr)
    );
    let second = crate::support::report(&root.join("report.json"));
    assert_eq!(
        cache_field(&second, "remote_execution"),
        vec!["served from the farm's action cache, not run again"; n],
        "{second:#}"
    );
    assert_eq!(second["totals"]["farm_ran"], 0, "{second:#}");
    assert_eq!(second["totals"]["cache_hits"], n, "{second:#}");
    for (path, bytes) in &remote {
        assert_eq!(&std::fs::read(path).unwrap(), bytes, "{}", path.display());
    }
}

/// A command whose output embeds its working directory (`clang -g`
/// writes it as `DW_AT_comp_dir`) is made on the farm as a local build
/// makes it, byte for byte: the worker ran it at the client's root (its
/// lease directory presented there in a mount namespace of its own), not
/// at the lease directory, and the host never saw that mount.
#[test]
fn a_worker_runs_a_command_at_the_clients_root() {
    let farm = client_farm();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&farm, dir.path(), "w-root");
    let policy = crate::support::shipped_policy("linux.toml");
    let root = dir.path().join("checkout");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.c"), "int answer(void) { return 42; }\n").unwrap();
    crate::support::write_log(
        &root,
        vec![serde_json::json!({
            "id": 1, "tool": "cc", "program": "clang-14",
            "args": ["-g", "-c", "a.c", "-o", "a.o"],
            "cwd": ".", "env": {}, "inputs": ["a.c"], "outputs": ["a.o"],
        })],
    );
    let built = farm_run(&root, &dir.path().join("cache"), Some(&farm.url()), &policy);
    let doc = crate::support::report(&root.join("report.json"));
    assert!(
        built.status.success(),
        "{doc:#}\n{}\n{}",
        crate::support::text(&built.stderr),
        worker.log()
    );
    assert!(
        cache_field(&doc, "ran_on")[0].starts_with("replay worker "),
        "{doc:#}"
    );
    let remote = std::fs::read(root.join("a.o")).unwrap();
    let has = |needle: &str| remote.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has(&root.display().to_string()),
        "DW_AT_comp_dir names the client's root"
    );
    assert!(!has("lease-"), "nothing names the worker's lease directory");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&root.display().to_string()), "{mounts}");

    std::fs::remove_file(root.join("a.o")).unwrap();
    let local = farm_run(&root, &dir.path().join("unused"), None, &policy);
    assert!(
        local.status.success(),
        "{}",
        crate::support::text(&local.stderr)
    );
    assert_eq!(std::fs::read(root.join("a.o")).unwrap(), remote);
}

/// A log that passes a lax client policy (it sets a variable the worker's
/// policy does not allow) but not the worker's: sent with
/// `--remote-executor`, its first command fails with the worker's
/// finding, is not run here instead, and nothing is built.
#[test]
fn a_command_the_workers_policy_refuses_fails_with_its_finding() {
    let farm = client_farm();
    let dir = tempfile::tempdir().unwrap();
    let worker = worker(&farm, dir.path(), "w-strict");
    let lax = dir.path().join("lax.toml");
    std::fs::write(
        &lax,
        format!(
            "[policy]\nextends = [\"{}\"]\n\n[env]\nset = {{ REPLAY_CLIENT_ONLY = \"1\" }}\n",
            crate::support::shipped_policy("linux.toml").display()
        ),
    )
    .unwrap();
    let root = dir.path().join("checkout");
    std::fs::create_dir(&root).unwrap();
    crate::cache::c_program(&root, 2);
    // What aotc wrote (the partitions' inputs); the log's outputs are not
    // there yet.
    let before = walk(&root.join("prog.aotc"));
    let out = farm_run(&root, &dir.path().join("cache"), Some(&farm.url()), &lax);
    let stderr = crate::support::text(&out.stderr);
    assert!(!out.status.success(), "{stderr}\n{}", worker.log());
    let doc = crate::support::report(&root.join("report.json"));
    let first = &doc["commands"][0];
    assert_eq!(first["status"], "error", "{doc:#}");
    let message = first["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("the build farm refused it")
            && message.contains("FAILED_PRECONDITION")
            && message.contains("the worker's policy refused the command: env.not-allowed")
            && message.contains("REPLAY_CLIENT_ONLY"),
        "{doc:#}\n{}",
        worker.log()
    );
    assert_ne!(cache_field(&doc, "ran_on")[0], "local", "{doc:#}");
    assert!(!root.join("prog").exists());
    assert_eq!(walk(&root.join("prog.aotc")), before, "{doc:#}");

    // The same log, its every tool kept here (`local_only`): nothing is
    // sent to the worker, and the build finishes here.
    let local = dir.path().join("local.toml");
    std::fs::write(
        &local,
        "[policy]\nextends = [\"lax.toml\"]\n\
         [tool.opt]\nlocal_only = true\n[tool.llc]\nlocal_only = true\n\
         [tool.cc]\nlocal_only = true\n[tool.ld]\nlocal_only = true\n",
    )
    .unwrap();
    let out = farm_run(&root, &dir.path().join("cache"), Some(&farm.url()), &local);
    let doc = crate::support::report(&root.join("report.json"));
    assert!(out.status.success(), "{doc:#}");
    let n = crate::cache::statuses(&doc).len();
    assert_eq!(cache_field(&doc, "ran_on"), vec!["local"; n], "{doc:#}");
    assert!(
        cache_field(&doc, "remote_execution")
            .iter()
            .all(|why| why.contains("on this machine (`local_only`)")),
        "{doc:#}"
    );
    assert!(root.join("prog").exists());
}

/// A farm that cannot be reached is warned about once, and the build
/// finishes here, each command's record saying it ran locally.
#[test]
fn an_unreachable_farm_is_warned_about_once_and_the_build_runs_here() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("checkout");
    std::fs::create_dir(&root).unwrap();
    crate::cache::c_program(&root, 2);
    // A port nothing listens on: bound, then closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("grpc://127.0.0.1:{port}");
    let out = farm_run(
        &root,
        &dir.path().join("cache"),
        Some(&url),
        &crate::support::shipped_policy("linux.toml"),
    );
    let stderr = crate::support::text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("the build farm `").count(),
        1,
        "one warning: {stderr}"
    );
    assert!(stderr.contains("drop `--remote-executor`"), "{stderr}");
    let doc = crate::support::report(&root.join("report.json"));
    let n = crate::cache::statuses(&doc).len();
    assert_eq!(crate::cache::statuses(&doc), vec!["ok"; n], "{doc:#}");
    assert_eq!(cache_field(&doc, "ran_on"), vec!["local"; n], "{doc:#}");
    let prog = crate::support::run(&root.join("prog"), &[], &root);
    assert_eq!(prog.stdout, b"6\n");
}

/// `count` independent `opt -O3 sK.ll -o sK.bc` commands (each module a
/// [`slow_module`] of its own), written as `root/log.json`.
fn slow_log(root: &std::path::Path, count: usize) {
    let module = slow_module();
    let commands = (1..=count)
        .map(|k| {
            // Each module differs (its name and a constant), so no two
            // actions are one to the farm.
            std::fs::write(
                root.join(format!("s{k}.ll")),
                format!("@k = global i32 {k}\n{module}"),
            )
            .unwrap();
            serde_json::json!({
                "id": k, "tool": "opt", "program": "opt-14",
                "args": ["-O3", format!("s{k}.ll"), "-o", format!("s{k}.bc")],
                "cwd": ".", "env": {},
                "inputs": [format!("s{k}.ll")], "outputs": [format!("s{k}.bc")],
            })
        })
        .collect();
    crate::support::write_log(root, commands);
}

/// [`farm_run`] of `root`'s log through `farm` with the shipped
/// `linux.toml` (its cache in `base`), on a thread of its own, taking
/// `sample` every 20 ms while it runs (5 minutes at most): the run's
/// output and the largest sample.
fn run_while_sampling(
    farm: &Farm,
    base: &std::path::Path,
    root: &std::path::Path,
    sample: impl Fn() -> usize,
) -> (std::process::Output, usize) {
    use std::time::{Duration, Instant};
    let client = {
        let (root, cache, url) = (root.to_owned(), base.join("cache"), farm.url());
        std::thread::spawn(move || {
            farm_run(
                &root,
                &cache,
                Some(&url),
                &crate::support::shipped_policy("linux.toml"),
            )
        })
    };
    let started = Instant::now();
    let mut most = 0;
    while !client.is_finished() && started.elapsed() < Duration::from_secs(300) {
        most = most.max(sample());
        std::thread::sleep(Duration::from_millis(20));
    }
    (client.join().unwrap(), most)
}

/// How many of `workers` (their pids) have a tool running right now.
fn busy(workers: &[u32]) -> usize {
    workers
        .iter()
        .filter(|&&pid| !descendants(pid).is_empty())
        .count()
}

/// Without `-j`, `--remote-executor` sends up to 8 commands at once: with
/// two workers and four independent slow commands, both workers run a
/// tool at the same time (sent one at a time, at most one ever would),
/// every command ran on one of them, and each output is `opt`'s.
#[test]
fn remote_commands_run_at_once_on_two_workers() {
    // A farm of its own: another test's worker must not take these.
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let one = worker(&farm, &base, "w-par-1");
    let two = worker(&farm, &base, "w-par-2");
    let pids = [one.pid().unwrap(), two.pid().unwrap()];
    let root = base.join("checkout");
    std::fs::create_dir(&root).unwrap();
    slow_log(&root, 4);
    let (out, most) = run_while_sampling(&farm, &base, &root, || busy(&pids));
    let said = format!(
        "{}\n{}\n{}",
        crate::support::text(&out.stderr),
        one.log(),
        two.log()
    );
    assert!(out.status.success(), "{said}");
    let doc = crate::support::report(&root.join("report.json"));
    // A result from the farm is restored as a cache hit is.
    assert_eq!(crate::cache::statuses(&doc), vec!["cached"; 4], "{doc:#}");
    let mut ran_on = cache_field(&doc, "ran_on");
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(
        ran_on,
        ["replay worker w-par-1", "replay worker w-par-2"],
        "{doc:#}\n{said}"
    );
    assert_eq!(
        most, 2,
        "the two workers never ran at once\n{doc:#}\n{said}"
    );
    for k in 1..=4 {
        let made = std::fs::read(root.join(format!("s{k}.bc"))).unwrap();
        assert!(made.starts_with(b"BC"), "s{k}.bc is not bitcode");
    }
}

/// A worker SIGKILLed while it runs a command of a `--remote-executor`
/// build loses nothing: the farm hands the lease to the other worker once
/// the dead one's keepalive passes, the build finishes, and its output is
/// a local build's byte for byte.
#[test]
fn a_build_survives_its_worker_killed_mid_lease() {
    use std::time::{Duration, Instant};
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let mut workers = [
        worker(&farm, &base, "w-die-1"),
        worker(&farm, &base, "w-die-2"),
    ];
    let pids = [workers[0].pid().unwrap(), workers[1].pid().unwrap()];
    let policy = crate::support::shipped_policy("linux.toml");
    let root = base.join("checkout");
    std::fs::create_dir(&root).unwrap();
    slow_log(&root, 1);
    let client = {
        let (root, cache, url, policy) =
            (root.clone(), base.join("cache"), farm.url(), policy.clone());
        std::thread::spawn(move || farm_run(&root, &cache, Some(&url), &policy))
    };
    let started = Instant::now();
    let (victim, tool) = loop {
        if let Some(found) = pids.iter().enumerate().find_map(|(i, &pid)| {
            let tools = descendants(pid);
            (!tools.is_empty()).then_some((i, tools))
        }) {
            break found;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120) && !client.is_finished(),
            "no worker ran the command:\n{}\n{}\n{}",
            workers[0].log(),
            workers[1].log(),
            farm.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    workers[victim].kill();
    let killed = Instant::now();
    while tool.iter().any(|&pid| alive(pid)) {
        assert!(
            killed.elapsed() < Duration::from_millis(1500),
            "the killed worker's tool outlived it: {tool:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = client.join().unwrap();
    let survivor = &workers[1 - victim];
    let said = format!("{}\n{}", crate::support::text(&out.stderr), survivor.log());
    assert!(out.status.success(), "{said}");
    let doc = crate::support::report(&root.join("report.json"));
    assert_eq!(crate::cache::statuses(&doc), vec!["cached"], "{doc:#}");
    assert_eq!(
        cache_field(&doc, "ran_on"),
        [format!("replay worker w-die-{}", 2 - victim)],
        "{doc:#}\n{said}"
    );
    let farmed = std::fs::read(root.join("s1.bc")).unwrap();

    // The same log built here, at the same path, without the farm.
    std::fs::rename(&root, base.join("farm-built")).unwrap();
    std::fs::create_dir(&root).unwrap();
    slow_log(&root, 1);
    let local = farm_run(&root, &base.join("unused"), None, &policy);
    assert!(
        local.status.success(),
        "{}",
        crate::support::text(&local.stderr)
    );
    assert_eq!(std::fs::read(root.join("s1.bc")).unwrap(), farmed);
}

/// A worker that fails by itself (here its lease directory cannot be
/// made: a file stands where it goes) completes the lease as
/// `UNAVAILABLE`, not as a refusal: BuildGrid hands such a lease out
/// again (5 tries in all), and when every try failed the client takes it
/// for the farm failing, warns once and builds the command here. (Its own
/// farm: no other worker may take the lease.)
#[test]
fn a_workers_own_failure_is_retried_then_built_by_the_client() {
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let failing = worker(&farm, &base, "w-fail");
    let leases = base.join("w-fail");
    std::fs::create_dir_all(&leases).unwrap();
    let pid = failing.pid().unwrap();
    for n in 1..=5 {
        std::fs::write(leases.join(format!("lease-{n}-{pid}")), "not a directory").unwrap();
    }
    let root = base.join("checkout");
    std::fs::create_dir(&root).unwrap();
    slow_log(&root, 1);
    let policy = crate::support::shipped_policy("linux.toml");
    let out = farm_run(&root, &base.join("cache"), Some(&farm.url()), &policy);
    let stderr = crate::support::text(&out.stderr);
    assert!(out.status.success(), "{stderr}\n{}", failing.log());
    let doc = crate::support::report(&root.join("report.json"));
    assert_eq!(cache_field(&doc, "ran_on"), ["local"], "{doc:#}");
    let why = &cache_field(&doc, "remote_execution")[0];
    assert!(
        why.contains("UNAVAILABLE")
            && why.contains("the worker failed: cannot make the lease root"),
        "{doc:#}"
    );
    assert_eq!(stderr.matches("the build farm `").count(), 1, "{stderr}");
    assert!(std::fs::read(root.join("s1.bc"))
        .unwrap()
        .starts_with(b"BC"));
}

/// `replay worker -j 2` tells the farm it takes two leases and runs them
/// at once, each at the client's root in a namespace of its own: with one
/// worker and two slow independent commands, two of its tools run at the
/// same time, and both outputs are `opt`'s.
#[test]
fn a_worker_with_two_jobs_runs_two_leases_at_once() {
    let farm = Farm::start();
    let dir = tempfile::tempdir().unwrap();
    let base = dir.path().canonicalize().unwrap();
    let both = worker_with(&farm, &base, "w-two", &["-j", "2"]);
    let pid = both.pid().unwrap();
    let root = base.join("checkout");
    std::fs::create_dir(&root).unwrap();
    slow_log(&root, 2);
    let opt_tools = || {
        descendants(pid)
            .into_iter()
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "opt")
            })
            .count()
    };
    let (out, most) = run_while_sampling(&farm, &base, &root, opt_tools);
    let said = format!("{}\n{}", crate::support::text(&out.stderr), both.log());
    assert!(out.status.success(), "{said}");
    let doc = crate::support::report(&root.join("report.json"));
    assert_eq!(
        cache_field(&doc, "ran_on"),
        vec!["replay worker w-two"; 2],
        "{doc:#}"
    );
    assert_eq!(
        most, 2,
        "the worker never ran two leases at once\n{doc:#}\n{said}"
    );
    for k in 1..=2 {
        let made = std::fs::read(root.join(format!("s{k}.bc"))).unwrap();
        assert!(made.starts_with(b"BC"), "s{k}.bc is not bitcode");
    }
}
