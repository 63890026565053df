//! ABI v2 (streaming) plugins written in WAT: a well-behaved one, and
//! hostile ones (never answering, answering early, out of order,
//! flooding, over their budgets), each denied within a bound and leaving
//! the host able to run the next plugin.

use std::time::Duration;

use cmdlog::ToolKind;
use policy::plugin::{Failure, PluginVerdict, MAX_VERDICT_LINE};

use super::support::{
    command, denies, failure, host, iovec_flood, log, platform, spec, Fixture, IOVEC_FLOOD_MEMORY,
};

/// The custom section that marks a module as ABI v2.
const V2: &str = r#"(@custom "replay.plugin-abi" "2")"#;

/// Reads once from stdin into a 60,000-byte buffer at 1024 (the first
/// batch, header and both commands of the test log, fits).
const READ: &str = "(i32.store (i32.const 0) (i32.const 1024))
     (i32.store (i32.const 4) (i32.const 60000))
     (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))";

/// The answers of the good v2 plugin: allow 1, refuse 2.
const ANSWERS: &str =
    "{\"id\":1,\"allow\":true}\n{\"id\":2,\"allow\":false,\"reason\":\"two is refused\"}\n";

/// Writes `text` (as data at 256) to stdout.
fn write(text: &str) -> (String, String) {
    (
        format!("(data (i32.const 256) \"{}\")", escape(text)),
        format!(
            "(i32.store (i32.const 16) (i32.const 256))
             (i32.store (i32.const 20) (i32.const {}))
             (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))",
            text.len()
        ),
    )
}

fn escape(text: &str) -> String {
    text.bytes().map(|b| format!("\\{b:02x}")).collect()
}

/// A v2 plugin: `data` and `body` as [`Fixture::plugin`] takes them.
fn v2(fixture: &Fixture, name: &str, data: &str, body: &str) -> std::path::PathBuf {
    fixture.plugin(name, &format!("{V2} {data}"), body)
}

#[test]
fn a_v2_plugin_answers_each_command_in_order() {
    let fixture = Fixture::new();
    let (data, answer) = write(ANSWERS);
    // Reads the batch, answers it, reads the end of input, exits.
    let path = v2(
        &fixture,
        "good-v2",
        &data,
        &format!("{READ} {answer} {READ}"),
    );
    let plugin = host().load(&spec("good-v2", path)).unwrap();
    assert_eq!(plugin.abi(), 2);
    let verdicts = plugin.evaluate(&platform(), &log()).unwrap();
    assert_eq!(
        verdicts,
        [
            PluginVerdict {
                id: 1,
                allow: true,
                reason: None
            },
            PluginVerdict {
                id: 2,
                allow: false,
                reason: Some("two is refused".into())
            },
        ]
    );
}

#[test]
fn the_request_is_a_header_line_then_one_command_a_line() {
    let fixture = Fixture::new();
    // Echoes what it read to stderr and fails: the test reads the stream.
    let path = v2(
        &fixture,
        "echo-v2",
        "",
        &format!(
            "{READ}
             (i32.store (i32.const 4) (i32.load (i32.const 8)))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (call $proc_exit (i32.const 9))"
        ),
    );
    let error = denies(&host(), &fixture, spec("echo-v2", path));
    assert!(
        matches!(failure(&error), Failure::Exit { code: 9 }),
        "{error}"
    );
    let lines: Vec<&str> = error.stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{}", error.stderr);
    let header: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["abi"], 2);
    assert_eq!(header["platform"]["os"], "linux");
    let first: cmdlog::Command = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(first, log()[0]);
}

#[test]
fn never_answering_while_busy_hits_the_batch_deadline() {
    let fixture = Fixture::new();
    let path = v2(
        &fixture,
        "mute-v2",
        "",
        &format!("{READ} (loop $forever (br $forever))"),
    );
    let mut spec = spec("mute-v2", path);
    spec.timeout = Duration::from_secs(30);
    spec.batch_timeout = Duration::from_millis(500);
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::BatchDeadline { timeout } if *timeout == Duration::from_millis(500)),
        "{error}"
    );
}

