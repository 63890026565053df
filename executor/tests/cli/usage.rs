//! The command-line surface: subcommands, required flags, exit codes, and
//! errors that say what, where and what to do.

use predicates::prelude::*;

use crate::support::{mask, Fixture, GOOD_LOG};

const BAD_INPUT: i32 = cmdlog::exit_codes::ReplayExitCode::BAD_INPUT;

/// A valid policy that allows no tool.
const MINIMAL_POLICY: &str = "[policy]\nos = \"linux\"\n";

#[test]
fn help_lists_the_subcommands_and_exit_codes() {
    let fixture = Fixture::new();
    let output = fixture.replay().arg("--help").assert().success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    insta::assert_snapshot!("help", stdout);
}

#[test]
fn no_arguments_is_a_usage_error() {
    Fixture::new()
        .replay()
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("--policy <FILE>"));
}

#[test]
fn a_log_without_a_policy_is_a_usage_error() {
    let fixture = Fixture::new();
    fixture.write("log.json", GOOD_LOG);
    fixture
        .replay()
        .arg("log.json")
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("--policy"));
}

#[test]
fn drive_needs_a_program_after_the_double_dash() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture
        .replay()
        .args(["drive", "--policy", "p.toml"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("PROGRAM"));
}

#[test]
fn a_missing_policy_says_which_file_and_what_to_do() {
    let fixture = Fixture::new();
    fixture.write("log.json", GOOD_LOG);
    let output = fixture
        .replay()
        .args(["check", "--policy", "nope.toml", "log.json"])
        .assert()
        .code(BAD_INPUT);
    let stderr = String::from_utf8_lossy(&output.get_output().stderr).into_owned();
    insta::assert_snapshot!("missing_policy", mask(&stderr, &fixture));
}

#[test]
fn a_missing_log_is_bad_input() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture
        .replay()
        .args(["--policy", "p.toml", "nope.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("cannot open the log `nope.json`"));
}

#[test]
fn a_truncated_log_names_where_it_ends_and_runs_nothing() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture.write("log.json", &GOOD_LOG[..GOOD_LOG.len() - 10]);
    let output = fixture
        .replay()
        .args(["--policy", "p.toml", "log.json"])
        .assert()
        .code(BAD_INPUT);
    let stderr = String::from_utf8_lossy(&output.get_output().stderr).into_owned();
    insta::assert_snapshot!("truncated_log", mask(&stderr, &fixture));
}

#[test]
fn the_root_defaults_to_the_directory_of_the_log() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    // The log's output `log.json` is the log itself only if the root is
    // `sub`: with the working directory as root it would be `./log.json`,
    // another file, and the protected-output rule would not fire.
    fixture.write("sub/log.json", &GOOD_LOG.replace("a.opt.bc", "log.json"));
    fixture
        .replay()
        .args(["check", "--policy", "p.toml", "sub/log.json"])
        .assert()
        .code(cmdlog::exit_codes::ReplayExitCode::DENIED)
        .stdout(predicate::str::contains("[outputs.protected]"));
    fixture
        .replay()
        .args(["--policy", "p.toml", "--root", "missing", "sub/log.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains(
            "the work root `missing` is not a directory",
        ));
}

#[test]
fn a_huge_timeout_is_a_usage_error_not_a_panic() {
    // Regression: `Duration::from_secs_f64(1e300)` panicked (exit 101).
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture.write("log.json", GOOD_LOG);
    for flag in ["--timeout", "--grace"] {
        fixture
            .replay()
            .args(["--policy", "p.toml", flag, "1e300", "log.json"])
            .assert()
            .code(BAD_INPUT)
            .stderr(predicate::str::contains("must be a number of seconds"));
    }
}

#[test]
fn a_malformed_database_is_an_import_error_naming_entry_and_field() {
    let fixture = Fixture::new();
    fixture.write(
        "compile_commands.json",
        r#"[{"directory": ".", "file": "a.c", "command": "cc -c a.c -o a.o"}, {"file": "b.c"}]"#,
    );
    fixture
        .replay()
        .args(["import", "compdb", "compile_commands.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains(
            "error: entry 1: field `directory`: missing",
        ))
        .stderr(predicate::str::contains("hint: fix the database"));
    assert!(!fixture.path("replay.log.json").exists());
}

