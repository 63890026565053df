//! ABI version 2, streaming (`docs/plugin-abi-v2.md`): the request is JSON
//! Lines on stdin, a [`Header`] then one [`Command`](cmdlog::Command) per
//! line in log order; the response is JSON Lines on stdout, one
//! [`Verdict`](crate::Verdict) per command, in the same order. One plugin
//! instance judges a whole log, so it may keep state across commands while
//! the host holds only a batch of them.
//!
//! A module says it speaks v2 with a custom section named
//! [`CUSTOM_SECTION`] holding the ASCII text `2` ([`custom_section_value`]);
//! a module without the section speaks v1.

use cmdlog::Platform;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// The ABI version of a streaming request: the header's `abi` field.
pub const ABI_VERSION: u32 = 2;

/// The name of the custom section that marks a module's ABI version.
pub const CUSTOM_SECTION: &str = "replay.plugin-abi";

/// The header schema's `$id`.
pub const REQUEST_SCHEMA_ID: &str =
    "https://replay.invalid/schemas/plugin-request-v2-header.schema.json";

/// The verdict line schema's `$id`.
pub const RESPONSE_SCHEMA_ID: &str =
    "https://replay.invalid/schemas/plugin-response-v2-verdict.schema.json";

/// The content of [`CUSTOM_SECTION`] in a v2 module: the version in ASCII.
pub fn custom_section_value() -> &'static [u8] {
    b"2"
}

/// The first line of a v2 request: what v1's request holds besides the
/// commands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "replay plugin request header, ABI version 2")]
pub struct Header {
    /// Always `2` for this version of the ABI.
    pub abi: u32,
    /// The platform the log's commands were recorded for.
    pub platform: Platform,
    /// The plugin's `config` table from the policy, as JSON (an object).
    pub config: serde_json::Map<String, serde_json::Value>,
}

impl Header {
    /// The `config` table as `T`.
    pub fn config<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_value(serde_json::Value::Object(self.config.clone()))
    }
}

/// The header as the host writes it, borrowing its parts.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HeaderRef<'a> {
    /// Always [`ABI_VERSION`].
    pub abi: u32,
    /// The platform the log's commands were recorded for.
    pub platform: &'a Platform,
    /// The plugin's `config` table from the policy.
    pub config: &'a serde_json::Map<String, serde_json::Value>,
}

/// The JSON Schema of a v2 request's first line.
pub fn request_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Header).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), REQUEST_SCHEMA_ID.into());
        object.insert(
            "description".into(),
            "The first line a replay policy plugin reads on stdin (ABI version 2, JSON Lines): the platform and the plugin's `config` table. Each following line is one command of the log, in log order, exactly as in the command log (log-v1.schema.json, `$defs/Command`); end of input follows the last.".into(),
        );
    }
    if let Some(abi) = schema.pointer_mut("/properties/abi") {
        abi["const"] = ABI_VERSION.into();
    }
    schema
}

/// The JSON Schema of one line of a v2 response.
pub fn response_schema() -> serde_json::Value {
    let mut schema = schemars::schema_for!(crate::Verdict).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), RESPONSE_SCHEMA_ID.into());
        object.insert(
            "title".into(),
            "replay plugin verdict line, ABI version 2".into(),
        );
        object.insert(
            "description".into(),
            "One line a replay policy plugin writes on stdout (ABI version 2, JSON Lines): the verdict on the next command it read, in the order of the request. A verdict out of order, for a command the plugin has not read, missing, extra or malformed denies every command of the log.".into(),
        );
    }
    schema
}

/// The header schema as the text checked in at
/// `docs/plugin-request-v2-header.schema.json`.
pub fn request_schema_text() -> String {
    crate::pretty(&request_schema())
}

/// The verdict line schema as the text checked in at
/// `docs/plugin-response-v2-verdict.schema.json`.
pub fn response_schema_text() -> String {
    crate::pretty(&response_schema())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cmdlog::Os;

    #[test]
    fn header_ref_writes_what_header_reads() {
        let platform = Platform {
            os: Os::Linux,
            arch: "x86_64".into(),
        };
        let config = serde_json::Map::new();
        let line = serde_json::to_string(&HeaderRef {
            abi: ABI_VERSION,
            platform: &platform,
            config: &config,
        })
        .unwrap();
        assert!(!line.contains('\n'));
        let header: Header = serde_json::from_str(&line).unwrap();
        assert_eq!(header.abi, 2);
        assert!(serde_json::from_str::<Header>(&line.replace("}}", "},\"x\":1}")).is_err());
    }
}
