//! The policy loader on any TOML: a policy or an error, never a panic.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
}

fuzz_target!(|data: &[u8]| {
    // The loader reads files (a policy `extends` others): each input is
    // one, next to a base it may extend.
    let dir = dir().path();
    let base = dir.join("base.toml");
    if !base.exists() {
        let _ = std::fs::write(
            &base,
            "[policy]\nname = \"base\"\nos = \"linux\"\n[tool.cc]\nprograms = [\"cc\"]\ndirs = [\"/usr/bin\"]\n[args.cc]\npositional = \"input\"\nflags = [{ name = \"-c\" }]\n",
        );
    }
    let path = dir.join("fuzz.toml");
    let Ok(mut file) = std::fs::File::create(&path) else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    drop(file);
    let _ = policy::Policy::load(&path);
});
