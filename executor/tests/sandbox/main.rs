//! The sandbox on real processes: `launch` + `start` + wait on the real
//! `replay` binary (as `replay __sandbox-exec`), running real tools.
//!
//! Where this machine lacks a layer (see `replay::sandbox::probe`), a test
//! says so on stderr and checks the layer's `skipped` reason instead.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(target_os = "linux")]

mod support;

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::time::{Duration, Instant};

use replay::sandbox::{launch, probe, Layer, Rlimits, SandboxError, Want};
use support::{run, sh, Fixture};

#[test]
fn a_tool_writes_inside_its_work_root() {
    let fx = Fixture::new();
    let mut spec = sh(&fx, "echo hello > inside && cat inside");
    spec.landlock = support::want_landlock();
    let ran = run(&spec).expect("starts");
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(ran.stdout, "hello\n");
    assert_eq!(
        std::fs::read_to_string(fx.root().join("inside")).expect("written"),
        "hello\n"
    );
}

#[test]
fn landlock_denies_writes_and_reads_outside_the_work_root() {
    let fx = Fixture::new();
    let secret = fx.outside().join("secret");
    std::fs::write(&secret, "s3cret\n").expect("writes the secret");
    let target = fx.outside().join("escaped");
    let script = format!(
        "cat '{}'; echo escaped > '{}'; echo done",
        secret.display(),
        target.display()
    );

    // Control: without Landlock the same tool reads and writes outside.
    let mut open = sh(&fx, &script);
    open.landlock = Want::Off;
    let ran = run(&open).expect("starts");
    assert_eq!(ran.stdout, "s3cret\ndone\n", "{ran:?}");
    std::fs::remove_file(&target).expect("the control run wrote outside");

    let mut spec = sh(&fx, &script);
    spec.landlock = support::want_landlock();
    let ran = run(&spec).expect("starts");
    if !support::has_landlock() {
        support::lacks(Layer::Landlock, &ran.layers);
        return;
    }
    assert!(ran.layers.landlock.is_some(), "{:?}", ran.layers);
    assert_eq!(ran.stdout, "done\n", "{ran:?}");
    assert_eq!(
        ran.stderr.matches("Permission denied").count(),
        2,
        "{ran:?}"
    );
    assert!(!target.exists(), "the tool wrote outside its work root");
}

#[test]
fn a_tool_finds_no_network_in_its_namespace() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binds a local port");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("has an address").port();
    let fx = Fixture::new();
    let script = format!("exec 3<>/dev/tcp/127.0.0.1/{port} && echo connected");
    let bash = |network: Want| {
        let mut spec = support::spec(&fx, "/bin/bash", &["-c", &script]);
        spec.network = network;
        // Only the namespace is under test here, not Landlock's TCP rules
        // nor the seccomp filter's refusal of sockets.
        spec.landlock = Want::Off;
        spec.seccomp = false;
        spec
    };

    // Control: with the network left on, the same tool connects.
    let ran = run(&bash(Want::Off)).expect("starts");
    assert_eq!(ran.stdout, "connected\n", "{ran:?}");
    listener.accept().expect("the control run connected");

    let available = probe().network_namespace;
    let ran = run(&bash(if available {
        Want::Required
    } else {
        Want::IfAvailable
    }))
    .expect("starts");
    if !available {
        support::lacks(Layer::Network, &ran.layers);
        return;
    }
    assert!(ran.layers.network_namespace, "{:?}", ran.layers);
    assert!(!ran.status.success(), "{ran:?}");
    assert_eq!(ran.stdout, "", "{ran:?}");
    // A fresh namespace has only `lo`, and it is down.
    assert!(ran.stderr.contains("Network is unreachable"), "{ran:?}");
    match listener.accept() {
        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
        other => panic!("the sandboxed tool reached the host's loopback: {other:?}"),
    }
}

#[test]
fn landlock_denies_tcp_when_the_network_is_unwanted() {
    if !support::has_landlock() || probe().landlock.is_some_and(|l| !l.tcp_denied) {
        eprintln!("note: this machine's landlock cannot deny tcp (needs ABI 4); checked by unit tests only");
        return;
    }
    let fx = Fixture::new();
    let mut spec = support::spec(
        &fx,
        "/bin/bash",
        &["-c", "exec 3<>/dev/tcp/127.0.0.1/9 && echo connected"],
    );
    spec.landlock = Want::Required;
    spec.network = Want::IfAvailable;
    // Landlock alone: the seccomp filter would refuse the socket first.
    spec.seccomp = false;
    let ran = run(&spec).expect("starts");
    let layer = ran.layers.landlock.expect("landlock applied");
    assert!(layer.tcp_denied, "{:?}", ran.layers);
    assert!(!ran.status.success(), "{ran:?}");
    // Landlock's connect hook answers EACCES before any routing; a bare
    // network namespace would say "Network is unreachable".
    assert!(ran.stderr.contains("Permission denied"), "{ran:?}");
}

