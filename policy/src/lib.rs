//! Policies: which commands of a [`cmdlog`] log may run on a platform.
//!
//! This crate is the security boundary of `replay`: per-platform TOML
//! allowlists (binaries, argument grammars, paths, environment, limits),
//! and WebAssembly plugins that can only restrict further. It is filled in by
//! the policy and plugin issues; the foundation only fixes its place in the
//! workspace (`cmdlog` <- `policy` <- `replay`).
