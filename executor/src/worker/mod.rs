//! `replay worker`: a build-farm worker that trusts neither the scheduler
//! nor the client (issue 22). For each lease of the Bots API it fetches the
//! `Action`, `Command` and input tree from the CAS, every blob verified,
//! checks the tree ([`tree`]), turns the `Command` into a one-command log
//! ([`lease_log`]) that the worker's own policy judges, and runs it on the
//! executor's run path.
//!
//! What is here so far: the tree checks, the log a lease becomes, and the
//! inputs written into a fresh lease root with the host checked. The
//! session loop that holds leases is not written yet (see the README's
//! "Remote execution" section for what is missing).

#[cfg(feature = "remote-cache")]
pub mod lease;
pub mod lease_log;
pub mod materialize;
pub mod tree;
