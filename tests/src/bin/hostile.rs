//! A tool that does what its command does not declare, for testing the
//! sandbox apart from any flag grammar: `hostile [--out=FILE]
//! [--beside=NAME] [--write=PATH]... [--read=PATH]... [--exec=PATH]...`.
//!
//! It writes each `--out` FILE (a declared output), then a file NAME in
//! the same directory as the last `--out` (an undeclared side file, as a
//! `.pdb` or a map), then tries each action in order and prints one line
//! for each: `write PATH: done` or `write PATH: denied (ERROR)`, the same
//! for `read` and `exec` (which runs PATH and waits for it). It exits 1 if
//! any action was denied, 0 otherwise.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut denied = false;
    let mut last_out = None;
    let mut report = |what: &str, path: &str, result: std::io::Result<()>| {
        match result {
            Ok(()) => println!("{what} {path}: done"),
            Err(error) => {
                println!("{what} {path}: denied ({error})");
                denied = true;
            }
        }
        let _ = std::io::stdout().flush();
    };
    for arg in &args {
        if let Some(path) = arg.strip_prefix("--out=") {
            report("out", path, std::fs::write(path, b"declared output\n"));
            last_out = Some(path.to_owned());
        } else if let Some(name) = arg.strip_prefix("--beside=") {
            let dir = last_out
                .as_deref()
                .and_then(|o| Path::new(o).parent())
                .unwrap_or(Path::new("."));
            let path = dir.join(name);
            report(
                "beside",
                name,
                std::fs::write(&path, b"undeclared side file\n"),
            );
        } else if let Some(path) = arg.strip_prefix("--write=") {
            let result = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(path)
                .and_then(|mut file| file.write_all(b"written by hostile\n"));
            report("write", path, result);
        } else if let Some(path) = arg.strip_prefix("--read=") {
            report("read", path, std::fs::read(path).map(|_| ()));
        } else if let Some(path) = arg.strip_prefix("--exec=") {
            let result = std::process::Command::new(path)
                .status()
                .and_then(|status| match status.code() {
                    Some(0) => Ok(()),
                    _ => Err(std::io::Error::other(format!("it ended with {status}"))),
                });
            report("exec", path, result);
        }
    }
    if denied {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
