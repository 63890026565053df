//! Tests of the `replay` command line, run as a user runs it.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

mod support;
mod usage;
