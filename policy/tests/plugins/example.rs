//! The example plugin `policies/plugins/naming`, built for wasm32-wasip1 by
//! `scripts/build-plugins.sh` and run end to end with the config of the
//! shipped `policies/plugins/example.toml`.
//!
//! The tests build the plugin first (cargo makes that a no-op when nothing
//! changed); they are skipped, saying so, only when the wasm32-wasip1
//! target is not installed.

use std::path::PathBuf;
use std::process::Command as Process;
use std::sync::OnceLock;
use std::time::Duration;

use cmdlog::ToolKind;
use policy::plugin::{Failure, PluginSpec};
use policy::PluginTable;

use super::support::{command, host, platform};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn wasm32_wasip1_installed() -> bool {
    let sysroot = Process::new(std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into()))
        .args(["--print", "sysroot"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    sysroot.is_some_and(|root| root.join("lib/rustlib/wasm32-wasip1/lib").is_dir())
}

/// `policies/plugins/naming.wasm`, freshly built; `None` (after saying why)
/// if the target is missing.
fn naming_wasm() -> Option<PathBuf> {
    static BUILT: OnceLock<Option<PathBuf>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            if !wasm32_wasip1_installed() {
                eprintln!(
                    "SKIPPED: the wasm32-wasip1 target is not installed \
                     (`rustup target add wasm32-wasip1`), so the example plugin cannot be built"
                );
                return None;
            }
            let status = Process::new("bash")
                .arg(repo().join("scripts/build-plugins.sh"))
                .status()
                .expect("run scripts/build-plugins.sh");
            assert!(status.success(), "scripts/build-plugins.sh failed");
            let wasm = repo().join("policies/plugins/naming.wasm");
            assert!(wasm.is_file(), "{} was not built", wasm.display());
            Some(wasm)
        })
        .clone()
}

