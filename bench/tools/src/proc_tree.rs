//! Walks a live process tree through `/proc` and keeps the peaks of its
//! resident memory; the measuring core of `treepeak`. The main types are
//! [`Walker`] (one walk = one sample) and [`Peaks`] (what the samples add up
//! to).
//!
//! # How the tree is found
//!
//! From the root pid, every task (thread) of a process is listed under
//! `/proc/PID/task`, and each task's `children` file names the processes that
//! task forked: a child hangs off the thread that forked it, not off the
//! process, so all threads are read. This needs `CONFIG_PROC_CHILDREN`
//! (on in the stock kernels of Debian, Ubuntu and Fedora);
//! [`children_files_available`] checks for it. Processes traced with ptrace
//! (replay traces its tools) stay in their real parent's `children` file, so
//! they are seen.
//!
//! # What is measured
//!
//! A process's RSS is the resident field of `/proc/PID/statm` times the page
//! size: anonymous, file-backed and shmem pages, the same quantity the kernel
//! reports as `ru_maxrss`. The tree RSS is the sum over the tree, so a page
//! shared by two processes (a shared library, copy-on-write pages after a
//! fork) counts twice: it is an upper bound of the physical memory the tree
//! holds, and the measure a machine without overcommit would have to cover.
//!
//! # Races and blind spots
//!
//! - A process can exit between being listed and being read. `ENOENT` and
//!   `ESRCH` are therefore normal and the process is skipped for that sample.
//! - A pid could in principle be reused by an unrelated process between the
//!   parent's `children` file and the child's `statm`; within microseconds,
//!   on a machine that is not cycling through its pid space, this does not
//!   happen in practice and is not guarded against.
//! - A process that leaves the tree (daemonizes, or is orphaned when its
//!   parent exits first) is reparented to init or a subreaper and is no
//!   longer reachable from the root: it is lost from then on.
//! - Sampling misses peaks shorter than the interval. `ru_maxrss`, which
//!   `treepeak` also records, has no such gap but only covers single
//!   processes.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::io::{self, Read};

/// One process in one sample.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ProcInfo {
    pub pid: i32,
    /// `/proc/PID/comm`: the executable's name, cut to 15 bytes by the kernel.
    pub comm: String,
    /// Resident set size in bytes.
    pub rss: u64,
}

/// Reads the tree under a root pid, reusing its buffers across samples.
#[derive(Debug)]
pub struct Walker {
    page_size: u64,
    buf: String,
    /// Pids still to read, with their parent's pid (0 for the root).
    stack: Vec<(i32, i32)>,
    seen: HashSet<i32>,
    unexpected_errors: u64,
    first_unexpected: Option<String>,
}

impl Default for Walker {
    fn default() -> Self {
        Self::new()
    }
}

impl Walker {
    /// A walker using the system's page size.
    pub fn new() -> Self {
        // SAFETY: sysconf has no preconditions and only reads configuration.
        let page_size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        Self {
            page_size: u64::try_from(page_size).unwrap_or(4096),
            buf: String::new(),
            stack: Vec::new(),
            seen: HashSet::new(),
            unexpected_errors: 0,
            first_unexpected: None,
        }
    }

    /// Appends every process of the tree rooted at `root` that is alive
    /// during the walk to `out` (root first, then depth-first).
    pub fn walk(&mut self, root: i32, out: &mut Vec<ProcInfo>) {
        self.stack.clear();
        self.seen.clear();
        self.stack.push((root, 0));
        self.seen.insert(root);
        while let Some((pid, parent)) = self.stack.pop() {
            // A child between `vfork` (or `posix_spawn`, which Rust's
            // `Command` uses) and `exec` runs in its parent's address
            // space: its RSS is the parent's pages, counted once. Asked
            // before `statm` is read: a child only ever goes from sharing
            // to not (at its exec), so asking after could find it already
            // exec'd and keep the parent's pages read just before.
            let shared = parent != 0 && shares_address_space(parent, pid);
            match self.read_process(pid) {
                Ok(Some(mut info)) => {
                    if shared {
                        info.rss = 0;
                    }
                    out.push(info)
                }
                Ok(None) => continue,
                Err(e) => {
                    self.note_unexpected(&format!("/proc/{pid}"), e);
                    continue;
                }
            }
            if let Err(e) = self.push_children(pid) {
                self.note_unexpected(&format!("/proc/{pid}/task"), e);
            }
        }
    }

