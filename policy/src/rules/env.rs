//! The environment rule: a tool gets a clean environment, the policy's
//! `[env] set` plus the variables the log asks for that `[env.allow]`
//! accepts with their value; a variable that can never come from a log
//! (it changes which code runs, or where tools look) is refused.

use std::collections::BTreeMap;

use crate::ctx::Ctx;
use crate::load::never_from_log;
use crate::model::ValueRule;

/// The environment a command gets: the policy's `set`, plus each variable
/// the log asks for that the policy allows with that value; the others are
/// refused.
pub(crate) fn env(
    ctx: &mut Ctx<'_>,
    requested: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut env = ctx.policy.env.set.clone();
    for (name, value) in requested {
        if never_from_log(name) {
            ctx.refuse(
                "env.forbidden",
                name,
                format!("`{name}` can never come from a log: it changes which code runs or where tools look"),
                "remove it from the command's `env`; the tool gets a clean environment",
            );
            continue;
        }
        let Some(rule) = ctx.policy.env.allow.get(name) else {
            ctx.refuse(
                "env.not-allowed",
                name,
                format!("`{name}` is not a variable the policy lets a log set"),
                "remove it, or allow it (with a value constraint) under `[env.allow]`",
            );
            continue;
        };
        let ok = match rule {
            ValueRule::Enum(values) => values.iter().any(|v| v == value),
            ValueRule::Pattern(re) => re.is_match(value),
            ValueRule::Range(lo, hi) => {
                value.parse::<i64>().is_ok_and(|n| (*lo..=*hi).contains(&n))
            }
            _ => false,
        };
        if ok {
            env.insert(name.clone(), value.clone());
        } else {
            ctx.refuse(
                "env.bad-value",
                name,
                format!("`{name}={value}` is not an allowed value"),
                "use a value the policy's `[env.allow]` constraint accepts",
            );
        }
    }
    env
}
