//! Measures a streaming check of a generated log: `cargo run --release -p
//! policy --example check_bench -- [COMMANDS]` (default 100,000). Prints
//! wall time and this process's peak RSS. A measurement, not a test.

use std::io::Write;
use std::ops::ControlFlow;
use std::path::Path;
use std::time::Instant;

use cmdlog::LogReader;
use policy::{CheckOptions, Checker, Mode, Policy, Status};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(100_000);
    let root = tempfile::tempdir()?;
    let log_path = root.path().join("log.json");
    {
        let mut out = std::io::BufWriter::new(std::fs::File::create(&log_path)?);
        write!(
            out,
            r#"{{"format":"replay-log","version":1,"producer":{{"name":"bench","version":"0"}},"platform":{{"os":"linux","arch":"x86_64"}},"commands":["#
        )?;
        for id in 1..=n {
            let p = (id - 1) / 2;
            if id > 1 {
                write!(out, ",")?;
            }
            if id % 2 == 1 {
                write!(
                    out,
                    r#"{{"id":{id},"tool":"opt","program":"opt","args":["-O2","p{p}.bc","-o","p{p}.opt.bc"],"cwd":".","env":{{}},"inputs":["p{p}.bc"],"outputs":["p{p}.opt.bc"]}}"#
                )?;
            } else {
                write!(
                    out,
                    r#"{{"id":{id},"tool":"llc","program":"llc","args":["-O2","-filetype=obj","-mtriple=x86_64-unknown-linux-gnu","-relocation-model=pic","p{p}.opt.bc","-o","p{p}.o"],"cwd":".","env":{{}},"inputs":["p{p}.opt.bc"],"outputs":["p{p}.o"]}}"#
                )?;
            }
        }
        write!(out, "]}}")?;
    }
    let start = Instant::now();
    let read_only = LogReader::new(std::fs::File::open(&log_path)?)
        .read(&mut |_c: cmdlog::Command| ControlFlow::Continue(()))?;
    println!(
        "reading alone: {} commands, {:.3} s",
        read_only.commands,
        start.elapsed().as_secs_f64()
    );
    let policy =
        Policy::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/linux.toml"))?;
    let start = Instant::now();
    let options = CheckOptions {
        mode: Mode::Audit,
        strict: false,
        protected: vec![log_path.clone()],
    };
    let mut checker = Checker::new(&policy, root.path(), options)?;
    let mut refused = 0u64;
    let summary =
        LogReader::new(std::fs::File::open(&log_path)?).read(&mut |c: cmdlog::Command| {
            if checker.command(&c).status == Status::Refused {
                refused += 1;
            }
            ControlFlow::Continue(())
        })?;
    checker.finish(&mut |_, _| {});
    let elapsed = start.elapsed();
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_owned)
        })
        .unwrap_or_default();
    println!(
        "{} commands ({} bytes), {refused} refused, {:.3} s, peak {}",
        summary.commands,
        summary.bytes,
        elapsed.as_secs_f64(),
        hwm.trim_start_matches("VmHWM:").trim()
    );
    Ok(())
}
