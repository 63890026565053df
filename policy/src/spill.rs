//! Bounded memory for the whole-log rules of huge logs: fixed-size records
//! sorted externally ([`Sorter`]: sorted runs in temporary files, then a
//! k-way merge) and the paths they quote kept on disk ([`Strings`]).
//!
//! The checker spills a (path identity, position, read or write, command)
//! record per path a command reads or writes once its in-memory tables
//! hold [`DEFAULT_SPILL_AFTER`] paths, and judges those records after the
//! stream, path by path in log order (see `rules::late`). Memory is then a
//! run's buffer plus a read buffer per run, whatever the log's length; the
//! temporary files are unlinked from the start (`tempfile::tempfile`), so
//! nothing is left behind however `replay` ends.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;

/// Paths the whole-log tables hold in memory before the checker spills.
pub const DEFAULT_SPILL_AFTER: usize = 65_536;

/// Records sorted in memory before they are written as one run.
pub const DEFAULT_RUN_RECORDS: usize = 131_072;

/// [`DEFAULT_SPILL_AFTER`] for a checker that must stay small (a run's
/// check pass shares the machine with the tools it starts): about 3 MiB
/// less at 100,000 commands (bench figure 8), paid for in more runs.
pub const LEAN_SPILL_AFTER: usize = 4_096;

/// [`DEFAULT_RUN_RECORDS`] for a checker that must stay small: a 640 KiB
/// buffer instead of 5 MiB.
pub const LEAN_RUN_RECORDS: usize = 16_384;

/// Runs merged at once; more are merged in rounds first, so read buffers
/// (4 MiB at this width) and descriptors stay bounded however many runs a
/// log makes. 10,000,000 commands make about 160 runs of
/// [`DEFAULT_RUN_RECORDS`], so they merge in one pass: every extra round
/// rewrites every record once more.
const MERGE_WIDTH: usize = 256;

/// The read buffer of each run in a merge.
const RUN_BUFFER: usize = 16 * 1024;

/// One record: five numbers, ordered by the first, then the second, ...
pub(crate) type Record = [u64; 5];

const RECORD_BYTES: usize = 40;

fn encode(record: &Record) -> [u8; RECORD_BYTES] {
    let mut bytes = [0u8; RECORD_BYTES];
    for (at, value) in record.iter().enumerate() {
        bytes[at * 8..at * 8 + 8].copy_from_slice(&value.to_le_bytes());
    }
    bytes
}

fn decode(bytes: &[u8; RECORD_BYTES]) -> Record {
    let mut record = [0u64; 5];
    for (at, value) in record.iter_mut().enumerate() {
        let mut word = [0u8; 8];
        word.copy_from_slice(&bytes[at * 8..at * 8 + 8]);
        *value = u64::from_le_bytes(word);
    }
    record
}

/// Sorts any number of records in bounded memory.
pub(crate) struct Sorter {
    chunk: Vec<Record>,
    run_records: usize,
    runs: Vec<File>,
}

impl Sorter {
    /// A sorter that holds at most `run_records` records in memory.
    pub(crate) fn new(run_records: usize) -> Sorter {
        Sorter {
            chunk: Vec::new(),
            run_records: run_records.max(1),
            runs: Vec::new(),
        }
    }

    /// Adds a record.
    pub(crate) fn push(&mut self, record: Record) -> io::Result<()> {
        if self.chunk.len() >= self.run_records {
            self.write_run()?;
        }
        self.chunk.push(record);
        Ok(())
    }

    /// How many runs went to disk so far.
    #[cfg(test)]
    pub(crate) fn runs(&self) -> usize {
        self.runs.len()
    }

    fn write_run(&mut self) -> io::Result<()> {
        self.chunk.sort_unstable();
        let mut out = BufWriter::new(tempfile::tempfile()?);
        for record in &self.chunk {
            out.write_all(&encode(record))?;
        }
        let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
        file.seek(SeekFrom::Start(0))?;
        self.runs.push(file);
        self.chunk.clear();
        Ok(())
    }

    /// Every record pushed, in order.
    pub(crate) fn finish(mut self) -> io::Result<Merged> {
        if self.runs.is_empty() {
            self.chunk.sort_unstable();
            return Ok(Merged::memory(std::mem::take(&mut self.chunk)));
        }
        if !self.chunk.is_empty() {
            self.write_run()?;
        }
        self.chunk = Vec::new();
        let mut runs = std::mem::take(&mut self.runs);
        // Rounds of merges until one merge can take every run.
        while runs.len() > MERGE_WIDTH {
            let mut next = Vec::new();
            let mut rest = runs.into_iter();
            loop {
                let group: Vec<File> = rest.by_ref().take(MERGE_WIDTH).collect();
                if group.is_empty() {
                    break;
                }
                let mut out = BufWriter::new(tempfile::tempfile()?);
                for record in Merged::files(group)? {
                    out.write_all(&encode(&record?))?;
                }
                let mut file = out.into_inner().map_err(io::IntoInnerError::into_error)?;
                file.seek(SeekFrom::Start(0))?;
                next.push(file);
            }
            runs = next;
        }
        Merged::files(runs)
    }
}

