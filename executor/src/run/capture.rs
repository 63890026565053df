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

/// How much of each stream is also kept whole, for the action cache to
/// replay on a hit; a tool that prints more is not cached.
pub const WHOLE_BYTES: usize = 1 << 20;

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
    /// Every byte it carried, unless more than [`WHOLE_BYTES`].
    pub whole: Option<Vec<u8>>,
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

/// `line` as it may reach a terminal: control characters other than tab
/// and newline (and colour, `ESC [ digits m`, which compilers' diagnostics
/// use) are written as `\xNN`, C1 controls in UTF-8 as `\u{NN}`. A tool's
/// output could otherwise set the window title, write the clipboard (OSC
/// 52) or rewrite the line above with a forged `replay:` message.
pub(crate) fn escape_controls(line: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    // Bytes of valid UTF-8 sequences; any other byte of 0x80 and up (a
    // lone 0x9b is an 8-bit CSI to some terminals) is shown, not sent.
    let mut utf8 = vec![false; line.len()];
    let mut at = 0;
    for chunk in line.utf8_chunks() {
        let valid = chunk.valid().len();
        utf8[at..at + valid].fill(true);
        at += valid + chunk.invalid().len();
    }
    let harmless = |at: usize| {
        let b = line[at];
        b >= 0x20
            && b != 0x7f
            && (b < 0x80 || utf8[at])
            && !(b == 0xc2 && line.get(at + 1).is_some_and(|n| (0x80..0xa0).contains(n)))
            || b == b'\t'
            || b == b'\n'
    };
    if (0..line.len()).all(harmless) {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut out = Vec::with_capacity(line.len() + 16);
    let mut at = 0;
    while at < line.len() {
        let b = line[at];
        if b == 0x1b {
            // Colour: ESC [ (digits and ;) m, passed through whole.
            let end = line[at + 1..]
                .strip_prefix(b"[")
                .and_then(|rest| {
                    rest.iter()
                        .position(|c| !(c.is_ascii_digit() || *c == b';'))
                        .map(|n| (rest, n))
                })
                .filter(|(rest, n)| rest[*n] == b'm')
                .map(|(_, n)| at + 2 + n + 1);
            if let Some(end) = end {
                out.extend_from_slice(&line[at..end]);
                at = end;
                continue;
            }
        }
        if harmless(at) {
            out.push(b);
            at += 1;
        } else if b == 0xc2 {
            out.extend_from_slice(format!("\\u{{{:02x}}}", line[at + 1]).as_bytes());
            at += 2;
        } else {
            out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            at += 1;
        }
    }
    std::borrow::Cow::Owned(out)
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
    let mut whole = Some(Vec::new());
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
        pass_line(sink, prefix, &line);
        if let Some(kept) = &mut whole {
            if kept.len() + line.len() <= WHOLE_BYTES {
                kept.extend_from_slice(&line);
            } else {
                whole = None;
            }
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
        whole: whole.filter(|_| !over),
    }
}

/// Writes one line of a tool's output to `sink` as the user sees it:
/// prefixed, controls escaped, ended with a newline.
fn pass_line(sink: &Sink, prefix: &str, line: &[u8]) {
    if let Ok(mut sink) = sink.lock() {
        let _ = sink.write_all(prefix.as_bytes());
        let _ = sink.write_all(&escape_controls(line));
        if !line.ends_with(b"\n") {
            let _ = sink.write_all(b"\n");
        }
        let _ = sink.flush();
    }
}

/// Writes what a tool once printed (an action cache hit's) to `sink`,
/// line by line, exactly as [`Capture`] passed it through then.
pub fn replay(output: &[u8], prefix: &str, sink: &Sink) {
    for line in output.split_inclusive(|b| *b == b'\n') {
        pass_line(sink, prefix, line);
    }
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    fn shown(line: &[u8]) -> String {
        String::from_utf8_lossy(&escape_controls(line)).into_owned()
    }

    #[test]
    fn plain_text_and_colour_pass_through() {
        assert_eq!(shown(b"a.c:1:2: error: x\tx\n"), "a.c:1:2: error: x\tx\n");
        assert_eq!(
            shown(b"\x1b[1;31merror\x1b[0m\n"),
            "\x1b[1;31merror\x1b[0m\n"
        );
        assert_eq!(shown("caf\u{e9}\n".as_bytes()), "caf\u{e9}\n");
    }

    #[test]
    fn terminal_controls_are_shown_not_obeyed() {
        // Regression (review): a window title, a clipboard write (OSC 52)
        // and a forged `replay:` line over the previous one came through.
        assert_eq!(
            shown(b"\x1b]52;c;ZWNobyBwd25lZA==\x07\n"),
            "\\x1b]52;c;ZWNobyBwd25lZA==\\x07\n"
        );
        assert_eq!(
            shown(b"\r\x1b[2Kreplay: all ok\n"),
            "\\x0d\\x1b[2Kreplay: all ok\n"
        );
        assert_eq!(shown("\u{9b}31m\n".as_bytes()), "\\u{9b}31m\n");
        assert_eq!(shown(b"\x00\x7f\n"), "\\x00\\x7f\n");
        // Regression (review): a lone 0x9b, an 8-bit CSI, came through.
        assert_eq!(shown(b"\x9b31mred\n"), "\\x9b31mred\n");
    }
}