#[test]
fn never_answering_and_asking_for_more_is_denied_at_once() {
    let fixture = Fixture::new();
    let path = v2(&fixture, "greedy-v2", "", &format!("{READ} {READ}"));
    let error = denies(&host(), &fixture, spec("greedy-v2", path));
    assert!(
        matches!(failure(&error), Failure::ReadAhead { id: 1 }),
        "{error}"
    );
}

#[test]
fn answering_before_reading_is_denied() {
    let fixture = Fixture::new();
    let (data, answer) = write(ANSWERS);
    let path = v2(&fixture, "early-v2", &data, &format!("{answer} {READ}"));
    let error = denies(&host(), &fixture, spec("early-v2", path));
    assert!(
        matches!(failure(&error), Failure::EarlyVerdict { id: 1 }),
        "{error}"
    );
}

#[test]
fn answering_out_of_order_is_denied() {
    let fixture = Fixture::new();
    let (data, answer) = write("{\"id\":2,\"allow\":true}\n{\"id\":1,\"allow\":true}\n");
    let path = v2(
        &fixture,
        "order-v2",
        &data,
        &format!("{READ} {answer} {READ}"),
    );
    let error = denies(&host(), &fixture, spec("order-v2", path));
    assert!(
        matches!(
            failure(&error),
            Failure::OutOfOrder {
                expected: 1,
                got: 2
            }
        ),
        "{error}"
    );
}

#[test]
fn a_verdict_after_the_last_command_is_denied() {
    let fixture = Fixture::new();
    let (data, answer) = write(ANSWERS);
    let (_, again) = write(ANSWERS);
    let path = v2(
        &fixture,
        "extra-v2",
        &data,
        &format!("{READ} {answer} {READ} {again}"),
    );
    let error = denies(&host(), &fixture, spec("extra-v2", path));
    assert!(
        matches!(failure(&error), Failure::ExtraVerdict { id: 1 }),
        "{error}"
    );
}

#[test]
fn exiting_without_every_verdict_is_denied() {
    let fixture = Fixture::new();
    let (data, answer) = write("{\"id\":1,\"allow\":true}\n");
    let path = v2(&fixture, "quits-v2", &data, &format!("{READ} {answer}"));
    let error = denies(&host(), &fixture, spec("quits-v2", path));
    assert!(
        matches!(failure(&error), Failure::MissingVerdicts { count: 1, first } if first == &[2]),
        "{error}"
    );
}

#[test]
fn malformed_and_unfinished_verdict_lines_are_denied() {
    let fixture = Fixture::new();
    let (data, answer) = write("{\"id\":1,\"allow\":true}\n{\"id\":2,\"allow\":\"yes\"}\n");
    let path = v2(
        &fixture,
        "garbage-v2",
        &data,
        &format!("{READ} {answer} {READ}"),
    );
    let error = denies(&host(), &fixture, spec("garbage-v2", path));
    assert!(
        matches!(
            failure(&error),
            Failure::MalformedVerdict { after: Some(1), .. }
        ),
        "{error}"
    );
    let (data, answer) = write("{\"id\":1,\"allow\":true}\n{\"id\":2,\"allow\":true}");
    let path = v2(&fixture, "cut-v2", &data, &format!("{READ} {answer}"));
    let error = denies(&host(), &fixture, spec("cut-v2", path));
    assert!(
        matches!(failure(&error), Failure::UnfinishedLine { after: Some(1) }),
        "{error}"
    );
}

