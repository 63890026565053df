//! End-to-end tests of `replay` and `aotc` together; the tests live in
//! `tests/e2e/`. The library holds what they share that is more than a
//! helper: a real BuildGrid server for the remote-cache tests, and a build
//! farm (PostgreSQL + BuildGrid execution) for the remote-execution tests.

pub mod buildgrid;
pub mod farm;
