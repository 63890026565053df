//! A policy's `[[plugin]]` table (kept raw by the policy loader as a
//! [`PluginTable`]) turned into a validated [`PluginSpec`].
//!
//! ```toml
//! [[plugin]]
//! name = "naming"              # optional; defaults to the file stem of `path`
//! path = "plugins/naming.wasm" # relative to the policy file
//! sha256 = "<64 hex digits>"   # optional pin
//! timeout = "2s"               # seconds, or with `ms`, `s`, `m`, `h`
//! batch_timeout = "500ms"      # ABI v2: one batch of commands (default 1 s)
//! fuel = 5_000_000_000         # optional
//! batch_fuel = 100_000_000     # ABI v2, optional: one batch of commands
//! max_memory = "128MiB"        # bytes, or with `K`, `M`, `G` (powers of 1024)
//! max_output = "16MiB"         # optional, like `max_memory`
//! [plugin.config]              # passed to the plugin as JSON
//! min_opt_level = 2
//! ```
//!
//! Unknown keys are errors: a misspelt bound must not silently become the
//! default.

use std::path::{Path, PathBuf};

use crate::model::{parse_duration, parse_size};
use crate::PluginTable;

use super::PluginSpec;

/// The keys a `[[plugin]]` table may have.
const KEYS: [&str; 10] = [
    "name",
    "path",
    "sha256",
    "config",
    "timeout",
    "batch_timeout",
    "fuel",
    "batch_fuel",
    "max_memory",
    "max_output",
];

/// A `[[plugin]]` table that does not describe a plugin.
#[derive(Debug, thiserror::Error)]
#[error("`{}` line {line}: `[[plugin]]` {problem}", file.display())]
pub struct SpecError {
    /// The policy file.
    pub file: PathBuf,
    /// The line of the `[[plugin]]` table.
    pub line: usize,
    /// What is wrong, naming the key.
    pub problem: String,
}

impl PluginSpec {
    /// The spec a policy's `[[plugin]]` table describes: `path` resolved
    /// against the policy file, bounds parsed, `config` converted to JSON,
    /// defaults for what the table leaves out.
    pub fn from_table(plugin: &PluginTable) -> Result<PluginSpec, SpecError> {
        let fail = |problem: String| SpecError {
            file: plugin.file.clone(),
            line: plugin.line,
            problem,
        };
        let table = &plugin.table;
        if let Some(key) = table.keys().find(|key| !KEYS.contains(&key.as_str())) {
            return Err(fail(format!(
                "has an unknown key `{key}` (known: {})",
                KEYS.map(|k| format!("`{k}`")).join(", ")
            )));
        }
        let text = |key: &str| -> Result<Option<&str>, SpecError> {
            match table.get(key) {
                None => Ok(None),
                Some(toml::Value::String(text)) => Ok(Some(text)),
                Some(_) => Err(fail(format!("`{key}` must be a string"))),
            }
        };
        let path = text("path")?.ok_or_else(|| fail("needs a `path` to its module".into()))?;
        if path.is_empty() {
            return Err(fail("`path` is empty".into()));
        }
        let path = super::resolve_plugin_path(&plugin.file, Path::new(path));
        let name = match text("name")? {
            Some(name) if !name.trim().is_empty() => name.to_owned(),
            Some(_) => return Err(fail("`name` is empty".into())),
            None => path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .ok_or_else(|| fail("`path` names no file".into()))?,
        };
        let mut spec = PluginSpec::new(name, path);
        spec.sha256 = text("sha256")?.map(str::to_owned);
        if let Some(config) = table.get("config") {
            match to_json(config).map_err(|problem| fail(format!("`config` {problem}")))? {
                serde_json::Value::Object(config) => spec.config = config,
                _ => return Err(fail("`config` must be a table".into())),
            }
        }
        for (key, slot) in [
            ("timeout", &mut spec.timeout),
            ("batch_timeout", &mut spec.batch_timeout),
        ] {
            if let Some(timeout) = table.get(key) {
                *slot = quantity(timeout, parse_duration).ok_or_else(|| {
                    fail(format!(
                        "`{key}` must be seconds or a duration like \"500ms\", \"2s\", \"1m\""
                    ))
                })?;
            }
        }
        // A batch never gets longer than the whole log.
        if table.get("batch_timeout").is_none() {
            spec.batch_timeout = spec.batch_timeout.min(spec.timeout);
        }
        for (key, slot) in [
            ("fuel", &mut spec.fuel),
            ("batch_fuel", &mut spec.batch_fuel),
        ] {
            if let Some(fuel) = table.get(key) {
                *slot = Some(
                    fuel.as_integer()
                        .and_then(|fuel| u64::try_from(fuel).ok())
                        .filter(|fuel| *fuel > 0)
                        .ok_or_else(|| fail(format!("`{key}` must be a positive integer")))?,
                );
            }
        }
        for (key, slot) in [
            ("max_memory", &mut spec.max_memory),
            ("max_output", &mut spec.max_output),
        ] {
            if let Some(size) = table.get(key) {
                *slot = quantity(size, parse_size).ok_or_else(|| {
                    fail(format!(
                        "`{key}` must be bytes or a size like \"64MiB\", \"1G\""
                    ))
                })?;
            }
        }
        Ok(spec)
    }
}

