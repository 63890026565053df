//! Launchers started ahead of their tools.
//!
//! Before a tool can run, its launcher is spawned: `replay` forks, the
//! child execs `replay-sandbox`, which starts up and takes its pipes. That
//! is about a millisecond on every command's path, and none of it depends
//! on the tool. So once a traced tool is running, [`want`] asks the
//! spawner thread for another launcher, which starts and waits for its
//! spec ([`crate::sandbox::Spare`]); the next command [`take`]s it instead
//! of spawning one. The spec, the layers, Landlock and the rest still
//! happen per tool, after the spec is sent, exactly as before.
//!
//! A spare is a child of `replay` that no tool owns, so the orphan reaper
//! must leave it alone: its pid is listed ([`waiting`]) from the moment it
//! is spawned, under the same lock the reaper holds while it looks
//! (`RUNNING_TOOLS`), until a tool takes it. The spawner is one thread
//! for the life of the process, so a spare's parent-death signal (set once
//! its spec asks for it) fires only when `replay` itself dies. A spare
//! that `replay` leaves behind reads the end of its control pipe when
//! `replay` exits, and exits too; [`discard_all`] ends them at the end of
//! a run.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::sandbox::{self, Spare};

/// At most this many spares wait at once (a parallel run asks for one per
/// tool it starts).
const MAX_WAITING: usize = 4;

/// A spare, and the network namespace it was given (entered only if its
/// spec wants the network cut off).
struct Ready {
    spare: Spare,
    network: Option<OwnedFd>,
}

/// The spares waiting, and the launchers asked for and not yet spawned.
struct State {
    ready: Vec<Ready>,
    requests: Vec<PathBuf>,
    spawner_started: bool,
}

static STATE: Mutex<State> = Mutex::new(State {
    ready: Vec::new(),
    requests: Vec::new(),
    spawner_started: false,
});

/// Wakes the spawner when a launcher is asked for.
static WAKE: Condvar = Condvar::new();

/// A waiting spare of launcher `exe` and its namespace, if one is ready.
/// A spare that died (killed from outside) is dropped, not handed out.
pub(crate) fn take(exe: &Path) -> Option<(Spare, Option<OwnedFd>)> {
    let mut state = STATE.lock().ok()?;
    while let Some(at) = state.ready.iter().position(|r| r.spare.exe() == exe) {
        let mut ready = state.ready.swap_remove(at);
        if ready.spare.is_waiting() {
            return Some((ready.spare, ready.network));
        }
    }
    None
}

/// Asks for one more spare of launcher `exe`, to be spawned on the
/// spawner thread; does nothing if enough wait or are asked for already.
pub(crate) fn want(exe: &Path) {
    let Ok(mut state) = STATE.lock() else {
        return;
    };
    if state.ready.len() + state.requests.len() >= MAX_WAITING {
        return;
    }
    if !state.spawner_started {
        let started = std::thread::Builder::new()
            .name("replay-spares".into())
            .spawn(spawner);
        if started.is_err() {
            // No spares then: each tool spawns its own launcher.
            return;
        }
        state.spawner_started = true;
    }
    state.requests.push(exe.to_path_buf());
    WAKE.notify_one();
}

/// The pids of the spares waiting now: children of `replay` that the
/// orphan reaper must leave alone. Call with `RUNNING_TOOLS` held, so no
/// spare is being spawned meanwhile.
pub fn waiting() -> Vec<i32> {
    STATE
        .lock()
        .map(|state| state.ready.iter().map(|r| r.spare.pid() as i32).collect())
        .unwrap_or_default()
}

/// Kills and reaps every waiting spare, and forgets what was asked for
/// (the end of a run: nothing of it stays behind).
pub fn discard_all() {
    // Not while the spawner spawns one (it holds the count meanwhile).
    let _counted = super::RUNNING_TOOLS.lock();
    let dropped = STATE.lock().map(|mut state| {
        state.requests.clear();
        std::mem::take(&mut state.ready)
    });
    drop(dropped);
}

/// The spawner thread: spawns each launcher asked for, one at a time.
fn spawner() {
    loop {
        let exe = {
            let Ok(mut state) = STATE.lock() else {
                return;
            };
            loop {
                if !state.requests.is_empty() {
                    break state.requests.remove(0);
                }
                state = match WAKE.wait(state) {
                    Ok(state) => state,
                    Err(_) => return,
                };
            }
        };
        let network = super::netns::POOL.take();
        // Held while the child exists and is not yet listed, so the orphan
        // reaper never sees it unlisted.
        let counted = super::RUNNING_TOOLS.lock();
        match sandbox::spawn_spare(&exe, network.as_ref().map(AsFd::as_fd)) {
            Ok(spare) => {
                if let Ok(mut state) = STATE.lock() {
                    state.ready.push(Ready { spare, network });
                }
            }
            Err(_) => {
                // The launcher that the next tool spawns itself reports
                // the error. The namespace was never entered.
                if let Some(network) = network {
                    super::netns::POOL.give_back(network);
                }
            }
        }
        drop(counted);
    }
}
