//! The guest kit for `replay` policy plugins written in Rust.
//!
//! A plugin is a `wasm32-wasip1` program that reads one [`Request`] (every
//! command of a log) on stdin and writes one verdict per command on stdout
//! (ABI v1, `docs/plugin-abi-v1.md` in the `replay` repository). With this
//! kit it is a few lines:
//!
//! ```no_run
//! use replay_plugin_kit::{run, Verdict};
//!
//! fn main() {
//!     run(|request| {
//!         request
//!             .commands
//!             .iter()
//!             .map(|command| {
//!                 if command.args.iter().any(|arg| arg == "-O0") {
//!                     Verdict::deny(command.id, "`-O0` is not allowed in release logs")
//!                 } else {
//!                     Verdict::allow(command.id)
//!                 }
//!             })
//!             .collect()
//!     })
//! }
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip1` and name the
//! `.wasm` in a policy's `[[plugin]]` entry. The plugin sees no files, no
//! environment and no clock; whatever it needs comes in the request's
//! `config` (the policy entry's `config` table), which [`Request::config`]
//! turns into your own type. A panic, a non-zero exit or a missing verdict
//! denies every command, so a plugin cannot fail open.

use std::fmt::Display;
use std::io::{self, Read, Write};

pub use cmdlog::{Command, Os, Platform, ToolKind};
/// The ABI types, defined once for the host and every plugin.
pub use replay_plugin_abi::{Request, Response, Verdict, ABI_VERSION};
use serde::Deserialize;

/// Why a plugin could not answer; [`run`] prints it and exits non-zero.
#[derive(Debug)]
pub enum KitError {
    /// stdin could not be read or stdout written.
    Io(io::Error),
    /// stdin is not an ABI v1 request.
    Request(serde_json::Error),
    /// The request is for another ABI version.
    Abi(u32),
    /// The plugin's own logic failed (a bad config, say).
    Plugin(String),
}

impl Display for KitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KitError::Io(error) => write!(f, "cannot talk to the host: {error}"),
            KitError::Request(error) => write!(f, "the request is not ABI v1 JSON: {error}"),
            KitError::Abi(abi) => write!(
                f,
                "the host speaks plugin ABI {abi}; this plugin speaks {ABI_VERSION}"
            ),
            KitError::Plugin(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for KitError {}

/// The whole plugin: reads the request from stdin, calls `decide`, writes
/// its verdicts to stdout and exits 0; on any error prints it to stderr and
/// exits 1 (which denies every command).
pub fn run<F>(decide: F) -> !
where
    F: FnOnce(&Request) -> Vec<Verdict>,
{
    try_run(|request| Ok::<_, String>(decide(request)))
}

/// Like [`run`], for a `decide` that can fail (a config it cannot use): an
/// `Err` is printed to stderr and denies every command.
pub fn try_run<F, E>(decide: F) -> !
where
    F: FnOnce(&Request) -> Result<Vec<Verdict>, E>,
    E: Display,
{
    let mut input = Vec::new();
    let answered = io::stdin()
        .lock()
        .read_to_end(&mut input)
        .map_err(KitError::Io)
        .and_then(|_| answer(&input, decide))
        .and_then(|output| {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(&output)
                .and_then(|()| stdout.flush())
                .map_err(KitError::Io)
        });
    match answered {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            let _ = writeln!(io::stderr(), "error: {error}");
            std::process::exit(1)
        }
    }
}

/// The pure core of [`try_run`]: the response bytes for the request bytes
/// `input`. Use it to unit-test a plugin on the host.
pub fn answer<F, E>(input: &[u8], decide: F) -> Result<Vec<u8>, KitError>
where
    F: FnOnce(&Request) -> Result<Vec<Verdict>, E>,
    E: Display,
{
    // Read the version first, so a future ABI is refused for what it is
    // rather than for a field this version does not know.
    #[derive(Deserialize)]
    struct Version {
        abi: u32,
    }
    let version: Version = serde_json::from_slice(input).map_err(KitError::Request)?;
    if version.abi != ABI_VERSION {
        return Err(KitError::Abi(version.abi));
    }
    let request: Request = serde_json::from_slice(input).map_err(KitError::Request)?;
    let verdicts = decide(&request).map_err(|error| KitError::Plugin(error.to_string()))?;
    serde_json::to_vec(&Response { verdicts }).map_err(KitError::Request)
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &str = r#"{"abi":1,"platform":{"os":"linux","arch":"x86_64"},
        "config":{"level":2},
        "commands":[{"id":1,"tool":"opt","program":"opt","args":["-O0"],"cwd":".",
                     "env":{},"inputs":[],"outputs":["a.bc"]}]}"#;

    #[test]
    fn answer_writes_the_verdicts_as_a_response() {
        let output = answer(REQUEST.as_bytes(), |request| {
            Ok::<_, String>(vec![Verdict::deny(request.commands[0].id, "no")])
        })
        .unwrap();
        assert_eq!(
            String::from_utf8(output).unwrap(),
            r#"{"verdicts":[{"id":1,"allow":false,"reason":"no"}]}"#
        );
    }

    #[test]
    fn config_becomes_the_plugins_type() {
        #[derive(Deserialize)]
        struct Config {
            level: u8,
        }
        let request: Request = serde_json::from_str(REQUEST).unwrap();
        assert_eq!(request.config::<Config>().unwrap().level, 2);
    }

    #[test]
    fn other_abi_versions_are_refused() {
        let future = REQUEST.replace(r#""abi":1"#, r#""abi":2,"extra":true"#);
        let error = answer(future.as_bytes(), |_| Ok::<_, String>(vec![])).unwrap_err();
        assert!(matches!(error, KitError::Abi(2)), "{error}");
    }

    #[test]
    fn plugin_errors_are_reported() {
        let error =
            answer(REQUEST.as_bytes(), |_| Err::<Vec<Verdict>, _>("bad config")).unwrap_err();
        assert_eq!(error.to_string(), "bad config");
    }
}
