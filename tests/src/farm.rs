//! A real build farm for the remote-execution tests: a throwaway
//! PostgreSQL cluster, and BuildGrid serving `!execution` (which includes
//! the Bots service) with a `!sql-scheduler` on it, an in-memory
//! `!lru-storage` CAS, an `!lru-action-cache`, CAS and ByteStream, on a
//! free loopback port. Main type: [`Farm`], a guard that stops the workers
//! it started, the server and the database when it drops, also when a test
//! panics.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root the
//! cluster is made and run by the `postgres` user (`runuser`), in a
//! directory of its own that user can reach (a test's temporary directory
//! is private to root). The scheduler's property set accepts exactly the
//! platform keys `replay` sends ([`MATCH_KEYS`], [`WILDCARD_KEYS`]); the
//! bot-session keepalive is short so a killed worker's lease is retried
//! within seconds.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use crate::buildgrid::{bgd, free_port, wait_listening};

/// Platform keys a worker must advertise with the same value as the
/// action (BuildGrid always matches `OSFamily` and `ISA` too).
pub const MATCH_KEYS: &[&str] = &["OSFamily", "ISA", "replay", "cpu"];

/// Platform keys actions may carry that do not take part in matching:
/// the client's work root and program path (a worker presents its
/// lease at that root and checks the program by digest), the tool kind
/// and the memory request.
pub const WILDCARD_KEYS: &[&str] = &["root", "program", "tool", "memory_kb"];

/// BuildGrid's gRPC threads, which bound the calls it serves at once (its
/// default, 5 per CPU, is 10 on 2 cores: a client's 8 `Execute` streams
/// at `-j 8` and two workers' long polls pass it, and the rest are
/// refused with `RESOURCE_EXHAUSTED`).
pub const THREAD_POOL_SIZE: u32 = 64;

/// Seconds between the operation updates an `Execute` stream gets when
/// nothing is pushed. Here the SQL scheduler pushes no completion to the
/// stream (seen with BuildGrid 0.4.4: every remote command of SQLite's
/// log ended on a 10 s tick, 8 at a time), so this is how late a client
/// learns that its action is done.
pub const OPERATION_KEEPALIVE_SECS: u32 = 1;

/// Seconds BuildGrid waits for a bot's update before it takes the bot for
/// dead and queues its leases again.
pub const BOT_KEEPALIVE_SECS: u32 = 4;

