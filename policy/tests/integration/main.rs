//! The policy crate's integration tests: one binary, one module per area.

mod support;

mod corpus;
mod shipped;
