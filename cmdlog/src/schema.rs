//! The JSON Schema of the v1 document, generated from the types, so the
//! checked-in `docs/log-v1.schema.json` cannot drift from the code (a test
//! compares them).

use crate::types::{Document, FORMAT, VERSION};

/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://replay.invalid/schemas/log-v1.schema.json";

/// The JSON Schema of a v1 log, as a JSON value.
pub fn log_v1() -> serde_json::Value {
    let mut schema = schemars::schema_for!(Document).to_value();
    if let Some(object) = schema.as_object_mut() {
        object.insert("$id".into(), SCHEMA_ID.into());
        object.insert(
            "description".into(),
            "A replay command log: the tool commands a compiler would have run, for `replay` to check and run. Readers require `format`, `version`, `producer` and `platform` to come before `commands`, and command ids to strictly increase; paths are relative to the log's work root.".into(),
        );
    }
    if let Some(properties) = schema
        .get_mut("properties")
        .and_then(serde_json::Value::as_object_mut)
    {
        if let Some(format) = properties.get_mut("format") {
            format["const"] = FORMAT.into();
        }
        if let Some(version) = properties.get_mut("version") {
            version["const"] = VERSION.into();
        }
    }
    schema
}

/// The schema as the pretty-printed text checked in at `docs/log-v1.schema.json`.
pub fn log_v1_text() -> String {
    let mut text = serde_json::to_string_pretty(&log_v1()).unwrap_or_default();
    text.push('\n');
    text
}
