//! Change detection: whether a module's file differs from the loaded code.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::loader::{self, Quick, Stamp};

/// Whether a module's file differs from the loaded code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum FileStatus {
    /// Same content as loaded.
    Clean,
    /// Changed since the last load or attempt, and settled.
    Changed,
    /// Changed, but modified less than the settle time ago: a linker may
    /// still be writing it. Settled after `left`.
    Settling { left: Duration },
    /// Gone: a build deletes its output before writing the new one. Nothing
    /// to load; the loaded code stays until a file is back.
    Missing,
    /// Differs from the loaded code, but loading exactly this file failed.
    FailedBefore,
}

/// The status of the file at `path`, loaded with `stamp`, from `stat`
/// alone; `failed` is the quick stamp of the last attempt that failed. A
/// file whose `stat` differs is [`FileStatus::Changed`] (once settled), even
/// if only touched: telling that apart needs its content hashed.
pub(super) fn quick_status(path: &Path, stamp: &Stamp, failed: Option<Quick>, settle: Duration) -> FileStatus {
    let quick = Quick::stat(path);
    if quick == stamp.quick {
        return FileStatus::Clean;
    }
    if Some(quick) == failed {
        return FileStatus::FailedBefore;
    }
    let Quick::Present { modified, .. } = quick else { return FileStatus::Missing };
    // A modification time in the future (another machine's clock) or
    // unknown cannot be waited out.
    let age = modified.and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or(settle);
    if age < settle {
        return FileStatus::Settling { left: settle - age };
    }
    FileStatus::Changed
}

/// As [`quick_status`], but a changed file is examined: one that was only
/// touched (same build id, or same content for a file without one, read up
/// to `limit` bytes) is clean, and updates `stamp` so that the next check
/// is a `stat` again.
pub(super) fn file_status(
    path: &Path,
    stamp: &mut Stamp,
    failed: Option<Quick>,
    settle: Duration,
    limit: u64,
) -> FileStatus {
    let status = quick_status(path, stamp, failed, settle);
    if status != FileStatus::Changed {
        return status;
    }
    match loader::stamp_file(path, limit) {
        Ok(new) if new.hash == stamp.hash => {
            stamp.quick = new.quick;
            FileStatus::Clean
        }
        _ => FileStatus::Changed,
    }
}
