//! Tests of the `replay` command line, run as a user runs it.

mod support;
mod usage;
