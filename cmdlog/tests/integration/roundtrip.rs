//! What the writer writes, the reader reads back unchanged; what the reader
//! would refuse, the writer refuses to write.

use std::collections::BTreeMap;

use cmdlog::{read_document, Command, Limit, Limits, LogWriter, Problem, ToolKind, WriteError};
use proptest::prelude::*;

use crate::support::{command, header};

fn write(commands: &[Command]) -> Vec<u8> {
    let mut writer = LogWriter::new(Vec::new(), &header()).unwrap();
    for command in commands {
        writer.write_command(command).unwrap();
    }
    writer.finish().unwrap()
}

#[test]
fn writer_output_reads_back_identically() {
    let mut rich = command(7);
    rich.tool = ToolKind::Other("lipo".into());
    rich.env = BTreeMap::from([("SOURCE_DATE_EPOCH".into(), "0".into())]);
    rich.cache_key = Some("blake3:00ff".into());
    rich.args.push("ünïcode \"quoted\" \\ \n".into());
    rich.inputs.push("/usr/lib/libm.so".into());
    let commands = vec![command(1), command(2), rich];
    let bytes = write(&commands);
    let document = read_document(bytes.as_slice(), Limits::default()).unwrap();
    assert_eq!(document.producer, header().producer);
    assert_eq!(document.platform, header().platform);
    assert_eq!(document.commands, commands);
}

#[test]
fn writer_puts_one_command_per_line() {
    let text = String::from_utf8(write(&[command(1), command(2)])).unwrap();
    assert_eq!(text.lines().count(), 4, "{text}");
    assert!(text.lines().nth(1).unwrap().starts_with(r#"{"id":1,"#));
}

#[test]
fn an_empty_log_reads_back() {
    let document = read_document(write(&[]).as_slice(), Limits::default()).unwrap();
    assert!(document.commands.is_empty());
}

#[test]
fn an_unfinished_writer_leaves_a_log_readers_refuse() {
    let mut bytes = Vec::new();
    {
        let mut writer = LogWriter::new(&mut bytes, &header()).unwrap();
        writer.write_command(&command(1)).unwrap();
        // A producer that dies here never calls finish.
    }
    let error = read_document(bytes.as_slice(), Limits::default()).unwrap_err();
    assert!(matches!(error.problem, Problem::Truncated), "{error}");
}

#[test]
fn writer_refuses_what_a_reader_would() {
    let mut writer = LogWriter::new(Vec::new(), &header()).unwrap();
    writer.write_command(&command(2)).unwrap();
    let refused = |result: Result<(), WriteError>| match result {
        Err(WriteError::Invalid { field, problem, .. }) => format!("{field}: {problem}"),
        other => panic!("expected a refusal, got {other:?}"),
    };
    assert_eq!(
        refused(writer.write_command(&command(1))),
        "id: id 1 comes after id 2: ids must strictly increase"
    );
    assert_eq!(
        refused(writer.write_command(&command(2))),
        "id: duplicate id 2"
    );
    let mut escaping = command(3);
    escaping.outputs = vec!["../x".into()];
    assert_eq!(
        refused(writer.write_command(&escaping)),
        "outputs[0]: `../x` leaves the work root with `..`"
    );
    let mut nul = command(3);
    nul.env.insert("A".into(), "\0".into());
    assert_eq!(
        refused(writer.write_command(&nul)),
        "env.A: contains a NUL byte"
    );
    // The refused commands left nothing behind: the log is still valid.
    writer.write_command(&command(3)).unwrap();
    let bytes = writer.finish().unwrap();
    let ids: Vec<u64> = read_document(bytes.as_slice(), Limits::default())
        .unwrap()
        .commands
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(ids, [2, 3]);
}

#[test]
fn writer_refuses_the_sizes_a_reader_would() {
    // Regression: each argument was under its own limit, so the writer
    // wrote a command the reader then refused as too many bytes.
    let limits = Limits {
        max_command_bytes: 4096,
        max_commands: 2,
        ..Limits::default()
    };
    let mut writer = LogWriter::new(Vec::new(), &header())
        .unwrap()
        .with_limits(limits);
    let mut big = command(1);
    big.args = vec!["a".repeat(1000); 5];
    match writer.write_command(&big) {
        Err(WriteError::TooLarge {
            id: 1,
            problem: Problem::TooLarge { limit, max: 4096 },
        }) => assert_eq!(limit, Limit::CommandBytes),
        other => panic!("expected a size refusal, got {other:?}"),
    }
    writer.write_command(&command(1)).unwrap();
    writer.write_command(&command(2)).unwrap();
    assert!(matches!(
        writer.write_command(&command(3)),
        Err(WriteError::TooLarge {
            problem: Problem::TooLarge {
                limit: Limit::Commands,
                ..
            },
            ..
        })
    ));
    // What was written reads back under the same limits.
    let bytes = writer.finish().unwrap();
    assert_eq!(
        read_document(bytes.as_slice(), limits)
            .unwrap()
            .commands
            .len(),
        2
    );
}

#[test]
fn writer_refuses_other_with_a_known_name() {
    // `Other("opt")` would read back as `Opt`, not as written.
    let mut writer = LogWriter::new(Vec::new(), &header()).unwrap();
    let mut command = command(1);
    command.tool = ToolKind::Other("opt".into());
    assert!(matches!(
        writer.write_command(&command),
        Err(WriteError::OtherNamesKnownKind { id: 1, .. })
    ));
}

/// Strings without NUL, including quotes, escapes and non-ASCII.
fn text() -> impl Strategy<Value = String> {
    "[^\u{0}]{0,12}"
}

/// Root-relative paths that stay inside the root.
fn confined() -> impl Strategy<Value = String> {
    prop::collection::vec("[a-zA-Z0-9_.é-]{1,6}", 1..4).prop_map(|parts| {
        parts
            .into_iter()
            .map(|p| if p == ".." { "x".to_owned() } else { p })
            .collect::<Vec<_>>()
            .join("/")
    })
}

fn arb_command() -> impl Strategy<Value = Command> {
    (
        prop::sample::select(vec!["opt", "llc", "cc", "ld", "custom-tool"]),
        "[a-z/._-]{1,10}",
        prop::collection::vec(text(), 0..6),
        confined(),
        prop::collection::btree_map("[A-Z_]{1,6}", text(), 0..3),
        prop::collection::vec(confined(), 0..3),
        prop::collection::vec(confined(), 0..3),
        prop::option::of("[0-9a-f]{8}"),
    )
        .prop_map(
            |(tool, program, args, cwd, env, inputs, outputs, cache_key)| Command {
                id: 0,
                tool: ToolKind::from_name(tool),
                program,
                args,
                cwd,
                env,
                inputs,
                outputs,
                cache_key,
            },
        )
}

proptest! {
    #[test]
    fn any_valid_log_round_trips(
        mut commands in prop::collection::vec(arb_command(), 0..8),
        gaps in prop::collection::vec(1u64..1000, 8),
    ) {
        let mut id = 0;
        for (command, gap) in commands.iter_mut().zip(gaps) {
            id += gap;
            command.id = id;
        }
        let bytes = write(&commands);
        let document = read_document(bytes.as_slice(), Limits::default()).unwrap();
        prop_assert_eq!(document.commands, commands);
    }
}
