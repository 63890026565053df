//! The guest kit for `replay` policy plugins written in Rust.
//!
//! ABI v2 (streaming, `docs/plugin-abi-v2.md` in the `replay` repository)
//! is the one to use: the plugin reads a [`Header`] and then one command
//! at a time, and writes one verdict per command as it goes, so a log of
//! any length costs it only the state it chooses to keep. Implement
//! [`Plugin`] and name the type in [`stream_main!`] (which also marks the
//! module as v2):
//!
//! ```no_run
//! use replay_plugin_kit::{stream_main, Command, Header, Plugin, Verdict};
//!
//! struct NoO0;
//!
//! impl Plugin for NoO0 {
//!     fn start(_header: &Header) -> Result<Self, String> {
//!         Ok(NoO0)
//!     }
//!
//!     fn judge(&mut self, command: &Command) -> Verdict {
//!         if command.args.iter().any(|arg| arg == "-O0") {
//!             Verdict::deny(command.id, "`-O0` is not allowed in release logs")
//!         } else {
//!             Verdict::allow(command.id)
//!         }
//!     }
//! }
//!
//! stream_main!(NoO0);
//! ```
//!
//! ABI v1 (`docs/plugin-abi-v1.md`) is still served: one [`Request`] with
//! every command of a log on stdin, one response on stdout. With this kit
//! it is [`run`]:
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
use std::io::{self, BufRead, Read, Write};

pub use cmdlog::{Command, Os, Platform, ToolKind};
/// The ABI v2 header (the first line of a streaming request).
pub use replay_plugin_abi::v2::Header;
/// The ABI types, defined once for the host and every plugin.
pub use replay_plugin_abi::{Request, Response, Verdict, ABI_VERSION};
use serde::Deserialize;

/// The longest line of a v2 request the kit reads (a command is bounded by
/// the log format's limits, far below this).
pub const MAX_LINE: usize = 64 * 1024 * 1024;

/// Why a plugin could not answer; [`run`] prints it and exits non-zero.
#[derive(Debug)]
pub enum KitError {
    /// stdin could not be read or stdout written.
    Io(io::Error),
    /// stdin is not an ABI v1 request.
    Request(serde_json::Error),
    /// The request is for another ABI version.
    Abi(u32),
    /// A line of a v2 request is not what it should be.
    Line {
        /// Its number, from 1 (the header).
        line: u64,
        /// What is wrong.
        error: serde_json::Error,
    },
    /// A line of a v2 request is longer than [`MAX_LINE`].
    LineTooLong(u64),
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
                "the host speaks plugin ABI {abi}; this plugin speaks another"
            ),
            KitError::Line { line, error } => {
                write!(f, "line {line} of the request is not ABI v2 JSON: {error}")
            }
            KitError::LineTooLong(line) => {
                write!(
                    f,
                    "line {line} of the request is longer than {MAX_LINE} bytes"
                )
            }
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

/// A streaming (ABI v2) plugin: one value judges a whole log, a command
/// at a time, and may keep whatever it needs across commands.
pub trait Plugin: Sized {
    /// Starts on a log: the header holds the platform and the policy's
    /// `config` ([`Header::config`]). An `Err` (a config it cannot use) is
    /// printed to stderr and denies every command.
    fn start(header: &Header) -> Result<Self, String>;

    /// The verdict on the next command of the log (its `id` must be the
    /// command's).
    fn judge(&mut self, command: &Command) -> Verdict;
}

/// `fn main` for a streaming plugin `P`, and the custom section that tells
/// the host the module speaks ABI v2 (without it, the host speaks v1 to
/// the module).
#[macro_export]
macro_rules! stream_main {
    ($plugin:ty) => {
        #[used]
        #[link_section = "replay.plugin-abi"]
        static REPLAY_PLUGIN_ABI: [u8; 1] = *b"2";

        fn main() {
            $crate::serve::<$plugin>()
        }
    };
}

/// The whole streaming plugin: reads the header and each command from
/// stdin, writes each verdict to stdout as soon as it is made, and exits 0
/// at end of input; on any error prints it to stderr and exits 1 (which
/// denies every command).
pub fn serve<P: Plugin>() -> ! {
    let stdin = io::stdin();
    let stdout = io::stdout();
    match answer_stream::<P>(stdin.lock(), stdout.lock()) {
        Ok(()) => std::process::exit(0),
        Err(error) => {
            let _ = writeln!(io::stderr(), "error: {error}");
            std::process::exit(1)
        }
    }
}