#[test]
fn import_writes_the_log_and_says_what_it_left_out() {
    let fixture = Fixture::new();
    fixture.write(
        "compile_commands.json",
        r#"[{"directory": ".", "file": "a.c", "command": "cc -DMSG='\"a b\"' -c a.c -o a.o"},
            {"directory": ".", "file": "b.c", "command": "cc -c b.c -o b.o | tee log"}]"#,
    );
    let output = fixture
        .replay()
        .args([
            "import",
            "compdb",
            "compile_commands.json",
            "-o",
            "out.json",
        ])
        .assert()
        .success();
    let stdout = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    assert!(stdout.contains("left out: entry 1: `cc -c b.c -o b.o | tee log`: its command uses the shell operator `|`"), "{stdout}");
    assert!(stdout.contains("imported 1 commands"), "{stdout}");
    let log = std::fs::read_to_string(fixture.path("out.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&log).unwrap();
    assert_eq!(doc["commands"][0]["args"][0], "-DMSG=\"a b\"");
    assert_eq!(doc["producer"]["name"], "replay-import");
}

#[test]
fn a_mistyped_subcommand_gets_a_did_you_mean() {
    // Regression: `chek` was taken for LOG, and the options after it
    // for the root's, so clap's error spoke of a conflict.
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture
        .replay()
        .args(["chek", "--policy", "p.toml", "log.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("unrecognized subcommand 'chek'"))
        .stderr(predicate::str::contains(
            "a similar subcommand exists: 'check'",
        ));
}

#[test]
fn an_option_before_a_subcommand_says_where_it_goes() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture.write("log.json", GOOD_LOG);
    fixture
        .replay()
        .args(["--policy", "p.toml", "check", "log.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains(
            "`check` is a subcommand, so its options go after it: `replay check --policy p.toml ...`",
        ));
}

#[test]
fn sizes_and_durations_are_written_as_in_policies() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture.write("log.json", GOOD_LOG);
    // Refused by the policy (it allows no tool), after the flags parsed.
    fixture
        .replay()
        .args([
            "--policy",
            "p.toml",
            "--max-rss",
            "512MiB",
            "--timeout",
            "5m",
        ])
        .args(["--memory-budget", "2GiB", "--grace", "1500ms", "log.json"])
        .assert()
        .code(cmdlog::exit_codes::ReplayExitCode::DENIED);
    fixture
        .replay()
        .args(["--policy", "p.toml", "--max-rss", "1.5G", "log.json"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains("e.g. `512MiB`"));
}

#[test]
fn help_and_the_readme_agree_on_subcommands_and_exit_codes() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let fixture = Fixture::new();
    let output = fixture.replay().arg("--help").assert().success();
    let help = String::from_utf8_lossy(&output.get_output().stdout).into_owned();
    // Every subcommand `--help` lists is in the README's command line.
    let commands = help
        .split("Commands:")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_default();
    // An entry starts two spaces in; its description's next lines, further.
    for line in commands.lines().filter(|l| !l.starts_with("   ")) {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        if name == "help" {
            continue;
        }
        assert!(
            readme.contains(&format!("replay {name}")),
            "`replay {name}` is in --help but not in README.md"
        );
    }
    // Every exit code of the README's table is in --help, and back.
    let table: Vec<&str> = readme
        .split("### Exit codes")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(' ').next())
        .filter(|code| code.parse::<u8>().is_ok())
        .collect();
    let listed: Vec<&str> = help
        .split("Exit codes:")
        .nth(1)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|code| code.parse::<u8>().is_ok())
        .collect();
    assert_eq!(table, listed, "README's exit codes vs --help's");
}

#[test]
fn drive_help_gives_its_own_root_and_journal() {
    let fixture = Fixture::new();
    let output = fixture
        .replay()
        .args(["drive", "--help"])
        .assert()
        .success();
    let help = String::from_utf8_lossy(&output.get_output().stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        help.contains("for `drive`, the current directory"),
        "{help}"
    );
    assert!(help.contains("replay-drive.log.json.journal"), "{help}");
}

#[test]
fn drive_with_a_producer_that_writes_no_log_asks_about_driver_mode() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture
        .replay()
        .args(["drive", "--policy", "p.toml", "--", "true"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains(
            "the producer `true` exited 0 without writing a log",
        ))
        .stderr(predicate::str::contains("support driver mode?"));
}

#[test]
fn drive_with_an_unknown_program_says_so_with_a_hint() {
    let fixture = Fixture::new();
    fixture.write("p.toml", MINIMAL_POLICY);
    fixture
        .replay()
        .args(["drive", "--policy", "p.toml", "--", "no-such-producer-x"])
        .assert()
        .code(BAD_INPUT)
        .stderr(predicate::str::contains(
            "cannot start the producer `no-such-producer-x`",
        ))
        .stderr(predicate::str::contains("hint: no such program"));
}
