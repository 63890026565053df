//! `treepeak`: runs a program and samples the resident memory of its whole
//! process tree at a fixed interval, then writes the peaks as JSON. It is the
//! benchmark's independent referee for memory: it shares no code with
//! replay's own monitor. How the tree is walked, what is counted and what is
//! missed (processes that leave the tree, such as daemons, are lost) is in
//! `replay_bench_tools::proc_tree`.
//!
//! Exit status: the program's own exit code, or 128 + the signal number when
//! a signal killed it. 125 when treepeak itself fails (bad usage, no
//! `children` files, the report cannot be written), 126 when the program
//! cannot be executed and 127 when it is not found, as `env` and `timeout`
//! do.
//!
//! Like `time`, treepeak ignores SIGINT and SIGQUIT while the program runs,
//! so a Ctrl-C at the terminal stops the program but the report is still
//! written. The dispositions are changed only after the spawn, so the program
//! starts with the defaults.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};
use clap::Parser;
use replay_bench_tools::proc_tree::{self, Peaks, ProcInfo, Walker};
use serde::Serialize;

/// treepeak itself failed.
const EXIT_OWN_FAILURE: u8 = 125;
/// The program exists but could not be executed.
const EXIT_CANNOT_EXECUTE: u8 = 126;
/// The program was not found.
const EXIT_NOT_FOUND: u8 = 127;

/// Run a program and record the peak resident memory of its process tree.
#[derive(Debug, Parser)]
#[command(name = "treepeak")]
struct Args {
    /// Sampling interval in microseconds (0 samples back to back).
    #[arg(long, value_name = "US", default_value_t = 1000)]
    interval_us: u64,
    /// Where to write the JSON report.
    #[arg(long, value_name = "OUT.json")]
    json: PathBuf,
    /// The program to run, and its arguments.
    #[arg(last = true, required = true, value_name = "PROGRAM ARGS")]
    command: Vec<OsString>,
}

/// The JSON report. Sizes are bytes, times seconds unless the name says so.
#[derive(Debug, Serialize)]
struct Report<'a> {
    command: Vec<String>,
    /// The program's exit code, when it exited.
    exit_code: Option<i32>,
    /// The signal that killed the program, when one did.
    signal: Option<i32>,
    wall_s: f64,
    interval_us: u64,
    samples: u64,
    /// Mean time one walk of the tree took; compare with `interval_us`.
    mean_sample_us: f64,
    max_sample_us: f64,
    peak_tree_rss: u64,
    peak_process_rss: u64,
    peak_process_comm: &'a str,
    /// The tree in the sample where `peak_tree_rss` was seen.
    at_peak: &'a [ProcInfo],
    /// Largest RSS seen per process name.
    by_comm: &'a BTreeMap<String, u64>,
    /// Distinct pids seen in any sample.
    processes_seen: usize,
    /// `ru_maxrss` of the program, from `wait4`: the largest of the program
    /// and the descendants it waited for.
    child_maxrss: u64,
    /// `ru_maxrss` of `RUSAGE_CHILDREN` after reaping, for cross-checking.
    children_maxrss: u64,
    /// Reads of `/proc` that failed for a reason other than the process
    /// having gone (expected 0).
    read_errors: u64,
}

/// An error with the exit status it maps to.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl From<anyhow::Error> for Failure {
    fn from(error: anyhow::Error) -> Self {
        Self {
            code: EXIT_OWN_FAILURE,
            error,
        }
    }
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(e) => {
            let _ = e.print();
            // clap uses 2 for usage errors, which a program could return too.
            return ExitCode::from(if e.use_stderr() { EXIT_OWN_FAILURE } else { 0 });
        }
    };
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Failure { code, error }) => {
            eprintln!("treepeak: error: {error:#}");
            ExitCode::from(code)
        }
    }
}

