//! Building test logs.

use cmdlog::{Command, Header, Os, Platform, Producer, ToolKind};

/// A valid header line, up to and including `"commands":[`.
pub const HEAD: &str = r#"{"format":"replay-log","version":1,"producer":{"name":"t","version":"0"},"platform":{"os":"linux","arch":"x86_64"},"commands":["#;

/// A document with `commands` (JSON text of the elements) after a valid header.
pub fn log(commands: &str) -> String {
    format!("{HEAD}{commands}]}}")
}

/// A valid command with `id`, as JSON text.
pub fn command_json(id: u64) -> String {
    format!(
        r#"{{"id":{id},"tool":"opt","program":"opt","args":["-O2","p{id}.bc","-o","p{id}.opt.bc"],"cwd":".","env":{{}},"inputs":["p{id}.bc"],"outputs":["p{id}.opt.bc"]}}"#
    )
}

/// The header the writer tests use.
pub fn header() -> Header {
    Header {
        producer: Producer {
            name: "aotc".into(),
            version: "0.1.0".into(),
            llvm: Some("14.0.6".into()),
        },
        platform: Platform {
            os: Os::Linux,
            arch: "x86_64".into(),
        },
    }
}

/// A valid command with `id`.
pub fn command(id: u64) -> Command {
    Command {
        id,
        tool: ToolKind::Opt,
        program: "opt".into(),
        args: vec!["-O2".into(), format!("p{id}.bc")],
        cwd: ".".into(),
        env: Default::default(),
        inputs: vec![format!("p{id}.bc")],
        outputs: vec![format!("p{id}.opt.bc")],
        cache_key: None,
    }
}
