//! Watching loaded module files with the OS's file notifications, so that
//! [`Runtime::reload_needed`](crate::Runtime::reload_needed) costs one atomic
//! load while nothing happens.
//!
//! The watcher only says "something happened to one of these files"; whether
//! the file really changed is still decided by the runtime's stamp and hash
//! comparison, so a spurious or coalesced event costs one check and nothing
//! else.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use notify::{Event, RecommendedWatcher, RecursiveMode, Watcher};
use parking_lot::Mutex;

/// What the watcher shares with the runtime, outside the state lock.
#[derive(Debug)]
pub(crate) struct WatchSignal {
    /// Counts events that touched a watched file (and anything that may have:
    /// rescans, errors, newly watched files). Starts at 1, so the first
    /// question is answered by a real check.
    events: AtomicU64,
    /// Watching failed: answer by checking the files every time.
    failed: AtomicBool,
}

impl WatchSignal {
    /// The event count, or `None` if watching failed and the files must be
    /// checked.
    pub(crate) fn events(&self) -> Option<u64> {
        if self.failed.load(Ordering::Acquire) { None } else { Some(self.events.load(Ordering::Acquire)) }
    }

    fn bump(&self) {
        self.events.fetch_add(1, Ordering::AcqRel);
    }
}

/// A watcher of the directories holding the loaded modules' files.
pub(crate) struct FileWatcher {
    watcher: RecommendedWatcher,
    signal: Arc<WatchSignal>,
    files: Arc<Mutex<HashSet<PathBuf>>>,
    /// Watched directories, with the number of watched files in each.
    dirs: HashMap<PathBuf, usize>,
}

impl std::fmt::Debug for FileWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileWatcher").field("dirs", &self.dirs.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl FileWatcher {
    /// Starts a watcher (a background thread on most systems).
    ///
    /// # Errors
    ///
    /// The notification service's error, as text.
    pub(crate) fn new() -> Result<FileWatcher, String> {
        let signal = Arc::new(WatchSignal { events: AtomicU64::new(1), failed: AtomicBool::new(false) });
        let files: Arc<Mutex<HashSet<PathBuf>>> = Arc::default();
        let watcher = {
            let (signal, files) = (signal.clone(), files.clone());
            notify::recommended_watcher(move |event: notify::Result<Event>| {
                let relevant = match &event {
                    Ok(event) => {
                        event.need_rescan() || {
                            let files = files.lock();
                            event.paths.iter().any(|p| files.contains(p))
                        }
                    }
                    // Events may have been lost: check.
                    Err(_) => true,
                };
                if relevant {
                    signal.bump();
                }
            })
            .map_err(|e| e.to_string())?
        };
        Ok(FileWatcher { watcher, signal, files, dirs: HashMap::new() })
    }

    /// What the runtime reads without the state lock.
    pub(crate) fn signal(&self) -> Arc<WatchSignal> {
        self.signal.clone()
    }

    /// Watches exactly `files` from now on. Newly watched files count as an
    /// event (they may have changed before their directory was watched). If
    /// a directory cannot be watched, watching is given up for good and the
    /// runtime checks files on every question.
    pub(crate) fn set_files<'a>(&mut self, files: impl IntoIterator<Item = &'a Path>) {
        if self.signal.failed.load(Ordering::Acquire) {
            return;
        }
        let wanted: HashSet<PathBuf> = files.into_iter().map(Path::to_path_buf).collect();
        let mut dirs: HashMap<PathBuf, usize> = HashMap::new();
        for file in &wanted {
            *dirs.entry(file.parent().unwrap_or(Path::new("/")).to_path_buf()).or_default() += 1;
        }
        for dir in self.dirs.keys().filter(|d| !dirs.contains_key(*d)) {
            // Failing to unwatch a directory only costs spurious events.
            let _ = self.watcher.unwatch(dir);
        }
        for dir in dirs.keys().filter(|d| !self.dirs.contains_key(*d)) {
            if let Err(e) = self.watcher.watch(dir, RecursiveMode::NonRecursive) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot watch module files; checking them on every reload_needed instead");
                self.signal.failed.store(true, Ordering::Release);
                return;
            }
        }
        self.dirs = dirs;
        let added = {
            let mut current = self.files.lock();
            let added = wanted.iter().any(|f| !current.contains(f));
            *current = wanted;
            added
        };
        if added {
            self.signal.bump();
        }
    }
}
