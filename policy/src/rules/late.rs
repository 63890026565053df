//! The per-path whole-log rules judged after the stream, for a log whose
//! paths outgrew memory: each output has one writer (`outputs.duplicate`),
//! is not read before it is written (`outputs.read-before-write`), and in a
//! run every input exists or an earlier command writes it
//! (`inputs.missing`). The checker spills a record per path a command
//! reads or writes (see [`crate::spill`]); [`Late::judge`] sorts them by
//! path, then log order, and replays exactly the decisions the in-memory
//! tables make as commands arrive, with the same messages, starting from
//! what those tables held when the spilling began. The findings come out
//! in log order.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};

use cmdlog::path_ids::{PathId, PathIdMap};
use cmdlog::ToolKind;

use crate::spill::{Record, Sorter, Strings, StringsReader};
use crate::verdict::{Finding, Status};

/// A read of an input (that exists, or in an audit).
const READ: u64 = 0;
/// A read of an input that is missing, in a run.
const READ_MISSING: u64 = 1;
/// A write of an output.
const WRITE: u64 = 2;
/// Whether an earlier command writes an input, for a directory check.
const PROBE: u64 = 3;

/// Finding kinds, as spilled for the second sort.
const FOUND_MISSING: u64 = 0;
const FOUND_TWICE: u64 = 1;
const FOUND_DUPLICATE: u64 = 2;
const FOUND_READ_EARLY: u64 = 3;
const FOUND_DIR: u64 = 4;

/// Commands the rules refused after the stream, by the status they had
/// when they were judged: what the end of the log moves to refused.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recount {
    /// Commands judged allowed, now refused.
    pub allowed: u64,
    /// Commands judged unverified, now refused.
    pub unverified: u64,
}

/// The spilled records of a log and the status each command got.
pub(crate) struct Late {
    records: Sorter,
    strings: Strings,
    statuses: BufWriter<File>,
    /// Input directories judged after the stream, in log order.
    checks: BufWriter<File>,
    /// How many there are.
    check_count: u64,
    /// Position of the next record in the log.
    seq: u64,
    run_records: usize,
}

impl Late {
    /// Empty spill files; at most `run_records` records in memory.
    pub(crate) fn new(run_records: usize) -> io::Result<Late> {
        Ok(Late {
            records: Sorter::new(run_records),
            strings: Strings::new()?,
            statuses: BufWriter::new(tempfile::tempfile()?),
            checks: BufWriter::new(tempfile::tempfile()?),
            check_count: 0,
            seq: 0,
            run_records,
        })
    }

    fn record(&mut self, path: PathId, kind: u64, command: u64, text: &str) -> io::Result<()> {
        let at = self.strings.put(text)?;
        self.seq += 1;
        self.records
            .push([path.as_u64(), self.seq, kind, command, at])
    }

    /// `command` reads `input` (path `path`); `missing_in_run`: it does not
    /// exist and the log is to be run.
    pub(crate) fn read(
        &mut self,
        path: PathId,
        command: u64,
        input: &str,
        missing_in_run: bool,
    ) -> io::Result<()> {
        let kind = if missing_in_run { READ_MISSING } else { READ };
        self.record(path, kind, command, input)
    }

    /// `command` writes `output` (path `path`).
    pub(crate) fn write(&mut self, path: PathId, command: u64, output: &str) -> io::Result<()> {
        self.record(path, WRITE, command, output)
    }

    /// `command` reads an input directory that holds `held` outputs of
    /// earlier commands, `declared` of which it declares as inputs, and
    /// also declares the inputs `unknown`, which may be outputs of earlier
    /// commands too: refused after the stream (`subject`, `message`) if
    /// `held` is more than `declared` and those of `unknown` that are.
    pub(crate) fn dir_check(
        &mut self,
        command: u64,
        held: u64,
        declared: u64,
        unknown: &[PathId],
        subject: &str,
        message: &str,
    ) -> io::Result<()> {
        let check = self.check_count;
        self.check_count += 1;
        for path in unknown {
            self.seq += 1;
            self.records
                .push([path.as_u64(), self.seq, PROBE, command, check])?;
        }
        self.seq += 1;
        let subject = self.strings.put(subject)?;
        let message = self.strings.put(message)?;
        for value in [command, self.seq, held, declared, subject, message] {
            self.checks.write_all(&value.to_le_bytes())?;
        }
        Ok(())
    }

