//! The remote action cache as a run uses it (`--remote-cache`): what the
//! command line asks for, what the policy allows (it may forbid a remote
//! for its platform, and only a remote it names in
//! `remote_cache_writers` is written to), and the handle a run keeps.
//! A log can name no remote: only the command line and the policy do.
//!
//! A remote that fails (down, slow, garbage) is warned about once and
//! not asked again in the run; its failure never fails a command.

use std::path::PathBuf;
use std::time::Duration;

/// Whether a run may write the remote cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteMode {
    /// Look up only.
    Read,
    /// Look up, and upload what ran here.
    ReadWrite,
}

/// The remote cache the command line names. Its `Debug` shows the
/// headers' names, never their values (a bearer token).
#[derive(Clone, PartialEq, Eq)]
pub struct RemoteOptions {
    /// `grpc://HOST:PORT` or `grpcs://HOST:PORT`.
    pub url: String,
    /// The REAPI instance name.
    pub instance: String,
    /// gRPC metadata for every call (`authorization=Bearer ...`).
    pub headers: Vec<(String, String)>,
    /// PEM roots for `grpcs://` instead of the system's.
    pub ca: Option<PathBuf>,
    /// The bound on each remote operation.
    pub timeout: Duration,
    /// The mode asked for; `None`: read-write if the policy trusts the
    /// remote, else read. After [`RemoteOptions::judge`], always set.
    pub mode: Option<RemoteMode>,
}

impl std::fmt::Debug for RemoteOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let headers: Vec<String> = self
            .headers
            .iter()
            .map(|(name, _)| format!("{name}=<redacted>"))
            .collect();
        f.debug_struct("RemoteOptions")
            .field("url", &self.url)
            .field("instance", &self.instance)
            .field("headers", &headers)
            .field("ca", &self.ca)
            .field("timeout", &self.timeout)
            .field("mode", &self.mode)
            .finish()
    }
}

/// Why the policy does not let a run use the remote as asked.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RemoteRefused {
    /// `[policy] remote_cache = false`.
    #[error("the policy `{policy}` forbids a remote action cache (`remote_cache = false`); drop `--remote-cache`")]
    Forbidden {
        /// The policy file.
        policy: String,
    },
    /// Read-write asked for a remote the policy does not trust.
    #[error("`--remote-cache-mode read-write` needs the policy `{policy}` to trust `{url}` with results made here: add it to `[policy] remote_cache_writers`, or use `--remote-cache-mode read`")]
    Untrusted {
        /// The policy file.
        policy: String,
        /// The remote.
        url: String,
    },
    /// This `replay` was built without the client.
    #[error("this replay was built without the `remote-cache` feature; rebuild it with `--features remote-cache`, or drop `--remote-cache`")]
    NotBuilt,
}

impl RemoteOptions {
    /// The options as `policy` allows them: the mode settled (read-write
    /// only for a remote the policy names as a writer).
    pub fn judge(&self, policy: &policy::Policy) -> Result<RemoteOptions, RemoteRefused> {
        if !cfg!(feature = "remote-cache") {
            return Err(RemoteRefused::NotBuilt);
        }
        let name = policy.path().display().to_string();
        if policy.forbids_remote_cache() {
            return Err(RemoteRefused::Forbidden { policy: name });
        }
        let trusted = policy.trusts_remote_writer(&self.url);
        let mode = match self.mode {
            Some(RemoteMode::ReadWrite) if !trusted => {
                return Err(RemoteRefused::Untrusted {
                    policy: name,
                    url: self.url.clone(),
                })
            }
            Some(mode) => mode,
            None if trusted => RemoteMode::ReadWrite,
            None => RemoteMode::Read,
        };
        Ok(RemoteOptions {
            mode: Some(mode),
            ..self.clone()
        })
    }
}

impl RemoteOptions {
    /// The build farm's options as `policy` allows them: `None` when the
    /// policy keeps every command here (`[policy] remote_execution =
    /// false`), so each runs locally.
    pub fn judge_executor(
        &self,
        policy: &policy::Policy,
    ) -> Result<Option<RemoteOptions>, RemoteRefused> {
        if !cfg!(feature = "remote-cache") {
            return Err(RemoteRefused::NotBuilt);
        }
        if policy.forbids_remote_execution() {
            return Ok(None);
        }
        Ok(Some(RemoteOptions {
            mode: Some(RemoteMode::Read),
            ..self.clone()
        }))
    }
}