    /// How many reads failed with something other than "process gone".
    pub fn unexpected_errors(&self) -> u64 {
        self.unexpected_errors
    }

    /// The first such failure, for a warning.
    pub fn first_unexpected(&self) -> Option<&str> {
        self.first_unexpected.as_deref()
    }

    /// `Ok(None)` when the process has gone.
    fn read_process(&mut self, pid: i32) -> io::Result<Option<ProcInfo>> {
        if !gone_is_none(read_into(&format!("/proc/{pid}/statm"), &mut self.buf))? {
            return Ok(None);
        }
        let Some(pages) = parse_statm_resident(&self.buf) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected statm contents {:?}", self.buf),
            ));
        };
        let rss = pages * self.page_size;
        if !gone_is_none(read_into(&format!("/proc/{pid}/comm"), &mut self.buf))? {
            return Ok(None);
        }
        let comm = self.buf.trim_end_matches('\n').to_owned();
        Ok(Some(ProcInfo { pid, comm, rss }))
    }

    fn push_children(&mut self, pid: i32) -> io::Result<()> {
        let tasks = match fs::read_dir(format!("/proc/{pid}/task")) {
            Ok(tasks) => tasks,
            Err(e) if is_gone(&e) => return Ok(()),
            Err(e) => return Err(e),
        };
        for task in tasks {
            let task = match task {
                Ok(task) => task,
                Err(e) if is_gone(&e) => continue,
                Err(e) => return Err(e),
            };
            let path = task.path().join("children");
            let Some(path) = path.to_str() else { continue };
            if !gone_is_none(read_into(path, &mut self.buf))? {
                continue;
            }
            for child in self.buf.split_ascii_whitespace() {
                if let Ok(child) = child.parse::<i32>() {
                    if self.seen.insert(child) {
                        self.stack.push((child, pid));
                    }
                }
            }
        }
        Ok(())
    }

    fn note_unexpected(&mut self, what: &str, e: io::Error) {
        self.unexpected_errors += 1;
        if self.first_unexpected.is_none() {
            self.first_unexpected = Some(format!("reading `{what}`: {e}"));
        }
    }
}

/// Whether two processes share one address space (`kcmp` with
/// `KCMP_VM`); `false` when the kernel cannot say.
pub fn shares_address_space(a: i32, b: i32) -> bool {
    const KCMP_VM: libc::c_long = 1;
    // SAFETY: kcmp only compares kernel objects of the two pids; it reads
    // and writes no memory of ours. A gone pid or a missing permission is
    // an error return, not undefined behaviour.
    let same = unsafe {
        libc::syscall(
            libc::SYS_kcmp,
            libc::c_long::from(a),
            libc::c_long::from(b),
            KCMP_VM,
            0 as libc::c_long,
            0 as libc::c_long,
        )
    };
    same == 0
}

/// Whether this kernel has `/proc/PID/task/TID/children` (`CONFIG_PROC_CHILDREN`).
pub fn children_files_available() -> bool {
    // SAFETY: getpid and gettid cannot fail and have no preconditions.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    fs::metadata(format!("/proc/{pid}/task/{tid}/children")).is_ok()
}

/// The running maxima over a series of samples.
#[derive(Debug, Default, Clone)]
pub struct Peaks {
    /// Largest sum of RSS over the tree in one sample.
    pub peak_tree_rss: u64,
    /// Largest RSS of a single process in any sample.
    pub peak_process_rss: u64,
    /// `comm` of that process.
    pub peak_process_comm: String,
    /// The tree as it was in the sample with the largest sum.
    pub at_peak: Vec<ProcInfo>,
    /// Largest RSS seen per `comm`.
    pub by_comm: BTreeMap<String, u64>,
    pids_seen: HashSet<i32>,
}

impl Peaks {
    /// Folds one sample (one walk of the tree) in.
    pub fn record(&mut self, sample: &[ProcInfo]) {
        let tree: u64 = sample.iter().map(|p| p.rss).sum();
        if tree > self.peak_tree_rss || (self.at_peak.is_empty() && !sample.is_empty()) {
            self.peak_tree_rss = tree;
            self.at_peak.clear();
            self.at_peak.extend_from_slice(sample);
        }
        for p in sample {
            self.pids_seen.insert(p.pid);
            if p.rss > self.peak_process_rss || self.peak_process_comm.is_empty() {
                self.peak_process_rss = p.rss;
                self.peak_process_comm.clone_from(&p.comm);
            }
            match self.by_comm.get_mut(&p.comm) {
                Some(max) => *max = (*max).max(p.rss),
                None => {
                    self.by_comm.insert(p.comm.clone(), p.rss);
                }
            }
        }
    }

