//! Hostile plugins, written in WAT: each must be denied, with a reason that
//! names it, within a bounded time, and leave the host able to run the next
//! plugin (every test ends by evaluating the good plugin in the same host).

use std::time::Duration;

use policy::plugin::Failure;
use wasmtime::Trap;

use super::support::{denies, failure, host, iovec_flood, spec, Fixture, IOVEC_FLOOD_MEMORY};

#[test]
fn infinite_loop_hits_the_deadline() {
    let fixture = Fixture::new();
    let path = fixture.plugin("spin", "", "(loop $forever (br $forever))");
    let error = denies(&host(), &fixture, spec("spin", path));
    assert!(
        matches!(failure(&error), Failure::Deadline { timeout } if *timeout == Duration::from_secs(1)),
        "{error}"
    );
    assert!(error.to_string().contains("deadline"), "{error}");
}

#[test]
fn infinite_loop_runs_out_of_fuel_when_fuel_is_set() {
    let fixture = Fixture::new();
    let path = fixture.plugin("spin", "", "(loop $forever (br $forever))");
    let mut spec = spec("spin-fuel", path);
    spec.fuel = Some(1_000_000);
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::OutOfFuel { fuel: 1_000_000 }),
        "{error}"
    );
}

#[test]
fn memory_bomb_hits_the_memory_cap() {
    let fixture = Fixture::new();
    // Grows by 1 MiB until refused, then would spin: the cap traps first.
    let path = fixture.plugin(
        "bomb",
        "",
        "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
         (loop $forever (br $forever))",
    );
    let error = denies(&host(), &fixture, spec("bomb", path));
    match failure(&error) {
        Failure::OverMemoryCap { requested, limit } => {
            assert_eq!(*limit, 64 * 1024 * 1024);
            assert!(requested > limit);
        }
        other => panic!("expected the memory cap, got {other}"),
    }
}

#[test]
fn memory_declared_over_the_cap_is_refused_at_instantiation() {
    let fixture = Fixture::new();
    // 2,000 pages = 125 MiB of initial memory, over the 64 MiB cap.
    let path = fixture.module(
        "fat",
        r#"(module (memory (export "memory") 2000) (func (export "_start")))"#,
    );
    let error = denies(&host(), &fixture, spec("fat", path));
    assert!(
        matches!(failure(&error), Failure::OverMemoryCap { .. }),
        "{error}"
    );
}

#[test]
fn deep_recursion_overflows_the_stack() {
    let fixture = Fixture::new();
    let path = fixture.module(
        "recurse",
        r#"(module
             (memory (export "memory") 1)
             (func $down (param i64) (result i64)
               (i64.add (call $down (i64.add (local.get 0) (i64.const 1))) (i64.const 1)))
             (func (export "_start") (drop (call $down (i64.const 0)))))"#,
    );
    let error = denies(&host(), &fixture, spec("recurse", path));
    assert!(matches!(failure(&error), Failure::StackOverflow), "{error}");
}

#[test]
fn unreachable_traps() {
    let fixture = Fixture::new();
    let path = fixture.plugin("panic", "", "unreachable");
    let error = denies(&host(), &fixture, spec("panic", path));
    assert!(matches!(failure(&error), Failure::Unreachable), "{error}");
}

#[test]
fn other_traps_are_named() {
    let fixture = Fixture::new();
    let path = fixture.plugin(
        "divide",
        "",
        "(drop (i32.div_u (i32.const 1) (i32.const 0)))",
    );
    let error = denies(&host(), &fixture, spec("divide", path));
    assert!(
        matches!(
            failure(&error),
            Failure::Trap {
                trap: Trap::IntegerDivisionByZero
            }
        ),
        "{error}"
    );
}

#[test]
fn non_zero_exit_denies_and_keeps_stderr() {
    let fixture = Fixture::new();
    let message = "config: unknown key `colour`";
    let path = fixture.plugin(
        "exit7",
        &format!("(data (i32.const 64) \"{message}\")"),
        &format!(
            "(i32.store (i32.const 0) (i32.const 64))
             (i32.store (i32.const 4) (i32.const {}))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (call $proc_exit (i32.const 7))",
            message.len()
        ),
    );
    let error = denies(&host(), &fixture, spec("exit7", path));
    assert!(
        matches!(failure(&error), Failure::Exit { code: 7 }),
        "{error}"
    );
    assert_eq!(error.stderr, message);
}

