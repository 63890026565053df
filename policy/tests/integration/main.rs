//! The policy crate's integration tests: one binary, one module per area.

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