#[test]
fn rlimits_are_the_specs() {
    let fx = Fixture::new();
    let mut spec = support::spec(&fx, "/bin/cat", &["/proc/self/limits"]);
    spec.rlimits = Rlimits {
        core: 0,
        fsize: Some(1 << 20),
        nofile: Some(64),
    };
    let ran = run(&spec).expect("starts");
    assert!(ran.status.success(), "{ran:?}");
    assert!(ran.layers.rlimits);
    let limit = |name: &str| -> Vec<String> {
        let line = ran
            .stdout
            .lines()
            .find(|l| l.starts_with(name))
            .expect("limit listed");
        line[name.len()..]
            .split_whitespace()
            .take(2)
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(limit("Max core file size"), ["0", "0"]);
    assert_eq!(limit("Max file size"), ["1048576", "1048576"]);
    assert_eq!(limit("Max open files"), ["64", "64"]);
}

#[test]
fn rlimit_fsize_stops_a_big_write_with_sigxfsz() {
    let fx = Fixture::new();
    let mut spec = sh(&fx, "exec head -c 4194304 /dev/zero > big");
    spec.rlimits.fsize = Some(1 << 20);
    let ran = run(&spec).expect("starts");
    assert_eq!(ran.status.signal(), Some(libc::SIGXFSZ), "{ran:?}");
    let written = std::fs::metadata(fx.root().join("big"))
        .expect("partly written")
        .len();
    assert_eq!(written, 1 << 20);
}

#[test]
fn the_environment_is_exactly_the_specs() {
    let fx = Fixture::new();
    let mut spec = support::spec(&fx, "/usr/bin/env", &[]);
    spec.env = BTreeMap::from([
        ("A".to_owned(), "1".to_owned()),
        ("B".to_owned(), "two words".to_owned()),
    ]);
    let ran = run(&spec).expect("starts");
    assert!(ran.status.success(), "{ran:?}");
    assert_eq!(ran.stdout, "A=1\nB=two words\n");
}

/// The launcher's control socket (its stdin until the tool's exec) never
/// reaches the tool: the tool's stdin is `/dev/null`, and it holds no
/// descriptor but 0, 1 and 2 (the `ls` that lists them holds one more).
#[test]
fn the_tool_gets_dev_null_as_stdin_and_no_other_descriptor() {
    let fx = Fixture::new();
    let spec = support::sh(
        &fx,
        "readlink /proc/self/fd/0; ls /proc/self/fd | sort -n | tr '\\n' ' '",
    );
    let ran = run(&spec).expect("starts");
    assert!(ran.status.success(), "{ran:?}");
    let mut lines = ran.stdout.lines();
    assert_eq!(lines.next(), Some("/dev/null"), "{ran:?}");
    assert_eq!(lines.next(), Some("0 1 2 3 "), "{ran:?}");
}

#[test]
fn argv0_args_and_cwd_are_the_specs() {
    let fx = Fixture::new();
    std::fs::create_dir(fx.root().join("sub")).expect("mkdir");
    let mut spec = support::spec(
        &fx,
        "/bin/sh",
        &["-c", "echo \"$0\"; echo \"$1\"; pwd", "named-tool", "a b"],
    );
    spec.argv0 = "ignored-by-sh-c".into();
    spec.cwd = fx.root().join("sub");
    let ran = run(&spec).expect("starts");
    assert_eq!(
        ran.stdout,
        format!("named-tool\na b\n{}\n", fx.root().join("sub").display())
    );

    // argv[0] itself, as the kernel recorded it.
    let mut spec = support::spec(&fx, "/bin/cat", &["/proc/self/cmdline"]);
    spec.argv0 = "my-argv0".into();
    let ran = run(&spec).expect("starts");
    assert_eq!(ran.stdout, "my-argv0\0/proc/self/cmdline\0");
}

#[test]
fn no_new_privs_reaches_the_tool() {
    let fx = Fixture::new();
    let ran = run(&support::spec(&fx, "/bin/cat", &["/proc/self/status"])).expect("starts");
    assert!(ran.layers.no_new_privs);
    assert!(ran.stdout.lines().any(|l| l == "NoNewPrivs:\t1"), "{ran:?}");
}

#[test]
fn a_missing_program_is_a_typed_exec_error() {
    let fx = Fixture::new();
    let spec = support::spec(
        &fx,
        &fx.root().join("no-such-tool").display().to_string(),
        &[],
    );
    let (result, status, _) = support::run_raw(&spec);
    match result {
        Err(SandboxError::Exec { program, source }) => {
            assert_eq!(program, fx.root().join("no-such-tool"));
            assert_eq!(source.kind(), ErrorKind::NotFound, "{source}");
        }
        other => panic!("expected an exec error, got {other:?}"),
    }
    assert_eq!(status.code(), Some(127));
}

#[test]
fn a_missing_cwd_is_a_typed_setup_error() {
    let fx = Fixture::new();
    let mut spec = support::spec(&fx, "/bin/true", &[]);
    spec.cwd = fx.root().join("gone");
    let (result, status, _) = support::run_raw(&spec);
    match result {
        Err(SandboxError::Setup { step, source }) => {
            assert!(step.contains("working directory"), "{step}");
            assert_eq!(source.kind(), ErrorKind::NotFound);
        }
        other => panic!("expected a setup error, got {other:?}"),
    }
    assert_eq!(status.code(), Some(126));
}

// A machine without a required layer cannot be made on demand, so a stand-in
// child speaks the protocol and refuses; the decision itself is unit-tested
// in `sandbox::layers` through the kernel seam.
#[test]
fn a_refused_layer_reaches_the_parent_typed() {
    let fx = Fixture::new();
    let fake = fx.outside().join("fake-replay");
    std::fs::write(
        &fake,
        "#!/bin/sh\nIFS= read -r spec\n\
         echo '{\"refused\":{\"layer\":\"network\",\"reason\":\"simulated: no user namespaces\"}}' >&0\nexit 126\n",
    )
    .expect("writes the stand-in");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let spec = support::spec(&fx, "/bin/true", &[]);
    let mut launched = launch(
        &fake,
        &spec,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    )
    .expect("spawns");
    let error = launched.start().expect_err("refuses");
    assert_eq!(error.unavailable_layer(), Some(Layer::Network), "{error}");
    assert_eq!(
        error.to_string(),
        "required sandbox layer `network` is not available: simulated: no user namespaces"
    );
    assert_eq!(launched.child().wait().expect("reaps").code(), Some(126));
}

#[test]
fn a_binary_that_is_not_replay_gives_no_report() {
    let fx = Fixture::new();
    let spec = support::spec(&fx, "/bin/true", &[]);
    let mut launched = launch(
        "/bin/true".as_ref(),
        &spec,
        std::process::Stdio::null(),
        std::process::Stdio::null(),
    )
    .expect("spawns");
    let error = launched.start().expect_err("no report");
    assert!(
        matches!(
            error,
            SandboxError::NoReport { .. } | SandboxError::SendSpec { .. }
        ),
        "{error:?}"
    );
    launched.child().wait().expect("reaps");
}

#[test]
fn the_tool_dies_with_the_thread_that_launched_it() {
    let fx = Fixture::new();
    let sleeper = |death_signal: bool| {
        let mut spec = support::spec(&fx, "/bin/sleep", &["30"]);
        spec.parent_death_signal = death_signal;
        // The launching thread exits as soon as the tool runs.
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut launched =
                    launch(&support::replay(), &spec, io_null(), io_null()).expect("spawns");
                let layers = launched.start().expect("starts");
                (layers, launched.into_child())
            })
            .join()
            .expect("launcher thread")
        })
    };

    let (layers, mut child) = sleeper(true);
    assert!(layers.parent_death_signal);
    let status =
        wait_for(&mut child, Duration::from_secs(10)).expect("the tool died with its launcher");
    assert_eq!(status.signal(), Some(libc::SIGKILL));

    // Control: without the signal, the tool outlives its launcher.
    let (layers, mut child) = sleeper(false);
    assert!(!layers.parent_death_signal);
    let survived = wait_for(&mut child, Duration::from_millis(500)).is_none();
    child.kill().expect("kills");
    child.wait().expect("reaps");
    assert!(survived, "the tool died without a parent-death signal");
}

