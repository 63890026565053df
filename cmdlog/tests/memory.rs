//! A 1,000,000-command log reads in bounded memory.
//!
//! This is its own test binary because it installs a counting global
//! allocator: live bytes are measured across the whole process, so nothing
//! else may run in it at the same time.

// Test helpers outside `#[test]` functions unwrap too: a failure there
// is a failed test.
#![allow(clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Read;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};

use cmdlog::LogReader;

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same layout, same contract as our caller's.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A log of `n` commands, generated as it is read, never held whole.
struct GeneratedLog {
    n: u64,
    next: u64,
    pending: Vec<u8>,
    at: usize,
    done: bool,
}

impl GeneratedLog {
    fn new(n: u64) -> Self {
        let head = r#"{"format":"replay-log","version":1,"producer":{"name":"gen","version":"0"},"platform":{"os":"linux","arch":"x86_64"},"commands":["#;
        GeneratedLog {
            n,
            next: 1,
            pending: head.as_bytes().to_vec(),
            at: 0,
            done: false,
        }
    }

    fn refill(&mut self) {
        self.pending.clear();
        self.at = 0;
        if self.next > self.n {
            if !self.done {
                self.pending.extend_from_slice(b"\n]}\n");
                self.done = true;
            }
            return;
        }
        let id = self.next;
        let sep = if id == 1 { "\n" } else { ",\n" };
        let text = format!(
            r#"{sep}{{"id":{id},"tool":"llc","program":"llc","args":["-filetype=obj","p{id}.bc","-o","p{id}.o"],"cwd":".","env":{{}},"inputs":["p{id}.bc"],"outputs":["p{id}.o"]}}"#
        );
        self.pending.extend_from_slice(text.as_bytes());
        self.next += 1;
    }
}

impl Read for GeneratedLog {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.at == self.pending.len() {
            self.refill();
        }
        let n = buf.len().min(self.pending.len() - self.at);
        buf[..n].copy_from_slice(&self.pending[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// Reads a generated log of `n` commands; returns the peak live bytes
/// allocated during the read beyond what was live before it.
fn peak_while_reading(n: u64) -> usize {
    let mut log = GeneratedLog::new(n);
    // The generator's own buffer is not the reader's: size it first.
    log.pending.reserve(256);
    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let mut count = 0u64;
    let mut id_sum = 0u64;
    let summary = LogReader::new(&mut log)
        .read(&mut |command: cmdlog::Command| {
            count += 1;
            id_sum += command.id;
            ControlFlow::Continue(())
        })
        .expect("the generated log is valid");
    assert_eq!(summary.commands, n);
    assert_eq!(count, n);
    assert_eq!(id_sum, n * (n + 1) / 2, "every command was seen once");
    PEAK.load(Ordering::Relaxed) - before
}

#[test]
fn a_million_commands_read_in_the_memory_of_a_thousand() {
    let small = peak_while_reading(1_000);
    let large = peak_while_reading(1_000_000);
    // The reader's 64 KiB buffer, serde_json's scratch and one command.
    assert!(small < 128 << 10, "1k commands peaked at {small} bytes");
    // Flat: a thousand times more commands, a few hundred bytes more at most
    // (longer ids make slightly longer strings).
    assert!(
        large <= small + 1024,
        "1M commands peaked at {large} bytes, 1k at {small}: memory grows with the log"
    );
}