#[test]
fn flooding_one_endless_line_is_stopped_at_the_line_cap() {
    let fixture = Fixture::new();
    // 60,000 zero bytes (no newline), again and again, ignoring errors;
    // stderr counts the writes it got to make.
    let path = v2(
        &fixture,
        "flood-v2",
        "(data (i32.const 32) \".\")",
        &format!(
            "{READ}
             (i32.store (i32.const 16) (i32.const 4096))
             (i32.store (i32.const 20) (i32.const 60000))
             (i32.store (i32.const 40) (i32.const 32))
             (i32.store (i32.const 44) (i32.const 1))
             (loop $more
               (drop (call $fd_write (i32.const 2) (i32.const 40) (i32.const 1) (i32.const 24)))
               (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
               (br $more))"
        ),
    );
    let error = denies(&host(), &fixture, spec("flood-v2", path));
    assert!(
        matches!(failure(&error), Failure::VerdictTooLong { limit } if *limit == MAX_VERDICT_LINE),
        "{error}"
    );
    // The second write of 60,000 bytes crosses the 64 KiB line cap.
    assert_eq!(error.stderr.matches('.').count(), 2, "{}", error.stderr);
}

#[test]
fn flooding_verdict_lines_is_stopped_at_the_first_one_too_many() {
    let fixture = Fixture::new();
    let (data, answer) = write("{\"id\":1,\"allow\":true}\n");
    let path = v2(
        &fixture,
        "repeat-v2",
        &data,
        &format!("{READ} (loop $more {answer} (br $more))"),
    );
    let error = denies(&host(), &fixture, spec("repeat-v2", path));
    assert!(
        matches!(
            failure(&error),
            Failure::OutOfOrder {
                expected: 2,
                got: 1
            }
        ),
        "{error}"
    );
}

#[test]
fn spinning_runs_out_of_batch_fuel() {
    let fixture = Fixture::new();
    let path = v2(
        &fixture,
        "spin-v2",
        "",
        &format!("{READ} (loop $forever (br $forever))"),
    );
    let mut spec = spec("spin-v2", path);
    spec.fuel = Some(1_000_000_000);
    spec.batch_fuel = Some(1_000_000);
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::BatchOutOfFuel { fuel: 1_000_000 }),
        "{error}"
    );
}

#[test]
fn an_unknown_abi_section_is_refused_at_load() {
    let fixture = Fixture::new();
    let path = fixture.plugin("v9", r#"(@custom "replay.plugin-abi" "9")"#, "");
    let error = host().load(&spec("v9", path)).unwrap_err();
    assert!(error.to_string().contains("ABI `9`"), "{error}");
}

#[test]
fn iovec_floods_are_refused_and_stopped_at_the_batch_deadline() {
    for call in ["fd_write", "fd_read"] {
        let fixture = Fixture::new();
        let path = v2(&fixture, call, "", &iovec_flood(call));
        let mut spec = spec(call, path);
        spec.max_memory = IOVEC_FLOOD_MEMORY;
        spec.timeout = Duration::from_secs(30);
        spec.batch_timeout = Duration::from_millis(500);
        // Within `BOUND` (the host's join comes promptly), by the batch
        // deadline: the plugin got `EINVAL` for 1,025 iovecs.
        let error = denies(&host(), &fixture, spec);
        assert!(
            matches!(failure(&error), Failure::BatchDeadline { timeout } if *timeout == Duration::from_millis(500)),
            "{call}: {error}"
        );
    }
}

#[test]
fn reading_after_the_end_refills_no_batch_fuel() {
    // Regression (review of issue 20): every `fd_read` after the end of
    // input started a "batch" and refilled `batch_fuel`, so a plugin
    // spinning on reads after the end ran until its batch deadline.
    let fixture = Fixture::new();
    let (data, answer) = write(ANSWERS);
    let path = v2(
        &fixture,
        "reread-v2",
        &data,
        &format!("{READ} {answer} (loop $forever {READ} (br $forever))"),
    );
    let mut spec = spec("reread-v2", path);
    spec.timeout = Duration::from_secs(30);
    spec.batch_timeout = Duration::from_secs(30);
    spec.batch_fuel = Some(200_000);
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::BatchOutOfFuel { fuel: 200_000 }),
        "{error}"
    );
}

