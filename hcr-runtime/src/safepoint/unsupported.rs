//! Systems without the safepoint (macOS and Windows, untested): threads
//! that never registered cannot be observed, so nothing is proven and
//! retired memory stays until the runtime is dropped.

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::time::Duration;

use super::ThreadInfo;

/// No system thread id is used here.
pub(crate) fn current_tid() -> u64 {
    0
}

/// Threads are not listed here.
pub(crate) fn start_time(_tid: u64) -> Option<u64> {
    None
}

/// There is no safepoint signal.
pub(crate) fn signal() -> Option<i32> {
    None
}

pub(crate) fn send(_tid: u64, _signal: i32) -> std::io::Result<bool> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

pub(crate) fn wait(_word: &AtomicU32, _seen: u32, timeout: Duration) {
    std::thread::sleep(timeout.min(Duration::from_millis(1)));
}

pub(crate) fn stack_mappings() -> std::io::Result<Vec<(usize, usize, bool)>> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

pub(crate) fn blocks(_tid: u64, _signal: i32) -> bool {
    false
}

pub(crate) fn list_threads(_signal: i32) -> std::io::Result<Vec<ThreadInfo>> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

/// Not needed: nothing is observed.
pub(crate) fn library_ranges(_path: &Path) -> Vec<Range<usize>> {
    Vec::new()
}
