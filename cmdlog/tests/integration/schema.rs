//! The checked-in `docs/log-v1.schema.json` is the one the types generate.
//! Run with `UPDATE_SCHEMAS=1` to rewrite it after changing the types.

use std::path::PathBuf;

fn checked_in() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/log-v1.schema.json")
}

#[test]
fn checked_in_schema_matches_the_types() {
    let generated = cmdlog::schema::log_v1_text();
    let path = checked_in();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "`docs/log-v1.schema.json` is out of date: run `UPDATE_SCHEMAS=1 cargo test -p cmdlog` and commit it"
    );
}

#[test]
fn schema_pins_format_version_and_refuses_unknown_fields() {
    let schema = cmdlog::schema::log_v1();
    assert_eq!(schema["properties"]["format"]["const"], "replay-log");
    assert_eq!(schema["properties"]["version"]["const"], 1);
    assert_eq!(schema["additionalProperties"], false);
    let command = &schema["$defs"]["Command"];
    assert_eq!(command["additionalProperties"], false);
    let required: Vec<&str> = command["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for field in [
        "id", "tool", "program", "args", "cwd", "env", "inputs", "outputs",
    ] {
        assert!(required.contains(&field), "{field} not required");
    }
    assert!(!required.contains(&"cache_key"));
}