/// What became of a command sent to the build farm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Remotely {
    /// Its result is an entry of the local store now (look it up): it ran
    /// on `worker` (or the farm's cache had it), which measured `peak`.
    Stored {
        /// The worker's name, from the result's metadata.
        worker: String,
        /// The peak RSS the worker measured, in bytes.
        peak: Option<u64>,
        /// Whether the farm's action cache had it (no new execution).
        cached: bool,
    },
    /// The farm refused it (a worker's policy, a bad action): the command
    /// fails with this, and does not run here either.
    Refused(String),
    /// It runs here: the farm is down, or its result was not one to use
    /// (why).
    Local(Option<String>),
}

#[cfg(feature = "remote-cache")]
pub use client::RunRemote;

#[cfg(feature = "remote-cache")]
mod client {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    use replay_cache::remote::execution::ExecuteError;
    use replay_cache::remote::{Fetched, Mode, Remote, RemoteConfig, RemoteError};
    use replay_cache::{ActionKey, Digest, Entry, Store};

    use super::{RemoteMode, RemoteOptions, Remotely};

    /// A run's connection to the remote cache (or the build farm), and the
    /// one warning it gives when the remote fails.
    #[derive(Debug)]
    pub struct RunRemote {
        remote: Remote,
        warning: Mutex<Option<String>>,
        /// `the remote cache` or `the build farm`, for the warning.
        what: &'static str,
        /// The flag to drop, for the warning.
        flag: &'static str,
    }

    impl RunRemote {
        /// Sets up the client (no call is made yet).
        pub fn new(options: &RemoteOptions) -> Result<RunRemote, RemoteError> {
            let remote = Remote::new(RemoteConfig {
                url: options.url.clone(),
                instance: options.instance.clone(),
                headers: options.headers.clone(),
                ca: options.ca.clone(),
                timeout: options.timeout,
                mode: match options.mode {
                    Some(RemoteMode::ReadWrite) => Mode::ReadWrite,
                    _ => Mode::Read,
                },
            })?;
            Ok(RunRemote {
                remote,
                warning: Mutex::new(None),
                what: "the remote cache",
                flag: "--remote-cache",
            })
        }

        /// Sets up the client of the build farm (`--remote-executor`).
        pub fn farm(options: &RemoteOptions) -> Result<RunRemote, RemoteError> {
            let mut farm = RunRemote::new(&RemoteOptions {
                mode: Some(RemoteMode::Read),
                ..options.clone()
            })?;
            farm.what = "the build farm";
            farm.flag = "--remote-executor";
            Ok(farm)
        }

        /// Runs `key`'s action on the farm (uploading `files`, each input's
        /// digest and path here), waiting at most `wait`; a result is
        /// committed into `store`, under `stored_as` (the cache's key of
        /// which `key` may be the farm's hinted form,
        /// [`replay_cache::ActionKey::with_property`]), through the same
        /// checked path as a remote cache hit ([`RunRemote::fetch`]).
        #[allow(clippy::too_many_arguments)]
        pub fn execute(
            &self,
            store: &Store,
            key: &ActionKey,
            stored_as: &Digest,
            files: &[(Digest, PathBuf)],
            wait: std::time::Duration,
            expected: &[String],
            readable: &[PathBuf],
            root: &Path,
        ) -> Remotely {
            if self.remote.is_down() {
                return Remotely::Local(None);
            }
            let executed = match self.remote.execute(store, key, files, wait) {
                Ok(executed) => executed,
                Err(error) if error.is_refusal() => return Remotely::Refused(error.to_string()),
                Err(error @ (ExecuteError::Refused { .. } | ExecuteError::Operation { .. })) => {
                    // Not a judgement of the action (a worker that went
                    // away, a scheduler error): the farm failing.
                    self.failed(&RemoteError::Call {
                        call: "Execute",
                        status: error.to_string(),
                    });
                    return Remotely::Local(Some(format!("failed: {error}")));
                }
                Err(ExecuteError::Farm(error)) => {
                    self.failed(&error);
                    return Remotely::Local(Some(format!("failed: {error}")));
                }
                Err(error @ ExecuteError::Timeout { wait, .. }) => {
                    // A farm that does not finish (no worker takes the
                    // action) costs the run one wait, not one per command.
                    self.failed(&RemoteError::Timeout(wait));
                    return Remotely::Local(Some(format!("failed: {error}")));
                }
            };
            match self
                .fetch_as(store, &key.action, stored_as, expected, readable, root)
                .as_deref()
            {
                Some("hit") => {}
                said => {
                    return Remotely::Local(Some(format!(
                        "its result was not used ({})",
                        said.unwrap_or("the farm is down")
                    )))
                }
            }
            let metadata = executed.result.execution_metadata.as_ref();
            let peak = metadata.and_then(|m| {
                m.auxiliary_metadata
                    .iter()
                    .find(|a| a.type_url == replay_cache::remote::proto::METADATA_TYPE)
                    .and_then(|a| {
                        <replay_cache::remote::proto::ReplayMetadata as prost::Message>::decode(
                            a.value.as_slice(),
                        )
                        .ok()
                    })
                    .map(|r| r.peak_rss_bytes)
            });
            Remotely::Stored {
                worker: metadata.map(|m| m.worker.clone()).unwrap_or_default(),
                peak,
                cached: executed.cached,
            }
        }