/// Set in the environment of the helper process of
/// `the_tool_dies_with_the_process_that_launched_it`.
const HELPER_ENV: &str = "REPLAY_SANDBOX_TEST_LAUNCHER_ROOT";

/// Not a test: the launcher process the test below kills itself under.
/// It launches `sleep`, prints the tool's pid, and exits the whole process.
#[test]
#[ignore = "helper process for the_tool_dies_with_the_process_that_launched_it"]
fn helper_launch_a_sleeper_then_exit() {
    let Some(root) = std::env::var_os(HELPER_ENV) else {
        return;
    };
    let root = std::path::PathBuf::from(root);
    let env = BTreeMap::from([("PATH".to_owned(), "/usr/bin:/bin".to_owned())]);
    let spec = replay::sandbox::SandboxSpec::new(
        "/bin/sleep",
        "sleep",
        vec!["30".into()],
        env,
        &root,
        &root,
    );
    let mut launched = launch(&support::replay(), &spec, io_null(), io_null()).expect("spawns");
    let layers = launched.start().expect("starts");
    assert!(layers.parent_death_signal);
    println!("tool-pid={}", launched.pid());
    std::process::exit(0);
}

// The whole `replay` process dying (not just the launching thread) must
// take the tool with it.
#[test]
fn the_tool_dies_with_the_process_that_launched_it() {
    let fx = Fixture::new();
    let output = std::process::Command::new(std::env::current_exe().expect("test binary"))
        .args([
            "--exact",
            "helper_launch_a_sleeper_then_exit",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, fx.root())
        .stdin(io_null())
        .output()
        .expect("runs the helper launcher");
    let stdout = String::from_utf8_lossy(&output.stdout);
    // libtest prints the helper's line after "test ... " on the same line.
    let pid: u32 = stdout
        .split("tool-pid=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("helper printed no pid: {output:?}"));
    // The launcher is gone; the orphaned tool must follow at once. A
    // zombie (never reaped by an init that does not reap) counts as dead.
    let stat = format!("/proc/{pid}/stat");
    let start = Instant::now();
    let dead = loop {
        match std::fs::read_to_string(&stat) {
            Err(_) => break true,
            Ok(s)
                if s.rsplit(')')
                    .next()
                    .is_some_and(|rest| rest.trim_start().starts_with(['Z', 'X'])) =>
            {
                break true
            }
            Ok(_) if start.elapsed() > Duration::from_secs(10) => break false,
            Ok(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    };
    if !dead {
        // SAFETY: kill touches no memory; `pid` is the orphan we started.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(dead, "the tool {pid} outlived the process that launched it");
}

#[test]
fn ptrace_can_attach_between_prepare_and_go() {
    use nix::sys::ptrace;
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::Pid;

    let fx = Fixture::new();
    let spec = support::spec(&fx, "/bin/true", &[]);
    let mut launched = launch(&support::replay(), &spec, io_null(), io_null()).expect("spawns");
    launched.prepare().expect("applies layers");
    let pid = Pid::from_raw(i32::try_from(launched.pid()).expect("pid fits"));
    ptrace::seize(pid, ptrace::Options::PTRACE_O_TRACEEXEC)
        .expect("PTRACE_SEIZE works on the sandbox child");
    launched.go().expect("execs");
    match waitpid(pid, None).expect("waits") {
        WaitStatus::PtraceEvent(_, _, event) => {
            assert_eq!(event, ptrace::Event::PTRACE_EVENT_EXEC as i32)
        }
        other => panic!("expected the exec event, got {other:?}"),
    }
    ptrace::detach(pid, None).expect("detaches");
    assert!(launched.child().wait().expect("reaps").success());
}

#[test]
fn probe_agrees_with_what_a_launch_applies() {
    let probed = probe();
    let fx = Fixture::new();
    let mut spec = support::spec(&fx, "/bin/true", &[]);
    spec.landlock = support::want_landlock();
    spec.network = if probed.network_namespace {
        Want::Required
    } else {
        Want::IfAvailable
    };
    let ran = run(&spec).expect("starts");
    assert_eq!(
        ran.layers.landlock.map(|l| l.abi),
        probed.landlock.map(|l| l.abi)
    );
    assert_eq!(ran.layers.network_namespace, probed.network_namespace);
    assert_eq!(ran.layers.user_namespace, probed.user_namespace);
    let skipped = |layers: &replay::sandbox::AppliedLayers| {
        layers.skipped.iter().map(|s| s.layer).collect::<Vec<_>>()
    };
    assert_eq!(skipped(&ran.layers), skipped(&probed));
    eprintln!("note: this machine's sandbox layers: {probed:?}");
}

fn io_null() -> std::process::Stdio {
    std::process::Stdio::null()
}

/// Waits up to `limit` for `child`; `None` if it is still running.
fn wait_for(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    while start.elapsed() < limit {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("cannot wait: {e}"),
        }
    }
    None
}
