//! A loaded policy written back as one TOML document (`replay policy
//! show`): every layer of `extends` merged, disabled tools gone, limits
//! resolved per tool. It is what the checker enforces, in the syntax of
//! `policy/README.md`; loading it gives the same policy (a test holds
//! that for the shipped ones).

use std::path::Path;

use toml::{Table, Value};

use crate::model::{FlagRule, Forms, Grammar, Positional, ToolLimits, ValueRule};
use crate::Policy;

impl Policy {
    /// The merged policy as TOML.
    pub fn to_toml(&self) -> String {
        let mut doc = Table::new();
        let mut header = Table::new();
        header.insert("name".into(), self.name.clone().into());
        header.insert("os".into(), self.os.as_str().into());
        header.insert("system_inputs".into(), strings(&self.system_inputs));
        if !self.required_layers.is_empty() {
            header.insert("require_sandbox".into(), strings(&self.required_layers));
        }
        if self.refuse_undeclared_reads {
            header.insert("refuse_undeclared_reads".into(), true.into());
        }
        if self.remote_execution_forbidden {
            header.insert("remote_execution".into(), false.into());
        }
        doc.insert("policy".into(), header.into());

        let mut env = Table::new();
        let set: Table = self
            .env
            .set
            .iter()
            .map(|(k, v)| (k.clone(), Value::from(v.clone())))
            .collect();
        env.insert("set".into(), set.into());
        let mut allow = Table::new();
        for (name, rule) in &self.env.allow {
            let mut entry = Table::new();
            value_rule(&mut entry, rule);
            allow.insert(name.clone(), entry.into());
        }
        env.insert("allow".into(), allow.into());
        doc.insert("env".into(), env.into());

        let mut tools = Table::new();
        for (kind, rules) in &self.tools {
            let mut tool = Table::new();
            let programs: Vec<Value> = rules
                .programs
                .iter()
                .map(|p| {
                    let mut entry = Table::new();
                    entry.insert("name".into(), p.name.clone().into());
                    entry.insert("args".into(), p.grammar.clone().into());
                    entry.into()
                })
                .collect();
            tool.insert("programs".into(), programs.into());
            tool.insert("dirs".into(), strings(&rules.dirs));
            let limits = limits(&rules.limits);
            if !limits.is_empty() {
                tool.insert("limits".into(), limits.into());
            }
            if !rules.sha256.is_empty() {
                let pins: Table = rules
                    .sha256
                    .iter()
                    .map(|(path, hash)| (path.clone(), Value::from(hex(hash))))
                    .collect();
                tool.insert("sha256".into(), pins.into());
            }
            if rules.require_sha256 {
                tool.insert("require_sha256".into(), true.into());
            }
            if rules.local_only {
                tool.insert("local_only".into(), true.into());
            }
            let runs: Vec<String> = rules
                .runs
                .iter()
                .filter(|k| self.tools.contains_key(*k))
                .map(|k| k.name().to_owned())
                .collect();
            if !runs.is_empty() {
                tool.insert("runs".into(), strings(&runs));
            }
            tools.insert(kind.name().to_owned(), tool.into());
        }
        doc.insert("tool".into(), tools.into());

        let grammars: Table = self
            .grammars
            .iter()
            .map(|(name, g)| (name.clone(), Value::from(grammar(g))))
            .collect();
        doc.insert("args".into(), grammars.into());

        if !self.plugins.is_empty() {
            let plugins: Vec<Value> = self
                .plugins
                .iter()
                .map(|p| {
                    let mut table = p.table.clone();
                    // A module's path is relative to the file that named it.
                    if let Some(Value::String(path)) = table.get("path") {
                        let dir = p.file.parent().unwrap_or(Path::new("."));
                        let absolute = dir.join(path).display().to_string();
                        table.insert("path".into(), absolute.into());
                    }
                    table.into()
                })
                .collect();
            doc.insert("plugin".into(), plugins.into());
        }

        let mut text = String::from("# The merged policy, as `replay` enforces it; loaded from:\n");
        for file in &self.files {
            text.push_str(&format!("#   {}\n", file.display()));
        }
        // Sections in the order policy files are written in (a table's
        // keys would come sorted): each alone, then joined.
        for key in ["policy", "env", "tool", "args", "plugin"] {
            if let Some(value) = doc.remove(key) {
                let mut section = Table::new();
                section.insert(key.into(), value);
                text.push('\n');
                text.push_str(&toml::to_string(&section).unwrap_or_default());
            }
        }
        text
    }
}

fn strings(list: &[String]) -> Value {
    list.iter()
        .cloned()
        .map(Value::from)
        .collect::<Vec<_>>()
        .into()
}

fn hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn limits(limits: &ToolLimits) -> Table {
    let mut table = Table::new();
    if let Some(timeout) = limits.timeout {
        let ms = timeout.as_millis();
        table.insert("timeout".into(), format!("{ms}ms").into());
    }
    if let Some(rss) = limits.max_rss {
        table.insert("max_rss".into(), size(rss));
    }
    if let Some(output) = limits.max_output {
        table.insert("max_output".into(), size(output));
    }
    table
}

/// A size as TOML: an integer if it fits, else text in bytes.
fn size(bytes: u64) -> Value {
    i64::try_from(bytes).map_or_else(|_| format!("{bytes}").into(), Value::from)
}

