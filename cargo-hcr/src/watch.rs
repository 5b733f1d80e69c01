//! Watching the packages' sources (their `src/`, `build.rs` and
//! `Cargo.toml`) and the report directory, with one `notify` watcher, and
//! telling real edits from events that changed no file's contents.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;

use notify::event::{AccessKind, AccessMode, ModifyKind};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};

use crate::error::{Error, Result};

/// What one file system event changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Change {
    /// The files written, each with its package (an index into the watched
    /// list).
    pub files: Vec<(usize, PathBuf)>,
    /// Whether the event says the writing is over (a file closed after
    /// writing, renamed into place, or removed): no need to wait for more.
    pub complete: bool,
    /// Whether the report directory changed.
    pub report: bool,
}

/// The watcher of the package sources and of the report directory.
#[derive(Debug)]
pub struct Watcher {
    packages: Vec<PathBuf>,
    report_dir: PathBuf,
    _watcher: RecommendedWatcher,
}

impl Watcher {
    /// Watches the crates in `package_dirs` and `report_dir`, sending every
    /// event through `events` (wrapped by `event`); classify them with
    /// [`Watcher::change`].
    ///
    /// # Errors
    ///
    /// [`Error::Watch`] if a directory cannot be watched.
    pub fn start<E: Send + 'static>(
        package_dirs: &[PathBuf],
        report_dir: &Path,
        events: Sender<E>,
        event: fn(notify::Result<notify::Event>) -> E,
    ) -> Result<Watcher> {
        let watch_error = |path: &Path| {
            let path = path.to_owned();
            move |e: notify::Error| Error::Watch { path, source: std::io::Error::other(e) }
        };
        let mut watcher = notify::recommended_watcher(move |result| {
            // The receiver is gone only when cargo-hcr is stopping.
            let _ = events.send(event(result));
        })
        .map_err(watch_error(report_dir))?;
        for dir in package_dirs {
            // The crate's directory itself only for `build.rs` and
            // `Cargo.toml` (an editor may replace them, which a watch on the
            // file would not survive).
            watcher.watch(dir, RecursiveMode::NonRecursive).map_err(watch_error(dir))?;
            let src = dir.join("src");
            if src.is_dir() {
                watcher.watch(&src, RecursiveMode::Recursive).map_err(watch_error(&src))?;
            }
        }
        watcher.watch(report_dir, RecursiveMode::NonRecursive).map_err(watch_error(report_dir))?;
        Ok(Watcher { packages: package_dirs.to_vec(), report_dir: report_dir.to_owned(), _watcher: watcher })
    }

    /// What `event` changed. An error of the watcher (events may have been
    /// lost) counts as a change of every package's manifest.
    pub fn change(&self, event: &notify::Result<notify::Event>) -> Change {
        let event = match event {
            Ok(event) => event,
            Err(_) => {
                let files = self.packages.iter().enumerate().map(|(i, dir)| (i, dir.join("Cargo.toml"))).collect();
                return Change { files, complete: true, report: true };
            }
        };
        let mut change = Change::default();
        if !is_write(&event.kind) {
            return change;
        }
        change.complete = is_complete(&event.kind);
        for path in &event.paths {
            if path.parent() == Some(&self.report_dir) || *path == self.report_dir {
                change.report = true;
            } else if let Some(package) = package_of(path, &self.packages)
                && !change.files.iter().any(|(_, p)| p == path)
            {
                change.files.push((package, path.clone()));
            }
        }
        change
    }

    /// Every input file of the watched packages there is now, for
    /// [`Contents`] to start from.
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for dir in &self.packages {
            files.push(dir.join("Cargo.toml"));
            files.push(dir.join("build.rs"));
            let mut stack = vec![dir.join("src")];
            while let Some(dir) = stack.pop() {
                let Ok(entries) = std::fs::read_dir(&dir) else { continue };
                for entry in entries.flatten() {
                    let path = entry.path();
                    if path.is_dir() {
                        stack.push(path);
                    } else {
                        files.push(path);
                    }
                }
            }
        }
        files.retain(|f| f.is_file());
        files
    }
}

/// Whether an event of this kind can change a file's contents or presence
/// (opening or reading a file cannot, and cargo reads the sources).
fn is_write(kind: &EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        EventKind::Any | EventKind::Create(_) | EventKind::Modify(_) | EventKind::Remove(_) | EventKind::Other => true,
    }
}

/// Whether an event of this kind ends a write: a file closed after writing,
/// renamed into place, or removed.
fn is_complete(kind: &EventKind) -> bool {
    matches!(
        kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(_))
            | EventKind::Remove(_)
    )
}

/// The package (index into `packages`, their crate directories) whose build
/// inputs include `path`: a file under its `src/`, its `build.rs` or its
/// `Cargo.toml`. Editors' backup, swap and temporary files are not inputs.
/// When crates nest, the innermost one is chosen.
pub fn package_of(path: &Path, packages: &[PathBuf]) -> Option<usize> {
    let name = path.file_name()?.to_str().unwrap_or_default();
    if name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".swx") {
        return None;
    }
    packages
        .iter()
        .enumerate()
        .filter(|(_, dir)| {
            path.starts_with(dir.join("src")) || *path == dir.join("build.rs") || *path == dir.join("Cargo.toml")
        })
        .max_by_key(|(_, dir)| dir.components().count())
        .map(|(index, _)| index)
}

/// The contents of the watched files when they were last built (a hash),
/// to tell an edit from an event that changed nothing in the end (a save
/// without changes, a `touch`, the truncation that starts a save).
#[derive(Debug, Default)]
pub struct Contents {
    built: HashMap<PathBuf, Option<u64>>,
}