#[test]
fn stderr_keeps_its_end_past_64k() {
    // Review of issue 20: only the first 64 KiB of stderr were kept, so a
    // plugin's last words (a panic after a long run) were lost.
    let fixture = Fixture::new();
    let message = "panicked: the last words";
    let path = fixture.plugin(
        "chatty",
        &format!("(data (i32.const 64) \"{message}\")"),
        &format!(
            "(memory.fill (i32.const 4096) (i32.const 46) (i32.const 60000))
             (i32.store (i32.const 0) (i32.const 4096))
             (i32.store (i32.const 4) (i32.const 60000))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (i32.store (i32.const 0) (i32.const 64))
             (i32.store (i32.const 4) (i32.const {}))
             (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
             (call $proc_exit (i32.const 3))",
            message.len()
        ),
    );
    let error = denies(&host(), &fixture, spec("chatty", path));
    assert!(
        matches!(failure(&error), Failure::Exit { code: 3 }),
        "{error}"
    );
    assert!(error.stderr.ends_with(message), "{}", error.stderr.len());
}

#[test]
fn garbage_output_is_invalid_json() {
    let fixture = Fixture::new();
    let path = fixture.writes("garbage", "allow everything, trust me");
    let error = denies(&host(), &fixture, spec("garbage", path));
    assert!(
        matches!(failure(&error), Failure::InvalidJson { .. }),
        "{error}"
    );
}

#[test]
fn no_output_is_invalid_json() {
    let fixture = Fixture::new();
    let path = fixture.plugin("silent", "", "");
    let error = denies(&host(), &fixture, spec("silent", path));
    assert!(
        matches!(failure(&error), Failure::InvalidJson { .. }),
        "{error}"
    );
}

#[test]
fn json_with_unknown_fields_is_invalid() {
    let fixture = Fixture::new();
    let path = fixture.writes(
        "extra",
        r#"{"verdicts":[{"id":1,"allow":true},{"id":2,"allow":true}],"override":true}"#,
    );
    let error = denies(&host(), &fixture, spec("extra", path));
    assert!(
        matches!(failure(&error), Failure::InvalidJson { .. }),
        "{error}"
    );
}

#[test]
fn output_flood_hits_the_output_cap() {
    let fixture = Fixture::new();
    // Writes the same 60,000 bytes for as long as stdout takes them.
    let path = fixture.plugin(
        "flood",
        "",
        "(i32.store (i32.const 0) (i32.const 64))
         (i32.store (i32.const 4) (i32.const 60000))
         (loop $more
           (br_if $more (i32.eqz (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))",
    );
    let error = denies(&host(), &fixture, spec("flood", path));
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { limit: 1048576 }),
        "{error}"
    );
}

#[test]
fn flood_that_ignores_write_errors_still_hits_the_output_cap() {
    let fixture = Fixture::new();
    // Keeps writing after stdout is full, until its deadline.
    let path = fixture.plugin(
        "flood-forever",
        "",
        "(i32.store (i32.const 0) (i32.const 64))
         (i32.store (i32.const 4) (i32.const 60000))
         (loop $more
           (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
           (br $more))",
    );
    let error = denies(&host(), &fixture, spec("flood-forever", path));
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { .. }),
        "{error}"
    );
}

