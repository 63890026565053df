//! `naming`: an example `replay` policy plugin, and a useful one.
//!
//! It enforces two things the TOML rules cannot express:
//!
//! - **Outputs follow a naming scheme.** `config.outputs` maps a tool kind
//!   (`opt`, `llc`, `cc`, ..., or `"*"` for any kind not listed) to glob
//!   patterns; every output of a command of that kind must match one. `*`
//!   matches any run of characters but `/`, `?` one character but `/`.
//! - **No optimisation level below a minimum.** With `config.min_opt_level
//!   = 2`, `opt -O0`, `llc -O1` or `clang -c` without `-O` are refused. The
//!   last `-O` flag wins (as in clang); `-Os`/`-Oz` count as 2, `-Og` and a
//!   bare `-O` as 1, `-Ofast` as 3, `-passes=default<O2>` as 2. Without a
//!   flag the tool's own default counts: `llc` 2, `opt` without `-passes` 0,
//!   a C compile (`-c`/`-S`) 0. Links and other kinds have no level.
//!
//! ```toml
//! [plugin.config]
//! min_opt_level = 2
//! [plugin.config.outputs]
//! opt = ["*.opt.bc"]
//! llc = ["*.o"]
//! ```
//!
//! An unknown config key or a level above 3 is an error, which denies the
//! whole log: a typo in a policy must not switch a rule off.
//!
//! This library holds the rules; the module `naming.wasm` (`src/main.rs`)
//! serves them over plugin ABI v2 (streaming: it judges each command as it
//! reads it and keeps nothing between commands, so its memory does not
//! grow with the log), and `naming-v1.wasm` (`src/bin/naming-v1.rs`) over
//! ABI v1, so tests can hold the two ABIs to the same verdicts.

use std::collections::BTreeMap;

use replay_plugin_kit::{Command, ToolKind, Verdict};
use serde::Deserialize;

/// The plugin's `config` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    /// The lowest optimisation level allowed, 0 to 3.
    #[serde(default)]
    min_opt_level: Option<u8>,
    /// Tool kind (or `"*"`) to the glob patterns its outputs must match.
    #[serde(default)]
    outputs: BTreeMap<String, Vec<String>>,
}

/// The rules of a policy's `config`, checked.
#[derive(Debug)]
pub struct Rules {
    config: Config,
}

