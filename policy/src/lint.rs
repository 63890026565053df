//! Warnings about a policy that loads but likely does not say what its
//! author meant (`replay policy lint`): entries that can never take
//! effect, and allowances wider than they look. A policy that does not
//! load is an error of [`Policy::load`], not a lint.

use std::collections::BTreeSet;

use crate::model::ValueRule;
use crate::Policy;

/// One warning: the policy key it is about, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    /// The key, as in the policy's syntax (`args.clang.flags`).
    pub key: String,
    /// What is wrong, and what to do.
    pub message: String,
}

impl Policy {
    /// The policy's warnings, in a stable order.
    pub fn lint(&self) -> Vec<Lint> {
        let mut lints = Vec::new();
        let mut used: BTreeSet<&str> = self
            .tools
            .values()
            .flat_map(|t| t.programs.iter().map(|p| p.grammar.as_str()))
            .collect();
        // Grammars reached through `grammar =` (`-Wl,` to `ld`).
        let mut more: Vec<&str> = used.iter().copied().collect();
        while let Some(name) = more.pop() {
            let Some(g) = self.grammars.get(name) else {
                continue;
            };
            for flag in &g.flags {
                if let Some(ValueRule::Grammar { name, .. }) = &flag.value {
                    if used.insert(name.as_str()) {
                        more.push(name.as_str());
                    }
                }
            }
        }
        for name in self.grammars.keys() {
            if !used.contains(name.as_str()) {
                lints.push(Lint {
                    key: format!("args.{name}"),
                    message: format!(
                        "no tool's program uses the grammar `[args.{name}]`, nor does any flag hand values to it: it judges nothing (name it in a `[tool.KIND]`'s `args`, or remove it)"
                    ),
                });
            }
        }
        for (name, g) in &self.grammars {
            for (at, flag) in g.flags.iter().enumerate() {
                // The same name taking its value the same way (`/o x` and
                // `/O2` differ in a grammar that ignores case).
                let twice = g.flags[..at].iter().any(|other| {
                    other.name == flag.name
                        && ((other.forms.switch && flag.forms.switch)
                            || (other.forms.joined && flag.forms.joined)
                            || (other.forms.separate && flag.forms.separate)
                            || (other.forms.rest && flag.forms.rest))
                });
                if twice {
                    lints.push(Lint {
                        key: format!("args.{name}.flags"),
                        message: format!(
                            "`{}` is listed more than once in `[args.{name}]` (an included policy's entry and yours?): keep one, removing the other with `drop_flags`",
                            flag.name
                        ),
                    });
                }
                if let Some(deny) = g.deny.iter().find(|d| {
                    if d.prefix {
                        flag.name.starts_with(&d.name)
                    } else {
                        flag.name == d.name
                    }
                }) {
                    lints.push(Lint {
                        key: format!("args.{name}.flags"),
                        message: format!(
                            "`{}` is allowed in `[args.{name}]` but `deny` refuses it first (`{}`: {}): the entry never takes effect",
                            flag.name, deny.name, deny.reason
                        ),
                    });
                }
                if let Some(ValueRule::Pattern(regex)) = &flag.value {
                    if matches!(regex.as_str(), "^(?:.*)$" | "^(?:.+)$") {
                        lints.push(Lint {
                            key: format!("args.{name}.flags"),
                            message: format!(
                                "`{}` in `[args.{name}]` takes any value (`pattern = \"{}\"`): a path there is not checked as one; use `path = \"input\"`, `\"output\"` or `\"dir\"`, or a narrower pattern",
                                flag.name,
                                &regex.as_str()[4..regex.as_str().len() - 2]
                            ),
                        });
                    }
                }
            }
        }
        for (name, rule) in &self.env.allow {
            if let ValueRule::Pattern(regex) = rule {
                if matches!(regex.as_str(), "^(?:.*)$" | "^(?:.+)$") {
                    lints.push(Lint {
                        key: format!("env.allow.{name}"),
                        message: format!(
                            "a log may set `{name}` to anything: give it a narrower `pattern`"
                        ),
                    });
                }
            }
        }
        for (kind, tool) in &self.tools {
            for path in tool.sha256.keys() {
                if !tool.dirs.iter().any(|d| path.starts_with(d.as_str())) {
                    lints.push(Lint {
                        key: format!("tool.{}.sha256", kind.name()),
                        message: format!(
                            "the pin for `{path}` is outside `[tool.{}] dirs`: no binary of this tool can be there, so it never applies",
                            kind.name()
                        ),
                    });
                }
            }
        }
        lints
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lint(text: &str) -> Vec<Lint> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.toml");
        std::fs::write(&path, text).unwrap();
        Policy::load(&path).unwrap().lint()
    }

    #[test]
    fn a_clean_policy_has_no_warnings() {
        let lints = lint(
            r#"
[policy]
os = "linux"
[tool.opt]
programs = ["opt-14"]
dirs = ["/usr/bin"]
[args.opt]
positional = "input"
flags = [{ name = "-O", form = "joined", enum = ["2"] }]
"#,
        );
        assert_eq!(lints, vec![]);
    }

    #[test]
    fn dead_and_wide_entries_are_named_with_their_keys() {
        let lints = lint(
            r#"
[policy]
os = "linux"
[env]
allow = { FOO = { pattern = ".*" } }
[tool.opt]
programs = ["opt-14"]
dirs = ["/usr/bin"]
sha256 = { "/opt/x/opt-14" = "0000000000000000000000000000000000000000000000000000000000000000" }
[args.opt]
positional = "input"
flags = [
  { name = "-O", form = "joined", enum = ["2"] },
  { name = "-O", form = "joined", enum = ["3"] },
  { name = "-load", form = "separate", pattern = ".*" },
]
deny = [{ prefix = "-load", reason = "loads a plugin" }]
[args.unused]
positional = "refuse"
"#,
        );
        let keys: Vec<&str> = lints.iter().map(|l| l.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "args.unused",
                "args.opt.flags",
                "args.opt.flags",
                "args.opt.flags",
                "env.allow.FOO",
                "tool.opt.sha256"
            ],
            "{lints:#?}"
        );
        assert!(lints[1].message.contains("more than once"));
        assert!(lints[2].message.contains("`deny` refuses it first"));
        assert!(lints[3].message.contains("takes any value"));
    }

    #[test]
    fn the_shipped_policies_lint_clean() {
        for name in ["linux.toml", "linux-cc.toml", "macos.toml", "windows.toml"] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../policies")
                .join(name);
            let lints = Policy::load(&path).unwrap().lint();
            assert_eq!(lints, vec![], "{name}");
        }
    }
}