    /// The status `command` (of kind `tool`) was judged with (commands
    /// come in log order).
    pub(crate) fn status(
        &mut self,
        command: u64,
        tool: &ToolKind,
        status: Status,
    ) -> io::Result<()> {
        let code: u8 = match status {
            Status::Allowed => 0,
            Status::Unverified => 1,
            Status::Refused => 2,
        };
        let tool = self.strings.put(tool.name())?;
        self.statuses.write_all(&command.to_le_bytes())?;
        self.statuses.write_all(&tool.to_le_bytes())?;
        self.statuses.write_all(&[code])
    }

    /// Judges every record, starting each path from what `written` and
    /// `read_early` held when the spilling began; hands each finding to
    /// `sink` with its command's tool, in log order, and returns what they
    /// move to refused.
    pub(crate) fn judge(
        self,
        written: &PathIdMap<u64>,
        read_early: &PathIdMap<u64>,
        sink: &mut dyn FnMut(Option<&ToolKind>, Finding),
    ) -> io::Result<Recount> {
        let Late {
            records,
            strings,
            statuses,
            checks,
            run_records,
            ..
        } = self;
        let strings = strings.reader()?;
        // Pass 1, path by path in log order: the findings, as records
        // [command, seq, kind, other command, text] for pass 2.
        let mut found = Sorter::new(run_records);
        // Which directory checks each probe that an earlier command wrote
        // its input counts for.
        let mut written_probes = Sorter::new(run_records);
        let mut current: Option<u64> = None;
        let (mut writer, mut reader) = (None::<u64>, None::<u64>);
        for record in records.finish()? {
            let [path, seq, kind, command, text] = record?;
            if current != Some(path) {
                current = Some(path);
                let id = PathId::from_u64(path);
                writer = written.get(&id).copied();
                reader = read_early.get(&id).copied();
            }
            match kind {
                PROBE => {
                    if writer.is_some() {
                        written_probes.push([text, 0, 0, 0, 0])?;
                    }
                }
                READ | READ_MISSING => {
                    let produced = writer.is_some();
                    if kind == READ_MISSING && !produced {
                        found.push([command, seq, FOUND_MISSING, 0, text])?;
                    }
                    if !produced && reader.is_none() {
                        reader = Some(command);
                    }
                }
                _ => {
                    if let Some(first) = writer {
                        let kind = if first == command {
                            FOUND_TWICE
                        } else {
                            FOUND_DUPLICATE
                        };
                        found.push([command, seq, kind, first, text])?;
                        continue;
                    }
                    if let Some(first) = reader.filter(|r| *r != command) {
                        found.push([command, seq, FOUND_READ_EARLY, first, text])?;
                    }
                    writer = Some(command);
                }
            }
        }
        // The directory checks, in order, with their probes counted.
        let mut probes = written_probes.finish()?.peekable();
        let mut checks = forward(checks)?;
        let mut check = 0u64;
        loop {
            let mut entry = [0u8; 48];
            match checks.read_exact(&mut entry) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(error) => return Err(error),
            }
            let [command, seq, held, declared, subject, message] = words(&entry);
            let mut also = 0u64;
            while let Some(Ok([probe, ..])) = probes.peek() {
                if *probe != check {
                    break;
                }
                also += 1;
                probes.next();
            }
            if let Some(Err(_)) = probes.peek() {
                if let Some(Err(error)) = probes.next() {
                    return Err(error);
                }
            }
            if held > declared + also {
                found.push([command, seq, FOUND_DIR, message, subject])?;
            }
            check += 1;
        }
        // Pass 2, in log order: the findings, and the status each refused
        // command had (the status file is in log order too).
        let mut statuses = Statuses::new(statuses)?;
        let mut recount = Recount::default();
        let mut last = None;
        let mut tool = None;
        for record in found.finish()? {
            let record = record?;
            let command = record[0];
            if last != Some(command) {
                last = Some(command);
                tool = None;
                if let Some((status, name)) = statuses.of(command)? {
                    tool = Some(ToolKind::from_name(&strings.get(name)?));
                    match status {
                        Status::Allowed => recount.allowed += 1,
                        Status::Unverified => recount.unverified += 1,
                        Status::Refused => {}
                    }
                }
            }
            sink(tool.as_ref(), finding(&record, &strings)?);
        }
        Ok(recount)
    }
}