fn run(args: &Args) -> Result<u8, Failure> {
    if !proc_tree::children_files_available() {
        return Err(anyhow!(
            "this kernel has no `/proc/PID/task/TID/children` files \
             (CONFIG_PROC_CHILDREN), so the process tree cannot be followed"
        )
        .into());
    }
    let program = &args.command[0];
    let started = Instant::now();
    let child = Command::new(program)
        .args(&args.command[1..])
        .spawn()
        .map_err(|e| Failure {
            code: if e.kind() == io::ErrorKind::NotFound {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            },
            error: anyhow!(e).context(format!("cannot run `{}`", program.to_string_lossy())),
        })?;
    // The child is reaped with wait4 below, never through `Child`.
    let pid = i32::try_from(child.id()).context("child pid out of range")?;
    ignore_interactive_signals();

    let interval = Duration::from_micros(args.interval_us);
    let mut walker = Walker::new();
    let mut peaks = Peaks::default();
    let mut sample = Vec::new();
    let (mut samples, mut walk_total, mut walk_max) = (0u64, Duration::ZERO, Duration::ZERO);
    let (status, child_usage) = loop {
        let t0 = Instant::now();
        sample.clear();
        walker.walk(pid, &mut sample);
        peaks.record(&sample);
        let took = t0.elapsed();
        samples += 1;
        walk_total += took;
        walk_max = walk_max.max(took);
        if let Some(done) = try_wait4(pid).context("waiting for the program")? {
            break done;
        }
        if let Some(rest) = interval.checked_sub(t0.elapsed()) {
            thread::sleep(rest);
        }
    };
    let wall = started.elapsed();
    let children_usage = getrusage_children().context("getrusage(RUSAGE_CHILDREN)")?;

    let (exit_code, signal, own_code) = if libc::WIFEXITED(status) {
        let code = libc::WEXITSTATUS(status);
        (Some(code), None, code as u8)
    } else if libc::WIFSIGNALED(status) {
        let sig = libc::WTERMSIG(status);
        (None, Some(sig), 128u8.saturating_add(sig as u8))
    } else {
        return Err(anyhow!("unexpected wait status {status:#x}").into());
    };
    if walker.unexpected_errors() > 0 {
        eprintln!(
            "treepeak: warning: {} reads of /proc failed unexpectedly; the first: {}",
            walker.unexpected_errors(),
            walker.first_unexpected().unwrap_or("?")
        );
    }

    let report = Report {
        command: args
            .command
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
        exit_code,
        signal,
        wall_s: wall.as_secs_f64(),
        interval_us: args.interval_us,
        samples,
        mean_sample_us: walk_total.as_secs_f64() * 1e6 / samples as f64,
        max_sample_us: walk_max.as_secs_f64() * 1e6,
        peak_tree_rss: peaks.peak_tree_rss,
        peak_process_rss: peaks.peak_process_rss,
        peak_process_comm: &peaks.peak_process_comm,
        at_peak: &peaks.at_peak,
        by_comm: &peaks.by_comm,
        processes_seen: peaks.processes_seen(),
        child_maxrss: maxrss_bytes(&child_usage),
        children_maxrss: maxrss_bytes(&children_usage),
        read_errors: walker.unexpected_errors(),
    };
    let mut text = serde_json::to_string_pretty(&report).context("serialising the report")?;
    text.push('\n');
    std::fs::write(&args.json, text)
        .with_context(|| format!("cannot write `{}`", args.json.display()))?;
    Ok(own_code)
}

/// Reaps `pid` if it has ended: its wait status and resource usage.
fn try_wait4(pid: i32) -> io::Result<Option<(i32, libc::rusage)>> {
    loop {
        let mut status = 0;
        // SAFETY: rusage is plain old data; all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: both pointers are valid for the call; `pid` is our own child,
        // not yet reaped, so the call cannot touch another process's status.
        let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if r == 0 {
            return Ok(None);
        }
        if r == pid {
            return Ok(Some((status, usage)));
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn getrusage_children() -> io::Result<libc::rusage> {
    // SAFETY: rusage is plain old data; all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: the pointer is valid for the call.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(usage)
}

/// Linux reports `ru_maxrss` in KiB.
fn maxrss_bytes(usage: &libc::rusage) -> u64 {
    u64::try_from(usage.ru_maxrss).unwrap_or(0) * 1024
}

fn ignore_interactive_signals() {
    for sig in [libc::SIGINT, libc::SIGQUIT] {
        // SAFETY: SIG_IGN installs no handler code, so there is nothing that
        // could run in signal context.
        unsafe { libc::signal(sig, libc::SIG_IGN) };
    }
}
