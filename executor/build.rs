//! Links `replay` with packed relative relocations (`-z
//! pack-relative-relocs`, DT_RELR) where this machine's linker and C
//! library both support them. A position-independent binary otherwise
//! carries a 750 KiB table of relocations that the loader reads at every
//! start, and those pages count in replay's own peak RSS (bench figure 8).
//!
//! The probe builds and runs a small Rust program with the flag, through
//! the same `rustc`, flags and linker that link `replay`: a linker that does
//! not know the flag ignores it (and then nothing changes), and a C library
//! older than glibc 2.36 refuses to load the program, so the flag is passed
//! only when the result runs here. A binary built so needs glibc 2.36 or
//! later wherever it runs; `REPLAY_NO_RELR=1` builds without it (for
//! binaries shipped to older systems).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The flag, as rustc passes it to the linker.
const FLAG: &str = "-Wl,-z,pack-relative-relocs";

/// The glibc symbol version a binary with DT_RELR must require.
const VERSION_NEED: &[u8] = b"GLIBC_ABI_DT_RELR";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    for var in ["REPLAY_NO_RELR", "RUSTC_LINKER", "CARGO_ENCODED_RUSTFLAGS"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    if std::env::var_os("REPLAY_NO_RELR").is_some_and(|v| v == "1") {
        return;
    }
    let (Ok(target), Ok(host)) = (std::env::var("TARGET"), std::env::var("HOST")) else {
        return;
    };
    // The probe must run where replay will: only a native Linux build.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return;
    };
    if probe(&out, &target) {
        println!("cargo:rustc-link-arg-bins={FLAG}");
    }
}

/// Whether a Rust program linked with the flag builds and runs here.
fn probe(out: &Path, target: &str) -> bool {
    let source = out.join("relr_probe.rs");
    let program = out.join("relr_probe");
    if std::fs::write(&source, "fn main() { println!(\"relr\"); }\n").is_err() {
        return false;
    }
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut build = Command::new(rustc);
    build
        .current_dir(out)
        .arg("--cap-lints=allow")
        .arg("--target")
        .arg(target)
        .arg("--crate-type=bin")
        .arg("-o")
        .arg(&program)
        .arg(&source);
    // The flags replay itself is built with (a linker choice among them).
    if let Ok(flags) = std::env::var("CARGO_ENCODED_RUSTFLAGS") {
        build.args(flags.split('\x1f').filter(|f| !f.is_empty()));
    }
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        build.arg("-C").arg({
            let mut arg = std::ffi::OsString::from("linker=");
            arg.push(linker);
            arg
        });
    }
    build.arg("-C").arg(format!("link-arg={FLAG}"));
    let built = build
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    // The result must also say it needs a C library that knows DT_RELR:
    // linked against an older one, it would start and then crash wherever
    // that library runs, rather than be refused.
    built
        && std::fs::read(&program).is_ok_and(|bytes| {
            bytes
                .windows(VERSION_NEED.len())
                .any(|window| window == VERSION_NEED)
        })
        && Command::new(&program)
            .current_dir(out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}
