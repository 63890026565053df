//! The replay policy-plugin ABI, version 1: the JSON a plugin reads on
//! stdin and writes on stdout, as Rust types, and the JSON Schemas
//! generated from them (checked in at `docs/plugin-request-v1.schema.json`
//! and `docs/plugin-response-v1.schema.json`; a test in `policy` compares
//! them).
//!
//! One definition for both sides: the host (`policy::plugin`) serializes
//! [`RequestRef`] (borrowing the log's commands, never copying them) and
//! reads [`Response`]; the guest kit (`replay-plugin-kit`) reads
//! [`Request`], the same document as an owned type, and writes [`Response`].
//!
//! Version 2, streaming (JSON Lines, one instance per log), is in [`v2`];
//! its verdict lines are v1's [`Verdict`].

use cmdlog::{Command, Platform};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

pub mod v2;

/// The ABI version this host speaks: the value of the request's `abi` field.
pub const ABI_VERSION: u32 = 1;

/// The request schema's `$id`.
pub const REQUEST_SCHEMA_ID: &str = "https://replay.invalid/schemas/plugin-request-v1.schema.json";

/// The response schema's `$id`.
pub const RESPONSE_SCHEMA_ID: &str =
    "https://replay.invalid/schemas/plugin-response-v1.schema.json";

/// What a plugin reads on stdin: one request per evaluation, holding every
/// command of the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "replay plugin request, ABI version 1")]
pub struct Request {
    /// Always `1` for this version of the ABI.
    pub abi: u32,
    /// The platform the log's commands were recorded for.
    pub platform: Platform,
    /// The plugin's `config` table from the policy, as JSON (an object).
    pub config: serde_json::Map<String, serde_json::Value>,
    /// Every command of the log, in log order, as the log has them.
    pub commands: Vec<Command>,
}

impl Request {
    /// The `config` table as `T` (derive `Deserialize`, and consider
    /// `#[serde(deny_unknown_fields)]` so a typo in a policy is an error).
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.config.clone()))
    }
}

/// The request as the host writes it: the same JSON as [`Request`], borrowing
/// the commands instead of owning them.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RequestRef<'a> {
    /// Always [`ABI_VERSION`].
    pub abi: u32,
    /// The platform the log's commands were recorded for.
    pub platform: &'a Platform,
    /// The plugin's `config` table from the policy.
    pub config: &'a serde_json::Map<String, serde_json::Value>,
    /// Every command of the log, in log order.
    pub commands: &'a [Command],
}

/// What a plugin writes on stdout: exactly one verdict per command of the
/// request, in any order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "replay plugin response, ABI version 1")]
pub struct Response {
    /// One verdict per command of the request; a missing, duplicate or
    /// unknown id makes the host deny the whole log.
    pub verdicts: Vec<Verdict>,
}

/// A plugin's decision on one command.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Verdict {
    /// The `id` of the command this verdict is about.
    pub id: u64,
    /// Whether the plugin lets the command run; the TOML rules and every
    /// other plugin must allow it too.
    pub allow: bool,
    /// Why the command is refused, shown to the user; ignored when `allow`
    /// is true. Control characters are replaced and long reasons cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl Verdict {
    /// Lets command `id` run.
    pub fn allow(id: u64) -> Verdict {
        Verdict {
            id,
            allow: true,
            reason: None,
        }
    }

    /// Refuses command `id`, saying why.
    pub fn deny(id: u64, reason: impl Into<String>) -> Verdict {
        Verdict {
            id,
            allow: false,
            reason: Some(reason.into()),
        }
    }
}

/// The JSON Schema of a v1 request, as a JSON value.
pub fn request_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Request).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), REQUEST_SCHEMA_ID.into());
        object.insert(
            "description".into(),
            "What a replay policy plugin reads on stdin (ABI version 1): the platform, the plugin's `config` table from the policy, and every command of the log, in log order. Commands are exactly as in the command log (see log-v1.schema.json).".into(),
        );
    }
    if let Some(abi) = schema.pointer_mut("/properties/abi") {
        abi["const"] = ABI_VERSION.into();
    }
    schema
}

/// The JSON Schema of a v1 response, as a JSON value.
pub fn response_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Response).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), RESPONSE_SCHEMA_ID.into());
        object.insert(
            "description".into(),
            "What a replay policy plugin writes on stdout (ABI version 1) before exiting with status 0: exactly one verdict per command of the request. Anything else (other output, a missing, duplicate or unknown id, a non-zero exit) denies every command of the log.".into(),
        );
    }
    schema
}

/// The request schema as the text checked in at
/// `docs/plugin-request-v1.schema.json`.
pub fn request_schema_text() -> String {
    pretty(&request_schema())
}

/// The response schema as the text checked in at
/// `docs/plugin-response-v1.schema.json`.
pub fn response_schema_text() -> String {
    pretty(&response_schema())
}

pub(crate) fn pretty(schema: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdlog::{Os, ToolKind};
    use std::collections::BTreeMap;

    fn command(id: u64) -> Command {
        Command {
            id,
            tool: ToolKind::Opt,
            program: "opt".into(),
            args: vec!["-O2".into(), "p0.bc".into()],
            cwd: ".".into(),
            env: BTreeMap::new(),
            inputs: vec!["p0.bc".into()],
            outputs: vec!["p0.opt.bc".into()],
            cache_key: None,
        }
    }

    #[test]
    fn request_ref_writes_what_request_reads() {
        let platform = Platform {
            os: Os::Linux,
            arch: "x86_64".into(),
        };
        let mut config = serde_json::Map::new();
        config.insert("min_opt_level".into(), 2.into());
        let commands = [command(1), command(2)];
        let written = serde_json::to_string(&RequestRef {
            abi: ABI_VERSION,
            platform: &platform,
            config: &config,
            commands: &commands,
        })
        .unwrap();
        let read: Request = serde_json::from_str(&written).unwrap();
        assert_eq!(read.abi, 1);
        assert_eq!(read.platform, platform);
        assert_eq!(read.config, config);
        assert_eq!(read.commands, commands);
    }

    #[test]
    fn verdict_reason_is_optional_and_unknown_fields_refused() {
        let response: Response =
            serde_json::from_str(r#"{"verdicts":[{"id":1,"allow":true}]}"#).unwrap();
        assert_eq!(response.verdicts[0].reason, None);
        assert!(
            serde_json::from_str::<Response>(r#"{"verdicts":[{"id":1,"allow":true,"x":1}]}"#)
                .is_err()
        );
        assert!(serde_json::from_str::<Response>(r#"{"verdicts":[],"extra":1}"#).is_err());
    }

    #[test]
    fn allow_omits_the_reason_and_deny_gives_it() {
        let json = serde_json::to_string(&Verdict::allow(7)).unwrap();
        assert_eq!(json, r#"{"id":7,"allow":true}"#);
        let json = serde_json::to_string(&Verdict::deny(8, "no")).unwrap();
        assert_eq!(json, r#"{"id":8,"allow":false,"reason":"no"}"#);
    }
}
