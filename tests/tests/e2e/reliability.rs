//! `replay` under faults: inputs replaced while their command runs, two
//! runs on one root, planted links and FIFOs in place of its own files,
//! hostile logs in run mode, a full disk, a producer killed by a signal.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{bin, memtouch_policy, text};

/// Writes `log.json` under `root` with memtouch `commands`, each
/// `(args, inputs, outputs)`.
fn log(root: &Path, commands: &[(&[&str], &[&str], &[&str])]) -> PathBuf {
    crate::support::memtouch_commands(root, commands)
}

/// A fresh, canonical work root with the memtouch policy in it.
fn root() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let root = dir.path().canonicalize().expect("canonical root");
    memtouch_policy(&root, "");
    (dir, root)
}

/// `replay ARGS` in `root`, its stdout piped so the test can see a gated
/// tool start.
fn spawn(root: &Path, args: &[&str]) -> Child {
    crate::support::replay_command()
        .args(args)
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay")
}

/// Reads `child`'s stdout until the gated tool says it is waiting.
fn wait_for_gate(child: &mut Child) -> BufReader<std::process::ChildStdout> {
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).expect("read replay's stdout");
        if n == 0 {
            let _ = child.kill();
            let _ = child.wait();
            let mut stderr = String::new();
            if let Some(mut pipe) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
            }
            panic!("the tool never reached its gate: {stderr}");
        }
        if line.contains("gate: waiting") {
            return reader;
        }
    }
}

/// `child`'s output, killing it if it is still running after a minute: a
/// hang is the bug some tests guard against, and must fail, not block the
/// suite. (A failure, not a timing: nothing here takes near that long.)
fn finish(mut child: Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let output = child.wait_with_output().expect("output");
            panic!("replay hung: {}", text(&output.stderr));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `replay ARGS` in `root`, failing the test if it hangs.
fn replay(root: &Path, args: &[&str]) -> Output {
    let child = crate::support::replay_command()
        .args(args)
        .current_dir(root)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay");
    finish(child)
}

fn report_statuses(root: &Path) -> Vec<String> {
    crate::support::report(&root.join("r.json"))["commands"]
        .as_array()
        .expect("commands")
        .iter()
        .map(|c| c["status"].as_str().unwrap_or("?").to_owned())
        .collect()
}

/// The lines of `stderr` that are replay's own messages (`error:`,
/// `caused by:`, `hint:`, `warning:`), with `root` masked: what the
/// snapshots hold (tables carry timings).
fn messages(stderr: &str, root: &Path) -> String {
    stderr
        .lines()
        .filter(|l| {
            let l = l.trim_start();
            ["error:", "caused by:", "hint:", "warning:"]
                .iter()
                .any(|p| l.starts_with(p))
        })
        .map(|l| l.replace(&root.display().to_string(), "[ROOT]"))
        .collect::<Vec<_>>()
        .join("\n")
}

const RUN: &[&str] = &["--policy", "memtouch.toml", "log.json"];
const RESUME: &[&str] = &[
    "--policy",
    "memtouch.toml",
    "--resume",
    "--report",
    "r.json",
    "log.json",
];

#[test]
fn an_input_replaced_while_its_command_runs_is_not_journaled_and_resume_rebuilds() {
    // Regression: inputs were hashed after the tool exited, so an input
    // replaced while its command ran was journaled with its new hash, and
    // every later `--resume` kept the output built from the old one.
    let (_dir, root) = root();
    std::fs::write(root.join("in.txt"), "old\n").unwrap();
    log(
        &root,
        &[(
            &["--copy=in.txt", "--gate=go", "--out=out.txt"],
            &["in.txt"],
            &["out.txt"],
        )],
    );
    let mut child = spawn(&root, RUN);
    let _stdout = wait_for_gate(&mut child);
    // The tool has read `in.txt`; replace it, then let the tool finish.
    std::fs::write(root.join("in.new"), "new\n").unwrap();
    std::fs::rename(root.join("in.new"), root.join("in.txt")).unwrap();
    std::fs::write(root.join("go"), "").unwrap();
    let output = finish(child);
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the input `in.txt` changed while the tool ran"),
        "{stderr}"
    );
    assert!(!root.join("out.txt").exists(), "the stale output was kept");
    let row = stderr
        .lines()
        .find_map(|l| {
            l.split_once("ERROR (")
                .map(|(_, m)| m.trim_end_matches(')').to_owned())
        })
        .unwrap_or_default();
    insta::assert_snapshot!("input_changed_while_running", row);

    let resumed = replay(&root, RESUME);
    assert!(resumed.status.success(), "{}", text(&resumed.stderr));
    assert_eq!(report_statuses(&root), ["ok"]);
    let out = std::fs::read_to_string(root.join("out.txt")).unwrap();
    assert!(out.contains("copied: new"), "{out}");
    // And now it is done.
    let again = replay(&root, RESUME);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(report_statuses(&root), ["resumed"]);
}