/// A v2 plugin that allows every command of a log of any length: reads
/// batches of up to 60,000 bytes, and writes `{"id":N,"allow":true}` for
/// every newline after the header's (ids counted from 1).
fn allow_all(fixture: &Fixture, name: &str) -> std::path::PathBuf {
    let emit = r#"(func $emit (param $id i64)
          (local $p i32) (local $n i64) (local $d i32)
          (local.set $p (i32.const 420))
          (local.set $n (local.get $id))
          (loop $digit
            (local.set $p (i32.sub (local.get $p) (i32.const 1)))
            (i32.store8 (local.get $p)
              (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
            (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
            (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
          (local.set $d (i32.sub (i32.const 420) (local.get $p)))
          (memory.copy (i32.const 600) (i32.const 300) (i32.const 6))
          (memory.copy (i32.const 606) (local.get $p) (local.get $d))
          (memory.copy (i32.add (i32.const 606) (local.get $d)) (i32.const 310) (i32.const 15))
          (i32.store (i32.const 16) (i32.const 600))
          (i32.store (i32.const 20) (i32.add (i32.const 21) (local.get $d)))
          (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24))))"#;
    let start = r#"(func (export "_start")
          (local $r i32) (local $i i32) (local $header i32) (local $id i64)
          (local.set $id (i64.const 1))
          (block $done
            (loop $more
              (i32.store (i32.const 0) (i32.const 1024))
              (i32.store (i32.const 4) (i32.const 60000))
              (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
              (local.set $r (i32.load (i32.const 8)))
              (br_if $done (i32.eqz (local.get $r)))
              (local.set $i (i32.const 0))
              (loop $scan
                (if (i32.eq (i32.load8_u (i32.add (i32.const 1024) (local.get $i))) (i32.const 10))
                  (then
                    (if (local.get $header)
                      (then
                        (call $emit (local.get $id))
                        (local.set $id (i64.add (local.get $id) (i64.const 1))))
                      (else (local.set $header (i32.const 1))))))
                (local.set $i (i32.add (local.get $i) (i32.const 1)))
                (br_if $scan (i32.lt_u (local.get $i) (local.get $r))))
              (br $more))))"#;
    fixture.module(
        name,
        &format!(
            r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  {V2}
  (data (i32.const 300) "{{\"id\":") (data (i32.const 310) ",\"allow\":true}}\n")
  {emit}
  {start})"#
        ),
    )
}

#[test]
fn the_output_cap_bounds_one_batch_not_the_whole_log() {
    // Regression (review of issue 20): the cap counted every verdict byte
    // of the log, so the default 64 MiB refused logs of some 2.4 million
    // commands. Here 10,000 verdicts take about 270 KB, over a 64 KiB cap,
    // while one batch's (1,024) take about 28 KB, under it.
    let fixture = Fixture::new();
    let mut spec = spec("allow-all", allow_all(&fixture, "allow-all"));
    spec.timeout = Duration::from_secs(30);
    spec.batch_timeout = Duration::from_secs(5);
    spec.max_output = 64 * 1024;
    let commands: Vec<cmdlog::Command> = (1..=10_000u64)
        .map(|id| {
            let out = format!("o{id}.opt.bc");
            command(id, ToolKind::Opt, &["-O2", "in.bc", "-o", &out], &[&out])
        })
        .collect();
    let plugin = host().load(&spec).unwrap();
    let verdicts = plugin.evaluate(&platform(), &commands).unwrap();
    assert_eq!(verdicts.len(), 10_000);
    assert!(verdicts.iter().all(|verdict| verdict.allow));
}

#[test]
fn output_over_the_cap_within_one_batch_is_stopped() {
    let fixture = Fixture::new();
    // Reads the batch, then writes 2,000 bytes of it back in one write.
    let path = v2(
        &fixture,
        "echo-v2",
        "",
        &format!(
            "{READ}
             (i32.store (i32.const 16) (i32.const 1024))
             (i32.store (i32.const 20) (i32.const 2000))
             (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))"
        ),
    );
    let mut spec = spec("echo-v2", path);
    spec.max_output = 1024;
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { limit: 1024 }),
        "{error}"
    );
}
