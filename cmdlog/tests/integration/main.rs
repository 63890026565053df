//! Integration tests of the `cmdlog` crate: reading, writing, the schema.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

mod errors;
mod roundtrip;
mod schema;
mod support;
