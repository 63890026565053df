//! End-to-end tests across the workspace's binaries, on real tools.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

mod cache;
mod cli;
mod confinement;
mod farm;
mod fileops;
mod flags;
mod footprint;
mod import;
mod layering;
mod limits;
mod measure;
mod parallel;
mod pipeline;
mod plugins;
mod programs;
mod reliability;
mod remote;
mod reports;
mod resume;
mod sandboxing;
mod session;
mod support;