#[test]
fn a_second_run_on_a_root_stops_at_once_naming_the_first() {
    // Regression: two runs on one root interleaved; one's clean-up removed
    // the other's temporaries, and the journal got a torn line.
    let (_dir, root) = root();
    log(
        &root,
        &[
            (&["--gate=go", "--out=a.txt"], &[], &["a.txt"]),
            (&["--out=b.txt"], &[], &["b.txt"]),
        ],
    );
    let mut first = spawn(&root, RUN);
    let _stdout = wait_for_gate(&mut first);
    for args in [RUN, RESUME] {
        // The second run would block at the same gate if it ran: it must
        // stop before, at once.
        let second = replay(&root, args);
        let stderr = text(&second.stderr);
        assert_eq!(second.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "another replay run (pid {}) is using the work root",
                first.id()
            )),
            "{stderr}"
        );
        assert!(
            stderr.contains("one work root takes one run at a time"),
            "{stderr}"
        );
        let pid = first.id().to_string();
        insta::assert_snapshot!(
            "root_locked",
            messages(&stderr, &root).replace(&pid, "[PID]")
        );
    }
    std::fs::write(root.join("go"), "").unwrap();
    let output = finish(first);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let journal = std::fs::read_to_string(root.join("log.json.journal")).unwrap();
    let ids: Vec<u64> = journal
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).expect("a whole entry")["id"]
                .as_u64()
                .expect("an id")
        })
        .collect();
    assert_eq!(ids, [1, 2], "{journal}");
}

/// A root with one simple command, and a file outside it.
fn planted() -> (tempfile::TempDir, PathBuf, tempfile::TempDir, PathBuf) {
    let (dir, root) = root();
    log(&root, &[(&["--out=a.txt"], &[], &["a.txt"])]);
    let elsewhere = tempfile::tempdir().unwrap();
    let outside = elsewhere.path().join("precious.txt");
    std::fs::write(&outside, "precious\n").unwrap();
    (dir, root, elsewhere, outside)
}

#[test]
fn a_hard_linked_journal_is_never_written_through() {
    // Regression (issue 13): a planted `log.json.journal` hard link to a
    // file outside the root was truncated and rewritten by replay.
    let (_dir, root, _elsewhere, outside) = planted();
    let journal = root.join("log.json.journal");
    std::fs::hard_link(&outside, &journal).unwrap();
    let resumed = replay(&root, RESUME);
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it has 2 hard links"), "{stderr}");
    assert!(!stderr.contains("--resume"), "{stderr}");
    insta::assert_snapshot!("journal_hard_link", messages(&stderr, &root));
    assert!(!root.join("a.txt").exists(), "nothing runs");
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");

    let fresh = replay(&root, RUN);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    assert!(std::fs::read_to_string(&journal)
        .unwrap()
        .contains("\"id\":1"));
}

