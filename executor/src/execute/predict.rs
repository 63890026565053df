//! Predicting a command's peak memory before it runs, for the memory
//! budget of a parallel run.
//!
//! In order: the action cache's record of the same key (the same binary,
//! arguments and inputs, measured); else the history of the same tool
//! kind and binary over inputs of similar size (within a power of two);
//! else the user's `--predict KIND=SIZE`; else the whole budget, so the
//! command runs alone. The history is a small file in the cache directory
//! (`history.json`): per kind, binary digest and input-size bucket, the
//! largest peak ever measured. It only ever grows, so a log can make
//! another log's predictions larger (more conservative), never smaller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Margin over a measured peak for the same key (the same run).
const SAME_KEY_MARGIN: f64 = 1.05;

/// Margin over the history of similar runs (other inputs).
const HISTORY_MARGIN: f64 = 1.25;

/// Entries the history keeps at most; past it nothing new is learned
/// (an unknown command is predicted the whole budget: conservative).
const MAX_HISTORY: usize = 20_000;

/// Where a prediction came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// The action cache measured this very command.
    Cache,
    /// Runs of the same tool and binary over inputs of similar size.
    History,
    /// `--predict KIND=SIZE`.
    Given,
    /// The tool's memory limit (policy or `--max-rss`): it is stopped
    /// before it holds more.
    Limit,
    /// Nothing is known: the whole budget.
    Unknown,
}

/// A predicted peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, schemars::JsonSchema)]
pub struct Prediction {
    /// Bytes admitted for the command.
    pub bytes: u64,
    /// Where the figure came from.
    pub basis: Basis,
}

/// What a command is predicted from.
#[derive(Debug, Clone, Default)]
pub struct Subject<'a> {
    /// Its tool kind.
    pub kind: &'a str,
    /// Its binary's content digest (hex), if known.
    pub program: Option<&'a str>,
    /// The summed size of its declared inputs.
    pub input_bytes: u64,
    /// The action cache's measured peak for its key, if any.
    pub cached_peak: Option<u64>,
    /// Its memory limit, if it has one.
    pub limit: Option<u64>,
}

/// Predictions for one run, and what it learns for the next.
#[derive(Debug, Default)]
pub struct Predictor {
    budget: u64,
    given: BTreeMap<String, u64>,
    history: BTreeMap<String, u64>,
    learned: BTreeMap<String, u64>,
    path: Option<PathBuf>,
}

impl Predictor {
    /// A predictor for a run under `budget`, with `given` per-kind
    /// figures, and the history kept in `cache_dir` (none without a cache).
    pub fn new(budget: u64, given: BTreeMap<String, u64>, cache_dir: Option<&Path>) -> Predictor {
        let path = cache_dir.map(|dir| dir.join("history.json"));
        let history = path.as_deref().map(read_history).unwrap_or_default();
        Predictor {
            budget,
            given,
            history,
            learned: BTreeMap::new(),
            path,
        }
    }

    /// The bytes to admit for `subject`.
    pub fn predict(&self, subject: &Subject<'_>) -> Prediction {
        let scaled = |peak: u64, margin: f64| ((peak as f64 * margin) as u64).max(1);
        if let Some(peak) = subject.cached_peak.filter(|p| *p > 0) {
            return Prediction {
                bytes: scaled(peak, SAME_KEY_MARGIN),
                basis: Basis::Cache,
            };
        }
        if let Some(key) = subject
            .program
            .map(|p| history_key(subject.kind, p, subject.input_bytes))
        {
            if let Some(peak) = self.learned.get(&key).or_else(|| self.history.get(&key)) {
                return Prediction {
                    bytes: scaled(*peak, HISTORY_MARGIN),
                    basis: Basis::History,
                };
            }
        }
        if let Some(bytes) = self.given.get(subject.kind) {
            return Prediction {
                bytes: *bytes,
                basis: Basis::Given,
            };
        }
        if let Some(limit) = subject.limit {
            return Prediction {
                bytes: limit,
                basis: Basis::Limit,
            };
        }
        Prediction {
            bytes: self.budget,
            basis: Basis::Unknown,
        }
    }

