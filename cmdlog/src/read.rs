//! The streaming reader: [`LogReader`] hands each command to a [`Visit`] as
//! soon as it is parsed and keeps nothing of it.
//!
//! It is built on `serde_json`'s streaming deserializer with hand-written
//! seeds rather than derived `Deserialize`, for three reasons: commands are
//! handed out one at a time instead of collected; every value is checked as
//! it arrives, so an error points at the value (line, column, byte, command,
//! field); and the bytes a single command may occupy are capped by a metered
//! reader underneath, so one huge argument cannot make the reader allocate
//! without bound. Memory is therefore flat in the number of commands; the
//! only state kept across commands is the previous id, which is why ids must
//! strictly increase (that also detects duplicates without a set of ids).
//!
//! Each command's object is captured whole as it streams past (within the
//! same byte limits) and parsed from memory with serde_json's slice
//! reader, several times faster than its byte-at-a-time stream reader; an
//! error in a command is found again by replaying its bytes through the
//! stream reader, so errors and their places are the same either way.
//!
//! A document must list `format`, `version`, `producer` and `platform`
//! before `commands`, so that a reader knows the header before the first
//! command; [`crate::LogWriter`] writes them in that order.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read};
use std::ops::ControlFlow;
use std::rc::Rc;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

use crate::error::{CommandRef, Field, Item, Location, Problem, ReadError};
use crate::limits::{Limit, Limits, MAX_HEADER_BYTES};
use crate::types::{Command, Document, Header, Platform, Producer, ToolKind, FORMAT, VERSION};
use crate::validate::{self, List};

/// Receives a log's header, then its commands one at a time, in order.
pub trait Visit {
    /// Called once, before the first command. `Break` stops reading.
    fn header(&mut self, header: &Header) -> ControlFlow<()> {
        let _ = header;
        ControlFlow::Continue(())
    }

    /// Called for each command, in document order. `Break` stops reading.
    fn command(&mut self, command: Command) -> ControlFlow<()>;

    /// Called instead of [`Visit::command`] by the reader, with where the
    /// command's object begins in the document (its `{`); by default it
    /// forgets the place and calls [`Visit::command`].
    fn command_at(&mut self, command: Command, at: Position) -> ControlFlow<()> {
        let _ = at;
        self.command(command)
    }
}

/// Where something begins in a log: a 1-based line, and a 1-based column
/// counted in Unicode code points from the line's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct Position {
    /// The line, from 1.
    pub line: u64,
    /// The column, from 1, in code points.
    pub column: u64,
}

impl<F: FnMut(Command) -> ControlFlow<()>> Visit for F {
    fn command(&mut self, command: Command) -> ControlFlow<()> {
        self(command)
    }
}

/// What a read saw, when it did not fail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The log's header.
    pub header: Header,
    /// Commands handed to the visitor.
    pub commands: u64,
    /// Bytes of the document read.
    pub bytes: u64,
    /// True if the visitor stopped the read; the rest of the log, and so
    /// whether it ends well, was not read.
    pub stopped: bool,
}

/// Reads a command log from a byte stream, one command at a time.
pub struct LogReader<R> {
    input: R,
    limits: Limits,
    /// Whether commands are captured and parsed from memory (always but in
    /// the test that holds the two ways to the same results).
    capture: bool,
}

impl<R: Read> LogReader<R> {
    /// A reader of `input` with the default [`Limits`]; `input` is buffered
    /// here, so pass a `File` as it is.
    pub fn new(input: R) -> Self {
        LogReader {
            input,
            limits: Limits::default(),
            capture: true,
        }
    }

    /// The same reader with other limits.
    pub fn with_limits(self, limits: Limits) -> Self {
        LogReader { limits, ..self }
    }

    /// Reads the whole log, handing the header and each command to `visit`.
    ///
    /// An `Ok` means the document was complete and valid (or that `visit`
    /// stopped it: see [`Summary::stopped`]); commands handed out before an
    /// error were valid on their own, but the log as a whole is not, so a
    /// caller that acts on commands must read the log through once first.
    pub fn read(self, visit: &mut impl Visit) -> Result<Summary, ReadError> {
        let meter = Rc::new(Meter::new(&self.limits));
        let input = Metered::new(self.input, Rc::clone(&meter));
        let mut de = serde_json::Deserializer::from_reader(input);
        let mut state = State {
            visit,
            limits: self.limits,
            capture: self.capture,
            meter: Rc::clone(&meter),
            header: None,
            commands: 0,
            last_id: None,
            command: None,
            command_at: Position::default(),
            field: None,
            problem: None,
            inner: None,
            stopped: false,
        };
        let parsed = DocumentSeed { state: &mut state }.deserialize(&mut de);
        let result = match parsed {
            Ok(()) => de.end().inspect_err(|e| {
                state.command = None;
                state.field = None;
                if state.problem.is_none() && e.classify() == serde_json::error::Category::Syntax {
                    state.problem = Some(Problem::TrailingData);
                }
            }),
            Err(e) if state.stopped => {
                drop(e);
                Ok(())
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => {
                let header = state.header.take().ok_or_else(|| ReadError {
                    problem: Problem::MissingField("commands"),
                    location: meter.location(0, 0),
                    command: None,
                    field: None,
                })?;
                Ok(Summary {
                    header,
                    commands: state.commands,
                    bytes: meter.consumed(),
                    stopped: state.stopped,
                })
            }
            Err(e) => Err(state.into_error(e)),
        }
    }
}

/// Reads a whole log into memory: for tests and small logs. Prefer
/// [`LogReader`] where a log may be large.
pub fn read_document(input: impl Read, limits: Limits) -> Result<Document, ReadError> {
    let mut commands = Vec::new();
    let summary = LogReader::new(input)
        .with_limits(limits)
        .read(&mut |command| {
            commands.push(command);
            ControlFlow::Continue(())
        })?;
    Ok(Document {
        format: FORMAT.to_owned(),
        version: VERSION,
        producer: summary.header.producer,
        platform: summary.header.platform,
        commands,
    })
}

/// Counts the bytes read and enforces the byte limits: the whole log, and a
/// window that restarts at each command.
///
/// The byte-at-a-time path of [`Metered`] only compares and copies: the
/// chunk being handed out is shared here, lines and columns are counted in
/// bulk when a position is asked for (or the chunk is replaced), and the
/// limits are folded into one index, [`Meter::stop`], past which the next
/// byte takes the slow path.
struct Meter {
    /// The chunk of input being handed out (`None` while it is refilled).
    chunk: RefCell<Option<Rc<[u8]>>>,
    /// Bytes handed out before the chunk began.
    base: Cell<u64>,
    /// The next byte of the chunk to hand out.
    pos: Cell<usize>,
    /// The end of what the chunk holds.
    end: Cell<usize>,
    /// Where the fast path stops: `end`, or the byte that passes a limit.
    stop: Cell<usize>,
    /// How much of the chunk is counted into `line` and `column`.
    scanned: Cell<usize>,
    max_total: u64,
    window_start: Cell<u64>,
    window_max: Cell<u64>,
    /// Which limit the current window enforces.
    window_limit: Cell<Limit>,
    exceeded: Cell<Option<Limit>>,
    /// Lines begun so far (1 before the first newline).
    line: Cell<u64>,
    /// Code points read on the current line.
    column: Cell<u64>,
    /// Bytes read on the current line (serde_json's column).
    byte_column: Cell<u64>,
    /// serde_json's line and column just after the last captured
    /// command's `{}`, and the document's there (after its `}`): serde_json
    /// counts over what it was handed, so its places after a capture are
    /// moved by this (see [`Meter::original`]).
    shift: Cell<Option<[u64; 4]>>,
    /// Set by the reader before serde_json asks for the byte after a
    /// command's `{`: the next read captures the object (see
    /// [`Metered::capture`]).
    capture: Cell<bool>,
    /// The object captured last, from its `{`.
    captured: RefCell<Vec<u8>>,
    /// How that capture ended.
    capture_end: Cell<CaptureEnd>,
}

/// How a captured object ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CaptureEnd {
    /// At the `}` that closes it.
    Closed,
    /// The input ended first.
    Eof,
    /// A limit was passed first (the meter says which).
    Limit,
}

