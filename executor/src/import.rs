//! `replay import compdb`: a JSON Compilation Database (CMake, Bear,
//! `ninja -t compdb`) written as a v1 log by [`replay_import`], what was
//! left out said plainly, and, with a policy, the check pass run on the
//! log with each refused command named by its database entry.

use std::collections::HashSet;
use std::io::{self, Write};

use crate::event::{Event, Reporter};

/// Prints what the import left out and what it folded, then a summary.
pub fn describe(
    import: &replay_import::Import,
    entries_log: &str,
    out: &mut dyn Write,
) -> io::Result<()> {
    // Phony and utility rules (most of what `ninja -t compdb` lists):
    // counted, not listed.
    let mut idle = 0;
    for r in &import.notes {
        if r.reason.starts_with("skipped:") {
            idle += 1;
            continue;
        }
        writeln!(
            out,
            "note: entry {}: `{}`: {}",
            r.entry, r.subject, r.reason
        )?;
    }
    if idle > 0 {
        writeln!(
            out,
            "note: {idle} entries run nothing (phony, utility or empty rules): skipped"
        )?;
    }
    for r in &import.left_out {
        writeln!(
            out,
            "left out: entry {}: `{}`: {}",
            r.entry, r.subject, r.reason
        )?;
    }
    writeln!(
        out,
        "imported {} commands into `{entries_log}`; {} entries or commands left out (they will not run)",
        import.commands.len(),
        import.left_out.len()
    )
}

/// A reporter that names, before a command's first finding, the database
/// entry the command came from.
pub struct EntryNames<'a, W: Write> {
    /// Where the line goes (the inner reporter's sink, so lines interleave).
    pub out: W,
    /// The reporter that prints the findings.
    pub inner: &'a mut dyn Reporter,
    /// The entry of each command, by position (id - 1).
    pub sources: &'a [usize],
    /// What each command writes (its first output), by position.
    pub writes: Vec<String>,
    /// Commands already named.
    pub named: HashSet<u64>,
}

impl<W: Write> Reporter for EntryNames<'_, W> {
    fn event(&mut self, event: &Event<'_>) -> io::Result<()> {
        if let Event::Finding { finding, .. } = event {
            if let Some(id) = finding.id {
                let at = usize::try_from(id.saturating_sub(1)).unwrap_or(usize::MAX);
                if let (Some(entry), true) = (self.sources.get(at), self.named.insert(id)) {
                    let writes = self.writes.get(at).map_or("", String::as_str);
                    writeln!(
                        self.out,
                        "command {id} is entry {entry} of the database (it writes `{writes}`):"
                    )?;
                    self.out.flush()?;
                }
            }
        }
        self.inner.event(event)
    }
}
