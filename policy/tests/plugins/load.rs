//! Loading a plugin: pins, files that are not WASI commands, limits, and
//! the request a loaded plugin is given.

use policy::plugin::{abi, Failure, LoadError, PluginSpec};
use sha2::{Digest, Sha256};

use super::support::{assert_healthy, host, log, platform, spec, Fixture};

fn sha256_of(path: &std::path::Path) -> String {
    Sha256::digest(std::fs::read(path).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn matching_pin_loads_in_either_case() {
    let fixture = Fixture::new();
    let path = fixture.good();
    let digest = sha256_of(&path);
    let mut pinned = spec("good", path);
    pinned.sha256 = Some(digest.to_uppercase());
    let plugin = host().load(&pinned).expect("pinned plugin loads");
    assert_eq!(plugin.sha256(), digest);
    assert_eq!(plugin.name(), "good");
}

#[test]
fn pin_mismatch_is_refused_naming_the_plugin() {
    let fixture = Fixture::new();
    let path = fixture.good();
    let mut pinned = spec("naming", path.clone());
    pinned.sha256 = Some("0".repeat(64));
    let error = host().load(&pinned).unwrap_err();
    match &error {
        LoadError::PinMismatch {
            plugin,
            expected,
            actual,
            ..
        } => {
            assert_eq!(plugin, "naming");
            assert_eq!(expected, &"0".repeat(64));
            assert_eq!(actual, &sha256_of(&path));
        }
        other => panic!("expected a pin mismatch, got {other}"),
    }
    assert!(
        error.to_string().starts_with("plugin `naming`: "),
        "{error}"
    );
}

#[test]
fn malformed_pin_is_refused() {
    let fixture = Fixture::new();
    let mut pinned = spec("p", fixture.good());
    pinned.sha256 = Some("sha256:abc".into());
    assert!(matches!(
        host().load(&pinned),
        Err(LoadError::InvalidPin { .. })
    ));
}

#[test]
fn module_without_start_is_not_a_command() {
    let fixture = Fixture::new();
    let path = fixture.module(
        "reactor",
        r#"(module (memory (export "memory") 1) (func (export "_initialize")))"#,
    );
    let error = host().load(&spec("reactor", path)).unwrap_err();
    assert!(
        matches!(&error, LoadError::NotCommand { reason, .. } if reason.contains("_start")),
        "{error}"
    );
}

#[test]
fn module_importing_beyond_wasi_is_not_a_command() {
    let fixture = Fixture::new();
    let path = fixture.module(
        "imports",
        r#"(module (import "env" "open_socket" (func))
                   (memory (export "memory") 1) (func (export "_start")))"#,
    );
    let error = host().load(&spec("imports", path)).unwrap_err();
    assert!(
        matches!(&error, LoadError::NotCommand { reason, .. } if reason.contains("open_socket")),
        "{error}"
    );
}

#[test]
fn garbage_file_is_not_a_module() {
    let fixture = Fixture::new();
    let path = fixture.path().join("garbage.wasm");
    std::fs::write(&path, b"#!/bin/sh\nrm -rf /\n").unwrap();
    assert!(matches!(
        host().load(&spec("garbage", path)),
        Err(LoadError::Compile { .. })
    ));
}

#[test]
fn text_format_is_not_accepted_as_a_module() {
    // Pins are on the bytes that run: a policy names compiled modules only.
    let fixture = Fixture::new();
    let path = fixture.path().join("text.wasm");
    std::fs::write(&path, "(module (func (export \"_start\")))").unwrap();
    assert!(matches!(
        host().load(&spec("text", path)),
        Err(LoadError::Compile { .. })
    ));
}

#[test]
fn missing_file_is_a_read_error() {
    let fixture = Fixture::new();
    let error = host()
        .load(&spec("gone", fixture.path().join("gone.wasm")))
        .unwrap_err();
    assert!(matches!(error, LoadError::Read { .. }), "{error}");
    assert!(error.to_string().contains("gone.wasm"), "{error}");
}

#[test]
fn plugin_sees_abi_platform_config_and_commands_on_stdin() {
    let fixture = Fixture::new();
    // Copies stdin to stderr and exits 9, so the test reads the request
    // back from the error.
    let path = fixture.plugin(
        "echo",
        "",
        "(local $total i32) (local $n i32)
         (block $done
           (loop $read
             (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $total)))
             (i32.store (i32.const 4) (i32.sub (i32.const 60000) (local.get $total)))
             (br_if $done (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
             (local.set $n (i32.load (i32.const 8)))
             (br_if $done (i32.eqz (local.get $n)))
             (local.set $total (i32.add (local.get $total) (local.get $n)))
             (br $read)))
         (i32.store (i32.const 0) (i32.const 1024))
         (i32.store (i32.const 4) (local.get $total))
         (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 8)))
         (call $proc_exit (i32.const 9))",
    );
    let mut echo = spec("echo", path);
    echo.config.insert("min_opt_level".into(), 2.into());
    let host = host();
    let error = host
        .load(&echo)
        .unwrap()
        .evaluate(&platform(), &log())
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::Exit { code: 9 }),
        "{error}"
    );
    let request: abi::Request = serde_json::from_str(&error.stderr)
        .unwrap_or_else(|e| panic!("stdin was not a request ({e}): {}", error.stderr));
    assert_eq!(request.abi, abi::ABI_VERSION);
    assert_eq!(request.platform, platform());
    assert_eq!(request.config, echo.config);
    assert_eq!(request.commands, log());
    assert_healthy(&host, &fixture);
}

#[test]
fn same_plugin_gives_the_same_verdicts_every_time() {
    let fixture = Fixture::new();
    let plugin = host().load(&spec("good", fixture.good())).unwrap();
    let first = plugin.evaluate(&platform(), &log()).unwrap();
    for _ in 0..3 {
        assert_eq!(plugin.evaluate(&platform(), &log()).unwrap(), first);
    }
}

#[test]
fn plugin_outlives_its_host_and_keeps_its_deadline() {
    // The ticker thread must keep running for plugins loaded from a host
    // that is gone, or their deadline would never come.
    let fixture = Fixture::new();
    let path = fixture.plugin("spin", "", "(loop $forever (br $forever))");
    let plugin = host().load(&spec("spin", path)).unwrap();
    let started = std::time::Instant::now();
    let error = plugin.evaluate(&platform(), &log()).unwrap_err();
    assert!(matches!(error.failure, Failure::Deadline { .. }), "{error}");
    assert!(started.elapsed() < super::support::BOUND);
}

#[test]
fn limits_out_of_range_are_refused_at_load() {
    let fixture = Fixture::new();
    let mut zero = PluginSpec::new("zero", fixture.good());
    zero.max_output = 0;
    assert!(matches!(
        host().load(&zero),
        Err(LoadError::InvalidLimit { .. })
    ));
}

#[test]
fn a_module_over_the_size_cap_is_refused_before_it_is_compiled() {
    // Compiling is not under the plugin's deadline: the cap is what bounds
    // how long a hostile module can keep the host compiling.
    let fixture = Fixture::new();
    let path = fixture.path().join("huge.wasm");
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(policy::plugin::MAX_MODULE_BYTES + 1).unwrap();
    let error = host().load(&spec("huge", path)).unwrap_err();
    assert!(
        matches!(error, LoadError::TooLarge { limit, .. } if limit == policy::plugin::MAX_MODULE_BYTES),
        "{error}"
    );
    assert!(error.to_string().starts_with("plugin `huge`: "), "{error}");
}