    /// Remembers that a run of `subject` peaked at `peak` bytes.
    pub fn learn(&mut self, subject: &Subject<'_>, peak: u64) {
        let Some(program) = subject.program else {
            return;
        };
        if self.history.len() + self.learned.len() >= MAX_HISTORY {
            return;
        }
        let key = history_key(subject.kind, program, subject.input_bytes);
        let known = self.history.get(&key).copied().unwrap_or(0);
        let entry = self.learned.entry(key).or_insert(known);
        *entry = (*entry).max(peak);
    }

    /// Writes what this run learned into the history file, merged (each
    /// figure the larger of the file's and this run's), by rename.
    pub fn save(&self) -> std::io::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        if self.learned.is_empty() {
            return Ok(());
        }
        let mut merged = read_history(path);
        for (key, peak) in &self.learned {
            let at = merged.entry(key.clone()).or_insert(0);
            *at = (*at).max(*peak);
        }
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer(&mut file, &merged).map_err(std::io::Error::from)?;
        file.persist(path).map(drop).map_err(|e| e.error)
    }
}

/// `KIND|PROGRAM|BUCKET`, the bucket being the input size's power of two.
fn history_key(kind: &str, program: &str, input_bytes: u64) -> String {
    let bucket = u64::BITS - input_bytes.leading_zeros();
    format!("{kind}|{program}|{bucket}")
}

/// The history at `path`; empty if it is missing or not ours.
fn read_history(path: &Path) -> BTreeMap<String, u64> {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(input_bytes: u64, cached_peak: Option<u64>) -> Subject<'static> {
        Subject {
            kind: "llc",
            program: Some("ab12"),
            input_bytes,
            cached_peak,
            limit: None,
        }
    }

    #[test]
    fn the_same_key_then_history_then_given_then_the_whole_budget() {
        let dir = tempfile::tempdir().unwrap();
        let given = BTreeMap::from([("llc".to_owned(), 300 << 20)]);
        let mut p = Predictor::new(1 << 30, given.clone(), Some(dir.path()));
        assert_eq!(p.predict(&subject(1000, None)).basis, Basis::Given);
        let other = Subject {
            kind: "opt",
            ..subject(1000, None)
        };
        assert_eq!(
            p.predict(&other),
            Prediction {
                bytes: 1 << 30,
                basis: Basis::Unknown
            }
        );
        p.learn(&subject(1000, None), 100 << 20);
        let history = p.predict(&subject(1023, None));
        assert_eq!(history.basis, Basis::History);
        assert!(history.bytes >= 100 << 20);
        // Inputs of another size are another bucket.
        assert_eq!(p.predict(&subject(5000, None)).basis, Basis::Given);
        assert_eq!(
            p.predict(&subject(1000, Some(10 << 20))).basis,
            Basis::Cache
        );
        // Saved, the next run knows it.
        p.save().unwrap();
        let next = Predictor::new(1 << 30, BTreeMap::new(), Some(dir.path()));
        assert_eq!(next.predict(&subject(1000, None)).basis, Basis::History);
    }

    #[test]
    fn a_log_can_only_make_predictions_larger() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = Predictor::new(1 << 30, BTreeMap::new(), Some(dir.path()));
        first.learn(&subject(1000, None), 200 << 20);
        first.save().unwrap();
        // A second log's run of the same tool that peaked lower.
        let mut second = Predictor::new(1 << 30, BTreeMap::new(), Some(dir.path()));
        second.learn(&subject(1000, None), 1 << 20);
        second.save().unwrap();
        let third = Predictor::new(1 << 30, BTreeMap::new(), Some(dir.path()));
        assert!(third.predict(&subject(1000, None)).bytes >= 200 << 20);
    }
}
