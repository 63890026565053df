//! A tool with a known memory footprint, for testing measurement and
//! limits: `memtouch --mib=N [--children=K] [--hold-ms=T] [--out=FILE]
//! [--exit=C] [--crash=1] [--escape=PORT]`.
//!
//! It allocates N MiB and writes to every page, so all of it is resident,
//! holds it for T milliseconds, and exits with C. With K children, it forks
//! K processes that each do the same at the same time, and waits for them;
//! the parent itself touches nothing more. With `--out=FILE` it writes a
//! small file first (half of it, then the rest after holding), so a tool
//! stopped midway leaves a partial output behind. With `--escape=PORT` it
//! first tries what a sandboxed tool must not do, and prints how each try
//! ended: create a file outside the work root (`/var/tmp/memtouch-escape-
//! PID`, PID its own), read `/etc/hostname`, and connect to
//! `127.0.0.1:PORT`.
//!
//! `--list=DIR` writes the names DIR holds into the output instead.
//! For the reliability tests: `--copy=FILE` reads FILE first and writes
//! its contents into the output at the end; `--gate=NAME` prints
//! `gate: waiting` and waits (up to two minutes) until a file NAME exists
//! in its working directory, so a test can act while the tool surely
//! runs; `--fill=KIB` writes that many KiB more into the output and exits
//! 96 if a write fails (a full disk).

use std::process::ExitCode;
use std::time::Duration;

const PAGE: usize = 4096;

fn flag(args: &[String], name: &str) -> Option<u64> {
    args.iter()
        .find_map(|arg| arg.strip_prefix(name))
        .and_then(|value| value.parse().ok())
}

/// Allocates and touches `mib` MiB, then holds it for `hold`.
fn touch(mib: u64, hold: Duration) {
    let bytes = (mib as usize) << 20;
    // Zeroed pages are mapped lazily: only the writes below make them
    // resident.
    let mut buffer = vec![0u8; bytes];
    for page in buffer.chunks_mut(PAGE) {
        page.fill(1);
    }
    std::hint::black_box(&buffer);
    std::thread::sleep(hold);
    drop(buffer);
}

/// Tries to leave the sandbox; prints `write: ...` and `connect: ...`.
fn escape(port: u16) {
    let path = format!("/var/tmp/memtouch-escape-{}", std::process::id());
    match std::fs::File::create(&path) {
        Ok(_) => println!("write: done {path}"),
        Err(error) => println!("write: denied {path} ({error})"),
    }
    match std::fs::read("/etc/hostname") {
        Ok(_) => println!("read: done /etc/hostname"),
        Err(error) => println!("read: denied /etc/hostname ({error})"),
    }
    match std::net::TcpStream::connect(("127.0.0.1", port)) {
        Ok(_) => println!("connect: done"),
        Err(error) => println!("connect: denied ({error})"),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(port) = flag(&args, "--escape=") {
        escape(port as u16);
    }
    let mib = flag(&args, "--mib=").unwrap_or(0);
    let children = flag(&args, "--children=").unwrap_or(0);
    let hold = Duration::from_millis(flag(&args, "--hold-ms=").unwrap_or(0));
    let code = flag(&args, "--exit=").unwrap_or(0) as u8;
    let crash = flag(&args, "--crash=") == Some(1);
    let out = args.iter().find_map(|arg| arg.strip_prefix("--out="));
    let mut copied = match args.iter().find_map(|arg| arg.strip_prefix("--copy=")) {
        Some(input) => match std::fs::read_to_string(input) {
            Ok(text) => Some(text),
            Err(_) => return ExitCode::from(95),
        },
        None => None,
    };
    // `--list=DIR`: the output says which names DIR holds (what a
    // toolchain does when it picks the highest version it finds).
    if let Some(dir) = args.iter().find_map(|arg| arg.strip_prefix("--list=")) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return ExitCode::from(94);
        };
        let mut names: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        copied = Some(format!("{}\n", names.join(" ")));
    }
    let mut file = match out.map(std::fs::File::create).transpose() {
        Ok(file) => file,
        Err(_) => return ExitCode::from(98),
    };
    if let Some(file) = &mut file {
        use std::io::Write;
        let _ = file.write_all(b"partial ");
        if let Some(kib) = flag(&args, "--fill=") {
            for _ in 0..kib {
                if let Err(error) = file.write_all(&[b'f'; 1024]).and_then(|()| file.flush()) {
                    eprintln!("memtouch: cannot write the output: {error}");
                    return ExitCode::from(96);
                }
            }
        }
    }
    if let Some(gate) = args.iter().find_map(|arg| arg.strip_prefix("--gate=")) {
        use std::io::Write;
        println!("gate: waiting");
        let _ = std::io::stdout().flush();
        let mut waited = 0;
        while !std::path::Path::new(gate).exists() {
            std::thread::sleep(Duration::from_millis(10));
            waited += 1;
            if waited > 12_000 {
                return ExitCode::from(97);
            }
        }
    }
    let finish = |file: Option<std::fs::File>| {
        if let Some(mut file) = file {
            use std::io::Write;
            let _ = writeln!(file, "written by memtouch --mib={mib}");
            if let Some(text) = &copied {
                let _ = write!(file, "copied: {text}");
            }
        }
    };
    if children == 0 {
        touch(mib, hold);
        if crash {
            // Dies by SIGABRT, as a crashing tool does, its output half
            // written.
            std::process::abort();
        }
        finish(file);
        return ExitCode::from(code);
    }
    let mut pids = Vec::new();
    for _ in 0..children {
        // SAFETY: this program has one thread; the child only touches
        // memory, sleeps and exits.
        let pid = unsafe { libc::fork() };
        match pid {
            -1 => return ExitCode::from(99),
            0 => {
                touch(mib, hold);
                // SAFETY: leaves the child at once, without running the
                // parent's atexit handlers twice.
                unsafe { libc::_exit(0) };
            }
            pid => pids.push(pid),
        }
    }
    for pid in pids {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` outlives the call.
        unsafe { libc::waitpid(pid, &mut status, 0) };
    }
    finish(file);
    ExitCode::from(code)
}
