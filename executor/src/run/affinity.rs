//! A tool and its tracer on one CPU while the tool starts.
//!
//! Every observed call stops the tool twice and wakes the tracer each
//! time. With the two on different CPUs each wake-up is an
//! inter-processor interrupt (in a VM, an exit to the hypervisor), about
//! 70 µs a stop where a switch on one CPU costs a few: for `opt -O0` the
//! stops were half of `replay`'s time per command (`bench/PROFILE.md`).
//! Most stops come in a tool's first milliseconds (the loader opening its
//! libraries), so the tracer's thread and the tool share the tracer's CPU
//! for [`SHARED_FOR`], and then both get their CPUs back: a tool that
//! uses threads loses at most that long of them (plus one sample of the
//! watcher, which hands them back on time even when the tool makes no
//! call the tracer sees). A task that chose its own CPUs meanwhile
//! (`taskset`, OpenMP's binding) keeps its choice: only a task still on
//! exactly the shared CPU is given the others back.

use std::time::{Duration, Instant};

/// How long after its launch a tool shares its tracer's CPU.
pub const SHARED_FOR: Duration = Duration::from_millis(30);

/// A set of CPUs.
#[derive(Clone, Copy)]
pub struct Mask(libc::cpu_set_t);

/// The calling thread and a tool's first process on the CPU the thread
/// is on now, until [`Shared::until`].
#[derive(Clone, Copy)]
pub struct Shared {
    /// The CPUs the thread had.
    pub original: Mask,
    /// The one CPU they share.
    pub pinned: Mask,
    /// The pinned thread (the tracer's).
    pub tracer: i32,
    /// When the tool and the tracer get them back.
    pub until: Instant,
}

impl Shared {
    /// Pins the calling thread and task `tool` to the thread's current
    /// CPU; `None` where the CPUs cannot be read or set (nothing changes
    /// then).
    pub fn begin(tool: i32) -> Option<Shared> {
        let original = get(0)?;
        // SAFETY: no arguments; returns the CPU or -1.
        let cpu = unsafe { libc::sched_getcpu() };
        if cpu < 0 {
            return None;
        }
        // SAFETY: as above, zeroed is the empty set.
        let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: `cpu` is a CPU number the kernel just gave, below
        // CPU_SETSIZE; `one` is a valid set.
        unsafe { libc::CPU_SET(cpu as usize, &mut one) };
        if !set(0, &one) {
            return None;
        }
        if !set(tool, &one) {
            set(0, &original);
            return None;
        }
        Some(Shared {
            original: Mask(original),
            pinned: Mask(one),
            // SAFETY: no arguments; the calling thread's id.
            tracer: unsafe { libc::gettid() },
            until: Instant::now() + SHARED_FOR,
        })
    }

    /// Gives task `tid` the CPUs the tracer had, if it still runs on
    /// exactly the shared one; whether it did.
    pub fn give_back(&self, tid: i32) -> bool {
        // SAFETY: both are valid sets.
        let still_pinned =
            get(tid).is_some_and(|now| unsafe { libc::CPU_EQUAL(&now, &self.pinned.0) });
        still_pinned && restore(tid, &self.original)
    }
}

/// Gives task `tid` (0: the calling thread) the CPUs of `mask`, or, should
/// the kernel refuse them (the cpuset shrank meanwhile), every CPU it
/// allows: a task is never left on one CPU. Whether either was taken.
pub fn restore(tid: i32, mask: &Mask) -> bool {
    if set(tid, &mask.0) {
        return true;
    }
    // SAFETY: as in `begin`, zeroed is the empty set.
    let mut every: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for cpu in 0..libc::CPU_SETSIZE as usize {
        // SAFETY: `cpu` is below CPU_SETSIZE; `every` is a valid set.
        unsafe { libc::CPU_SET(cpu, &mut every) };
    }
    set(tid, &every)
}

/// The CPUs of task `tid` (0: the calling thread), if they can be read.
fn get(tid: i32) -> Option<libc::cpu_set_t> {
    // SAFETY: `cpu_set_t` is a plain bit array; zeroed is empty.
    let mut mask: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to `mask` and its size.
    let read =
        unsafe { libc::sched_getaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), &mut mask) };
    (read == 0).then_some(mask)
}

fn set(tid: i32, mask: &libc::cpu_set_t) -> bool {
    // SAFETY: a valid pointer to a whole `cpu_set_t` and its size.
    unsafe { libc::sched_setaffinity(tid, std::mem::size_of::<libc::cpu_set_t>(), mask) == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_shares_one_cpu_then_gets_its_cpus_back() {
        std::thread::spawn(|| {
            // SAFETY: no arguments; the calling thread's id.
            let me = unsafe { libc::gettid() };
            let Some(shared) = Shared::begin(me) else {
                return;
            };
            let count = || {
                let now = get(0).expect("the thread's CPUs");
                // SAFETY: `now` is a valid set.
                unsafe { libc::CPU_COUNT(&now) }
            };
            assert_eq!(count(), 1);
            // SAFETY: `original` is a valid set.
            let before = unsafe { libc::CPU_COUNT(&shared.original.0) };
            assert!(restore(0, &shared.original));
            assert_eq!(count(), before);
        })
        .join()
        .expect("the thread");
    }
}
