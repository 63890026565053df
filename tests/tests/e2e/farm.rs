//! Remote execution on a real build farm (issue 22): PostgreSQL, BuildGrid
//! with its SQL scheduler and Bots service. This file starts with the
//! harness itself: the farm serves execution with the property set
//! `replay`'s keys need, and leaves nothing running once dropped.

use std::process::Command;

use replay_e2e::buildgrid::bgd;
use replay_e2e::farm::{Farm, MATCH_KEYS, WILDCARD_KEYS};

/// Whether process `pid` still exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        !stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// The farm answers with execution enabled, its scheduler knows exactly
/// the platform keys `replay` sends (and refuses others before queueing),
/// and dropping the guard stops BuildGrid and PostgreSQL.
#[test]
fn a_farm_serves_execution_and_stops_everything_on_drop() {
    let farm = Farm::start();
    let url = farm.url().replace("grpc://", "http://");
    let capabilities = Command::new(bgd())
        .args(["capabilities", "--remote", &url])
        .output()
        .unwrap();
    assert!(
        capabilities.status.success(),
        "{capabilities:?}\n{}",
        farm.log()
    );
    let doc: serde_json::Value = serde_json::from_slice(&capabilities.stdout).unwrap();
    assert_eq!(doc["executionCapabilities"]["execEnabled"], true, "{doc}");

    // An action with a key the property set lacks is refused at once, and
    // the refusal lists the keys the farm was configured with.
    let inputs = tempfile::tempdir().unwrap();
    let refused = Command::new(bgd())
        .args(["execute", "--remote", &url, "command"])
        .args([
            "-p",
            "OSFamily",
            std::env::consts::OS,
            "-p",
            "colour",
            "blue",
        ])
        .arg(inputs.path())
        .arg("true")
        .current_dir(inputs.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(
        stderr.contains("Unregistered platform property [colour="),
        "{stderr}"
    );
    for key in MATCH_KEYS.iter().chain(WILDCARD_KEYS) {
        assert!(
            stderr.contains(&format!("'{key}'")),
            "`{key}` is not configured: {stderr}"
        );
    }

    let pids = farm.pids();
    assert_eq!(pids.len(), 2, "server and postmaster: {pids:?}");
    assert!(pids.iter().all(|&pid| alive(pid)), "{pids:?}");
    drop(farm);
    let still: Vec<u32> = pids.into_iter().filter(|&pid| alive(pid)).collect();
    assert!(still.is_empty(), "still running after drop: {still:?}");
}