/// A number (in the base unit) or a string with a unit.
fn quantity<T>(value: &toml::Value, parse: fn(&str) -> Option<T>) -> Option<T> {
    match value {
        toml::Value::String(text) => parse(text),
        toml::Value::Integer(n) => parse(&u64::try_from(*n).ok()?.to_string()),
        _ => None,
    }
}

/// A TOML value as JSON: dates become their TOML text; floats JSON cannot
/// hold (NaN, infinities) are refused.
fn to_json(value: &toml::Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        toml::Value::String(text) => text.clone().into(),
        toml::Value::Integer(n) => (*n).into(),
        toml::Value::Float(x) => serde_json::Number::from_f64(*x)
            .map(serde_json::Value::Number)
            .ok_or_else(|| format!("holds {x}, which JSON cannot"))?,
        toml::Value::Boolean(b) => (*b).into(),
        toml::Value::Datetime(date) => date.to_string().into(),
        toml::Value::Array(items) => items
            .iter()
            .map(to_json)
            .collect::<Result<Vec<_>, _>>()?
            .into(),
        toml::Value::Table(table) => table
            .iter()
            .map(|(key, value)| Ok((key.clone(), to_json(value)?)))
            .collect::<Result<serde_json::Map<_, _>, String>>()?
            .into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn table(text: &str) -> PluginTable {
        let parsed: toml::Table = toml::from_str(text).unwrap();
        PluginTable {
            file: PathBuf::from("policies/linux.toml"),
            line: 7,
            table: parsed,
        }
    }

    #[test]
    fn full_table_becomes_a_spec() {
        let spec = PluginSpec::from_table(&table(
            r#"
            name = "naming"
            path = "plugins/naming.wasm"
            sha256 = "ab"
            timeout = "2s"
            fuel = 5_000
            max_memory = "128MiB"
            max_output = 4096
            [config]
            min_opt_level = 2
            when = 2026-01-02
            [config.outputs]
            opt = ["*.opt.bc"]
            "#,
        ))
        .unwrap();
        assert_eq!(spec.name, "naming");
        assert_eq!(spec.path, PathBuf::from("policies/plugins/naming.wasm"));
        assert_eq!(spec.sha256.as_deref(), Some("ab"));
        assert_eq!(spec.timeout, Duration::from_secs(2));
        assert_eq!(spec.fuel, Some(5000));
        assert_eq!(spec.max_memory, 128 << 20);
        assert_eq!(spec.max_output, 4096);
        assert_eq!(
            serde_json::Value::Object(spec.config),
            serde_json::json!({
                "min_opt_level": 2, "when": "2026-01-02",
                "outputs": {"opt": ["*.opt.bc"]}
            })
        );
    }

    #[test]
    fn minimal_table_gets_defaults_and_a_name_from_the_path() {
        let spec = PluginSpec::from_table(&table(r#"path = "/opt/p/naming.wasm""#)).unwrap();
        assert_eq!(spec, PluginSpec::new("naming", "/opt/p/naming.wasm"));
        let seconds = PluginSpec::from_table(&table("path = \"p.wasm\"\ntimeout = 3")).unwrap();
        assert_eq!(seconds.timeout, Duration::from_secs(3));
    }

    #[test]
    fn mistakes_are_errors_naming_the_key_and_line() {
        for (text, key) in [
            ("path = \"p.wasm\"\nmax_memroy = 1", "max_memroy"),
            ("name = \"x\"", "path"),
            ("path = 3", "path"),
            ("path = \"p.wasm\"\ntimeout = \"soon\"", "timeout"),
            ("path = \"p.wasm\"\nfuel = 0", "fuel"),
            ("path = \"p.wasm\"\nfuel = -5", "fuel"),
            ("path = \"p.wasm\"\nmax_output = \"lots\"", "max_output"),
            ("path = \"p.wasm\"\nconfig = 3", "config"),
            ("path = \"p.wasm\"\nconfig = { x = nan }", "config"),
        ] {
            let error = PluginSpec::from_table(&table(text)).unwrap_err();
            let message = error.to_string();
            assert!(message.contains(&format!("`{key}`")), "{text}: {message}");
            assert!(message.contains("line 7"), "{message}");
        }
    }
}