impl Contents {
    /// Starts from the current contents of `files`.
    pub fn new(files: &[PathBuf]) -> Contents {
        let mut contents = Contents::default();
        for file in files {
            contents.accept(file);
        }
        contents
    }

    /// Whether `file`'s contents (or presence) now differ from when it was
    /// last accepted. A file never seen before differs.
    pub fn differs(&self, file: &Path) -> bool {
        match self.built.get(file) {
            Some(built) => *built != hash(file),
            None => hash(file).is_some(),
        }
    }

    /// Takes `file`'s contents now as the ones built; whether they differ
    /// from those accepted before.
    pub fn accept(&mut self, file: &Path) -> bool {
        let now = hash(file);
        match self.built.insert(file.to_owned(), now) {
            Some(before) => before != now,
            None => now.is_some(),
        }
    }
}

/// The hash of `file`'s contents; `None` for a directory or a file that is
/// gone.
fn hash(file: &Path) -> Option<u64> {
    std::fs::read(file).ok().map(|bytes| xxhash_rust::xxh3::xxh3_64(&bytes))
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn build_inputs_and_what_is_not() {
        let modules = [PathBuf::from("/ws/game"), PathBuf::from("/ws/physics"), PathBuf::from("/ws/game/src/inner")];
        let of = |path: &str| package_of(Path::new(path), &modules);
        assert_eq!(of("/ws/game/src/lib.rs"), Some(0));
        assert_eq!(of("/ws/game/src/deep/er/mod.rs"), Some(0));
        assert_eq!(of("/ws/game/build.rs"), Some(0));
        assert_eq!(of("/ws/physics/Cargo.toml"), Some(1));
        assert_eq!(of("/ws/game/src/inner/src/lib.rs"), Some(2), "the innermost crate");
        assert_eq!(of("/ws/game/README.md"), None);
        assert_eq!(of("/ws/game/target/debug/libgame.so"), None);
        assert_eq!(of("/ws/game/srcs/lib.rs"), None);
        assert_eq!(of("/ws/game/src/.lib.rs.swp"), None);
        assert_eq!(of("/ws/game/src/lib.rs~"), None);
        assert_eq!(of("/ws/other/src/lib.rs"), None);
    }

    /// The changes seen until an event writes `path` (that event's change
    /// included), or `None` if none does within a generous while.
    fn changes_until(
        watcher: &Watcher,
        events: &mpsc::Receiver<notify::Result<notify::Event>>,
        path: &Path,
    ) -> Option<Vec<Change>> {
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let event = events.recv_timeout(left).ok()?;
            seen.push(watcher.change(&event));
            if event.is_ok_and(|e| is_write(&e.kind) && e.paths.iter().any(|p| p == path)) {
                return Some(seen);
            }
        }
        None
    }

    #[test]
    fn contents_tell_edits_from_events() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("lib.rs");
        std::fs::write(&file, "one").unwrap();
        let mut contents = Contents::new(std::slice::from_ref(&file));
        assert!(!contents.differs(&file), "the same contents");
        std::fs::write(&file, "").unwrap();
        assert!(contents.differs(&file), "half a save");
        std::fs::write(&file, "one").unwrap();
        assert!(!contents.differs(&file), "the save is over: nothing changed");
        std::fs::write(&file, "two").unwrap();
        assert!(contents.differs(&file));
        assert!(contents.accept(&file));
        assert!(!contents.differs(&file) && !contents.accept(&file), "accepted");
        std::fs::remove_file(&file).unwrap();
        assert!(contents.differs(&file), "gone");
        let new = dir.path().join("new.rs");
        std::fs::write(&new, "").unwrap();
        assert!(contents.differs(&new), "never seen");
        assert!(!contents.differs(dir.path()), "a directory has no contents");
    }

    #[test]
    fn real_edits_are_seen_and_reads_are_not() {
        let root = tempfile::tempdir().unwrap();
        let module = root.path().join("module");
        std::fs::create_dir_all(module.join("src/nested")).unwrap();
        std::fs::write(module.join("src/lib.rs"), "// one").unwrap();
        std::fs::write(module.join("Cargo.toml"), "").unwrap();
        let reports = root.path().join("reports");
        std::fs::create_dir(&reports).unwrap();
        let (tx, rx) = mpsc::channel();
        let watcher = Watcher::start(std::slice::from_ref(&module), &reports, tx, |e| e).unwrap();

        // Events arrive in order: whatever comes before the event of a new
        // file in the report directory came from what was done before it.
        let mut marker = 0;
        let mut nothing_but = |what: &str, action: &dyn Fn()| {
            action();
            marker += 1;
            let mark = reports.join(format!("mark{marker}"));
            std::fs::write(&mark, "").unwrap();
            let seen = changes_until(&watcher, &rx, &mark).expect("the mark is seen");
            assert!(seen.last().is_some_and(|c| c.report), "{seen:?}");
            assert!(seen.iter().all(|c| c.files.is_empty()), "{what} is no change: {seen:?}");
        };
        nothing_but("a read", &|| drop(std::fs::read_to_string(module.join("src/lib.rs")).unwrap()));
        nothing_but("a file that is no input", &|| std::fs::write(module.join("README.md"), "text").unwrap());
        nothing_but("a swap file", &|| std::fs::write(module.join("src/.lib.rs.swp"), "x").unwrap());

        for (what, path) in [
            ("a new file in a subdirectory", module.join("src/nested/mod.rs")),
            ("the manifest", module.join("Cargo.toml")),
            ("the build script", module.join("build.rs")),
        ] {
            std::fs::write(&path, "// changed").unwrap();
            let seen = changes_until(&watcher, &rx, &path).expect(what);
            assert_eq!(seen.last().map(|c| c.files.as_slice()), Some(&[(0, path.clone())][..]), "{what}: {seen:?}");
        }
    }
}
