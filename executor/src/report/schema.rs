//! The JSON reports' documents as types, for their JSON Schema: generated
//! from the very types the [`JsonReporter`](super::JsonReporter) writes
//! (the records are serialized from them), so the checked-in
//! `docs/report-v1.schema.json` cannot drift from the code (a test
//! compares them). The reporter streams the document piece by piece; these
//! types describe the whole.

use std::collections::BTreeMap;

use policy::report::Tally;
use schemars::JsonSchema;
use serde::Serialize;

use crate::drive::Produced;
use crate::event::{CommandRecord, Totals};

/// The `format` of `replay check --format json`'s document.
pub const CHECK_FORMAT: &str = "replay-check";
/// The `format` of a run's `--report` document.
pub const RUN_FORMAT: &str = "replay-report";
/// The version of both documents; a change that could break a reader
/// bumps it.
pub const VERSION: u32 = 1;
/// The schema's `$id`.
pub const SCHEMA_ID: &str = "https://replay.invalid/schemas/report-v1.schema.json";

/// One finding of the check pass.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct FindingRecord<'a> {
    /// The command's id, or null for the log's header and whole-log rules.
    pub id: Option<u64>,
    /// The command's tool kind, if about a command.
    pub tool: Option<&'a str>,
    /// `refused` or `unverified`.
    pub status: policy::Status,
    /// The rule's id (`replay explain RULE` tells what it refuses).
    pub rule: &'a str,
    /// The offending argument, path, variable or program.
    pub subject: &'a str,
    /// What is wrong.
    pub message: &'a str,
    /// What to do about it.
    pub hint: &'a str,
    /// The line of the log where the command begins, if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// Its column there (in code points), if known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u64>,
}

/// The check pass's part of a document.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckSection<'a> {
    /// Findings shown (at most 20 a rule).
    pub findings: Vec<FindingRecord<'a>>,
    /// The log's status: the worst of its verdicts (absent if the check
    /// was cut short).
    pub status: Option<policy::Status>,
    /// Verdicts counted by status (absent if cut short).
    pub tally: Option<Tally>,
    /// Per rule, the findings not shown.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub not_shown: BTreeMap<String, u64>,
}

/// `replay check --format json`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CheckDocument<'a> {
    /// `replay-check`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// The check.
    #[serde(flatten)]
    pub check: CheckSection<'a>,
    /// `replay`'s own peak RSS during the check, in bytes.
    pub replay_peak_rss: Option<u64>,
    /// Set when the check stopped before its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A run's `--report FILE` (format `json`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RunDocument<'a> {
    /// `replay-report`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// Driver mode: the producer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<Produced>,
    /// The check pass (absent if the run stopped before it).
    pub check: Option<CheckSection<'a>>,
    /// Each command considered, in the order they finished.
    pub commands: Vec<CommandRecord>,
    /// The run's totals (absent if it stopped before its end).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub totals: Option<Totals>,
    /// Set when the run stopped before its end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The JSON Schema of both documents: one of the two, told by `format`.
pub fn report_v1() -> serde_json::Value {
    let check = schemars::schema_for!(CheckDocument<'static>).to_value();
    let run = schemars::schema_for!(RunDocument<'static>).to_value();
    let mut defs = serde_json::Map::new();
    for schema in [&check, &run] {
        if let Some(more) = schema.get("$defs").and_then(serde_json::Value::as_object) {
            defs.extend(more.clone());
        }
    }
    let strip = |mut schema: serde_json::Value, format: &str| {
        if let Some(object) = schema.as_object_mut() {
            object.remove("$defs");
            object.remove("$schema");
        }
        if let Some(properties) = schema
            .get_mut("properties")
            .and_then(serde_json::Value::as_object_mut)
        {
            if let Some(value) = properties.get_mut("format") {
                value["const"] = format.into();
            }
            if let Some(value) = properties.get_mut("version") {
                value["const"] = VERSION.into();
            }
        }
        schema
    };
    defs.insert("CheckDocument".into(), strip(check, CHECK_FORMAT));
    defs.insert("RunDocument".into(), strip(run, RUN_FORMAT));
    serde_json::json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "replay report, version 1",
        "description": "What `replay check --format json` (format `replay-check`) and a run's `--report FILE` (format `replay-report`) write. Both are written as events come and closed however the session ends: a document cut short has `error`.",
        "oneOf": [
            { "$ref": "#/$defs/CheckDocument" },
            { "$ref": "#/$defs/RunDocument" },
        ],
        "$defs": defs,
    })
}

/// The schema as the text checked in at `docs/report-v1.schema.json`.
pub fn report_v1_text() -> String {
    let mut text = serde_json::to_string_pretty(&report_v1()).unwrap_or_default();
    text.push('\n');
    text
}