impl Meter {
    fn new(limits: &Limits) -> Meter {
        Meter {
            chunk: RefCell::new(None),
            base: Cell::new(0),
            pos: Cell::new(0),
            end: Cell::new(0),
            stop: Cell::new(0),
            scanned: Cell::new(0),
            max_total: limits.max_log_bytes,
            window_start: Cell::new(0),
            window_max: Cell::new(MAX_HEADER_BYTES),
            window_limit: Cell::new(Limit::HeaderBytes),
            exceeded: Cell::new(None),
            line: Cell::new(1),
            column: Cell::new(0),
            byte_column: Cell::new(0),
            shift: Cell::new(None),
            capture: Cell::new(false),
            captured: RefCell::new(Vec::new()),
            capture_end: Cell::new(CaptureEnd::Closed),
        }
    }

    /// Bytes handed out so far.
    fn consumed(&self) -> u64 {
        self.base.get() + self.pos.get() as u64
    }

    /// Counts lines and code points in the chunk up to what was handed out.
    fn scan(&self) {
        let (from, to) = (self.scanned.get(), self.pos.get());
        if from >= to {
            return;
        }
        if let Some(chunk) = &*self.chunk.borrow() {
            if let Some(bytes) = chunk.get(from..to) {
                self.advance(bytes);
            }
        }
        self.scanned.set(to);
    }

    /// Counts lines and code points in `bytes`, just handed out.
    fn advance(&self, bytes: &[u8]) {
        // A code point begins at each byte that is not a UTF-8
        // continuation byte; both counts are plain loops the compiler
        // vectorizes.
        let starts = |b: &[u8]| b.iter().filter(|&&b| b & 0xC0 != 0x80).count() as u64;
        match bytes.iter().rposition(|&b| b == b'\n') {
            Some(last) => {
                let newlines = bytes.iter().filter(|&&b| b == b'\n').count() as u64;
                self.line.set(self.line.get() + newlines);
                self.column.set(starts(&bytes[last + 1..]));
                self.byte_column.set((bytes.len() - last - 1) as u64);
            }
            None => {
                self.column.set(self.column.get() + starts(bytes));
                self.byte_column
                    .set(self.byte_column.get() + bytes.len() as u64);
            }
        }
    }

    /// The line and the column in bytes after the last byte read: where
    /// serde_json's own reader would place an error there (its columns
    /// count bytes).
    fn byte_position(&self) -> (u64, u64) {
        self.scan();
        (self.line.get(), self.byte_column.get())
    }

    /// The document's line and column for serde_json's `line` and
    /// `column` (which count what it was handed: `{}` for each captured
    /// command). Only places after the last capture are asked for.
    fn original(&self, line: u64, column: u64) -> (u64, u64) {
        match self.shift.get() {
            None => (line, column),
            Some([t_line, t_column, o_line, o_column]) => {
                moved((line, column), (t_line, t_column), (o_line, o_column))
            }
        }
    }

    /// The inverse of [`Meter::original`]: serde_json's place for the
    /// document's `line` and `column`, after the last capture.
    fn handed(&self, line: u64, column: u64) -> (u64, u64) {
        match self.shift.get() {
            None => (line, column),
            Some([t_line, t_column, o_line, o_column]) => {
                moved((line, column), (o_line, o_column), (t_line, t_column))
            }
        }
    }

    /// The last byte handed out, if it is in the chunk at hand.
    fn last_byte(&self) -> Option<u8> {
        let at = self.pos.get().checked_sub(1)?;
        self.chunk.borrow().as_ref()?.get(at).copied()
    }

    /// The position of the last byte read. serde_json reads one byte at a
    /// time and peeks one ahead, so where a value has just been peeked
    /// (a command's `{`), this is where it begins.
    fn position(&self) -> Position {
        self.scan();
        Position {
            line: self.line.get(),
            column: self.column.get().max(1),
        }
    }

    /// Starts a new window of `max` bytes, enforcing `limit`.
    fn restart_window(&self, max: u64, limit: Limit) {
        self.window_start.set(self.consumed());
        self.window_max.set(max);
        self.window_limit.set(limit);
        self.update_stop();
    }

