//! Integration tests of the WebAssembly plugin host (`policy::plugin`):
//! hostile plugins written in WAT, the request a plugin sees, loading and
//! pinning, the module cache, the ABI schemas, and the example plugin
//! `policies/plugins/naming` end to end.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]
#![cfg(feature = "wasm")]

mod plugins {
    mod abi;
    mod cache;
    mod example;
    mod hostile;
    mod load;
    mod stream;
    mod support;
}
