//! The policy crate's integration tests: one binary, one module per area.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

mod support;

mod api;
mod binary;
mod confinement;
mod corpus;
mod dirs;
mod exec;
mod linker;
mod load;
mod messages;
mod shipped;
mod spill;
