//! The one-command log a lease becomes, so that the worker's own policy
//! judges it exactly as it judges a local log: the tool kind from the
//! `tool` platform property, else from the program's name; the program
//! from the `program` property (the client's canonical path), else
//! `argv[0]`; `working_directory` as `cwd`; every file of the input tree
//! (and every system file the client read) as an input; `output_paths`,
//! relative to the working directory in REAPI, rebased onto the root.
//! Main function: [`to_command`].

use std::collections::BTreeMap;

use cmdlog::{Command, Document, Os, Platform, Producer, ToolKind};
use replay_cache::reapi::Command as ReapiCommand;

use super::tree::InputTree;

/// The platform property naming the tool kind.
pub const TOOL_KEY: &str = "tool";
/// The platform property naming the client's canonical program path.
pub const PROGRAM_KEY: &str = "program";
/// The platform property naming the client's absolute work root.
pub const ROOT_KEY: &str = "root";

/// The client's work root a `Command` names (its first `root` property;
/// [`to_command`] refuses one named twice with different values).
pub fn client_root(command: &ReapiCommand) -> Option<&str> {
    command
        .platform
        .iter()
        .flat_map(|p| &p.properties)
        .find(|p| p.name == ROOT_KEY)
        .map(|p| p.value.as_str())
}

/// The v1 log document of one lease's `command`, recorded for this
/// machine (a worker runs only what its own platform's policy judges).
pub fn document(command: Command) -> Option<Document> {
    Some(Document {
        format: cmdlog::FORMAT.to_owned(),
        version: cmdlog::VERSION,
        producer: Producer {
            name: "replay worker".to_owned(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            llvm: None,
        },
        platform: Platform {
            os: Os::host()?,
            arch: std::env::consts::ARCH.to_owned(),
        },
        commands: vec![command],
    })
}

/// Why a lease's `Command` cannot be a log command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LeaseLogError {
    /// No arguments at all.
    #[error("the action's Command has no arguments (no program to run)")]
    NoProgram,
    /// The working directory is absolute or leaves the input root.
    #[error("the action's working directory `{0}` is not inside its input root")]
    BadCwd(String),
    /// An output path is absolute or leaves the input root.
    #[error("the action's output path `{0}` is not inside its input root")]
    BadOutput(String),
    /// A platform property appears twice with different values.
    #[error("the action's platform names `{0}` twice")]
    DuplicateProperty(String),
}

/// The tool kind a program's file name suggests: `clang-14` is `cc`,
/// `opt-14` is `opt`, `ld.lld` is `ld`; anything else keeps its name (and
/// a policy refuses a kind it does not know).
pub fn kind_of_program(program: &str) -> ToolKind {
    match ToolKind::program_stem(program) {
        "clang" | "gcc" => ToolKind::Cc,
        "clang++" | "g++" => ToolKind::Cxx,
        "ld.lld" | "ld.bfd" | "ld.gold" | "lld" => ToolKind::Ld,
        "llvm-ar" => ToolKind::Ar,
        other => ToolKind::from_name(other),
    }
}