#[test]
fn a_symlinked_journal_is_refused_on_resume_and_replaced_on_a_fresh_run() {
    let (_dir, root, _elsewhere, outside) = planted();
    let journal = root.join("log.json.journal");
    std::os::unix::fs::symlink(&outside, &journal).unwrap();
    let resumed = replay(&root, RESUME);
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("it is a symbolic link"), "{stderr}");
    insta::assert_snapshot!("journal_symlink", messages(&stderr, &root));
    let fresh = replay(&root, RUN);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    assert!(std::fs::symlink_metadata(&journal).unwrap().is_file());
}

fn mkfifo(path: &Path) {
    let status = Command::new("mkfifo").arg(path).status().expect("mkfifo");
    assert!(status.success());
}

#[test]
fn a_fifo_journal_is_refused_without_hanging() {
    // Regression: a FIFO as the journal hung replay in `open()`, and
    // SIGTERM did not stop it.
    let (_dir, root) = root();
    log(&root, &[(&["--out=a.txt"], &[], &["a.txt"])]);
    mkfifo(&root.join("log.json.journal"));
    let resumed = replay(&root, RESUME);
    let stderr = text(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("it is a FIFO (named pipe), not a regular file"),
        "{stderr}"
    );
    insta::assert_snapshot!("journal_fifo", messages(&stderr, &root));
    assert!(!root.join("a.txt").exists(), "nothing runs");
    // A fresh run replaces the name with its own journal.
    let fresh = replay(&root, RUN);
    assert!(fresh.status.success(), "{}", text(&fresh.stderr));
}

/// A log under `dir` that `sh` can `cat` to `REPLAY_LOG_FD` as a producer.
fn producer_log(dir: &Path) -> PathBuf {
    let staged = tempfile::tempdir().unwrap();
    let source = log(staged.path(), &[(&["--out=a.txt"], &[], &["a.txt"])]);
    let path = dir.join("produced.json");
    std::fs::copy(source, &path).unwrap();
    path
}