/// The user's pattern, without the anchors the loader added.
fn pattern(regex: &regex::Regex) -> String {
    let text = regex.as_str();
    text.strip_prefix("^(?:")
        .and_then(|t| t.strip_suffix(")$"))
        .unwrap_or(text)
        .to_owned()
}

fn value_rule(entry: &mut Table, rule: &ValueRule) {
    match rule {
        ValueRule::Enum(values) => {
            entry.insert("enum".into(), strings(values));
        }
        ValueRule::Pattern(regex) => {
            entry.insert("pattern".into(), pattern(regex).into());
        }
        ValueRule::Range(lo, hi) => {
            entry.insert(
                "range".into(),
                vec![Value::from(*lo), Value::from(*hi)].into(),
            );
        }
        ValueRule::Input => {
            entry.insert("path".into(), "input".into());
        }
        ValueRule::Output => {
            entry.insert("path".into(), "output".into());
        }
        ValueRule::Dir => {
            entry.insert("path".into(), "dir".into());
        }
        ValueRule::Pipeline(names) => {
            entry.insert("pipeline".into(), strings(names));
        }
        ValueRule::Grammar { name, split } => {
            entry.insert("grammar".into(), name.clone().into());
            if let Some(split) = split {
                entry.insert("split".into(), split.to_string().into());
            }
        }
    }
}

fn forms(forms: Forms) -> Value {
    let names: Vec<String> = [
        (forms.switch, "switch"),
        (forms.joined, "joined"),
        (forms.separate, "separate"),
        (forms.rest, "rest"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, name)| name.to_owned())
    .collect();
    match names.as_slice() {
        [one] => one.clone().into(),
        _ => strings(&names),
    }
}

fn flag(rule: &FlagRule) -> Value {
    let mut entry = Table::new();
    entry.insert("name".into(), rule.name.clone().into());
    entry.insert("form".into(), forms(rule.forms));
    if rule.count != 1 {
        entry.insert("count".into(), i64::from(rule.count).into());
    }
    if let Some(value) = &rule.value {
        value_rule(&mut entry, value);
    }
    if !rule.requires.is_empty() {
        entry.insert("requires".into(), strings(&rule.requires));
    }
    entry.into()
}

fn grammar(g: &Grammar) -> Table {
    let mut table = Table::new();
    let positional = match g.positional {
        Positional::Input => "input",
        Positional::Refuse => "refuse",
        Positional::Archive => "archive",
    };
    table.insert("positional".into(), positional.into());
    if !g.operations.is_empty() {
        table.insert("operations".into(), strings(&g.operations));
    }
    table.insert("response_files".into(), g.response_files.into());
    table.insert(
        "response_file_depth".into(),
        i64::from(g.response_file_depth).into(),
    );
    table.insert("case_insensitive".into(), g.case_insensitive.into());
    table.insert(
        "flag_chars".into(),
        g.flag_chars.iter().collect::<String>().into(),
    );
    table.insert(
        "flags".into(),
        g.flags.iter().map(flag).collect::<Vec<_>>().into(),
    );
    let deny: Vec<Value> = g
        .deny
        .iter()
        .map(|d| {
            let mut entry = Table::new();
            let key = if d.prefix { "prefix" } else { "exact" };
            entry.insert(key.into(), d.name.clone().into());
            entry.insert("reason".into(), d.reason.clone().into());
            entry.into()
        })
        .collect();
    table.insert("deny".into(), deny.into());
    if !g.require_one_of.is_empty() {
        table.insert("require_one_of".into(), strings(&g.require_one_of));
    }
    table.insert("linker_inputs".into(), g.linker_inputs.into());
    if !g.source_extensions.is_empty() {
        table.insert("source_extensions".into(), strings(&g.source_extensions));
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../policies")
            .join(name)
    }

    #[test]
    fn a_shown_policy_loads_back_to_itself() {
        for name in ["linux.toml", "linux-cc.toml", "macos.toml", "windows.toml"] {
            let policy = Policy::load(&shipped(name)).unwrap();
            let shown = policy.to_toml();
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(name);
            std::fs::write(&path, &shown).unwrap();
            let again = Policy::load(&path)
                .unwrap_or_else(|e| panic!("`{name}` shown does not load: {e}\n{shown}"));
            // Only the list of files read differs.
            let body = |text: &str| {
                text.lines()
                    .filter(|l| !l.starts_with('#'))
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            assert_eq!(body(&again.to_toml()), body(&shown), "{name}");
            assert!(!shown.contains("extends"), "{name}");
            assert!(
                shown.find("[policy]") < shown.find("[tool.")
                    && shown.find("[tool.") < shown.find("[args."),
                "{name}: sections out of order"
            );
        }
    }

    #[test]
    fn extends_is_merged_in() {
        let policy = Policy::load(&shipped("linux.toml")).unwrap();
        let shown = policy.to_toml();
        // `[args.clang]`'s flags come from llvm-14-common.toml and from
        // linux.toml's own additions (its target triples).
        assert!(shown.contains("llvm-14-common.toml"), "{shown}");
        assert!(shown.contains("[args.clang]"), "{shown}");
        assert!(shown.contains("--target="), "{shown}");
    }
}