    /// Recomputes [`Meter::stop`]: the chunk's end, or the index of the
    /// first byte that would pass a limit, whichever comes first.
    fn update_stop(&self) {
        let limit = self.max_total.min(
            self.window_start
                .get()
                .saturating_add(self.window_max.get()),
        );
        let room = limit.saturating_sub(self.base.get());
        let end = self.end.get();
        self.stop
            .set(usize::try_from(room).map_or(end, |room| room.min(end)));
    }

    /// Counts what is left of the chunk and gives it back for a refill.
    fn retire_chunk(&self) {
        let end = self.end.get();
        self.pos.set(end);
        self.scan();
        *self.chunk.borrow_mut() = None;
        self.base.set(self.base.get() + end as u64);
        for cell in [&self.pos, &self.end, &self.stop, &self.scanned] {
            cell.set(0);
        }
    }

    /// Hands out `chunk`, of which the first `end` bytes were read.
    fn install(&self, chunk: Rc<[u8]>, end: usize) {
        *self.chunk.borrow_mut() = Some(chunk);
        self.end.set(end);
        self.update_stop();
    }

    /// Where the reader is; serde_json gives no line for I/O errors (which
    /// is how a passed limit surfaces), and then only the byte is known.
    fn location(&self, line: usize, column: usize) -> Location {
        Location {
            line,
            column,
            offset: self.consumed(),
        }
    }
}

/// `place` (a line and a column) at or after `from`, moved so that `from`
/// falls on `to`: columns shift only on `from`'s own line.
fn moved(place: (u64, u64), from: (u64, u64), to: (u64, u64)) -> (u64, u64) {
    let (line, column) = place;
    if line == from.0 {
        (to.0, (to.1 + column).saturating_sub(from.1))
    } else {
        (to.0 + line.saturating_sub(from.0), column)
    }
}

/// How many bytes [`Metered`] reads from its input at once.
const READ_BUFFER: usize = 64 << 10;

/// A buffered reader that counts into a [`Meter`] and fails once a limit
/// is passed. serde_json reads a byte at a time through `io::Bytes`, so
/// this is its hot path: it holds its own buffer (rather than wrapping a
/// `BufReader`, a second call and copy per byte), is inlined, and per byte
/// only compares an index with [`Meter::stop`] and copies.
struct Metered<R> {
    inner: R,
    /// The chunk, shared with the meter so that it can count positions.
    buf: Rc<[u8]>,
    meter: Rc<Meter>,
}

impl<R> Metered<R> {
    fn new(inner: R, meter: Rc<Meter>) -> Self {
        Metered {
            inner,
            buf: zeroed_chunk(),
            meter,
        }
    }
}

/// A chunk of [`READ_BUFFER`] zero bytes, allocated once (a `Vec` turned
/// into an `Rc` would be copied, two buffers live at once).
fn zeroed_chunk() -> Rc<[u8]> {
    std::iter::repeat_n(0, READ_BUFFER).collect()
}

impl<R: Read> Metered<R> {
    /// Refills the chunk once the last byte was handed out; `Ok(false)` at
    /// the end of the input.
    #[inline(never)]
    fn refill(&mut self) -> io::Result<bool> {
        self.meter.retire_chunk();
        if Rc::get_mut(&mut self.buf).is_none() {
            self.buf = zeroed_chunk();
        }
        let Some(buf) = Rc::get_mut(&mut self.buf) else {
            return Err(io::Error::other("the log reader's buffer is shared"));
        };
        // Retried here, not by the caller: a capture in progress would
        // lose what it had read. Regression (review): EINTR mid-command
        // failed a valid log.
        let n = loop {
            match self.inner.read(buf) {
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                read => break read?,
            }
        };
        self.meter.install(Rc::clone(&self.buf), n);
        Ok(n > 0)
    }

    /// Hands out the byte that passes a limit, and fails.
    #[cold]
    fn exceed(&self) -> io::Error {
        let m = &self.meter;
        m.pos.set(m.pos.get() + 1);
        let limit = if m.consumed() > m.max_total {
            Limit::LogBytes
        } else {
            m.window_limit.get()
        };
        m.exceeded.set(Some(limit));
        io::Error::other(format!("too many {limit}"))
    }
}

impl<R: Read> Read for Metered<R> {
    #[inline]
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.meter.capture.get() && !buf.is_empty() {
            // serde_json is handed the object's end at once: it sees `{}`
            // and the reader parses the captured bytes itself.
            self.meter.capture.set(false);
            let mut out = self.meter.captured.take();
            out.clear();
            out.push(b'{');
            let end = self.capture(&mut out)?;
            *self.meter.captured.borrow_mut() = out;
            self.meter.capture_end.set(end);
            buf[0] = b'}';
            return Ok(1);
        }
        loop {
            let m = &*self.meter;
            let (pos, stop) = (m.pos.get(), m.stop.get());
            if pos < stop {
                let n = buf.len().min(stop - pos);
                match (&mut *buf, self.buf.get(pos..pos + n)) {
                    // `io::Bytes` asks for one byte: no call to `memcpy`.
                    ([to], Some([from])) => *to = *from,
                    (to, Some(from)) => to[..n].copy_from_slice(from),
                    (_, None) => return Err(io::Error::other("the log reader lost its place")),
                }
                m.pos.set(pos + n);
                return Ok(n);
            }
            if pos < m.end.get() || m.exceeded.get().is_some() {
                return Err(self.exceed());
            }
            if !self.refill()? {
                return Ok(0);
            }
        }
    }
}

