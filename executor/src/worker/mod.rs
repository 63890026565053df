//! `replay worker`: a build-farm worker that trusts neither the scheduler
//! nor the client (issue 22). For each lease of the Bots API it fetches the
//! `Action`, `Command` and input tree from the CAS, every blob verified,
//! checks the tree ([`tree`]), turns the `Command` into a one-command log
//! ([`lease_log`]) that the worker's own policy judges, and runs it on the
//! executor's run path.
//!
//! The session loop and the per-lease run are in [`serve`] (the binary
//! calls it for `replay worker`); each lease runs at the client's work
//! root, presented by a private mount namespace ([`present`]).

#[cfg(feature = "remote-cache")]
pub mod lease;
pub mod lease_log;
#[cfg(feature = "remote-cache")]
mod loaded;
pub mod materialize;
pub mod present;
#[cfg(feature = "remote-cache")]
pub mod serve;
pub mod tree;

/// The platform keys a farm matches an action to a worker on: a worker
/// advertises these on its first device, with the values a key made on
/// its own machine holds. (`root`, `program`, `tool` and `memory_kb` are
/// only carried, never matched: see the README.)
pub const MATCH_KEYS: [&str; 4] = ["OSFamily", "ISA", "replay", "cpu"];

/// The device properties this worker advertises: [`MATCH_KEYS`] with the
/// values the action cache's key puts in a `Command` made here, so an
/// action is placed only on a worker whose key it could have been.
pub fn advertised() -> Vec<(String, String)> {
    crate::cached::platform(std::path::Path::new("/"), std::path::Path::new("/"))
        .into_iter()
        .filter(|(key, _)| MATCH_KEYS.contains(&key.as_str()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_worker_advertises_each_match_key_once_as_a_key_made_here_holds_it() {
        let advertised = advertised();
        let keys: Vec<&str> = advertised.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, MATCH_KEYS);
        let key = crate::cached::platform(
            std::path::Path::new("/work/root"),
            std::path::Path::new("/usr/bin/cc"),
        );
        for pair in &advertised {
            assert!(
                key.contains(pair),
                "{pair:?} is not in a key made here: {key:?}"
            );
        }
    }
}