/// The records of a [`Sorter`], in order.
pub(crate) struct Merged {
    memory: std::vec::IntoIter<Record>,
    readers: Vec<BufReader<File>>,
    heads: BinaryHeap<Reverse<(Record, usize)>>,
}

impl Merged {
    fn memory(records: Vec<Record>) -> Merged {
        Merged {
            memory: records.into_iter(),
            readers: Vec::new(),
            heads: BinaryHeap::new(),
        }
    }

    fn files(files: Vec<File>) -> io::Result<Merged> {
        let mut merged = Merged {
            memory: Vec::new().into_iter(),
            readers: files
                .into_iter()
                .map(|file| BufReader::with_capacity(RUN_BUFFER, file))
                .collect(),
            heads: BinaryHeap::new(),
        };
        for at in 0..merged.readers.len() {
            if let Some(record) = read_record(&mut merged.readers[at])? {
                merged.heads.push(Reverse((record, at)));
            }
        }
        Ok(merged)
    }
}

fn read_record(reader: &mut BufReader<File>) -> io::Result<Option<Record>> {
    let mut bytes = [0u8; RECORD_BYTES];
    match reader.read_exact(&mut bytes) {
        Ok(()) => Ok(Some(decode(&bytes))),
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
        Err(error) => Err(error),
    }
}

impl Iterator for Merged {
    type Item = io::Result<Record>;

    fn next(&mut self) -> Option<io::Result<Record>> {
        if self.readers.is_empty() {
            return self.memory.next().map(Ok);
        }
        let Reverse((record, at)) = self.heads.pop()?;
        match read_record(&mut self.readers[at]) {
            Ok(Some(next)) => self.heads.push(Reverse((next, at))),
            Ok(None) => {}
            Err(error) => return Some(Err(error)),
        }
        Some(Ok(record))
    }
}

/// Text kept on disk, each piece named by where it starts.
pub(crate) struct Strings {
    out: BufWriter<File>,
    len: u64,
}

impl Strings {
    /// An empty store in a fresh temporary file.
    pub(crate) fn new() -> io::Result<Strings> {
        Ok(Strings {
            out: BufWriter::new(tempfile::tempfile()?),
            len: 0,
        })
    }

    /// Stores `text`; where to find it.
    pub(crate) fn put(&mut self, text: &str) -> io::Result<u64> {
        let at = self.len;
        let len = u32::try_from(text.len()).map_err(|_| io::Error::other("a path over 4 GiB"))?;
        self.out.write_all(&len.to_le_bytes())?;
        self.out.write_all(text.as_bytes())?;
        self.len += 4 + u64::from(len);
        Ok(at)
    }

    /// Done writing: a reader of what was stored.
    pub(crate) fn reader(self) -> io::Result<StringsReader> {
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok(StringsReader { file })
    }
}

/// Reads back what a [`Strings`] stored.
pub(crate) struct StringsReader {
    file: File,
}

impl StringsReader {
    /// The text stored at `at`.
    pub(crate) fn get(&self, at: u64) -> io::Result<String> {
        let mut len = [0u8; 4];
        self.file.read_exact_at(&mut len, at)?;
        let mut bytes = vec![0u8; u32::from_le_bytes(len) as usize];
        self.file.read_exact_at(&mut bytes, at + 4)?;
        String::from_utf8(bytes).map_err(io::Error::other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_runs_merge_into_one_order() {
        // 1,000 records, 3 to a run: 334 runs, over the merge width.
        let mut sorter = Sorter::new(3);
        let mut expected = Vec::new();
        for i in 0..1000u64 {
            let key = (i * 7919) % 1000;
            let record = [key, i, 0, 0, i * 3];
            sorter.push(record).unwrap();
            expected.push(record);
        }
        assert!(sorter.runs() > MERGE_WIDTH);
        expected.sort_unstable();
        let got: Vec<Record> = sorter.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn few_records_stay_in_memory() {
        let mut sorter = Sorter::new(100);
        sorter.push([2, 0, 0, 0, 0]).unwrap();
        sorter.push([1, 0, 0, 0, 0]).unwrap();
        assert_eq!(sorter.runs(), 0);
        let got: Vec<Record> = sorter.finish().unwrap().map(Result::unwrap).collect();
        assert_eq!(got, [[1, 0, 0, 0, 0], [2, 0, 0, 0, 0]]);
    }

    #[test]
    fn strings_come_back() {
        let mut strings = Strings::new().unwrap();
        let a = strings.put("out/a.o").unwrap();
        let b = strings.put("").unwrap();
        let c = strings.put("ünïcode").unwrap();
        let reader = strings.reader().unwrap();
        assert_eq!(reader.get(c).unwrap(), "ünïcode");
        assert_eq!(reader.get(a).unwrap(), "out/a.o");
        assert_eq!(reader.get(b).unwrap(), "");
    }
}
