//! Links `replay` with packed relative relocations (`-z
//! pack-relative-relocs`, DT_RELR) where this machine's linker and C
//! library both support them. A position-independent binary otherwise
//! carries a 750 KiB table of relocations that the loader reads at every
//! start, and those pages count in replay's own peak RSS (bench figure 8).
//! The probe links and runs a small C program with the flag: a linker that
//! does not know it ignores it, and a C library older than glibc 2.36
//! refuses to load the program, so the flag is passed only when both hold.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A program with relative relocations (pointers in initialized data), so
/// the linker emits DT_RELR and the loader must understand it.
const PROBE: &str = r#"
static int a, b;
static int *table[] = { &a, &b };
int main(void) { return table[0] == table[1]; }
"#;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=CC");
    let (Ok(target), Ok(host)) = (std::env::var("TARGET"), std::env::var("HOST")) else {
        return;
    };
    // The probe must run where replay will: only a native Linux build.
    if target != host || !target.ends_with("-linux-gnu") {
        return;
    }
    if probe() {
        println!("cargo:rustc-link-arg-bins=-Wl,-z,pack-relative-relocs");
    }
}

/// Whether a program linked with the flag builds and runs here.
fn probe() -> bool {
    let Some(out) = std::env::var_os("OUT_DIR").map(PathBuf::from) else {
        return false;
    };
    let source = out.join("relr-probe.c");
    let program = out.join("relr-probe");
    if std::fs::write(&source, PROBE).is_err() {
        return false;
    }
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let linked = Command::new(cc)
        .args(["-fPIE", "-pie", "-Wl,-z,pack-relative-relocs", "-o"])
        .arg(&program)
        .arg(&source)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    linked
        && Command::new(&program)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
}