/// Where PostgreSQL's server programs are: `$REPLAY_PG_BIN`, else the
/// newest `/usr/lib/postgresql/*/bin` (Debian keeps them off `PATH`).
pub fn pg_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("REPLAY_PG_BIN") {
        return PathBuf::from(path);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .pop()
        .map(|(_, bin)| bin)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

/// Whether this process runs as root (then PostgreSQL runs as `postgres`).
fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A PostgreSQL server program, run as `postgres` when we are root.
fn pg_command(program: &str) -> Command {
    let path = pg_bin().join(program);
    if is_root() {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(path);
        command
    } else {
        Command::new(path)
    }
}

/// Runs `command` to completion; panics with its output if it fails.
fn run(mut command: Command, what: &str) {
    let out = command
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what} ({command:?}): {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A throwaway PostgreSQL cluster on a loopback port; `pg_ctl stop -m
/// immediate` on drop.
struct Postgres {
    data: PathBuf,
    port: u16,
    running: bool,
}

impl Postgres {
    /// Makes a cluster in `run_dir` (owned by the user the server runs
    /// as), starts it on a free loopback port, and creates database `bgd`.
    fn start(run_dir: &Path) -> Postgres {
        let bin = pg_bin();
        assert!(
            bin.join("initdb").is_file(),
            "PostgreSQL's `initdb` is not in `{}`: run `bash scripts/install-deps.sh` (or set $REPLAY_PG_BIN)",
            bin.display()
        );
        let data = run_dir.join("data");
        let mut initdb = pg_command("initdb");
        initdb.arg("-D").arg(&data).args([
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
            "-E",
            "UTF8",
        ]);
        run(initdb, "`initdb`");
        let port = free_port();
        let postgres = Postgres {
            data: data.clone(),
            port,
            running: true,
        };
        let mut start = pg_command("pg_ctl");
        start
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(run_dir.join("postgres.log"))
            .args(["-w", "-t", "60", "-o"])
            .arg(format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k {} -c fsync=off -c full_page_writes=off",
                run_dir.display()
            ))
            .arg("start");
        // From here on the guard stops the server if anything panics.
        let status = start.stdin(Stdio::null()).output();
        if !status.as_ref().is_ok_and(|out| out.status.success()) {
            let log = std::fs::read_to_string(run_dir.join("postgres.log")).unwrap_or_default();
            panic!("`pg_ctl start` failed ({status:?}); PostgreSQL's log:\n{log}");
        }
        let mut createdb = pg_command("createdb");
        createdb.args([
            "-h",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-U",
            "postgres",
            "bgd",
        ]);
        run(createdb, "`createdb bgd`");
        postgres
    }

    /// The SQLAlchemy connection string of database `bgd`.
    fn url(&self) -> String {
        format!("postgresql://postgres@127.0.0.1:{}/bgd", self.port)
    }

    /// The postmaster's pid, from `postmaster.pid`.
    fn pid(&self) -> Option<u32> {
        let text = std::fs::read_to_string(self.data.join("postmaster.pid")).ok()?;
        text.lines().next()?.trim().parse().ok()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if self.running {
            self.running = false;
            let _ = pg_command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// A process the farm started (a `replay worker`), in its own process
/// group; the group is killed and the process reaped on drop.
pub struct Worker {
    child: Option<Child>,
    log: PathBuf,
}

impl Worker {
    /// The worker's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILLs the worker process alone (not its group: what a crash
    /// does), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The worker's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(pid) = i32::try_from(child.id()) {
                // SAFETY: kill has no memory-safety preconditions; the
                // group is the one this child leads (process_group(0)).
                unsafe { libc::kill(-pid, libc::SIGKILL) };
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A running farm: PostgreSQL plus a BuildGrid execution server, and the
/// workers started through [`Farm::worker`]. Everything stops on drop.
pub struct Farm {
    // Field order is drop order: server before database before files.
    server: Option<Child>,
    postgres: Postgres,
    port: u16,
    dir: tempfile::TempDir,
}

/// The farm the tests running now share (see [`Farm::shared`]).
static SHARED: Mutex<Weak<Farm>> = Mutex::new(Weak::new());

impl Farm {
    /// Starts PostgreSQL and BuildGrid in a fresh directory and waits until
    /// the server accepts connections (at most 90 s).
    pub fn start() -> Farm {
        let bgd = bgd();
        assert!(
            bgd.is_file(),
            "BuildGrid's `bgd` is not at `{}`: run `bash scripts/install-deps.sh`",
            bgd.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("replay-farm-")
            .tempdir()
            .expect("make the farm's directory");
        let run_dir = dir.path().join("pg");
        std::fs::create_dir(&run_dir).expect("make PostgreSQL's directory");
        if is_root() {
            use std::os::unix::fs::PermissionsExt as _;
            // `postgres` must reach its directory: let it pass through ours.
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711))
                .expect("open the farm's directory to `postgres`");
            run(
                {
                    let mut chown = Command::new("chown");
                    chown.arg("postgres:").arg(&run_dir);
                    chown
                },
                "`chown postgres` of PostgreSQL's directory",
            );
        }
        let postgres = Postgres::start(&run_dir);
        let mut migrate = Command::new(&bgd);
        migrate.args(["migrate", "apply"]).arg(postgres.url());
        run(migrate, "`bgd migrate apply`");

        let port = free_port();
        let config = dir.path().join("buildgrid.yml");
        std::fs::write(&config, config_text(port, &postgres.url()))
            .expect("write the BuildGrid config");
        let log_path = dir.path().join("bgd.log");
        let log = std::fs::File::create(&log_path).expect("make the server log");
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(&config)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", bgd.display()));
        let mut farm = Farm {
            server: Some(child),
            postgres,
            port,
            dir,
        };
        if let Some(server) = farm.server.as_mut() {
            wait_listening(server, port, &log_path, Duration::from_secs(90));
        }
        farm
    }

    /// The farm the tests running at this moment share, started if none
    /// runs. It stops when the last test holding it drops it (a later test
    /// starts a fresh one), so nothing outlives the test binary.
    pub fn shared() -> Arc<Farm> {
        let mut shared = SHARED.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Some(farm) = shared.upgrade() {
            return farm;
        }
        let farm = Arc::new(Farm::start());
        *shared = Arc::downgrade(&farm);
        farm
    }

    /// `grpc://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("grpc://127.0.0.1:{}", self.port)
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("bgd.log")).unwrap_or_default()
    }

    /// The pids of the server and the postmaster, while they run.
    pub fn pids(&self) -> Vec<u32> {
        self.server
            .as_ref()
            .map(Child::id)
            .into_iter()
            .chain(self.postgres.pid())
            .collect()
    }

    /// Starts `command` (a `replay worker` against [`Farm::url`]) in its
    /// own process group, its output in a log named `name`; the returned
    /// guard kills it.
    pub fn worker(&self, mut command: Command, name: &str) -> Worker {
        use std::os::unix::process::CommandExt as _;
        let log = self.dir.path().join(format!("{name}.log"));
        let file = std::fs::File::create(&log).expect("make the worker's log");
        let child = command
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log"))
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start worker {name} ({command:?}): {e}"));
        Worker {
            child: Some(child),
            log,
        }
    }
}

impl Drop for Farm {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        // `postgres` (stop -m immediate) and `dir` drop next, in order.
    }
}

/// BuildGrid's configuration: execution (with Bots), action cache, CAS and
/// ByteStream on `port`, the SQL scheduler on `sql`.
fn config_text(port: u16, sql: &str) -> String {
    let list = |keys: &[&str]| keys.join(", ");
    format!(
        "server:
  - !channel
    address: \"127.0.0.1:{port}\"
    insecure-mode: true
thread-pool-size: {THREAD_POOL_SIZE}
authorization:
  method: none
connections:
  - !sql-connection &sql
    connection-string: {sql}
    pool-size: 5
    max-overflow: 10
storages:
  - !lru-storage &cas
    size: 512MB
caches:
  - !lru-action-cache &ac
    storage: *cas
    max-cached-refs: 100000
    allow-updates: true
    cache-failed-actions: false
schedulers:
  - !sql-scheduler &scheduler
    sql: *sql
    storage: *cas
    action-cache: *ac
    bot-session-keepalive-timeout: {BOT_KEEPALIVE_SECS}
    session-expiry-timer-interval: 1.0
    poll-interval: 0.5
    bot-poll-interval: 0.5
    property-set: !dynamic-property-set
      match-property-keys: [{match_keys}]
      wildcard-property-keys: [{wildcard_keys}]
instances:
  - name: ''
    services:
      - !execution
        scheduler: *scheduler
        operation-stream-keepalive-timeout: {OPERATION_KEEPALIVE_SECS}
      - !action-cache
        cache: *ac
      - !cas
        storage: *cas
      - !bytestream
        storage: *cas
",
        match_keys = list(MATCH_KEYS),
        wildcard_keys = list(WILDCARD_KEYS),
    )
}