        /// The remote's failure, once: the first time it fails.
        pub fn take_warning(&self) -> Option<String> {
            self.warning.lock().ok().and_then(|mut w| w.take())
        }

        fn failed(&self, error: &RemoteError) {
            if self.remote.take_down() {
                if let Ok(mut warning) = self.warning.lock() {
                    *warning = Some(format!(
                        "{} `{}` failed ({error}); this run goes on without it (check the server, `--remote-timeout`, or drop `{}`)",
                        self.what,
                        self.remote.config().url,
                        self.flag
                    ));
                }
            }
        }

        /// Asks the remote for `key`; on a usable hit, `store` has the
        /// entry (look it up again). `readable`: what the command's
        /// sandbox lets its tool read. A file expected absent may also be
        /// in the work root `root` (a header search) or beside a
        /// directory on the way to something readable (the loader's
        /// `/etc/ld.so.preload`), not elsewhere (`~/.ssh/id_ed25519`). A
        /// read set naming another file is refused unopened. Returns what
        /// the report says.
        pub fn fetch(
            &self,
            store: &Store,
            key: &Digest,
            expected: &[String],
            readable: &[PathBuf],
            root: &Path,
        ) -> Option<String> {
            self.fetch_as(store, key, key, expected, readable, root)
        }

        /// [`RunRemote::fetch`] of `key`'s result, kept under `stored_as`.
        fn fetch_as(
            &self,
            store: &Store,
            key: &Digest,
            stored_as: &Digest,
            expected: &[String],
            readable: &[PathBuf],
            root: &Path,
        ) -> Option<String> {
            if self.remote.is_down() {
                return None;
            }
            let may_read = |path: &Path, content: bool| {
                let under = |p: &Path| readable.iter().any(|r| p.starts_with(r));
                let beside = || {
                    path.parent()
                        .is_some_and(|dir| readable.iter().any(|r| r.starts_with(dir)))
                };
                under(path) || (!content && (path.starts_with(root) || beside()))
            };
            match self
                .remote
                .fetch_as(store, key, stored_as, expected, &may_read)
            {
                Ok(Fetched::Stored { .. }) => Some("hit".into()),
                Ok(Fetched::NotFound) => Some("miss".into()),
                Ok(Fetched::Refused(why)) => Some(format!("refused: {why}")),
                Err(error) => {
                    self.failed(&error);
                    Some(format!("failed: {error}"))
                }
            }
        }

        /// Uploads the stored `entry` (read-write mode only); what the
        /// report says.
        pub fn upload(&self, store: &Store, key: &ActionKey, entry: &Entry) -> Option<String> {
            if self.remote.is_down() || self.remote.config().mode != Mode::ReadWrite {
                return None;
            }
            match self.remote.upload(store, key, entry) {
                Ok(()) => Some("uploaded".into()),
                Err(error) => {
                    self.failed(&error);
                    Some(format!("upload failed: {error}"))
                }
            }
        }

        /// Adds this run's remote counts to `store`'s counters.
        pub fn save_counts(&self, store: &Store) {
            store.count_remote(&self.remote.counts());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: the derived `Debug` of the options printed
    /// `--remote-header` values (a bearer token) for whatever logged them.
    #[test]
    fn debug_output_names_headers_but_never_their_values() {
        let options = RemoteOptions {
            url: "grpcs://cache.example:443".into(),
            instance: String::new(),
            headers: vec![("authorization".into(), "Bearer s3cret-token".into())],
            ca: None,
            timeout: Duration::from_secs(5),
            mode: None,
        };
        let shown = format!("{options:?}");
        assert!(shown.contains("authorization=<redacted>"), "{shown}");
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
