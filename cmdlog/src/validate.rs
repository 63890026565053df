//! The checks on each value of a log, shared by the reader (which applies
//! them as values stream past) and the writer (which applies them to a whole
//! command before it writes it), so both sides refuse the same things.

use crate::error::{Field, Item, Problem};
use crate::limits::{Limit, Limits};
use crate::path;
use crate::types::{Command, Header, Platform, Producer};

/// Any string: no NUL byte, which no argv entry, path or variable can hold.
pub(crate) fn text(s: &str) -> Result<(), Problem> {
    if s.contains('\0') {
        return Err(Problem::NulByte);
    }
    Ok(())
}

/// A string that must also be non-empty (`tool`, `program`, names).
pub(crate) fn name(s: &str) -> Result<(), Problem> {
    text(s)?;
    if s.is_empty() {
        return Err(Problem::Empty);
    }
    Ok(())
}

/// The string lists of a command, each with its own check.
#[derive(Debug, Clone, Copy)]
pub(crate) enum List {
    Args,
    Inputs,
    Outputs,
}

impl List {
    pub(crate) fn field_name(self) -> &'static str {
        match self {
            List::Args => "args",
            List::Inputs => "inputs",
            List::Outputs => "outputs",
        }
    }

    /// The most elements the list may have.
    pub(crate) fn max_len(self, limits: &Limits) -> Option<(Limit, u64)> {
        match self {
            List::Args => Some((Limit::Args, limits.max_args)),
            // Inputs and outputs are bounded by the command's byte budget.
            List::Inputs | List::Outputs => None,
        }
    }

    pub(crate) fn check(self, s: &str, limits: &Limits) -> Result<(), Problem> {
        text(s)?;
        match self {
            List::Args => {
                if s.len() as u64 > limits.max_arg_bytes {
                    return Err(Problem::TooLarge {
                        limit: Limit::ArgBytes,
                        max: limits.max_arg_bytes,
                    });
                }
                Ok(())
            }
            List::Inputs => path::check_input(s).map_err(|p| Problem::from_path(p, s)),
            List::Outputs => confined(s),
        }
    }
}

/// A path that must stay inside the work root (`cwd`, outputs).
pub(crate) fn confined(s: &str) -> Result<(), Problem> {
    text(s)?;
    path::check_confined(s).map_err(|p| Problem::from_path(p, s))
}

/// An environment variable's name.
pub(crate) fn env_name(s: &str) -> Result<(), Problem> {
    name(s)?;
    if s.contains('=') {
        return Err(Problem::BadEnvName(s.to_owned()));
    }
    Ok(())
}

/// A command id, given the id of the command before it.
pub(crate) fn id_after(id: u64, previous: Option<u64>) -> Result<(), Problem> {
    match previous {
        Some(previous) if id == previous => Err(Problem::DuplicateId(id)),
        Some(previous) if id < previous => Err(Problem::IdNotIncreasing { id, previous }),
        _ => Ok(()),
    }
}

/// The `producer` of the header.
pub(crate) fn producer(producer: &Producer) -> Result<(), (Field, Problem)> {
    let at = |name| move |p| (Field::named(name), p);
    name(&producer.name).map_err(at("producer.name"))?;
    text(&producer.version).map_err(at("producer.version"))?;
    if let Some(llvm) = &producer.llvm {
        text(llvm).map_err(at("producer.llvm"))?;
    }
    Ok(())
}

/// The `platform` of the header.
pub(crate) fn platform(platform: &Platform) -> Result<(), (Field, Problem)> {
    name(&platform.arch).map_err(|p| (Field::named("platform.arch"), p))
}

/// The whole header.
pub(crate) fn header(header: &Header) -> Result<(), (Field, Problem)> {
    producer(&header.producer)?;
    platform(&header.platform)
}

/// A whole command, as the writer checks it before writing.
pub(crate) fn command(
    command: &Command,
    limits: &Limits,
    previous: Option<u64>,
) -> Result<(), (Field, Problem)> {
    let at = |name| move |p| (Field::named(name), p);
    id_after(command.id, previous).map_err(at("id"))?;
    name(command.tool.name()).map_err(at("tool"))?;
    name(&command.program).map_err(at("program"))?;
    for (list, items) in [
        (List::Args, &command.args),
        (List::Inputs, &command.inputs),
        (List::Outputs, &command.outputs),
    ] {
        if let Some((limit, max)) = list.max_len(limits) {
            if items.len() as u64 > max {
                return Err((
                    Field::named(list.field_name()),
                    Problem::TooLarge { limit, max },
                ));
            }
        }
        for (i, item) in items.iter().enumerate() {
            list.check(item, limits).map_err(|p| {
                let field = Field {
                    name: list.field_name(),
                    item: Some(Item::Index(i as u64)),
                };
                (field, p)
            })?;
        }
    }
    confined(&command.cwd).map_err(at("cwd"))?;
    for (key, value) in &command.env {
        let field = || Field {
            name: "env",
            item: Some(Item::Key(key.clone())),
        };
        env_name(key).map_err(|p| (field(), p))?;
        text(value).map_err(|p| (field(), p))?;
    }
    if let Some(key) = &command.cache_key {
        text(key).map_err(at("cache_key"))?;
    }
    Ok(())
}