impl<R: Read> Metered<R> {
    /// Reads the rest of an object whose `{` was just handed out into
    /// `out`, through the `}` that closes it: strings (and their escapes)
    /// are skipped whole, brackets of either kind counted. Stops early at
    /// the end of the input or at a limit, as a byte-at-a-time read would.
    #[inline(never)]
    fn capture(&mut self, out: &mut Vec<u8>) -> io::Result<CaptureEnd> {
        let (mut depth, mut in_string, mut escaped) = (1u64, false, false);
        loop {
            let m = &*self.meter;
            let (pos, stop) = (m.pos.get(), m.stop.get());
            if pos < stop {
                let Some(bytes) = self.buf.get(pos..stop) else {
                    return Err(io::Error::other("the log reader lost its place"));
                };
                let (mut at, mut taken) = (0, bytes.len());
                while at < bytes.len() {
                    if escaped {
                        escaped = false;
                        at += 1;
                        continue;
                    }
                    if in_string {
                        // To the string's next quote or backslash at once.
                        match memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                            Some(k) => {
                                at += k;
                                if bytes[at] == b'"' {
                                    in_string = false;
                                } else {
                                    escaped = true;
                                }
                                at += 1;
                            }
                            None => at = bytes.len(),
                        }
                        continue;
                    }
                    let byte = bytes[at];
                    at += 1;
                    match byte {
                        b'"' => in_string = true,
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                taken = at;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                out.extend_from_slice(&bytes[..taken]);
                m.pos.set(pos + taken);
                if depth == 0 {
                    return Ok(CaptureEnd::Closed);
                }
                continue;
            }
            if pos < m.end.get() || m.exceeded.get().is_some() {
                drop(self.exceed());
                return Ok(CaptureEnd::Limit);
            }
            if !self.refill()? {
                return Ok(CaptureEnd::Eof);
            }
        }
    }
}

/// The captured object again, handed out a byte at a time the way the
/// stream was, ending as the capture did: used only to report an error in
/// it exactly where, and as, a byte-at-a-time read would have.
struct Replayed<'a> {
    bytes: &'a [u8],
    end: CaptureEnd,
    /// Bytes handed out (and the one that passed a limit).
    pulled: Rc<Cell<u64>>,
}

impl Read for Replayed<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.pulled.get() as usize;
        match (self.bytes.get(at), buf.first_mut()) {
            (_, None) => Ok(0),
            (Some(&byte), Some(to)) => {
                *to = byte;
                self.pulled.set(self.pulled.get() + 1);
                Ok(1)
            }
            (None, Some(_)) if self.end == CaptureEnd::Limit => {
                self.pulled.set(self.pulled.get() + 1);
                Err(io::Error::other("a limit was passed"))
            }
            (None, Some(_)) => Ok(0),
        }
    }
}

/// Where an error found in a captured command is, and the error.
struct Inner {
    error: serde_json::Error,
    location: Location,
    /// The limit the capture passed, if that is the error.
    exceeded: Option<Limit>,
}

/// Everything the seeds share while a document is parsed.
struct State<'v, V> {
    visit: &'v mut V,
    limits: Limits,
    /// See [`LogReader::capture`].
    capture: bool,
    meter: Rc<Meter>,
    header: Option<Header>,
    commands: u64,
    last_id: Option<u64>,
    /// The command being parsed, if any.
    command: Option<CommandRef>,
    /// Where it begins.
    command_at: Position,
    /// The field being parsed, if any.
    field: Option<Field>,
    /// The typed problem behind the last error raised by a seed.
    problem: Option<Problem>,
    /// An error found in a captured command (it carries its own place).
    inner: Option<Inner>,
    stopped: bool,
}

impl<V> State<'_, V> {
    /// Records `problem` and returns the serde error that carries it up.
    fn fail<E: de::Error>(&mut self, problem: Problem) -> E {
        let error = E::custom(&problem);
        self.problem = Some(problem);
        error
    }

    fn at(&mut self, name: &'static str) {
        self.field = Some(Field::named(name));
    }

    fn into_error(mut self, error: serde_json::Error) -> ReadError {
        use serde_json::error::Category;
        let (error, location, exceeded) = match self.inner.take() {
            Some(inner) => (inner.error, inner.location, inner.exceeded),
            None => {
                // serde_json counts lines and columns over what it was
                // handed, in which each captured command is `{}`: the
                // meter has them for the document itself.
                let (line, column) = match error.line() {
                    0 => (0, 0),
                    line => self.meter.original(line as u64, error.column() as u64),
                };
                // A limit passed only after serde_json's own error (it
                // reads on to close what it had open) is not why the log
                // failed: then the error is not I/O.
                let exceeded = self.meter.exceeded.get().filter(|_| error.is_io());
                (
                    error,
                    Location {
                        line: line as usize,
                        column: column as usize,
                        offset: self.meter.consumed(),
                    },
                    exceeded,
                )
            }
        };
        let problem = match (self.problem.take(), exceeded) {
            (_, Some(limit)) => Problem::TooLarge {
                limit,
                max: limit.value(&self.limits),
            },
            (Some(problem), None) => problem,
            (None, None) => match error.classify() {
                Category::Eof => Problem::Truncated,
                Category::Io => Problem::Io(error_without_position(&error)),
                Category::Syntax => Problem::Syntax(message_without_position(&error)),
                Category::Data => Problem::Shape(message_without_position(&error)),
            },
        };
        ReadError {
            problem,
            location,
            command: self.command,
            field: self.field,
        }
    }
}

