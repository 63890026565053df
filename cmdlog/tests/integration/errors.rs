//! Every way a log can be wrong gives a typed problem and a message that
//! says where: line, column, byte, command id and field. The messages are
//! snapshots (`snapshots/`), so a change to what users read is reviewed.

use std::ops::ControlFlow;

use cmdlog::{Limit, Limits, LogReader, Problem, ReadError, MAX_HEADER_BYTES};

use crate::support::{command_json, log, HEAD};

fn read(doc: &str, limits: Limits) -> Result<u64, ReadError> {
    let mut seen = 0;
    LogReader::new(doc.as_bytes())
        .with_limits(limits)
        .read(&mut |_| {
            seen += 1;
            ControlFlow::Continue(())
        })
        .map(|summary| {
            assert_eq!(summary.commands, seen);
            seen
        })
}

/// A command with one field replaced (`field` is the JSON key, `value` its
/// new JSON text), keeping `id` first as producers write it.
fn with(id: u64, field: &str, value: &str) -> String {
    let command: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(&command_json(id)).unwrap();
    let id_text = if field == "id" {
        value.to_owned()
    } else {
        id.to_string()
    };
    let mut parts = vec![format!(r#""id":{id_text}"#)];
    for (key, old) in &command {
        if key == "id" || key == field {
            continue;
        }
        parts.push(format!("{key:?}:{old}"));
    }
    if field != "id" {
        parts.push(format!("{field:?}:{value}"));
    }
    format!("{{{}}}", parts.join(","))
}

struct Case {
    name: &'static str,
    doc: String,
    limits: Limits,
    expect: fn(&Problem) -> bool,
    /// The id the error must name, if it is inside a command.
    id: Option<u64>,
}

fn case(name: &'static str, doc: String, expect: fn(&Problem) -> bool) -> Case {
    Case {
        name,
        doc,
        limits: Limits::default(),
        expect,
        id: None,
    }
}

impl Case {
    fn id(mut self, id: u64) -> Case {
        self.id = Some(id);
        self
    }

    fn limits(mut self, limits: Limits) -> Case {
        self.limits = limits;
        self
    }
}

fn cases() -> Vec<Case> {
    let one = command_json(1);
    let two = command_json(2);
    let cut = &one[..one.len() / 2];
    vec![
        case("empty_document", String::new(), |p| {
            matches!(p, Problem::Truncated)
        }),
        case("truncated_inside_a_command", format!("{HEAD}{cut}"), |p| {
            matches!(p, Problem::Truncated)
        })
        .id(1),
        case("truncated_after_a_command", format!("{HEAD}{one},"), |p| {
            matches!(p, Problem::Truncated)
        }),
        case(
            "truncated_before_the_closing_brace",
            format!("{HEAD}{one}]"),
            |p| matches!(p, Problem::Truncated),
        ),
        case("not_json", "hello".into(), |p| {
            matches!(p, Problem::Syntax(_))
        }),
        case("not_an_object", "[]".into(), |p| {
            matches!(p, Problem::Shape(_))
        }),
        case("trailing_data", format!("{} {{}}", log(&one)), |p| {
            matches!(p, Problem::TrailingData)
        }),
        case(
            "wrong_format",
            log(&one).replace("replay-log", "make-log"),
            |p| matches!(p, Problem::WrongFormat(f) if f == "make-log"),
        ),
        case(
            "wrong_version",
            log(&one).replace(r#""version":1"#, r#""version":2"#),
            |p| matches!(p, Problem::WrongVersion(2)),
        ),
        case(
            "version_as_string",
            log(&one).replace(r#""version":1"#, r#""version":"1""#),
            |p| matches!(p, Problem::Shape(_)),
        ),
        case(
            "commands_before_header",
            r#"{"format":"replay-log","version":1,"commands":[]}"#.into(),
            |p| matches!(p, Problem::CommandsBeforeHeader("producer")),
        ),
        case(
            "missing_commands",
            HEAD.trim_end_matches(r#","commands":["#).to_owned() + "}",
            |p| matches!(p, Problem::MissingField("commands")),
        ),
        case(
            "unknown_header_field",
            log(&one).replacen('{', r#"{"shell":"sh","#, 1),
            |p| matches!(p, Problem::UnknownField(f) if f == "shell"),
        ),
        case(
            "unknown_producer_field",
            log(&one).replace(r#""version":"0""#, r#""version":"0","x":1"#),
            |p| matches!(p, Problem::Shape(m) if m.contains("unknown field `x`")),
        ),
        case(
            "unknown_platform_os",
            log(&one).replace(r#""os":"linux""#, r#""os":"plan9""#),
            |p| matches!(p, Problem::Shape(m) if m.contains("plan9")),
        ),
        case(
            "unknown_command_field",
            log(&with(1, "shell", "true")),
            |p| matches!(p, Problem::UnknownField(f) if f == "shell"),
        )
        .id(1),
        case(
            "missing_command_field",
            log(&one.replace(r#""cwd":".","#, "")),
            |p| matches!(p, Problem::MissingField("cwd")),
        )
        .id(1),
        case(
            "duplicate_command_field",
            log(&one.replace(r#""cwd":".""#, r#""cwd":".","cwd":".""#)),
            |p| matches!(p, Problem::DuplicateField("cwd")),
        )
        .id(1),
        case("duplicate_id", log(&format!("{one},{one}")), |p| {
            matches!(p, Problem::DuplicateId(1))
        })
        .id(1),
        case("id_not_increasing", log(&format!("{two},{one}")), |p| {
            matches!(p, Problem::IdNotIncreasing { id: 1, previous: 2 })
        })
        .id(1),
        case("negative_id", log(&with(1, "id", "-1")), |p| {
            matches!(p, Problem::Shape(_))
        }),
        case(
            "non_string_arg",
            log(&with(1, "args", r#"["-O2", 5]"#)),
            |p| matches!(p, Problem::Shape(_)),
        )
        .id(1),
        case(
            "nul_byte_in_arg",
            log(&with(1, "args", r#"["-O2", "a\u0000b"]"#)),
            |p| matches!(p, Problem::NulByte),
        )
        .id(1),
        case(
            "nul_byte_in_program",
            log(&with(1, "program", r#""opt\u0000""#)),
            |p| matches!(p, Problem::NulByte),
        )
        .id(1),
        case("empty_program", log(&with(1, "program", r#""""#)), |p| {
            matches!(p, Problem::Empty)
        })
        .id(1),
        case("absolute_cwd", log(&with(1, "cwd", r#""/tmp""#)), |p| {
            matches!(p, Problem::AbsolutePath(_))
        })
        .id(1),
        case("escaping_cwd", log(&with(1, "cwd", r#""a/../..""#)), |p| {
            matches!(p, Problem::EscapingPath(_))
        })
        .id(1),
        case(
            "absolute_output",
            log(&with(1, "outputs", r#"["ok.o", "/etc/passwd"]"#)),
            |p| matches!(p, Problem::AbsolutePath(path) if path == "/etc/passwd"),
        )
        .id(1),
        case(
            "escaping_output",
            log(&with(1, "outputs", r#"["../../home/x/.bashrc"]"#)),
            |p| matches!(p, Problem::EscapingPath(_)),
        )
        .id(1),
        case(
            "windows_absolute_output",
            log(&with(1, "outputs", r#"["C:\\Windows\\x.dll"]"#)),
            |p| matches!(p, Problem::AbsolutePath(_)),
        )
        .id(1),
        case(
            "escaping_relative_input",
            log(&with(1, "inputs", r#"["../secret"]"#)),
            |p| matches!(p, Problem::EscapingPath(_)),
        )
        .id(1),
        case(
            "env_name_with_equals",
            log(&with(1, "env", r#"{"A=B": "c"}"#)),
            |p| matches!(p, Problem::BadEnvName(_)),
        )
        .id(1),
        case(
            "duplicate_env_name",
            log(&one.replace(r#""env":{}"#, r#""env":{"A":"1","A":"2"}"#)),
            |p| matches!(p, Problem::DuplicateKey(k) if k == "A"),
        )
        .id(1),
        case("too_many_args", log(&one), |p| {
            matches!(
                p,
                Problem::TooLarge {
                    limit: Limit::Args,
                    max: 2
                }
            )
        })
        .id(1)
        .limits(Limits {
            max_args: 2,
            ..Limits::default()
        }),
        case("arg_too_long", log(&one), |p| {
            matches!(
                p,
                Problem::TooLarge {
                    limit: Limit::ArgBytes,
                    max: 4
                }
            )
        })
        .id(1)
        .limits(Limits {
            max_arg_bytes: 4,
            ..Limits::default()
        }),
        case("too_many_commands", log(&format!("{one},{two}")), |p| {
            matches!(
                p,
                Problem::TooLarge {
                    limit: Limit::Commands,
                    max: 1
                }
            )
        })
        .limits(Limits {
            max_commands: 1,
            ..Limits::default()
        }),
        case("command_too_large", log(&format!("{one},{two}")), |p| {
            matches!(
                p,
                Problem::TooLarge {
                    limit: Limit::CommandBytes,
                    ..
                }
            )
        })
        .id(1)
        .limits(Limits {
            max_command_bytes: 100,
            ..Limits::default()
        }),
        case("log_too_large", log(&format!("{one},{two}")), |p| {
            matches!(
                p,
                Problem::TooLarge {
                    limit: Limit::LogBytes,
                    max: 300
                }
            )
        })
        .id(2)
        .limits(Limits {
            max_log_bytes: 300,
            ..Limits::default()
        }),
        // Regression: past the list the byte window was unbounded, so a
        // key of hundreds of MiB after `commands` was read whole (and then
        // echoed in the error) before it was refused as unknown.
        case(
            "huge_key_after_the_commands",
            format!(
                "{HEAD}{one}],\"{}\":0}}",
                "k".repeat(2 * MAX_HEADER_BYTES as usize)
            ),
            |p| {
                matches!(
                    p,
                    Problem::TooLarge {
                        limit: Limit::HeaderBytes,
                        max: MAX_HEADER_BYTES
                    }
                )
            },
        ),
        case(
            "header_too_large",
            log(&one).replacen(
                r#""name":"t""#,
                &format!(r#""name":"{}""#, "t".repeat(2 * MAX_HEADER_BYTES as usize)),
                1,
            ),
            |p| {
                matches!(
                    p,
                    Problem::TooLarge {
                        limit: Limit::HeaderBytes,
                        ..
                    }
                )
            },
        ),
    ]
}

#[test]
fn every_malformed_log_is_refused_with_its_location() {
    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(false);
    let _guard = settings.bind_to_scope();
    for case in cases() {
        let error = match read(&case.doc, case.limits) {
            Ok(n) => panic!("{}: read {n} commands but must fail", case.name),
            Err(error) => error,
        };
        assert!(
            (case.expect)(&error.problem),
            "{}: unexpected problem {:?}",
            case.name,
            error.problem
        );
        assert_eq!(
            error.command.and_then(|c| c.id),
            case.id,
            "{}: wrong command in {error}",
            case.name
        );
        assert!(
            error.location.offset > 0 || case.doc.is_empty(),
            "{}: no byte offset",
            case.name
        );
        insta::assert_snapshot!(case.name, error.to_string());
    }
}

#[test]
fn an_error_in_the_third_command_names_its_line_and_field() {
    // One command per line, as the writer emits them.
    let doc = format!(
        "{HEAD}\n{},\n{},\n{}\n]}}",
        command_json(1),
        command_json(2),
        with(3, "args", r#"["-O2", "ok", "x\u0000"]"#)
    );
    let error = read(&doc, Limits::default()).unwrap_err();
    assert_eq!(error.location.line, 4);
    assert_eq!(error.command.map(|c| c.position), Some(3));
    assert_eq!(
        error.field.map(|f| f.to_string()).as_deref(),
        Some("args[2]")
    );
}

#[test]
fn absolute_inputs_are_left_to_the_policy() {
    let doc = log(&with(
        1,
        "inputs",
        r#"["/usr/lib/x86_64-linux-gnu/libm.so"]"#,
    ));
    assert_eq!(read(&doc, Limits::default()).unwrap(), 1);
}

#[test]
fn unknown_tool_kinds_are_kept_by_name() {
    let doc = log(&with(1, "tool", r#""lipo""#));
    let parsed = cmdlog::read_document(doc.as_bytes(), Limits::default()).unwrap();
    assert_eq!(
        parsed.commands[0].tool,
        cmdlog::ToolKind::Other("lipo".into())
    );
    assert!(!parsed.commands[0].tool.is_known());
}

#[test]
fn a_log_with_no_commands_is_valid() {
    assert_eq!(read(&log(""), Limits::default()).unwrap(), 0);
}

#[test]
fn a_visitor_can_stop_early() {
    let doc = log(&format!(
        "{},{},{}",
        command_json(1),
        command_json(2),
        "garbage"
    ));
    let mut seen = Vec::new();
    let summary = LogReader::new(doc.as_bytes())
        .read(&mut |command: cmdlog::Command| {
            seen.push(command.id);
            if command.id == 2 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
        .unwrap();
    assert!(summary.stopped);
    assert_eq!(seen, [1, 2]);
}
