//! End-to-end tests across the workspace's binaries and crates.

mod layering;