/// serde_json appends " at line L column C" to its messages; the location
/// is reported separately, so drop it from the message.
fn message_without_position(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

fn error_without_position(error: &serde_json::Error) -> io::Error {
    io::Error::new(
        error.io_error_kind().unwrap_or(io::ErrorKind::Other),
        message_without_position(error),
    )
}

struct DocumentSeed<'s, 'v, V> {
    state: &'s mut State<'v, V>,
}

impl<'de, V: Visit> DeserializeSeed<'de> for DocumentSeed<'_, '_, V> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, V: Visit> Visitor<'de> for DocumentSeed<'_, '_, V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a replay command log (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        let (mut format, mut version) = (false, false);
        let (mut producer, mut platform) = (None::<Producer>, None::<Platform>);
        let mut commands = false;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "format" => {
                    once(state, format, "format")?;
                    let value: String = map.next_value()?;
                    if value != FORMAT {
                        return Err(state.fail(Problem::WrongFormat(value)));
                    }
                    format = true;
                }
                "version" => {
                    once(state, version, "version")?;
                    let value: u64 = map.next_value()?;
                    if value != u64::from(VERSION) {
                        return Err(state.fail(Problem::WrongVersion(value)));
                    }
                    version = true;
                }
                "producer" => {
                    once(state, producer.is_some(), "producer")?;
                    let value: Producer = map.next_value()?;
                    validate::producer(&value).map_err(|(f, p)| {
                        state.field = Some(f);
                        state.fail(p)
                    })?;
                    producer = Some(value);
                }
                "platform" => {
                    once(state, platform.is_some(), "platform")?;
                    let value: Platform = map.next_value()?;
                    validate::platform(&value).map_err(|(f, p)| {
                        state.field = Some(f);
                        state.fail(p)
                    })?;
                    platform = Some(value);
                }
                "commands" => {
                    once(state, commands, "commands")?;
                    let header = match (format, version, producer.clone(), platform.clone()) {
                        (true, true, Some(producer), Some(platform)) => {
                            Header { producer, platform }
                        }
                        (format, version, producer, platform) => {
                            let missing = [
                                ("format", format),
                                ("version", version),
                                ("producer", producer.is_some()),
                                ("platform", platform.is_some()),
                            ]
                            .into_iter()
                            .find(|(_, seen)| !seen)
                            .map_or("format", |(name, _)| name);
                            return Err(state.fail(Problem::CommandsBeforeHeader(missing)));
                        }
                    };
                    if state.visit.header(&header).is_break() {
                        state.stopped = true;
                        state.header = Some(header);
                        return Err(de::Error::custom("stopped by the visitor"));
                    }
                    state.header = Some(header);
                    map.next_value_seed(CommandsSeed { state: &mut *state })?;
                    commands = true;
                }
                _ => {
                    state.field = None;
                    return Err(state.fail(Problem::UnknownField(key)));
                }
            }
            state.field = None;
        }
        for (name, seen) in [
            ("format", format),
            ("version", version),
            ("producer", producer.is_some()),
            ("platform", platform.is_some()),
            ("commands", commands),
        ] {
            if !seen {
                return Err(state.fail(Problem::MissingField(name)));
            }
        }
        Ok(())
    }
}

/// Fails with [`Problem::DuplicateField`] if the field was seen already, and
/// otherwise notes that it is the field being parsed.
fn once<V, E: de::Error>(
    state: &mut State<'_, V>,
    seen: bool,
    name: &'static str,
) -> Result<(), E> {
    state.at(name);
    if seen {
        return Err(state.fail(Problem::DuplicateField(name)));
    }
    Ok(())
}

struct CommandsSeed<'s, 'v, V> {
    state: &'s mut State<'v, V>,
}

impl<'de, V: Visit> DeserializeSeed<'de> for CommandsSeed<'_, '_, V> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, V: Visit> Visitor<'de> for CommandsSeed<'_, '_, V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of commands")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let state = self.state;
        while seq
            .next_element_seed(CommandSeed { state: &mut *state })?
            .is_some()
        {
            state.command = None;
            state.field = None;
        }
        // Past the list only the closing brace and whitespace belong; any
        // key there is refused, but it is read whole first, so bound it.
        state
            .meter
            .restart_window(MAX_HEADER_BYTES, Limit::HeaderBytes);
        Ok(())
    }
}

struct CommandSeed<'s, 'v, V> {
    state: &'s mut State<'v, V>,
}

impl<'de, V: Visit> DeserializeSeed<'de> for CommandSeed<'_, '_, V> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let state = self.state;
        state.command = Some(CommandRef {
            position: state.commands + 1,
            id: None,
        });
        state.command_at = state.meter.position();
        state.field = None;
        if state.commands >= state.limits.max_commands {
            return Err(state.fail(Problem::TooLarge {
                limit: Limit::Commands,
                max: state.limits.max_commands,
            }));
        }
        state
            .meter
            .restart_window(state.limits.max_command_bytes, Limit::CommandBytes);
        if state.capture && state.meter.last_byte() == Some(b'{') {
            // An object: captured whole and parsed from memory (serde_json
            // reads a stream a byte at a time, a slice much faster).
            let (line, column) = state.meter.byte_position();
            let from = state.meter.consumed() - 1;
            state.meter.capture.set(true);
            return d.deserialize_map(Captured {
                state,
                line,
                column,
                from,
            });
        }
        d.deserialize_map(CommandSeed { state })
    }
}

/// A command whose object the reader captured: serde_json sees `{}`.
struct Captured<'s, 'v, V> {
    state: &'s mut State<'v, V>,
    /// The line and byte column of its `{`.
    line: u64,
    column: u64,
    /// Bytes of the document before its `{`.
    from: u64,
}

impl<'de, V: Visit> Visitor<'de> for Captured<'_, '_, V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a command (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Captured {
            state,
            line,
            column,
            from,
        } = self;
        // The capture happens as serde_json reads the object's end.
        let handed = state.meter.handed(line, column);
        if map.next_key::<de::IgnoredAny>()?.is_some() {
            return Err(de::Error::custom("the log reader lost its place"));
        }
        let (o_line, o_column) = state.meter.byte_position();
        state
            .meter
            .shift
            .set(Some([handed.0, handed.1 + 1, o_line, o_column]));
        let mut bytes = state.meter.captured.take();
        let end = state.meter.capture_end.get();
        let before = (state.command, state.field.take());
        let parsed = de::Deserializer::deserialize_map(
            &mut serde_json::Deserializer::from_slice(&bytes),
            CommandSeed { state: &mut *state },
        );
        let result = match parsed {
            Ok(()) => Ok(()),
            Err(_) if state.stopped => Err(de::Error::custom("stopped by the visitor")),
            Err(_) => {
                // Read again as the stream would have been, so that the
                // error is the one, and where, a byte-at-a-time read
                // finds (serde_json's slice reader places some a byte
                // apart).
                (state.command, state.field) = before;
                state.problem = None;
                let pulled = Rc::new(Cell::new(0));
                let replayed = Replayed {
                    bytes: &bytes,
                    end,
                    pulled: Rc::clone(&pulled),
                };
                let error = match de::Deserializer::deserialize_map(
                    &mut serde_json::Deserializer::from_reader(replayed),
                    CommandSeed { state: &mut *state },
                ) {
                    Err(error) => error,
                    Ok(()) => de::Error::custom("the command was read twice"),
                };
                // An error found before the capture passed a limit: the
                // stream would have stopped there.
                let exceeded = state.meter.exceeded.get().filter(|_| error.is_io());
                let (l, c) = (error.line() as u64, error.column() as u64);
                let (line, column) = match l {
                    0 => (0, 0),
                    1 => (line, (column + c).saturating_sub(1)),
                    _ => (line + l - 1, c),
                };
                state.inner = Some(Inner {
                    error,
                    location: Location {
                        line: line as usize,
                        column: column as usize,
                        offset: from + pulled.get(),
                    },
                    exceeded,
                });
                Err(de::Error::custom("the command is not valid"))
            }
        };
        // Kept for the next command, unless one huge command grew it.
        bytes.clear();
        if bytes.capacity() <= READ_BUFFER {
            *state.meter.captured.borrow_mut() = bytes;
        }
        result
    }
}

