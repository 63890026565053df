//! The checked-in ABI v1 schemas are the ones the types generate. Run with
//! `UPDATE_SCHEMAS=1` to rewrite them after changing the types.

use std::path::PathBuf;

use policy::plugin::abi;

fn docs(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../docs")
        .join(name)
}

fn assert_checked_in(name: &str, generated: &str) {
    let path = docs(name);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "`docs/{name}` is out of date: run `UPDATE_SCHEMAS=1 cargo test -p policy --test plugins` and commit it"
    );
}

#[test]
fn checked_in_request_schema_matches_the_types() {
    assert_checked_in("plugin-request-v1.schema.json", &abi::request_schema_text());
}

#[test]
fn checked_in_response_schema_matches_the_types() {
    assert_checked_in(
        "plugin-response-v1.schema.json",
        &abi::response_schema_text(),
    );
}

#[test]
fn request_schema_pins_the_abi_and_refuses_unknown_fields() {
    let schema = abi::request_schema();
    assert_eq!(schema["properties"]["abi"]["const"], 1);
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["properties"]["config"]["type"], "object");
    let required = schema["required"].as_array().unwrap();
    for field in ["abi", "platform", "config", "commands"] {
        assert!(required.iter().any(|f| f == field), "{field} not required");
    }
}

#[test]
fn response_schema_requires_id_and_allow_only() {
    let schema = abi::response_schema();
    let verdict = &schema["$defs"]["Verdict"];
    assert_eq!(verdict["additionalProperties"], false);
    let required: Vec<&str> = verdict["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(required, ["id", "allow"]);
}

#[test]
fn documented_examples_are_valid_messages() {
    // The examples in docs/plugin-abi-v1.md, kept here so they cannot rot.
    let doc = std::fs::read_to_string(docs("plugin-abi-v1.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "docs/plugin-abi-v1.md lost its examples");
    let request: abi::Request = serde_json::from_str(blocks[0]).expect("first block is a request");
    assert_eq!(request.abi, 1);
    let response: abi::Response =
        serde_json::from_str(blocks[1]).expect("second block is a response");
    assert!(!response.verdicts.is_empty());
}

#[test]
fn checked_in_v2_schemas_match_the_types() {
    assert_checked_in(
        "plugin-request-v2-header.schema.json",
        &abi::v2::request_schema_text(),
    );
    assert_checked_in(
        "plugin-response-v2-verdict.schema.json",
        &abi::v2::response_schema_text(),
    );
    let header = abi::v2::request_schema();
    assert_eq!(header["properties"]["abi"]["const"], 2);
    assert_eq!(header["additionalProperties"], false);
    let verdict = abi::v2::response_schema();
    assert_eq!(verdict["additionalProperties"], false);
}

#[test]
fn documented_v2_examples_are_valid_lines() {
    // The examples in docs/plugin-abi-v2.md, kept here so they cannot rot.
    let doc = std::fs::read_to_string(docs("plugin-abi-v2.md")).unwrap();
    let blocks: Vec<&str> = doc
        .split("```json")
        .skip(1)
        .filter_map(|rest| rest.split("```").next())
        .collect();
    assert!(blocks.len() >= 2, "docs/plugin-abi-v2.md lost its examples");
    let mut request = blocks[0].trim().lines();
    let header: abi::v2::Header = serde_json::from_str(request.next().unwrap()).unwrap();
    assert_eq!(header.abi, 2);
    let commands: Vec<cmdlog::Command> = request
        .map(|line| serde_json::from_str(line).expect("a command line"))
        .collect();
    let verdicts: Vec<abi::Verdict> = blocks[1]
        .trim()
        .lines()
        .map(|line| serde_json::from_str(line).expect("a verdict line"))
        .collect();
    assert_eq!(commands.len(), verdicts.len());
    for (command, verdict) in commands.iter().zip(&verdicts) {
        assert_eq!(command.id, verdict.id);
    }
}
