//! Telling a full disk from a tool's own failure: a tool that cannot
//! write its output says so in its own words (if at all) and exits
//! non-zero; `replay` looks at the file systems of the command's outputs
//! and, if one is full, says "no space left on device" and where.

use std::path::{Path, PathBuf};

use crate::event::Status;
use crate::run::trace::ExitStatus;

/// Below this many free bytes a file system counts as full: a tool that
/// failed to write a buffer leaves less than that behind.
pub const FULL_BELOW: u64 = 1 << 20;

/// `status`, or, if it is a tool's failure and the file system holding
/// one of `outputs` (under `root`) is full, an error that says so.
pub fn explain(status: Status, root: &Path, outputs: &[String]) -> Status {
    let Status::Failed { exit } = status else {
        return status;
    };
    match full_dir(root, outputs) {
        Some((dir, free)) => Status::Error {
            message: format!(
                "the tool {}: no space left on device, in `{}` ({free} bytes free); free space there, then run again",
                match exit {
                    ExitStatus::Code(code) => format!("exited {code}"),
                    ExitStatus::Signal(signal) => format!("was killed by signal {signal}"),
                },
                dir.display()
            ),
        },
        None => Status::Failed { exit },
    }
}

/// The first output directory whose file system has less than
/// [`FULL_BELOW`] bytes free for this user, and how many.
fn full_dir(root: &Path, outputs: &[String]) -> Option<(PathBuf, u64)> {
    let mut dirs: Vec<PathBuf> = outputs
        .iter()
        .filter_map(|output| root.join(output).parent().map(Path::to_owned))
        .collect();
    dirs.push(root.to_owned());
    dirs.dedup();
    dirs.into_iter().find_map(|dir| {
        let stat = nix::sys::statvfs::statvfs(&dir).ok()?;
        // `fsblkcnt_t` is not 64 bits on every target.
        #[allow(clippy::useless_conversion)]
        let free = u64::from(stat.blocks_available()).saturating_mul(stat.fragment_size());
        (free < FULL_BELOW).then_some((dir, free))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_with_room_on_disk_stays_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let failed = Status::Failed {
            exit: ExitStatus::Code(1),
        };
        let status = explain(failed, dir.path(), &["a.o".into()]);
        assert!(matches!(status, Status::Failed { .. }), "{status:?}");
        assert!(matches!(explain(Status::Ok, dir.path(), &[]), Status::Ok));
    }
}
