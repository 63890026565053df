//! The driver protocol, `aotc`'s side: with `REPLAY_LOG_FD` and
//! `REPLAY_ROOT` set, the log goes to that descriptor and files under that
//! root, and stdout/stderr stay the user's.

use std::fs::File;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Command;

use cmdlog::Limits;

/// A pipe whose ends a child inherits; (read, write).
fn inheritable_pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors `pipe` writes.
    let rc = unsafe { libc::pipe(fds.as_mut_ptr()) };
    assert_eq!(rc, 0, "pipe: {}", std::io::Error::last_os_error());
    // SAFETY: `pipe` succeeded, so both are fresh descriptors we alone own.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn hello() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/hello/hello.ll")
}

#[test]
fn driver_mode_writes_the_log_to_the_descriptor_and_files_under_the_root() {
    use std::os::fd::AsRawFd;
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).expect("mkdir");
    let (read, write) = inheritable_pipe();
    let child = Command::new(env!("CARGO_BIN_EXE_aotc"))
        .env("REPLAY_LOG_FD", write.as_raw_fd().to_string())
        .env("REPLAY_ROOT", &root)
        .current_dir(&root)
        .arg(hello())
        .args(["-o", "hello", "--partitions", "2"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn aotc");
    drop(write);
    let mut log = Vec::new();
    File::from(read).read_to_end(&mut log).expect("read pipe");
    let out = child.wait_with_output().expect("wait");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "the log must not go to stdout");

    let doc = cmdlog::read_document(log.as_slice(), Limits::default()).expect("log reads back");
    assert_eq!(doc.commands.len(), 5);
    assert_eq!(doc.commands[4].outputs, ["hello"]);
    assert!(root.join("hello.aotc/p0.bc").is_file());
    assert!(root.join("hello.aotc/p1.bc").is_file());
    assert!(
        !root.join("hello").exists(),
        "driver mode runs nothing itself"
    );
}

#[test]
fn driver_mode_refuses_a_closed_descriptor_or_a_missing_root() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_aotc"))
        .env("REPLAY_LOG_FD", "987")
        .env("REPLAY_ROOT", tmp.path())
        .current_dir(tmp.path())
        .arg(hello())
        .args(["-o", "hello"])
        .output()
        .expect("run aotc");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("descriptor 987, which is not open"), "{err}");
    assert!(err.contains("hint:"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_aotc"))
        .env("REPLAY_LOG_FD", "5")
        .env_remove("REPLAY_ROOT")
        .arg(hello())
        .args(["-o", "hello"])
        .output()
        .expect("run aotc");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("`REPLAY_ROOT` is not"), "{err}");

    let out = Command::new(env!("CARGO_BIN_EXE_aotc"))
        .env("REPLAY_LOG_FD", "1")
        .env("REPLAY_ROOT", tmp.path())
        .arg(hello())
        .args(["-o", "hello"])
        .output()
        .expect("run aotc");
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "stdout is never the log");
}