impl Rules {
    /// Reads and checks the `config` table, or says why it is unusable.
    pub fn from_config(
        config: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<Rules, String> {
        let config: Config = serde_json::from_value(serde_json::Value::Object(config.clone()))
            .map_err(|error| format!("invalid `config` for the naming plugin: {error}"))?;
        if let Some(level) = config.min_opt_level {
            if level > 3 {
                return Err(format!("`min_opt_level` is {level}; it must be 0 to 3"));
            }
        }
        if let Some((kind, _)) = config.outputs.iter().find(|(_, p)| p.is_empty()) {
            return Err(format!("`outputs.{kind}` lists no pattern"));
        }
        Ok(Rules { config })
    }

    /// The verdict on `command`.
    pub fn verdict(&self, command: &Command) -> Verdict {
        match refusal(&self.config, command) {
            Some(reason) => Verdict::deny(command.id, reason),
            None => Verdict::allow(command.id),
        }
    }
}

/// Why `command` breaks a rule of `config`, if it does.
fn refusal(config: &Config, command: &Command) -> Option<String> {
    if let Some(minimum) = config.min_opt_level {
        if let Some(level) = opt_level(command) {
            if level.value < minimum {
                return Some(format!(
                    "optimisation level {} is below the minimum -O{minimum} (`min_opt_level`)",
                    level.source
                ));
            }
        }
    }
    let kind = command.tool.name();
    let patterns = config
        .outputs
        .get(kind)
        .or_else(|| config.outputs.get("*"))?;
    let stray = command
        .outputs
        .iter()
        .find(|output| !patterns.iter().any(|pattern| glob(pattern, output)))?;
    Some(format!(
        "output `{stray}` of this `{kind}` command does not follow the naming scheme ({})",
        patterns
            .iter()
            .map(|p| format!("`{p}`"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// An optimisation level and where it came from, for the message.
#[derive(Debug, PartialEq)]
struct Level {
    value: u8,
    source: String,
}

/// The optimisation level `command` runs at, if its kind has one.
fn opt_level(command: &Command) -> Option<Level> {
    // The last flag wins, as in clang.
    let flagged = command.args.iter().rev().find_map(|arg| {
        flag_level(arg).map(|value| Level {
            value,
            source: format!("`{arg}`"),
        })
    });
    if flagged.is_some() {
        return flagged;
    }
    let default = |value, tool: &str| Level {
        value,
        source: format!("{value} (no `-O` flag; the default of `{tool}`)"),
    };
    let has = |wanted: &str| command.args.iter().any(|arg| arg == wanted);
    match &command.tool {
        ToolKind::Llc => Some(default(2, "llc")),
        ToolKind::Opt if !command.args.iter().any(|arg| arg.starts_with("-passes=")) => {
            Some(default(0, "opt"))
        }
        ToolKind::Cc if has("-c") || has("-S") => Some(default(0, "cc")),
        _ => None,
    }
}

/// The level an argument sets, if it is an optimisation flag.
fn flag_level(arg: &str) -> Option<u8> {
    if let Some(pipeline) = arg.strip_prefix("-passes=") {
        // The last `default<On>` of the pipeline.
        return pipeline
            .rsplit("default<")
            .next()
            .filter(|_| pipeline.contains("default<"))
            .and_then(|rest| rest.split('>').next())
            .and_then(|level| level.strip_prefix('O'))
            .and_then(level_name);
    }
    arg.strip_prefix("-O").and_then(level_name)
}

/// The level of an `-O` suffix: `0`..`3`, `s`, `z`, `g`, `fast`, or none.
fn level_name(name: &str) -> Option<u8> {
    match name {
        "0" => Some(0),
        "" | "1" | "g" => Some(1),
        "2" | "s" | "z" => Some(2),
        "3" | "fast" => Some(3),
        _ => None,
    }
}

/// Whether `text` matches the glob `pattern` (`*` and `?` never match `/`).
fn glob(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matching with one backtrack point per `*`, bounded by `/`.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some('?') if text[t] != '/' => {
                p += 1;
                t += 1;
            }
            Some(&c) if c != '*' && c != '?' && c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((star_p, star_t)) if text[star_t] != '/' => {
                    star = Some((star_p, star_t + 1));
                    p = star_p + 1;
                    t = star_t + 1;
                }
                _ => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(id: u64, tool: &str, args: &[&str], outputs: &[&str]) -> Command {
        Command {
            id,
            tool: ToolKind::from_name(tool),
            program: tool.into(),
            args: args.iter().map(|s| (*s).into()).collect(),
            cwd: ".".into(),
            env: Default::default(),
            inputs: vec![],
            outputs: outputs.iter().map(|s| (*s).into()).collect(),
            cache_key: None,
        }
    }

    fn start(config: serde_json::Value) -> Result<Rules, String> {
        match config {
            serde_json::Value::Object(map) => Rules::from_config(&map),
            _ => panic!("config must be an object"),
        }
    }

    fn reasons(config: serde_json::Value, commands: Vec<Command>) -> Vec<Option<String>> {
        let rules = start(config).unwrap();
        commands
            .iter()
            .map(|command| rules.verdict(command).reason)
            .collect()
    }

    #[test]
    fn o0_is_refused_when_the_minimum_is_2() {
        let got = reasons(
            serde_json::json!({"min_opt_level": 2}),
            vec![
                command(1, "opt", &["-O0", "a.bc", "-o", "a.opt.bc"], &["a.opt.bc"]),
                command(2, "opt", &["-O2", "a.bc"], &[]),
                command(3, "opt", &["-O3", "-O1", "a.bc"], &[]),
                command(4, "llc", &["a.bc"], &[]),
                command(5, "cc", &["-c", "a.c"], &[]),
                command(6, "cc", &["a.o", "-o", "a"], &[]),
                command(7, "opt", &["-passes=default<O1>"], &[]),
                command(8, "opt", &["-passes=instcombine"], &[]),
                command(9, "cc", &["-Os", "-c", "a.c"], &[]),
            ],
        );
        assert!(got[0].as_deref().unwrap().contains("`-O0`"), "{got:?}");
        assert_eq!(got[1], None);
        assert!(
            got[2].as_deref().unwrap().contains("`-O1`"),
            "last flag wins"
        );
        assert_eq!(got[3], None, "llc defaults to -O2");
        assert!(got[4].as_deref().unwrap().contains("default of `cc`"));
        assert_eq!(got[5], None, "a link has no level");
        assert!(got[6].as_deref().unwrap().contains("default<O1>"));
        assert_eq!(got[7], None, "a custom pipeline is not judged");
        assert_eq!(got[8], None);
    }

    #[test]
    fn outputs_must_follow_the_scheme_of_their_kind() {
        let got = reasons(
            serde_json::json!({"outputs": {"opt": ["*.opt.bc"], "*": ["out/*"]}}),
            vec![
                command(1, "opt", &[], &["p0.opt.bc"]),
                command(2, "opt", &[], &["p0.bc"]),
                command(3, "llc", &[], &["out/p0.o"]),
                command(4, "llc", &[], &["out/sub/p0.o"]),
                command(5, "ld", &[], &[]),
            ],
        );
        assert_eq!(got[0], None);
        assert!(got[1].as_deref().unwrap().contains("`p0.bc`"));
        assert_eq!(got[2], None);
        assert!(got[3].is_some(), "`*` does not cross `/`");
        assert_eq!(got[4], None);
    }

    #[test]
    fn bad_config_is_an_error_not_a_pass() {
        let typo = start(serde_json::json!({"min_opt_levle": 2}));
        assert!(typo.err().unwrap().contains("min_opt_levle"));
        let high = start(serde_json::json!({"min_opt_level": 4}));
        assert!(high.is_err());
        let empty = start(serde_json::json!({"outputs": {"opt": []}}));
        assert!(empty.is_err());
    }

    #[test]
    fn glob_matches_within_a_path_segment() {
        assert!(glob("*.o", "p0.o"));
        assert!(glob("p?.o", "p1.o"));
        assert!(glob("*", "anything"));
        assert!(glob("out/*.o", "out/a.o"));
        assert!(glob("*.opt.bc", "x.y.opt.bc"));
        assert!(!glob("*.o", "dir/p0.o"));
        assert!(!glob("*.o", "p0.obj"));
        assert!(!glob("p?.o", "p10.o"));
        assert!(!glob("", "x"));
        assert!(glob("", ""));
    }
}