/// The `[[plugin]]` entry of `policies/plugins/example.toml` as a spec,
/// read the way a policy's entries are.
fn example_spec() -> PluginSpec {
    let policy = repo().join("policies/plugins/example.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let mut table: toml::Table = toml::from_str(&text).unwrap();
    let entries = table.remove("plugin").expect("a [[plugin]] entry");
    let entry = entries.as_array().unwrap()[0].as_table().unwrap().clone();
    let spec = PluginSpec::from_table(&PluginTable {
        file: policy,
        line: 1,
        table: entry,
    })
    .expect("the example entry is a valid spec");
    assert_eq!(spec.timeout, Duration::from_secs(2));
    assert!(spec.fuel.is_some());
    spec
}

#[test]
fn naming_plugin_refuses_o0_and_stray_outputs() {
    let Some(wasm) = naming_wasm() else { return };
    let spec = example_spec();
    assert_eq!(
        spec.path.canonicalize().unwrap(),
        wasm.canonicalize().unwrap()
    );
    let plugin = host().load(&spec).expect("the example plugin loads");
    let log = vec![
        command(
            1,
            ToolKind::Opt,
            &["-O2", "p0.bc", "-o", "p0.opt.bc"],
            &["p0.opt.bc"],
        ),
        command(
            2,
            ToolKind::Opt,
            &["-O0", "p1.bc", "-o", "p1.opt.bc"],
            &["p1.opt.bc"],
        ),
        command(
            3,
            ToolKind::Llc,
            &["-O2", "p0.opt.bc", "-o", "p0.s"],
            &["p0.s"],
        ),
        command(4, ToolKind::Llc, &["p0.opt.bc", "-o", "p0.o"], &["p0.o"]),
        command(5, ToolKind::Cc, &["p0.o", "-o", "hello"], &["hello"]),
    ];
    let verdicts = plugin.evaluate(&platform(), &log).expect("it evaluates");
    let allowed: Vec<bool> = verdicts.iter().map(|v| v.allow).collect();
    assert_eq!(allowed, [true, false, false, true, true]);
    let reason = |i: usize| verdicts[i].reason.clone().unwrap_or_default();
    assert!(
        reason(1).contains("`-O0`") && reason(1).contains("-O2"),
        "{}",
        reason(1)
    );
    assert!(
        reason(2).contains("`p0.s`") && reason(2).contains("`*.o`"),
        "{}",
        reason(2)
    );
}

#[test]
fn naming_plugin_denies_everything_on_a_config_typo() {
    let Some(_) = naming_wasm() else { return };
    let mut spec = example_spec();
    spec.config
        .insert("min_opt_levle".into(), serde_json::Value::from(2));
    let error = host()
        .load(&spec)
        .unwrap()
        .evaluate(&platform(), &[command(1, ToolKind::Ld, &[], &[])])
        .unwrap_err();
    assert!(
        matches!(error.failure, Failure::Exit { code: 1 }),
        "{error}"
    );
    assert!(error.stderr.contains("min_opt_levle"), "{}", error.stderr);
    assert_eq!(error.plugin, "naming");
}

#[test]
fn naming_plugin_handles_a_large_log_in_one_call() {
    let Some(_) = naming_wasm() else { return };
    let plugin = host().load(&example_spec()).unwrap();
    let log: Vec<_> = (1..=20_000)
        .map(|id| {
            let output = format!("p{id}.opt.bc");
            command(
                id,
                ToolKind::Opt,
                &["-O3", "-o", output.as_str()],
                &[output.as_str()],
            )
        })
        .collect();
    let verdicts = plugin.evaluate(&platform(), &log).unwrap();
    assert_eq!(verdicts.len(), log.len());
    assert!(verdicts.iter().all(|v| v.allow));
}

/// A log of `n` commands of every kind the plugin judges, a few of them
/// refused (an `-O0`, an `-O1`, a stray output name), in varied sizes.
fn mixed_log(n: u64) -> Vec<cmdlog::Command> {
    (1..=n)
        .map(|id| {
            let level = ["-O2", "-O3", "-O0", "-Os", "-O1", "-O2"][(id % 6) as usize];
            match id % 5 {
                0 => {
                    let output = if id % 35 == 0 {
                        format!("p{id}.s")
                    } else {
                        format!("p{id}.o")
                    };
                    command(
                        id,
                        ToolKind::Llc,
                        &[level, "in.bc", "-o", output.as_str()],
                        &[output.as_str()],
                    )
                }
                1 => command(id, ToolKind::Cc, &["-c", "a.c", "-o", "a.o"], &["a.o"]),
                2 => command(id, ToolKind::Ld, &["a.o", "-o", "prog"], &["prog"]),
                _ => {
                    let output = format!("p{id}.opt.bc");
                    let padding = "x".repeat((id % 300) as usize);
                    command(
                        id,
                        ToolKind::Opt,
                        &[level, padding.as_str(), "-o", output.as_str()],
                        &[output.as_str()],
                    )
                }
            }
        })
        .collect()
}

#[test]
fn naming_plugin_gives_the_same_verdicts_over_abi_v2_and_v1() {
    let Some(v2) = naming_wasm() else { return };
    let host = host();
    let streaming = host.load(&example_spec()).unwrap();
    assert_eq!(streaming.abi(), 2, "naming.wasm speaks ABI v2");
    let mut spec = example_spec();
    spec.path = v2.with_file_name("naming-v1.wasm");
    spec.name = "naming-v1".into();
    let whole = host.load(&spec).unwrap();
    assert_eq!(whole.abi(), 1, "naming-v1.wasm speaks ABI v1");
    // Several batches, the last one partial.
    let log = mixed_log(3 * policy::plugin::BATCH_COMMANDS as u64 + 17);
    let by_v2 = streaming.evaluate(&platform(), &log).unwrap();
    let by_v1 = whole.evaluate(&platform(), &log).unwrap();
    assert_eq!(by_v2.len(), log.len());
    assert_eq!(by_v2, by_v1);
    let refused = by_v2.iter().filter(|v| !v.allow).count();
    assert!(refused > 100 && refused < log.len() / 2, "{refused}");
    // The same through a session pushed a command at a time.
    let mut session = streaming.session(&platform()).unwrap().unwrap();
    let mut pushed = Vec::new();
    for command in &log {
        pushed.extend(session.push(command).unwrap());
    }
    pushed.extend(session.finish().unwrap());
    assert_eq!(pushed, by_v1);
}

#[test]
fn combined_with_the_rules_v2_and_v1_give_the_same_findings_and_tally() {
    use policy::combine;
    use policy::report::Tally;
    use policy::Status;
    let Some(v2) = naming_wasm() else { return };
    let mut v1 = example_spec();
    v1.path = v2.with_file_name("naming-v1.wasm");
    let log = mixed_log(2 * policy::plugin::BATCH_COMMANDS as u64 + 5);
    // The rules refused every 7th command already.
    let kept: Vec<_> = log
        .into_iter()
        .map(|c| {
            let status = if c.id % 7 == 0 {
                Status::Refused
            } else {
                Status::Allowed
            };
            (c, status)
        })
        .collect();
    let tally_of_rules = || Tally {
        allowed: kept.iter().filter(|(_, s)| *s == Status::Allowed).count() as u64,
        refused: kept.iter().filter(|(_, s)| *s == Status::Refused).count() as u64,
        ..Tally::default()
    };
    let mut by_v2 = tally_of_rules();
    let found_v2 = combine::judge(&[example_spec()], &platform(), &kept, &mut by_v2).unwrap();
    let mut by_v1 = tally_of_rules();
    let found_v1 = combine::judge(&[v1], &platform(), &kept, &mut by_v1).unwrap();
    assert_eq!(found_v2, found_v1);
    assert_eq!(by_v2, by_v1);
    assert!(by_v2.refused > tally_of_rules().refused);
    assert_eq!(by_v2.allowed + by_v2.refused, kept.len() as u64);
    assert!(found_v2.iter().all(|f| f.finding.rule == "plugin.refused"));
}

#[test]
fn a_streaming_plugin_that_fails_late_refuses_the_commands_judged_before() {
    use policy::combine;
    use policy::report::Tally;
    use policy::Status;
    let Some(_) = naming_wasm() else { return };
    // A config the plugin refuses only once it reads the header is found
    // at the first batch: by then commands were counted as allowed.
    let mut spec = example_spec();
    spec.config
        .insert("min_opt_level".into(), serde_json::Value::from(9));
    let kept: Vec<_> = mixed_log(3 * policy::plugin::BATCH_COMMANDS as u64)
        .into_iter()
        .map(|c| (c, Status::Allowed))
        .collect();
    let mut tally = Tally {
        allowed: kept.len() as u64,
        ..Tally::default()
    };
    let found = combine::judge(&[spec], &platform(), &kept, &mut tally).unwrap();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].finding.rule, "plugin.failed");
    assert!(
        found[0].finding.message.contains("exited with status 1"),
        "{}",
        found[0].finding.message
    );
    assert_eq!(tally.allowed, 0);
    assert_eq!(tally.refused, kept.len() as u64);
}