/// The log command for a lease's `command` with input tree `tree`, id 1.
pub fn to_command(command: &ReapiCommand, tree: &InputTree) -> Result<Command, LeaseLogError> {
    let mut properties: BTreeMap<&str, &str> = BTreeMap::new();
    for property in command.platform.iter().flat_map(|p| &p.properties) {
        if let Some(old) = properties.insert(&property.name, &property.value) {
            if old != property.value {
                return Err(LeaseLogError::DuplicateProperty(property.name.clone()));
            }
        }
    }
    let (argv0, args) = command
        .arguments
        .split_first()
        .ok_or(LeaseLogError::NoProgram)?;
    let program = properties
        .get(PROGRAM_KEY)
        .map_or_else(|| argv0.clone(), |p| (*p).to_owned());
    let tool = properties
        .get(TOOL_KEY)
        .map_or_else(|| kind_of_program(&program), |k| ToolKind::from_name(k));
    let cwd = if command.working_directory.is_empty() {
        ".".to_owned()
    } else {
        command.working_directory.clone()
    };
    let cwd = cmdlog::path::check_confined(&cwd)
        .ok()
        .and_then(|()| cmdlog::path::normalize_under(".", &cwd))
        .ok_or_else(|| LeaseLogError::BadCwd(command.working_directory.clone()))?;
    let mut outputs = Vec::new();
    for path in &command.output_paths {
        let rebased = (!cmdlog::path::is_absolute(path))
            .then(|| cmdlog::path::normalize_under(&cwd, path))
            .flatten()
            .filter(|p| p != ".")
            .ok_or_else(|| LeaseLogError::BadOutput(path.clone()))?;
        outputs.push(rebased);
    }
    let inputs = tree
        .files
        .iter()
        .chain(&tree.system)
        .map(|f| f.path.clone())
        .collect();
    Ok(Command {
        id: 1,
        tool,
        program,
        args: args.to_vec(),
        cwd,
        env: command
            .environment_variables
            .iter()
            .map(|v| (v.name.clone(), v.value.clone()))
            .collect(),
        inputs,
        outputs,
        cache_key: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::worker::tree::TreeFile;
    use replay_cache::reapi::{Platform, Property};
    use replay_cache::Digest;

    fn command(args: &[&str], cwd: &str, outputs: &[&str], props: &[(&str, &str)]) -> ReapiCommand {
        ReapiCommand {
            arguments: args.iter().map(|s| (*s).to_owned()).collect(),
            working_directory: cwd.into(),
            output_paths: outputs.iter().map(|s| (*s).to_owned()).collect(),
            platform: Some(Platform {
                properties: props
                    .iter()
                    .map(|(n, v)| Property {
                        name: (*n).into(),
                        value: (*v).into(),
                    })
                    .collect(),
            }),
            ..ReapiCommand::default()
        }
    }

    fn tree() -> InputTree {
        let file = |path: &str| TreeFile {
            path: path.into(),
            digest: Digest::of(b""),
            executable: false,
        };
        InputTree {
            files: vec![file("sub/a.c")],
            system: vec![file("/usr/include/stdio.h")],
            program: None,
        }
    }

    #[test]
    fn a_command_becomes_a_log_command_with_outputs_rebased_on_the_root() {
        let c = command(
            &["clang-14", "-c", "a.c", "-o", "a.o"],
            "sub",
            &["a.o"],
            &[("program", "/usr/lib/llvm-14/bin/clang")],
        );
        let log = to_command(&c, &tree()).unwrap();
        assert_eq!(log.tool, ToolKind::Cc);
        assert_eq!(log.program, "/usr/lib/llvm-14/bin/clang");
        assert_eq!(log.args, ["-c", "a.c", "-o", "a.o"]);
        assert_eq!(log.cwd, "sub");
        assert_eq!(log.outputs, ["sub/a.o"]);
        assert_eq!(log.inputs, ["sub/a.c", "/usr/include/stdio.h"]);
        let told = command(&["x"], "", &["o"], &[("tool", "opt")]);
        assert_eq!(to_command(&told, &tree()).unwrap().tool, ToolKind::Opt);
    }

    /// The log a lease becomes is one the strict reader accepts (unknown
    /// fields, bad paths and truncation are errors there), unchanged.
    #[test]
    fn a_lease_log_reads_back_through_the_log_reader() {
        let c = command(
            &["opt-14", "-O2", "p0.bc", "-o", "p0.opt.bc"],
            "",
            &["p0.opt.bc"],
            &[("tool", "opt"), ("program", "/usr/lib/llvm-14/bin/opt")],
        );
        let log = document(to_command(&c, &tree()).unwrap()).unwrap();
        let bytes = serde_json::to_vec(&log).unwrap();
        let read = cmdlog::read_document(bytes.as_slice(), cmdlog::Limits::default()).unwrap();
        assert_eq!(read, log);
    }

    #[test]
    fn escaping_cwd_and_outputs_are_refused() {
        let up = command(&["opt"], "..", &[], &[]);
        assert_eq!(
            to_command(&up, &tree()),
            Err(LeaseLogError::BadCwd("..".into()))
        );
        for bad in ["../x", "/etc/passwd", "."] {
            let c = command(&["opt"], "", &[bad], &[]);
            assert_eq!(
                to_command(&c, &tree()),
                Err(LeaseLogError::BadOutput(bad.into())),
                "{bad}"
            );
        }
        let twice = command(&["opt"], "", &[], &[("tool", "opt"), ("tool", "cc")]);
        assert_eq!(
            to_command(&twice, &tree()),
            Err(LeaseLogError::DuplicateProperty("tool".into()))
        );
        assert_eq!(
            to_command(&command(&[], "", &[], &[]), &tree()),
            Err(LeaseLogError::NoProgram)
        );
    }
}
