//! A tool's stdout and stderr: passed through to the user as they come,
//! each line prefixed with the command, and kept (the last bytes only) for
//! the report. Counting the bytes here is how the output limit is enforced.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::{Arc, Mutex};
use std::thread;

use super::watch::{Stop, Stopper};

/// How much of each stream the report keeps: the tail, where errors are.
pub const KEPT_BYTES: usize = 16 << 10;

/// Where a stream goes.
pub type Sink = Arc<Mutex<dyn Write + Send>>;

/// A thread copying one stream.
pub struct Capture {
    handle: thread::JoinHandle<Captured>,
}

/// What a stream carried.
#[derive(Debug, Default, Clone)]
pub struct Captured {
    /// Its last [`KEPT_BYTES`] bytes, lossily decoded.
    pub tail: String,
    /// Bytes it carried in all.
    pub bytes: u64,
}

/// Shared count of bytes across a tool's streams, for the output limit.
#[derive(Debug, Clone, Default)]
pub struct OutputBudget {
    used: Arc<Mutex<u64>>,
    limit: Option<u64>,
}

impl OutputBudget {
    /// A budget of `limit` bytes, or none.
    pub fn new(limit: Option<u64>) -> OutputBudget {
        OutputBudget {
            used: Arc::default(),
            limit,
        }
    }

    /// Counts `n` bytes; true once the limit is passed.
    fn spend(&self, n: u64) -> bool {
        let Ok(mut used) = self.used.lock() else {
            return false;
        };
        *used += n;
        self.limit.is_some_and(|limit| *used > limit)
    }
}

impl Capture {
    /// Copies `stream` to `sink`, each line prefixed with `prefix`.
    pub fn start(
        stream: impl Read + Send + 'static,
        prefix: String,
        sink: Sink,
        budget: OutputBudget,
        stopper: Stopper,
    ) -> std::io::Result<Capture> {
        let handle = thread::Builder::new()
            .name("replay-capture".into())
            .spawn(move || pump(stream, &prefix, &sink, &budget, &stopper))?;
        Ok(Capture { handle })
    }

    /// Waits for the stream to close.
    pub fn finish(self) -> Captured {
        self.handle.join().unwrap_or_default()
    }
}

fn pump(
    stream: impl Read,
    prefix: &str,
    sink: &Sink,
    budget: &OutputBudget,
    stopper: &Stopper,
) -> Captured {
    let mut reader = BufReader::new(stream);
    let mut tail = VecDeque::with_capacity(KEPT_BYTES);
    let mut bytes = 0u64;
    let mut line = Vec::new();
    let mut over = false;
    loop {
        line.clear();
        // Bound a single "line" so a tool printing no newline cannot make
        // us buffer without limit.
        let n = match (&mut reader)
            .take(KEPT_BYTES as u64)
            .read_until(b'\n', &mut line)
        {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        bytes += n as u64;
        if !over && budget.spend(n as u64) {
            over = true;
            let limit = budget.limit.unwrap_or(0);
            stopper.stop(|after_ms| Stop::Output { limit, after_ms }, true);
        }
        if over {
            // Drain without passing more through.
            continue;
        }
        if let Ok(mut sink) = sink.lock() {
            let _ = sink.write_all(prefix.as_bytes());
            let _ = sink.write_all(&line);
            if !line.ends_with(b"\n") {
                let _ = sink.write_all(b"\n");
            }
            let _ = sink.flush();
        }
        for &b in &line {
            if tail.len() == KEPT_BYTES {
                tail.pop_front();
            }
            tail.push_back(b);
        }
    }
    let (a, b) = tail.as_slices();
    let mut kept = a.to_vec();
    kept.extend_from_slice(b);
    Captured {
        tail: String::from_utf8_lossy(&kept).into_owned(),
        bytes,
    }
}