#[test]
fn a_hard_linked_drive_log_is_never_written_through() {
    let (_dir, root, elsewhere, outside) = planted();
    let produced = producer_log(elsewhere.path());
    std::fs::hard_link(&outside, root.join("replay-drive.log.json")).unwrap();
    let policy = root.join("memtouch.toml");
    let script = format!("cat '{}' >&\"$REPLAY_LOG_FD\"", produced.display());
    let drive = replay(
        &root,
        &[
            "drive",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    assert!(drive.status.success(), "{}", text(&drive.stderr));
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious\n");
    assert!(root.join("a.txt").exists());
}

#[test]
fn a_producer_killed_by_a_signal_is_reported_with_it_and_exit_5() {
    let (_dir, root) = root();
    let policy = root.join("memtouch.toml");
    let drive = replay(
        &root,
        &[
            "drive",
            "--policy",
            policy.to_str().unwrap(),
            "--",
            "/bin/sh",
            "-c",
            "kill -KILL $$",
        ],
    );
    let stderr = text(&drive.stderr);
    assert_eq!(drive.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains("was killed by signal 9 (SIGKILL): nothing ran"),
        "{stderr}"
    );
    insta::assert_snapshot!("producer_killed", messages(&stderr, &root));
}

/// `replay ARGS` in `root` with a file-size limit: a run that copies more
/// than `bytes` of anything dies of SIGXFSZ.
fn replay_with_fsize(root: &Path, args: &[&str], bytes: u64) -> Output {
    let mut command = crate::support::replay_command();
    command
        .args(args)
        .current_dir(root)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: `setrlimit` is async-signal-safe and reads only the struct
    // on this closure's stack.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit {
                rlim_cur: bytes,
                rlim_max: bytes,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    finish(command.spawn().expect("start replay"))
}

#[test]
fn an_oversized_log_is_refused_in_run_mode_before_it_is_copied() {
    // Regression: the run's snapshot copied the whole log (a 6 GiB sparse
    // file: 28 s and 6 GiB of /tmp) before anything read its header. The
    // evidence here is the file-size limit: copying more than 1 MiB of the
    // log would kill replay with SIGXFSZ.
    let (_dir, root) = root();
    let path = root.join("log.json");
    let header = format!(
        r#"{{"format":"replay-log","version":1,"producer":{{"name":"e2e","version":"0"}},"platform":{{"os":"linux","arch":"{}"}},"commands":["#,
        std::env::consts::ARCH
    );
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.set_len(6 << 30).unwrap();
    drop(file);
    let checked = replay(&root, &["check", "--policy", "memtouch.toml", "log.json"]);
    let ran = replay_with_fsize(&root, RUN, 1 << 20);
    assert_eq!(ran.status.code(), Some(2), "{}", text(&ran.stderr));
    assert_eq!(checked.status.code(), Some(2), "{}", text(&checked.stderr));
    assert_eq!(text(&ran.stderr), text(&checked.stderr));
}

/// Writes `bytes` to the FIFO `path` once, from a thread (as a producer
/// would), and returns how many it wrote before the reader went away.
fn feed(path: &Path, bytes: Vec<u8>) -> std::thread::JoinHandle<usize> {
    let path = path.to_owned();
    std::thread::spawn(move || {
        let Ok(mut fifo) = std::fs::OpenOptions::new().write(true).open(&path) else {
            return 0;
        };
        let mut written = 0;
        for chunk in bytes.chunks(4096) {
            if fifo.write_all(chunk).is_err() {
                break;
            }
            written += chunk.len();
        }
        written
    })
}

#[test]
fn a_fifo_log_reads_whole_in_run_mode_as_in_check() {
    // Regression: a log read from a FIFO was called truncated in run mode
    // (the job opened and closed it once before the snapshot read it).
    let (_dir, root) = root();
    let text_log =
        std::fs::read_to_string(log(&root, &[(&["--out=a.txt"], &[], &["a.txt"])])).unwrap();
    // Over a megabyte: JSON whitespace inside the command.
    let padded = text_log.replacen(
        "{\"id\":1,",
        &format!("{{\"id\":1,{}", " ".repeat(2 << 20)),
        1,
    );
    let path = root.join("fifo.json");
    mkfifo(&path);
    for args in [
        &["check", "--policy", "memtouch.toml", "fifo.json"][..],
        &["--policy", "memtouch.toml", "fifo.json"][..],
    ] {
        let writer = feed(&path, padded.clone().into_bytes());
        let output = replay(&root, args);
        assert!(
            output.status.success(),
            "{args:?}: {}",
            text(&output.stderr)
        );
        assert_eq!(writer.join().unwrap(), padded.len(), "{args:?}");
    }
    assert!(root.join("a.txt").exists());
}

#[test]
fn sigterm_stops_replay_blocked_opening_a_fifo_log() {
    // A FIFO log with no writer blocks the open (as `cat fifo` does); a
    // signal must still stop replay.
    let (_dir, root) = root();
    let path = root.join("fifo.json");
    mkfifo(&path);
    let child = crate::support::replay_command()
        .args(["--policy", "memtouch.toml", "fifo.json"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start replay");
    // Wait until it is in `openat` (the FIFO's: nothing else it opens
    // blocks), as `/proc/PID/syscall` shows.
    #[cfg(target_arch = "x86_64")]
    const OPENAT: &str = "257";
    #[cfg(target_arch = "aarch64")]
    const OPENAT: &str = "56";
    let pid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
        if syscall.split_whitespace().next() == Some(OPENAT) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replay never blocked on the FIFO"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // SAFETY: signals our own child, by pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let output = finish(child);
    assert!(!output.status.success());
}

#[test]
fn a_full_disk_says_no_space_left_on_device_and_where() {
    // Regression: a full disk was reported only as "a tool failed". The
    // root is a 256 KiB tmpfs, mounted in a private mount namespace.
    let (_dir, root) = root();
    let mount = root.join("small");
    std::fs::create_dir(&mount).unwrap();
    let policy = root.join("memtouch.toml");
    let script = format!(
        "mount -t tmpfs -o size=256k tmpfs '{m}' || exit 77; cd '{m}' && cp '{l}' log.json && exec '{replay}' --policy '{p}' log.json",
        m = mount.display(),
        l = root.join("log.json").display(),
        replay = bin("replay").display(),
        p = policy.display(),
    );
    log(
        &root,
        &[(&["--fill=1024", "--out=big.txt"], &[], &["big.txt"])],
    );
    let output = Command::new("unshare")
        .env(crate::support::NO_CACHE.0, crate::support::NO_CACHE.1)
        .args(["--mount", "--map-root-user", "sh", "-c", &script])
        .output()
        .expect("run unshare");
    if output.status.code() == Some(77) {
        eprintln!(
            "skipped: cannot mount a tmpfs in a private mount namespace here: {}",
            text(&output.stderr)
        );
        return;
    }
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "no space left on device, in `{}`",
            mount.display()
        )),
        "{stderr}"
    );
    let row = stderr
        .lines()
        .find_map(|l| {
            l.split_once("ERROR (")
                .map(|(_, m)| m.trim_end_matches(')').to_owned())
        })
        .unwrap_or_default()
        .replace(&root.display().to_string(), "[ROOT]");
    insta::assert_snapshot!("disk_full", row);
}

#[test]
fn binary_and_text_garbage_in_the_journal_are_ignored_alike_with_a_warning() {
    // Regression: binary garbage stopped `--resume` with "not valid
    // UTF-8"; text garbage was ignored silently.
    let mut warnings = Vec::new();
    for garbage in [
        &b"\xff\xfe\x00\x9c binary\n"[..],
        &b"not a journal entry\n"[..],
    ] {
        let (_dir, root) = root();
        log(&root, &[(&["--out=a.txt"], &[], &["a.txt"])]);
        let first = replay(&root, RUN);
        assert!(first.status.success(), "{}", text(&first.stderr));
        std::fs::write(root.join("log.json.journal"), garbage).unwrap();
        let resumed = replay(&root, RESUME);
        let stderr = text(&resumed.stderr);
        assert!(resumed.status.success(), "{stderr}");
        assert_eq!(report_statuses(&root), ["ok"], "the command reruns");
        warnings.push(messages(&stderr, &root));
    }
    assert_eq!(warnings[0], warnings[1]);
    insta::assert_snapshot!("journal_garbage", warnings[0]);
}

#[test]
fn check_caps_what_a_hostile_log_makes_it_print() {
    // Regression: `check` printed every 10 KB argument of every finding
    // (880 MB for 2M commands).
    let (_dir, root) = root();
    let flag = format!("--bogus={}", "x".repeat(10_000));
    let args = [flag.as_str()];
    let commands: Vec<(&[&str], &[&str], &[&str])> =
        (0..25).map(|_| (&args[..], &[][..], &[][..])).collect();
    log(&root, &commands);
    let output = replay(&root, &["check", "--policy", "memtouch.toml", "log.json"]);
    assert_eq!(output.status.code(), Some(3), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.len() < 20_000, "{} bytes printed", stdout.len());
    // The 20 findings shown differ only in their command: one block.
    let refused: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("refused: command"))
        .collect();
    assert_eq!(refused.len(), 1, "{stdout}");
    assert!(
        refused[0].starts_with(
            "refused: commands 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, and 10 more (memtouch): "
        ),
        "{stdout}"
    );
    let tail: Vec<&str> = stdout
        .lines()
        .filter(|l| !l.starts_with("refused: command") && !l.trim_start().starts_with("hint:"))
        .collect();
    insta::assert_snapshot!("check_capped_tail", tail.join("\n"));
    let first = stdout.lines().next().unwrap_or_default();
    insta::assert_snapshot!("check_capped_first", first);
}