#[test]
fn missing_verdicts_deny() {
    let fixture = Fixture::new();
    let path = fixture.writes("missing", r#"{"verdicts":[{"id":1,"allow":true}]}"#);
    let error = denies(&host(), &fixture, spec("missing", path));
    assert!(
        matches!(failure(&error), Failure::MissingVerdicts { count: 1, first } if first == &[2]),
        "{error}"
    );
}

#[test]
fn duplicate_verdicts_deny() {
    let fixture = Fixture::new();
    let path = fixture.writes(
        "duplicate",
        r#"{"verdicts":[{"id":1,"allow":true},{"id":2,"allow":false},{"id":2,"allow":true}]}"#,
    );
    let error = denies(&host(), &fixture, spec("duplicate", path));
    assert!(
        matches!(failure(&error), Failure::DuplicateVerdict { id: 2 }),
        "{error}"
    );
}

#[test]
fn verdict_for_an_unknown_id_denies() {
    let fixture = Fixture::new();
    let path = fixture.writes(
        "unknown",
        r#"{"verdicts":[{"id":1,"allow":true},{"id":2,"allow":true},{"id":3,"allow":true}]}"#,
    );
    let error = denies(&host(), &fixture, spec("unknown", path));
    assert!(
        matches!(failure(&error), Failure::UnknownId { id: 3 }),
        "{error}"
    );
}

#[test]
fn files_environment_and_preopens_are_out_of_reach() {
    let fixture = Fixture::new();
    // Tries fds 3 to 9 (the first preopen in WASI is 3) as directories, opens
    // `/etc/passwd` and `../secret` relative to it, counts the environment
    // variables (the test process has some: PATH at least) and arguments.
    // Exit codes say what leaked; 3 means nothing did (and is itself a
    // denial).
    let path = fixture.module(
        "escape",
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "fd_prestat_get"
            (func $fd_prestat_get (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "environ_sizes_get"
            (func $environ_sizes_get (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "args_sizes_get"
            (func $args_sizes_get (param i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (data (i32.const 100) "/etc/passwd")
          (data (i32.const 200) "../secret")
          (func (export "_start")
            (local $fd i32)
            ;; no preopened directory at fd 3..9
            (local.set $fd (i32.const 3))
            (loop $each
              (if (i32.eqz (call $fd_prestat_get (local.get $fd) (i32.const 0)))
                (then (call $proc_exit (i32.const 40))))
              (if (i32.eqz (call $path_open (local.get $fd) (i32.const 0)
                              (i32.const 100) (i32.const 11) (i32.const 0)
                              (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
                (then (call $proc_exit (i32.const 41))))
              (if (i32.eqz (call $path_open (local.get $fd) (i32.const 0)
                              (i32.const 200) (i32.const 9) (i32.const 0)
                              (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 16)))
                (then (call $proc_exit (i32.const 41))))
              (local.set $fd (i32.add (local.get $fd) (i32.const 1)))
              (br_if $each (i32.lt_u (local.get $fd) (i32.const 10))))
            ;; no environment variables
            (drop (call $environ_sizes_get (i32.const 0) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 0)) (i32.const 0))
              (then (call $proc_exit (i32.const 42))))
            ;; exactly one argument, the program name
            (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
            (if (i32.ne (i32.load (i32.const 0)) (i32.const 1))
              (then (call $proc_exit (i32.const 43))))
            (call $proc_exit (i32.const 3))))"#,
    );
    let error = denies(&host(), &fixture, spec("escape", path));
    assert!(
        matches!(failure(&error), Failure::Exit { code: 3 }),
        "the sandbox leaked (40: preopen, 41: file, 42: env, 43: args): {error}"
    );
}

#[test]
fn sleeping_is_refused_instead_of_blocking_the_host() {
    let fixture = Fixture::new();
    // A relative clock subscription of one hour. The epoch deadline cannot
    // interrupt a host call, so the host refuses to sleep at all: ENOSYS
    // (52) makes this plugin exit 4, a real sleep would exit 5.
    let path = fixture.module(
        "sleep",
        r#"(module
          (import "wasi_snapshot_preview1" "poll_oneoff"
            (func $poll_oneoff (param i32 i32 i32 i32) (result i32)))
          (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            ;; subscription at 0: userdata 0, tag 0 (clock), clock id 1
            ;; (monotonic) at 16, timeout 3600 s at 24, precision 0, flags 0
            (i32.store8 (i32.const 8) (i32.const 0))
            (i32.store (i32.const 16) (i32.const 1))
            (i64.store (i32.const 24) (i64.const 3600000000000))
            (if (i32.eq (call $poll_oneoff (i32.const 0) (i32.const 100) (i32.const 1) (i32.const 200))
                        (i32.const 52))
              (then (call $proc_exit (i32.const 4))))
            (call $proc_exit (i32.const 5))))"#,
    );
    let error = denies(&host(), &fixture, spec("sleep", path));
    assert!(
        matches!(failure(&error), Failure::Exit { code: 4 }),
        "{error}"
    );
}

#[test]
fn trap_in_a_start_function_is_a_failure_not_a_crash() {
    let fixture = Fixture::new();
    let path = fixture.module(
        "start-trap",
        r#"(module (memory (export "memory") 1)
             (func $boom unreachable) (start $boom)
             (func (export "_start")))"#,
    );
    let error = denies(&host(), &fixture, spec("start-trap", path));
    assert!(matches!(failure(&error), Failure::Unreachable), "{error}");
}

#[test]
fn every_hostile_plugin_in_turn_in_one_host() {
    // One host, many failures in a row, then a good evaluation: nothing a
    // plugin does outlives its store.
    let fixture = Fixture::new();
    let host = host();
    let spin = fixture.plugin("spin", "", "(loop $forever (br $forever))");
    let bomb = fixture.plugin(
        "bomb",
        "",
        "(loop $grow (br_if $grow (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))",
    );
    let garbage = fixture.writes("garbage", "]]]");
    for round in 0..2 {
        for (name, path) in [("spin", &spin), ("bomb", &bomb), ("garbage", &garbage)] {
            let error = denies(&host, &fixture, spec(name, path.clone()));
            assert_eq!(error.plugin, name, "round {round}");
        }
    }
}

#[test]
fn invalid_host_call_stops_the_plugin() {
    let fixture = Fixture::new();
    // `path_open` with rights bits WASI does not define: the host refuses
    // the call itself rather than returning an errno.
    let path = fixture.module(
        "bad-call",
        r#"(module
          (import "wasi_snapshot_preview1" "path_open"
            (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
          (memory (export "memory") 1)
          (func (export "_start")
            (drop (call $path_open (i32.const 3) (i32.const 0) (i32.const 100) (i32.const 1)
                    (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 16)))))"#,
    );
    let error = denies(&host(), &fixture, spec("bad-call", path));
    match failure(&error) {
        Failure::Host { message } => assert!(!message.is_empty()),
        other => panic!("expected the host to stop the plugin, got {other}"),
    }
}

#[test]
fn flood_of_64k_writes_is_stopped_at_the_write_that_crosses_the_cap() {
    // Regression (issue 20): with the default 64 MiB cap, a plugin writing
    // 64 KiB per `fd_write` in a loop ran on until its deadline (11 s) and
    // made `replay` hold 211 MB; the cap must stop it at the write that
    // crosses it. Each round writes one `.` to stderr first, so stderr
    // counts the rounds the plugin got to run.
    let fixture = Fixture::new();
    let path = fixture.plugin(
        "flood-64k",
        "(data (i32.const 32) \".\")",
        "(i32.store (i32.const 0) (i32.const 0))
         (i32.store (i32.const 4) (i32.const 65536))
         (i32.store (i32.const 16) (i32.const 32))
         (i32.store (i32.const 20) (i32.const 1))
         (loop $more
           (drop (call $fd_write (i32.const 2) (i32.const 16) (i32.const 1) (i32.const 8)))
           (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))
           (br $more))",
    );
    let mut spec = spec("flood-64k", path);
    spec.max_output = policy::plugin::DEFAULT_MAX_OUTPUT;
    let error = denies(&host(), &fixture, spec);
    assert!(
        matches!(failure(&error), Failure::OutputTooLarge { limit } if *limit == 64 << 20),
        "{error}"
    );
    // 1,024 writes fill 64 MiB; the 1,025th crosses the cap and is the last.
    assert_eq!(
        error.stderr.matches('.').count(),
        1025,
        "{}",
        error.stderr.len()
    );
}

#[test]
fn iovec_floods_are_refused_and_stopped_at_the_deadline() {
    for call in ["fd_write", "fd_read"] {
        let fixture = Fixture::new();
        let path = fixture.plugin(call, "", &iovec_flood(call));
        let mut spec = spec(call, path);
        spec.max_memory = IOVEC_FLOOD_MEMORY;
        spec.timeout = Duration::from_millis(500);
        // Within `BOUND`, and by the deadline, not by a trap: the plugin
        // got `EINVAL` for 1,025 iovecs.
        let error = denies(&host(), &fixture, spec);
        assert!(
            matches!(failure(&error), Failure::Deadline { timeout } if *timeout == Duration::from_millis(500)),
            "{call}: {error}"
        );
    }
}
