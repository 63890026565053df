//! The journal reader (`replay --resume`) on any bytes: garbage, binary or
//! text, is ignored line by line, never a panic and never an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

// The journal module, compiled here as it is in `replay` (whose crate
// would pull in the wasm plugin host): its `crate::ownfile` is this one.
#[allow(dead_code)]
#[path = "../../executor/src/ownfile.rs"]
mod ownfile;

#[allow(dead_code)]
#[path = "../../executor/src/journal.rs"]
mod journal;

fuzz_target!(|data: &[u8]| {
    let (entries, ignored) = journal::read_entries(data).expect("reading memory cannot fail");
    let lines = data.split(|&b| b == b'\n').count() as u64;
    assert!(entries.len() as u64 + ignored <= lines);
});