impl<'de, V: Visit> Visitor<'de> for CommandSeed<'_, '_, V> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a command (a JSON object)")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let state = self.state;
        let mut id = None;
        let mut tool = None;
        let mut program = None;
        let mut args = None;
        let mut cwd = None;
        let mut env = None;
        let mut inputs = None;
        let mut outputs = None;
        let mut cache_key = None;
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                FieldKey::Id => {
                    once(state, id.is_some(), "id")?;
                    let value: u64 = map.next_value()?;
                    if let Some(command) = &mut state.command {
                        command.id = Some(value);
                    }
                    validate::id_after(value, state.last_id).map_err(|p| state.fail(p))?;
                    id = Some(value);
                }
                FieldKey::Tool => {
                    once(state, tool.is_some(), "tool")?;
                    let value = map.next_value_seed(ToolSeed)?;
                    tool = Some(value.map_err(|p| state.fail(p))?);
                }
                FieldKey::Program => {
                    once(state, program.is_some(), "program")?;
                    let value: String = map.next_value()?;
                    validate::name(&value).map_err(|p| state.fail(p))?;
                    program = Some(value);
                }
                FieldKey::Cwd => {
                    once(state, cwd.is_some(), "cwd")?;
                    let value: String = map.next_value()?;
                    validate::confined(&value).map_err(|p| state.fail(p))?;
                    cwd = Some(value);
                }
                FieldKey::Cache => {
                    once(state, cache_key.is_some(), "cache_key")?;
                    let value: Option<String> = map.next_value()?;
                    if let Some(value) = &value {
                        validate::text(value).map_err(|p| state.fail(p))?;
                    }
                    cache_key = Some(value);
                }
                FieldKey::Args => {
                    once(state, args.is_some(), "args")?;
                    args = Some(map.next_value_seed(ListSeed {
                        state: &mut *state,
                        list: List::Args,
                    })?);
                }
                FieldKey::Inputs => {
                    once(state, inputs.is_some(), "inputs")?;
                    inputs = Some(map.next_value_seed(ListSeed {
                        state: &mut *state,
                        list: List::Inputs,
                    })?);
                }
                FieldKey::Outputs => {
                    once(state, outputs.is_some(), "outputs")?;
                    outputs = Some(map.next_value_seed(ListSeed {
                        state: &mut *state,
                        list: List::Outputs,
                    })?);
                }
                FieldKey::Env => {
                    once(state, env.is_some(), "env")?;
                    env = Some(map.next_value_seed(EnvSeed { state: &mut *state })?);
                }
                FieldKey::Unknown(name) => {
                    state.field = None;
                    return Err(state.fail(Problem::UnknownField(name)));
                }
            }
            state.field = None;
        }
        let command = match (id, tool, program, args, cwd, env, inputs, outputs) {
            (
                Some(id),
                Some(tool),
                Some(program),
                Some(args),
                Some(cwd),
                Some(env),
                Some(inputs),
                Some(outputs),
            ) => Command {
                id,
                tool,
                program,
                args,
                cwd,
                env,
                inputs,
                outputs,
                cache_key: cache_key.flatten(),
            },
            (id, tool, program, args, cwd, env, inputs, outputs) => {
                let missing = [
                    ("id", id.is_some()),
                    ("tool", tool.is_some()),
                    ("program", program.is_some()),
                    ("args", args.is_some()),
                    ("cwd", cwd.is_some()),
                    ("env", env.is_some()),
                    ("inputs", inputs.is_some()),
                    ("outputs", outputs.is_some()),
                ]
                .into_iter()
                .find(|(_, seen)| !seen)
                .map_or("id", |(name, _)| name);
                return Err(state.fail(Problem::MissingField(missing)));
            }
        };
        state.last_id = Some(command.id);
        state.commands += 1;
        if state.visit.command_at(command, state.command_at).is_break() {
            state.stopped = true;
            return Err(de::Error::custom("stopped by the visitor"));
        }
        Ok(())
    }
}

/// The fields of a command; unknown names are kept for the error.
enum FieldKey {
    Id,
    Tool,
    Program,
    Args,
    Cwd,
    Env,
    Inputs,
    Outputs,
    Cache,
    Unknown(String),
}

struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = FieldKey;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<FieldKey, D::Error> {
        d.deserialize_identifier(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = FieldKey;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<FieldKey, E> {
        Ok(match v {
            "id" => FieldKey::Id,
            "tool" => FieldKey::Tool,
            "program" => FieldKey::Program,
            "args" => FieldKey::Args,
            "cwd" => FieldKey::Cwd,
            "env" => FieldKey::Env,
            "inputs" => FieldKey::Inputs,
            "outputs" => FieldKey::Outputs,
            "cache_key" => FieldKey::Cache,
            other => FieldKey::Unknown(other.to_owned()),
        })
    }
}

/// `tool`: a name, checked and made a [`ToolKind`] without a copy of it
/// (a known kind holds no string).
struct ToolSeed;

impl<'de> DeserializeSeed<'de> for ToolSeed {
    type Value = Result<ToolKind, Problem>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for ToolSeed {
    type Value = Result<ToolKind, Problem>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        // What a `String` expects: the same message as the other fields.
        f.write_str("a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(validate::name(v).map(|()| ToolKind::from_name(v)))
    }
}

/// `args`, `inputs` or `outputs`: strings, each checked as it arrives.
struct ListSeed<'s, 'v, V> {
    state: &'s mut State<'v, V>,
    list: List,
}

impl<'de, V> DeserializeSeed<'de> for ListSeed<'_, '_, V> {
    type Value = Vec<String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Vec<String>, D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de, V> Visitor<'de> for ListSeed<'_, '_, V> {
    type Value = Vec<String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a list of strings")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<String>, A::Error> {
        let (state, list) = (self.state, self.list);
        let name = list.field_name();
        let mut items = Vec::new();
        loop {
            let index = items.len() as u64;
            state.field = Some(Field {
                name,
                item: Some(Item::Index(index)),
            });
            let Some(item) = seq.next_element::<String>()? else {
                break;
            };
            if let Some((limit, max)) = list.max_len(&state.limits) {
                if index >= max {
                    state.field = Some(Field::named(name));
                    return Err(state.fail(Problem::TooLarge { limit, max }));
                }
            }
            list.check(&item, &state.limits)
                .map_err(|p| state.fail(p))?;
            items.push(item);
        }
        state.at(name);
        Ok(items)
    }
}

/// `env`: a map of names to values, each checked as it arrives.
struct EnvSeed<'s, 'v, V> {
    state: &'s mut State<'v, V>,
}

impl<'de, V> DeserializeSeed<'de> for EnvSeed<'_, '_, V> {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de, V> Visitor<'de> for EnvSeed<'_, '_, V> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of environment variable names to string values")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let state = self.state;
        let mut env = BTreeMap::new();
        while let Some(name) = map.next_key::<String>()? {
            state.field = Some(Field {
                name: "env",
                item: Some(Item::Key(name.clone())),
            });
            validate::env_name(&name).map_err(|p| state.fail(p))?;
            if env.contains_key(&name) {
                return Err(state.fail(Problem::DuplicateKey(name)));
            }
            let value: String = map.next_value()?;
            validate::text(&value).map_err(|p| state.fail(p))?;
            env.insert(name, value);
        }
        state.at("env");
        Ok(env)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What a read of `input` gave, comparable: the commands' ids, or the
    /// error with all it says but its offset (given apart).
    fn outcome(
        input: impl Read,
        limits: Limits,
        capture: bool,
    ) -> Result<Vec<(u64, Position)>, (String, u64)> {
        let mut places = Places(Vec::new());
        let mut reader = LogReader::new(input).with_limits(limits);
        reader.capture = capture;
        match reader.read(&mut places) {
            Ok(summary) => Ok([(summary.commands, Position::default())]
                .into_iter()
                .chain(places.0)
                .collect()),
            Err(e) => Err((
                format!(
                    "{e} | {:?} | {}:{} | {:?} | {:?}",
                    e.problem, e.location.line, e.location.column, e.command, e.field
                ),
                e.location.offset,
            )),
        }
    }

    proptest! {
        /// Capturing each command and parsing it from memory reads every
        /// log, valid or broken anywhere (a byte cut, a byte added, tight
        /// limits), exactly as serde_json's byte-at-a-time reader does:
        /// the same commands, or the same error at the same place.
        #[test]
        fn captured_commands_read_as_a_stream_does(
            cut in 0usize..2000,
            cut_len in 0usize..4,
            at in 0usize..2000,
            insert in proptest::sample::select(vec!["", "{", "}", "[", "]", "\"", ",", ":", "\\", " ", "\n", "é", "1", "a", "\"x\"", "\u{0}"]),
            command_bytes in proptest::sample::select(vec![u64::MAX, 150, 200, 260]),
            log_bytes in proptest::sample::select(vec![u64::MAX, 600, 900]),
        ) {
            let (one, two, three) = (command(1), command(2), command(3));
            let text = format!(
                "{{\"format\": \"replay-log\", \"version\": 1,\n\
                 \"producer\": {{\"name\": \"t\", \"version\": \"1\"}},\n\
                 \"platform\": {{\"os\": \"linux\", \"arch\": \"x86_64\"}},\n\
                 \"commands\": [{one}, {two},\n  \n    {three}]}}\n"
            );
            let mut bytes = text.into_bytes();
            let cut = cut % bytes.len();
            bytes.drain(cut..(cut + cut_len).min(bytes.len()));
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, insert.bytes());
            let limits = Limits {
                max_command_bytes: command_bytes,
                max_log_bytes: log_bytes,
                ..Limits::default()
            };
            match (outcome(&bytes[..], limits, true), outcome(&bytes[..], limits, false)) {
                // The offset counts what the parser read, and it reads on
                // a little past an error: past the captured bytes a read
                // of them stops sooner.
                (Err((captured, at)), Err((streamed, stream_at))) => {
                    prop_assert_eq!(captured, streamed);
                    prop_assert!(at <= stream_at && stream_at - at <= 16, "offset {} against {}", at, stream_at);
                }
                (captured, streamed) => prop_assert_eq!(captured, streamed),
            }
        }
    }

    /// A reader handing out `sizes` bytes at a time (cycled), and failing
    /// with `Interrupted` once before byte `interrupt_at`.
    struct Chunked<'a> {
        bytes: &'a [u8],
        at: usize,
        sizes: Vec<usize>,
        turn: usize,
        interrupt_at: Option<usize>,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if let Some(i) = self.interrupt_at {
                if self.at >= i {
                    self.interrupt_at = None;
                    return Err(io::Error::from(io::ErrorKind::Interrupted));
                }
            }
            let size = self.sizes[self.turn % self.sizes.len()].max(1);
            self.turn += 1;
            let mut n = size.min(buf.len()).min(self.bytes.len() - self.at);
            if let Some(i) = self.interrupt_at {
                if i > self.at {
                    n = n.min(i - self.at);
                }
            }
            buf[..n].copy_from_slice(&self.bytes[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    /// A log whose second command has arguments `args` and variable `A`
    /// set to `raw`, as written between its quotes.
    fn log_with(args: &[String], raw: &str) -> Vec<u8> {
        let args = serde_json::to_string(args).unwrap();
        format!(
            "{{\"format\": \"replay-log\", \"version\": 1,\n\
             \"producer\": {{\"name\": \"t\", \"version\": \"1\"}},\n\
             \"platform\": {{\"os\": \"linux\", \"arch\": \"x86_64\"}},\n\
             \"commands\": [{}, {{\"id\": 2, \"tool\": \"opt\", \"program\": \"opt\", \"args\": {args}, \"cwd\": \".\", \"env\": {{\"A\": \"{raw}\"}}, \"inputs\": [], \"outputs\": []}},\n {}]}}\n",
            command(1),
            command(3)
        )
        .into_bytes()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        /// Regression (review): a read cut anywhere (the other test never
        /// crosses a chunk: its logs are far below READ_BUFFER), escapes
        /// and brackets in strings, and a command limit near an error:
        /// the stream reported "too many bytes" for an error that came
        /// before the limit, read past by serde_json.
        #[test]
        fn a_log_read_in_pieces_reads_as_a_stream_does(
            args in proptest::collection::vec("[\"\\\\{}\\[\\]a é😀\u{1}]{0,12}", 0..4),
            raw in proptest::sample::select(vec!["", "\\ud800", "\\\\", "\\\"", "\\\\\\\"", "\\ud83d\\ude00", "\\u00e9", "{[", "\\/", "\\x", "\u{7f}"]),
            sizes in proptest::collection::vec(1usize..9, 1..5),
            cut in 0usize..3000,
            cut_len in 0usize..3,
            insert in proptest::sample::select(vec!["", "{", "}", "[", "]", "\"", "\\", "\\\"", "\\\\", "\u{0}", "é"]),
            at in 0usize..3000,
            command_bytes in proptest::sample::select(vec![u64::MAX, 150, 260]),
        ) {
            let mut bytes = log_with(&args, raw);
            let cut = cut % bytes.len();
            bytes.drain(cut..(cut + cut_len).min(bytes.len()));
            let at = at % (bytes.len() + 1);
            bytes.splice(at..at, insert.bytes());
            let limits = Limits { max_command_bytes: command_bytes, ..Limits::default() };
            let chunked = Chunked { bytes: &bytes, at: 0, sizes: sizes.clone(), turn: 0, interrupt_at: None };
            let captured = outcome(chunked, limits, true);
            let streamed = outcome(&bytes[..], limits, false);
            match (captured, streamed) {
                (Err((c, a)), Err((s, sa))) => {
                    prop_assert_eq!(c, s);
                    prop_assert!(a <= sa && sa - a <= 16, "offset {} against {}", a, sa);
                }
                (c, s) => prop_assert_eq!(c, s),
            }
        }
    }

    /// Regression (review): with a command's byte limit just past an
    /// error in it, the stream said "too many bytes" (serde_json reads on
    /// after its error, past the limit) and the capture named the error.
    #[test]
    fn an_error_just_before_a_command_limit_is_the_error() {
        let args: Vec<String> = vec![
            "\u{1} a\u{e9}{a\u{1}\" ".into(),
            "\u{1f600}\"{{\u{1}[\u{1}[\u{1}\u{e9}".into(),
            "a".into(),
        ];
        let bytes = log_with(&args, "\\ud800");
        for max in 100..400 {
            let limits = Limits {
                max_command_bytes: max,
                ..Limits::default()
            };
            let whole = |capture| outcome(&bytes[..], limits, capture);
            let chunked = |capture| {
                let chunks = Chunked {
                    bytes: &bytes,
                    at: 0,
                    sizes: vec![1],
                    turn: 0,
                    interrupt_at: None,
                };
                outcome(chunks, limits, capture)
            };
            let streamed = whole(false);
            let streamed_text = streamed.map_err(|(text, _)| text);
            for (name, got) in [
                ("captured", whole(true)),
                ("captured in pieces", chunked(true)),
                ("streamed in pieces", chunked(false)),
            ] {
                assert_eq!(
                    got.map_err(|(text, _)| text),
                    streamed_text.clone(),
                    "{name}, limit {max}"
                );
            }
        }
    }

    /// Regression (review): an `Interrupted` read (EINTR on a pipe) in
    /// the middle of a command lost what the capture had read, and a
    /// valid log failed.
    #[test]
    fn an_interrupted_read_mid_command_loses_nothing() {
        let bytes = log_with(&["x".to_owned()], "");
        let start = bytes.windows(8).position(|w| w == b"{\"id\": 2").unwrap();
        let mut failures = Vec::new();
        for i in start + 1..start + 60 {
            let reader = |capture| {
                outcome(
                    Chunked {
                        bytes: &bytes,
                        at: 0,
                        sizes: vec![4096],
                        turn: 0,
                        interrupt_at: Some(i),
                    },
                    Limits::default(),
                    capture,
                )
            };
            let (c, s) = (reader(true), reader(false));
            if c != s {
                failures.push(format!("interrupt at {i}: capture {c:?} stream {s:?}"));
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    struct Places(Vec<(u64, Position)>);

    impl Visit for Places {
        fn command(&mut self, _: Command) -> ControlFlow<()> {
            unreachable!("the reader calls command_at")
        }

        fn command_at(&mut self, command: Command, at: Position) -> ControlFlow<()> {
            self.0.push((command.id, at));
            ControlFlow::Continue(())
        }
    }

    fn command(id: u64) -> String {
        format!(
            r#"{{"id": {id}, "tool": "opt", "program": "opt", "args": ["é", "a\"{{b\\"], "cwd": ".", "env": {{}}, "inputs": [], "outputs": []}}"#
        )
    }

    #[test]
    fn each_command_is_handed_out_with_where_its_object_begins() {
        // Line 4 holds two commands: the second's column counts the first's
        // `é` as one code point, not two bytes.
        let (one, two, three) = (command(1), command(2), command(3));
        let text = format!(
            "{{\"format\": \"replay-log\", \"version\": 1,\n\
             \"producer\": {{\"name\": \"t\", \"version\": \"1\"}},\n\
             \"platform\": {{\"os\": \"linux\", \"arch\": \"x86_64\"}},\n\
             \"commands\": [{one}, {two},\n  \n    {three}]}}\n"
        );
        let mut places = Places(Vec::new());
        LogReader::new(text.as_bytes())
            .read(&mut places)
            .expect("a valid log");
        let second = "\"commands\": [".chars().count() + one.chars().count() + ", ".len() + 1;
        assert_eq!(
            places.0,
            vec![
                (
                    1,
                    Position {
                        line: 4,
                        column: 14
                    }
                ),
                (
                    2,
                    Position {
                        line: 4,
                        column: second as u64
                    }
                ),
                (3, Position { line: 6, column: 5 }),
            ]
        );
    }
}