    /// How many distinct pids appeared in any sample.
    pub fn processes_seen(&self) -> usize {
        self.pids_seen.len()
    }
}

/// The second field of `/proc/PID/statm`: resident pages.
fn parse_statm_resident(statm: &str) -> Option<u64> {
    statm.split_ascii_whitespace().nth(1)?.parse().ok()
}

fn read_into(path: &str, buf: &mut String) -> io::Result<()> {
    buf.clear();
    fs::File::open(path)?.read_to_string(buf)?;
    Ok(())
}

/// Turns "the process has gone" into `Ok(false)`.
fn gone_is_none(r: io::Result<()>) -> io::Result<bool> {
    match r {
        Ok(()) => Ok(true),
        Err(e) if is_gone(&e) => Ok(false),
        Err(e) => Err(e),
    }
}

/// `ENOENT` (the `/proc` entry is gone) or `ESRCH` (the task died while its
/// file was open).
fn is_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, comm: &str, rss: u64) -> ProcInfo {
        ProcInfo {
            pid,
            comm: comm.to_owned(),
            rss,
        }
    }

    #[test]
    fn statm_resident_is_the_second_field() {
        assert_eq!(parse_statm_resident("2849 612 512 3 0 300 0\n"), Some(612));
        assert_eq!(parse_statm_resident("2849\n"), None);
    }

    #[test]
    fn peaks_keep_the_largest_tree_and_process_separately() {
        let mut peaks = Peaks::default();
        peaks.record(&[p(1, "aotc", 100), p(2, "opt", 10)]);
        peaks.record(&[p(1, "aotc", 50), p(3, "llc", 40), p(4, "llc", 30)]);
        peaks.record(&[p(1, "aotc", 20), p(5, "opt", 60)]);
        assert_eq!(peaks.peak_tree_rss, 120);
        assert_eq!(
            peaks.at_peak,
            [p(1, "aotc", 50), p(3, "llc", 40), p(4, "llc", 30)]
        );
        assert_eq!(
            (peaks.peak_process_rss, &*peaks.peak_process_comm),
            (100, "aotc")
        );
        let by_comm: Vec<_> = peaks
            .by_comm
            .iter()
            .map(|(c, r)| (c.as_str(), *r))
            .collect();
        assert_eq!(by_comm, [("aotc", 100), ("llc", 40), ("opt", 60)]);
        assert_eq!(peaks.processes_seen(), 5);
    }

    #[test]
    fn a_tree_of_zero_rss_still_has_a_snapshot() {
        let mut peaks = Peaks::default();
        peaks.record(&[p(7, "zombie", 0)]);
        assert_eq!(peaks.at_peak, [p(7, "zombie", 0)]);
        assert_eq!(peaks.peak_process_comm, "zombie");
    }

    #[test]
    fn walking_ourselves_finds_ourselves() {
        let mut walker = Walker::new();
        let mut out = Vec::new();
        walker.walk(std::process::id() as i32, &mut out);
        assert_eq!(out[0].pid, std::process::id() as i32);
        assert!(out[0].rss > 0);
        assert_eq!(
            walker.unexpected_errors(),
            0,
            "{:?}",
            walker.first_unexpected()
        );
    }

    #[test]
    fn walking_a_gone_pid_is_silent() {
        let mut walker = Walker::new();
        let mut out = Vec::new();
        // Above the largest pid_max the kernel allows (2^22).
        walker.walk(i32::MAX, &mut out);
        assert!(out.is_empty());
        assert_eq!(walker.unexpected_errors(), 0);
    }

    #[test]
    fn a_process_shares_its_address_space_with_itself_not_with_a_child() {
        let me = std::process::id() as i32;
        assert!(shares_address_space(me, me));
        let mut child = std::process::Command::new("sleep")
            .arg("1")
            .spawn()
            .unwrap();
        assert!(!shares_address_space(me, child.id() as i32));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn the_children_files_exist_here() {
        assert!(children_files_available());
    }
}
