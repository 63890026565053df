//! The lines exchanged over the two pipes of the double spawn: the child's
//! [`Report`] and [`ExecFailure`], and bounded line reading for both sides.

use std::io::{self, BufRead, Read};

use serde::{Deserialize, Serialize};

use super::spec::{AppliedLayers, Layer};

/// The longest line either side accepts: a spec carries a linker's argv
/// and environment, which the kernel caps well below this.
pub(crate) const MAX_LINE: u64 = 64 * 1024 * 1024;

/// The child's one report line, sent after applying the layers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Report {
    /// The layers are in place; the child waits for `go`.
    Applied(AppliedLayers),
    /// A required layer cannot be applied; the child exits 126.
    Refused(Refusal),
    /// The child could not prepare the tool; it exits 126.
    SetupFailed(SetupFailure),
}

/// A required layer that cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Refusal {
    /// The layer.
    pub(crate) layer: Layer,
    /// Why it cannot be applied.
    pub(crate) reason: String,
}

/// A step of the child's preparation that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SetupFailure {
    /// What the child was doing (`read spec`, `chdir`, ...).
    pub(crate) step: String,
    /// The error, rendered.
    pub(crate) message: String,
    /// The OS error number, when the failure was a system call.
    pub(crate) errno: Option<i32>,
}

/// The line the child writes when `execve` of the tool failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExecFailure {
    /// The error, rendered.
    pub(crate) exec_error: String,
    /// The OS error number of `execve`.
    pub(crate) errno: Option<i32>,
}

/// Reads one `\n`-terminated line of at most `limit` bytes.
///
/// `Ok(None)` is EOF before any byte. A line that is too long, or that ends
/// without `\n`, is an error: a writer that died mid-line sent nothing
/// trustworthy.
pub(crate) fn read_line(reader: &mut impl BufRead, limit: u64) -> io::Result<Option<String>> {
    let mut line = Vec::new();
    let read = reader
        .take(limit.saturating_add(1))
        .read_until(b'\n', &mut line)?;
    if read == 0 {
        return Ok(None);
    }
    if line.pop() != Some(b'\n') {
        let why = if read as u64 > limit {
            "line longer than the protocol allows"
        } else {
            "line cut short by end of file"
        };
        return Err(io::Error::new(io::ErrorKind::InvalidData, why));
    }
    String::from_utf8(line)
        .map(Some)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Serializes `value` as one line of JSON, `\n` included.
pub(crate) fn to_line(value: &impl Serialize) -> serde_json::Result<Vec<u8>> {
    let mut line = serde_json::to_vec(value)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::spec::Skipped;

    #[test]
    fn reports_round_trip_as_one_line() {
        let report = Report::Applied(AppliedLayers {
            parent_death_signal: true,
            skipped: vec![Skipped {
                layer: Layer::Network,
                reason: "no\nnewline leaks".into(),
            }],
            ..AppliedLayers::default()
        });
        let line = to_line(&report).expect("serializes");
        assert_eq!(line.iter().filter(|b| **b == b'\n').count(), 1);
        let mut reader = io::Cursor::new(line);
        let back = read_line(&mut reader, MAX_LINE)
            .expect("reads")
            .expect("a line");
        assert_eq!(
            serde_json::from_str::<Report>(&back).expect("parses"),
            report
        );
        assert_eq!(read_line(&mut reader, MAX_LINE).expect("reads"), None);
    }

    #[test]
    fn refusal_wire_form_names_the_layer() {
        let line = r#"{"refused":{"layer":"landlock","reason":"kernel too old"}}"#;
        let report: Report = serde_json::from_str(line).expect("parses");
        assert_eq!(
            report,
            Report::Refused(Refusal {
                layer: Layer::Landlock,
                reason: "kernel too old".into()
            })
        );
    }

    #[test]
    fn a_line_cut_short_is_an_error_not_a_message() {
        let mut reader = io::Cursor::new(b"{\"applied\":".to_vec());
        let err = read_line(&mut reader, MAX_LINE).expect_err("no newline");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn an_overlong_line_is_refused_without_reading_it_all() {
        let mut reader = io::Cursor::new(vec![b'x'; 100]);
        let err = read_line(&mut reader, 10).expect_err("too long");
        assert!(err.to_string().contains("longer"), "{err}");
    }
}
