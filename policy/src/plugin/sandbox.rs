//! One evaluation in a fresh [`Store`]: the WASI context a plugin gets
//! (memory stdin, capped stdout and stderr, nothing else), its bounds
//! (epoch deadline, fuel, [`Limiter`]), and how the way it stopped becomes a
//! [`Failure`].
//!
//! What a plugin can observe is a function of its request: the clocks are
//! frozen at zero and its "random" bytes are a fixed sequence, so the same
//! log and config always get the same verdicts.

use std::time::Duration;

use wasmtime::{Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::p2::pipe::{MemoryInputPipe, MemoryOutputPipe};

use super::stdio::Stdio;
use wasmtime_wasi::{Deterministic, HostMonotonicClock, HostWallClock, I32Exit, WasiCtxBuilder};

use super::error::Failure;

/// How much of a plugin's stderr the host keeps: the last bytes written.
pub(crate) const STDERR_CAP: usize = 64 * 1024;

/// How much of stderr an [`EvalError`](super::EvalError) keeps (the end).
pub(crate) const STDERR_KEPT: usize = 4 * 1024;

/// The most elements any table of a plugin may have.
pub(crate) const TABLE_ELEMENTS_CAP: usize = 100_000;

/// The WASI preview 1 errno `ENOSYS`: function not supported.
pub(crate) const ERRNO_NOSYS: i32 = 52;

/// What a [`Store`] holds for one evaluation.
pub(crate) struct State {
    /// The plugin's WASI context.
    pub(crate) wasi: WasiP1Ctx,
    /// Its memory and table bounds, and the bound that stopped it.
    pub(crate) limiter: Limiter,
    /// Its stdin, stdout and stderr (served by the host's own `fd_read`
    /// and `fd_write`).
    pub(crate) stdio: Stdio,
}

/// Bounds on linear memory and tables that record which one was hit (or
/// which other bound the host's functions saw crossed: output, budget), so
/// the failure can say so, and trap at once instead of letting
/// `memory.grow` return -1 (which a guest could ignore and spin on).
pub(crate) struct Limiter {
    memory_cap: usize,
    hit: Option<Failure>,
}

impl Limiter {
    /// A limiter capping linear memory at `memory_cap` bytes.
    pub(crate) fn new(memory_cap: usize) -> Limiter {
        Limiter {
            memory_cap,
            hit: None,
        }
    }

    /// Whether a bound stopped the plugin.
    pub(crate) fn was_hit(&self) -> bool {
        self.hit.is_some()
    }

    /// Records `failure` as the bound that stopped the plugin.
    pub(crate) fn record(&mut self, failure: Failure) {
        self.hit.get_or_insert(failure);
    }

    /// The bound that stopped the plugin, if one did.
    pub(crate) fn take_hit(&mut self) -> Option<Failure> {
        self.hit.take()
    }
}

/// The error a [`Limiter`] raises to trap the plugin.
#[derive(Debug, thiserror::Error)]
#[error("a resource limit was hit")]
pub(crate) struct LimitHit;

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_cap {
            self.hit = Some(Failure::OverMemoryCap {
                requested: desired as u64,
                limit: self.memory_cap as u64,
            });
            return Err(LimitHit.into());
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > TABLE_ELEMENTS_CAP {
            self.hit = Some(Failure::OverTableCap {
                requested: desired as u64,
                limit: TABLE_ELEMENTS_CAP as u64,
            });
            return Err(LimitHit.into());
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// A clock stopped at zero: plugins get no time to vary on.
struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}

/// A fixed byte sequence for every "random" request (the digits of pi): a
/// plugin's verdicts must depend on its request alone.
const FIXED_RANDOM: [u8; 16] = [
    0x24, 0x3f, 0x6a, 0x88, 0x85, 0xa3, 0x08, 0xd3, 0x13, 0x19, 0x8a, 0x2e, 0x03, 0x70, 0x73, 0x44,
];

/// A store for one evaluation: WASI with only stdio (served by `stdio`),
/// the program name as its only argument, no environment, no preopened
/// directories, no sockets, frozen clocks and fixed randomness; bounded by
/// the memory cap and `fuel`. The caller sets its deadline.
pub(crate) fn new_store(
    engine: &Engine,
    program: &str,
    stdio: Stdio,
    memory_cap: usize,
    fuel: u64,
) -> wasmtime::Result<Store<State>> {
    // The host's `fd_read` and `fd_write` serve stdio; WASI's pipes only
    // answer `fd_fdstat_get` and the like, and hold nothing.
    let wasi = WasiCtxBuilder::new()
        .stdin(MemoryInputPipe::new(Vec::new()))
        .stdout(MemoryOutputPipe::new(0))
        .stderr(MemoryOutputPipe::new(0))
        .arg(program)
        .wall_clock(FrozenClock)
        .monotonic_clock(FrozenClock)
        .secure_random(Deterministic::new(FIXED_RANDOM.to_vec()))
        .insecure_random(Deterministic::new(FIXED_RANDOM.to_vec()))
        .insecure_random_seed(0)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .build_p1();
    let mut store = Store::new(
        engine,
        State {
            wasi,
            limiter: Limiter::new(memory_cap),
            stdio,
        },
    );
    store.limiter(|state| &mut state.limiter);
    store.set_fuel(fuel)?;
    Ok(store)
}

/// What a run that ended with `error` means: `Ok` for a clean `exit(0)`,
/// otherwise the failure (a bound the limiter saw first, then the trap).
pub(crate) fn classify(
    error: wasmtime::Error,
    limiter: &mut Limiter,
    timeout: Duration,
    fuel: Option<u64>,
) -> Result<(), Failure> {
    if let Some(exit) = error.downcast_ref::<I32Exit>() {
        return match exit.0 {
            0 => Ok(()),
            code => Err(Failure::Exit { code }),
        };
    }
    if let Some(hit) = limiter.take_hit() {
        return Err(hit);
    }
    Err(match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => Failure::Deadline { timeout },
        Some(Trap::OutOfFuel) => Failure::OutOfFuel {
            fuel: fuel.unwrap_or(u64::MAX),
        },
        Some(Trap::StackOverflow) => Failure::StackOverflow,
        Some(Trap::UnreachableCodeReached) => Failure::Unreachable,
        Some(trap) => Failure::Trap { trap: *trap },
        None => Failure::Host {
            message: error.root_cause().to_string(),
        },
    })
}

/// The end of `bytes` as text fit to print: at most [`STDERR_KEPT`] bytes,
/// invalid UTF-8 and control characters (but newlines and tabs) replaced.
pub(crate) fn printable_tail(bytes: &[u8]) -> String {
    let start = bytes.len().saturating_sub(STDERR_KEPT);
    String::from_utf8_lossy(&bytes[start..])
        .chars()
        .map(|c| {
            if c.is_control() && c != '\n' && c != '\t' {
                char::REPLACEMENT_CHARACTER
            } else {
                c
            }
        })
        .collect::<String>()
        .trim_end()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_tail_keeps_the_end_and_strips_escapes() {
        let mut bytes = vec![b'a'; STDERR_KEPT * 2];
        bytes.extend_from_slice(b"\x1b[31mpanicked\n");
        let tail = printable_tail(&bytes);
        assert!(tail.ends_with("\u{fffd}[31mpanicked"), "{tail:?}");
        assert!(tail.len() <= STDERR_KEPT + 2);
    }

    #[test]
    fn limiter_records_the_memory_cap() {
        let mut limiter = Limiter::new(65536);
        assert!(limiter.memory_growing(0, 65536, None).unwrap());
        assert!(limiter.memory_growing(65536, 131072, None).is_err());
        assert!(matches!(
            limiter.take_hit(),
            Some(Failure::OverMemoryCap {
                requested: 131072,
                limit: 65536
            })
        ));
    }
}