/// The core of [`serve`]: judges the v2 request read from `input`, writing
/// each verdict to `output` (flushed, so the host has it before the plugin
/// reads further). Use it to unit-test a plugin on the host.
pub fn answer_stream<P: Plugin>(
    mut input: impl BufRead,
    mut output: impl Write,
) -> Result<(), KitError> {
    let mut line = Vec::new();
    let mut number: u64 = 0;
    let mut plugin: Option<P> = None;
    loop {
        line.clear();
        let read = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)
            .map_err(KitError::Io)?;
        if read == 0 {
            break;
        }
        number += 1;
        if line.len() > MAX_LINE {
            return Err(KitError::LineTooLong(number));
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        match &mut plugin {
            None => {
                #[derive(Deserialize)]
                struct Version {
                    abi: u32,
                }
                let version: Version =
                    serde_json::from_slice(text).map_err(|error| KitError::Line {
                        line: number,
                        error,
                    })?;
                if version.abi != replay_plugin_abi::v2::ABI_VERSION {
                    return Err(KitError::Abi(version.abi));
                }
                let header: Header =
                    serde_json::from_slice(text).map_err(|error| KitError::Line {
                        line: number,
                        error,
                    })?;
                plugin = Some(P::start(&header).map_err(KitError::Plugin)?);
            }
            Some(plugin) => {
                let command: Command =
                    serde_json::from_slice(text).map_err(|error| KitError::Line {
                        line: number,
                        error,
                    })?;
                let verdict = plugin.judge(&command);
                serde_json::to_writer(&mut output, &verdict)
                    .map_err(|error| KitError::Io(io::Error::other(error)))?;
                output
                    .write_all(b"\n")
                    .and_then(|()| output.flush())
                    .map_err(KitError::Io)?;
            }
        }
    }
    Ok(())
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

    struct Refuses2;

    impl Plugin for Refuses2 {
        fn start(header: &Header) -> Result<Self, String> {
            match header.config.get("fail") {
                Some(_) => Err("bad config".into()),
                None => Ok(Refuses2),
            }
        }

        fn judge(&mut self, command: &Command) -> Verdict {
            if command.id == 2 {
                Verdict::deny(2, "two")
            } else {
                Verdict::allow(command.id)
            }
        }
    }

    const STREAM: &str = concat!(
        r#"{"abi":2,"platform":{"os":"linux","arch":"x86_64"},"config":{}}"#,
        "\n",
        r#"{"id":1,"tool":"opt","program":"opt","args":[],"cwd":".","env":{},"inputs":[],"outputs":[]}"#,
        "\n",
        r#"{"id":2,"tool":"opt","program":"opt","args":[],"cwd":".","env":{},"inputs":[],"outputs":[]}"#,
        "\n",
    );

    #[test]
    fn a_stream_gets_one_verdict_line_per_command() {
        let mut out = Vec::new();
        answer_stream::<Refuses2>(STREAM.as_bytes(), &mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"id\":1,\"allow\":true}\n{\"id\":2,\"allow\":false,\"reason\":\"two\"}\n"
        );
    }

    #[test]
    fn a_stream_for_another_abi_or_with_a_bad_config_fails() {
        let v1 = STREAM.replace(r#""abi":2"#, r#""abi":1"#);
        let error = answer_stream::<Refuses2>(v1.as_bytes(), Vec::new()).unwrap_err();
        assert!(matches!(error, KitError::Abi(1)), "{error}");
        let bad = STREAM.replace(r#""config":{}"#, r#""config":{"fail":1}"#);
        let error = answer_stream::<Refuses2>(bad.as_bytes(), Vec::new()).unwrap_err();
        assert_eq!(error.to_string(), "bad config");
        let garbage = STREAM.replace(r#"{"id":2,"#, "{");
        let error = answer_stream::<Refuses2>(garbage.as_bytes(), Vec::new()).unwrap_err();
        assert!(matches!(error, KitError::Line { line: 3, .. }), "{error}");
    }

    #[test]
    fn plugin_errors_are_reported() {
        let error =
            answer(REQUEST.as_bytes(), |_| Err::<Vec<Verdict>, _>("bad config")).unwrap_err();
        assert_eq!(error.to_string(), "bad config");
    }
}