/// The finding a pass-1 record stands for, with the messages the rules
/// give as commands arrive (`rules::paths`).
fn finding(record: &Record, strings: &StringsReader) -> io::Result<Finding> {
    let [command, _, kind, other, text] = *record;
    let path = strings.get(text)?;
    if kind == FOUND_DIR {
        return Ok(Finding {
            id: Some(command),
            rule: "inputs.dir-holds-output",
            subject: path,
            message: strings.get(other)?,
            hint: "a tool may read everything beneath an input directory; use one that holds only inputs".into(),
            status: Status::Refused,
        });
    }
    let (rule, message, hint) = match kind {
        FOUND_MISSING => (
            "inputs.missing",
            format!("input `{path}` does not exist and no earlier command writes it"),
            "create it before running, or order the command after the one that writes it",
        ),
        FOUND_TWICE => (
            "outputs.duplicate",
            format!("output `{path}` is listed twice"),
            "each file may be written by one command only",
        ),
        FOUND_DUPLICATE => (
            "outputs.duplicate",
            format!("output `{path}` is already written by command {other}"),
            "each file may be written by one command only",
        ),
        _ => (
            "outputs.read-before-write",
            format!("command {other} reads `{path}` before this command writes it"),
            "order the commands so each file is written before it is read",
        ),
    };
    Ok(Finding {
        id: Some(command),
        rule,
        subject: path,
        message,
        hint: hint.to_owned(),
        status: Status::Refused,
    })
}

/// A spill file written to the end, to read from the start.
fn forward(out: BufWriter<File>) -> io::Result<BufReader<File>> {
    use std::io::{Seek, SeekFrom};
    let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
    file.seek(SeekFrom::Start(0))?;
    Ok(BufReader::new(file))
}

/// Six little-endian words.
fn words(entry: &[u8; 48]) -> [u64; 6] {
    let mut out = [0u64; 6];
    for (at, value) in out.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&entry[at * 8..at * 8 + 8]);
        *value = u64::from_le_bytes(word);
    }
    out
}

/// The status file, read forward as ids increase.
struct Statuses {
    reader: BufReader<File>,
}

impl Statuses {
    fn new(out: BufWriter<File>) -> io::Result<Statuses> {
        Ok(Statuses {
            reader: forward(out)?,
        })
    }

    /// The status of `command` and where its tool's name is (ids asked
    /// for in increasing order).
    fn of(&mut self, command: u64) -> io::Result<Option<(Status, u64)>> {
        let mut entry = [0u8; 17];
        loop {
            match self.reader.read_exact(&mut entry) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(error) => return Err(error),
            }
            let mut id = [0u8; 8];
            id.copy_from_slice(&entry[..8]);
            let id = u64::from_le_bytes(id);
            if id == command {
                let mut tool = [0u8; 8];
                tool.copy_from_slice(&entry[8..16]);
                let status = match entry[16] {
                    0 => Status::Allowed,
                    1 => Status::Unverified,
                    _ => Status::Refused,
                };
                return Ok(Some((status, u64::from_le_bytes(tool))));
            }
            if id > command {
                return Ok(None);
            }
        }
    }
}
