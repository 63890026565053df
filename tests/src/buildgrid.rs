//! A real BuildGrid server for the remote-cache tests: `bgd server start`
//! on a free loopback port with a disk CAS (so a test can corrupt a
//! stored blob), an LRU action cache, and the `action-cache`, `cas` and
//! `bytestream` services, no authorization. The server is killed and
//! reaped when the guard drops, also when a test panics.
//!
//! `bgd` is looked for at `$REPLAY_BGD`, else in the virtual environment
//! `scripts/install-deps.sh` makes: `~/.cache/replay-test/buildgrid-0.4.4`
//! (or under `$REPLAY_TEST_CACHE`).

use std::io::Read as _;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The BuildGrid version `scripts/install-deps.sh` pins.
pub const VERSION: &str = "0.4.4";

/// Where `bgd` is: `$REPLAY_BGD`, else the install script's venv.
pub fn bgd() -> PathBuf {
    if let Some(path) = std::env::var_os("REPLAY_BGD") {
        return PathBuf::from(path);
    }
    let base = std::env::var_os("REPLAY_TEST_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/replay-test")))
        .unwrap_or_else(|| PathBuf::from("/nonexistent"));
    base.join(format!("buildgrid-{VERSION}/bin/bgd"))
}

/// A running BuildGrid; killed on drop.
pub struct BuildGrid {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    tls: bool,
}

/// A loopback port nothing listens on now.
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

impl BuildGrid {
    /// Starts a server whose files (config, disk CAS, log) live in `dir`,
    /// and waits until it accepts connections (at most 90 s).
    pub fn start(dir: &Path) -> BuildGrid {
        BuildGrid::launch(dir, false)
    }

    /// As [`BuildGrid::start`], serving TLS only, with a certificate for
    /// 127.0.0.1 signed by a CA made here ([`BuildGrid::ca`]; `openssl`).
    pub fn start_tls(dir: &Path) -> BuildGrid {
        BuildGrid::launch(dir, true)
    }

    /// The PEM of the CA that signed a TLS server's certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    fn launch(dir: &Path, tls: bool) -> BuildGrid {
        let bgd = bgd();
        assert!(
            bgd.is_file(),
            "BuildGrid's `bgd` is not at `{}`: run `bash scripts/install-deps.sh`",
            bgd.display()
        );
        std::fs::create_dir_all(dir.join("cas")).expect("make the CAS directory");
        let port = free_port();
        let channel = if tls {
            make_certificates(dir);
            format!(
                "    insecure-mode: false\n    credentials:\n      tls-server-key: {}\n      tls-server-cert: {}\n",
                dir.join("server.key").display(),
                dir.join("server.pem").display()
            )
        } else {
            "    insecure-mode: true\n".to_owned()
        };
        let config = dir.join("buildgrid.yml");
        std::fs::write(
            &config,
            format!(
                "server:\n\
                 \x20 - !channel\n\
                 \x20   address: \"127.0.0.1:{port}\"\n\
                 {channel}\
                 authorization:\n\
                 \x20 method: none\n\
                 storages:\n\
                 \x20 - !disk-storage &cas\n\
                 \x20   path: {cas}\n\
                 caches:\n\
                 \x20 - !lru-action-cache &ac\n\
                 \x20   storage: *cas\n\
                 \x20   max-cached-refs: 100000\n\
                 \x20   allow-updates: true\n\
                 \x20   cache-failed-actions: false\n\
                 instances:\n\
                 \x20 - name: ''\n\
                 \x20   services:\n\
                 \x20     - !action-cache\n\
                 \x20       cache: *ac\n\
                 \x20     - !cas\n\
                 \x20       storage: *cas\n\
                 \x20     - !bytestream\n\
                 \x20       storage: *cas\n",
                cas = dir.join("cas").display()
            ),
        )
        .expect("write the BuildGrid config");
        let log = std::fs::File::create(dir.join("bgd.log")).expect("make the server log");
        let child = Command::new(&bgd)
            .args(["server", "start"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{}`: {e}", bgd.display()));
        let mut server = BuildGrid {
            child: Some(child),
            port,
            dir: dir.to_owned(),
            tls,
        };
        server.wait_ready(Duration::from_secs(90));
        server
    }

    fn wait_ready(&mut self, limit: Duration) {
        let log = self.dir.join("bgd.log");
        if let Some(child) = self.child.as_mut() {
            wait_listening(child, self.port, &log, limit);
        }
    }

    /// `grpc://127.0.0.1:PORT` (`grpcs://` for a TLS server).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "grpcs" } else { "grpc" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The directory of the disk CAS (one file per blob, named by hash).
    pub fn cas_dir(&self) -> PathBuf {
        self.dir.join("cas")
    }

    /// The server's output so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = std::fs::File::open(self.dir.join("bgd.log")) {
            let _ = file.read_to_string(&mut text);
        }
        text
    }

    /// Kills the server now (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }
}

/// Waits until something accepts connections on loopback `port`; panics
/// with the server's log (`log`) if `child` exits first or `limit` passes.
pub(crate) fn wait_listening(child: &mut Child, port: u16, log: &Path, limit: Duration) {
    let started = Instant::now();
    let text = || std::fs::read_to_string(log).unwrap_or_default();
    loop {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("BuildGrid exited ({status}) before serving:\n{}", text());
        }
        assert!(
            started.elapsed() < limit,
            "BuildGrid did not listen on port {port} within {limit:?}:\n{}",
            text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Drop for BuildGrid {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A CA (`ca.pem`) and a server certificate for 127.0.0.1 it signed
/// (`server.pem`, `server.key`), P-256, valid two days, in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl (scripts/install-deps.sh installs it)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
    ];
    let mut ca = vec!["req", "-x509", "-days", "2", "-subj", "/CN=replay test CA"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
    openssl(&ca);
    let mut csr = vec!["req", "-subj", "/CN=127.0.0.1"];
    csr.extend(ec);
    csr.extend(["-keyout", "server.key", "-out", "server.csr"]);
    openssl(&csr);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write the certificate's extensions");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}
