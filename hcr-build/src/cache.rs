//! What a build script learnt about a dependency's types, kept in its
//! `OUT_DIR` for its next run.
//!
//! A module's build script runs again on every save of the module, and
//! reads the local crates the module depends on for their type definitions
//! (a shared `types` crate, `hcr-abi` from a checkout). Those rarely change
//! between two saves; parsing them is most of the script's time. An entry
//! is used only if every file it was made from still has the size,
//! modification time, change time and inode it had, and none of them had
//! been modified in the last [`SETTLED`] before it was read (a file written
//! twice within one tick of the file system's clock could otherwise keep
//! its modification time). Anything unreadable or unexpected is a miss,
//! never an error.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::cfg::Cfg;
use crate::scan::{Scanned, UseEntry};

/// How old a file's modification must be for an entry to rely on it.
const SETTLED: Duration = Duration::from_secs(2);

/// The first line of an entry: the format's version.
const HEADER: &str = "hcr-build types cache 1";

/// What identifies a file's version without reading it.
#[derive(Debug, PartialEq, Eq)]
struct FileState {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl FileState {
    #[cfg(unix)]
    fn of(path: &Path) -> Option<FileState> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::metadata(path).ok()?;
        Some(FileState {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        })
    }

    /// Elsewhere: size and modification time only.
    #[cfg(not(unix))]
    fn of(path: &Path) -> Option<FileState> {
        let m = std::fs::metadata(path).ok()?;
        let since = m.modified().ok()?.duration_since(SystemTime::UNIX_EPOCH).ok()?;
        let mtime = (since.as_secs() as i64, i64::from(since.subsec_nanos()));
        Some(FileState { len: m.len(), mtime, ctime: mtime, ino: 0 })
    }

    /// Whether it was last modified long enough before `now`: a later
    /// write then gives it another modification time. (Its change time is
    /// compared too, but not waited for: copies that keep the modification
    /// time have a new one.)
    fn settled(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(SystemTime::UNIX_EPOCH) else { return false };
        self.mtime.0 >= 0 && Duration::from_secs(self.mtime.0 as u64 + 1) + SETTLED <= now
    }
}

/// The cache in `dir`, if there is one.
#[derive(Debug, Clone)]
pub(crate) struct TypesCache {
    dir: PathBuf,
}

impl TypesCache {
    pub(crate) fn new(dir: PathBuf) -> TypesCache {
        TypesCache { dir }
    }

    /// The entry's file and the full key it must hold.
    fn entry(&self, crate_dir: &Path, root: &Path, cfg: &Cfg) -> (PathBuf, String) {
        let key = format!("{}\n{}\n{cfg:?}", crate_dir.display(), root.display());
        (self.dir.join(format!("types-{:016x}", crate::hash::hash_str(&key))), key)
    }

    /// The types scanned from the crate at `crate_dir` (root file `root`)
    /// with `cfg`, if an entry for them is still true.
    pub(crate) fn get(&self, crate_dir: &Path, root: &Path, cfg: &Cfg) -> Option<Scanned> {
        let (file, key) = self.entry(crate_dir, root, cfg);
        let text = std::fs::read_to_string(file).ok()?;
        let mut r = Reader(&text);
        if r.string()? != HEADER || r.string()? != key {
            return None;
        }
        let mut scanned = Scanned::default();
        for _ in 0..r.number()? {
            let path = PathBuf::from(r.string()?);
            let recorded = FileState {
                len: r.number()?,
                mtime: (r.number()?, r.number()?),
                ctime: (r.number()?, r.number()?),
                ino: r.number()?,
            };
            if FileState::of(&path)? != recorded {
                return None;
            }
            scanned.files.push(path);
        }
        let mut types = BTreeMap::new();
        for _ in 0..r.number()? {
            let name = r.string()?.to_owned();
            let defs = (0..r.number()?).map(|_| r.string().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
            types.insert(name, defs);
        }
        scanned.local_types = types;
        for _ in 0..r.number()? {
            let name = match r.number::<u8>()? {
                0 => None,
                _ => Some(r.string()?.to_owned()),
            };
            let path = (0..r.number()?).map(|_| r.string().map(str::to_owned)).collect::<Option<Vec<_>>>()?;
            scanned.uses.push(UseEntry { name, path });
        }
        for _ in 0..r.number()? {
            scanned.modules.insert(r.string()?.to_owned());
        }
        r.0.is_empty().then_some(scanned)
    }

    /// Keeps what was scanned, unless one of its files changed too recently
    /// to be told apart from a later change. Failures to write are ignored:
    /// the next run scans again.
    pub(crate) fn put(&self, crate_dir: &Path, root: &Path, cfg: &Cfg, scanned: &Scanned) {
        self.put_at(crate_dir, root, cfg, scanned, SystemTime::now());
    }

    fn put_at(&self, crate_dir: &Path, root: &Path, cfg: &Cfg, scanned: &Scanned, now: SystemTime) {
        let (file, key) = self.entry(crate_dir, root, cfg);
        let mut out = String::new();
        put_string(&mut out, HEADER);
        put_string(&mut out, &key);
        put_number(&mut out, scanned.files.len());
        for path in &scanned.files {
            let Some(state) = FileState::of(path).filter(|s| s.settled(now)) else {
                let _ = std::fs::remove_file(&file);
                return;
            };
            let Some(path) = path.to_str() else { return };
            put_string(&mut out, path);
            for n in [state.len as i64, state.mtime.0, state.mtime.1, state.ctime.0, state.ctime.1, state.ino as i64] {
                put_number(&mut out, n);
            }
        }
        put_number(&mut out, scanned.local_types.len());
        for (name, defs) in &scanned.local_types {
            put_string(&mut out, name);
            put_number(&mut out, defs.len());
            for def in defs {
                put_string(&mut out, def);
            }
        }
        put_number(&mut out, scanned.uses.len());
        for u in &scanned.uses {
            match &u.name {
                None => put_number(&mut out, 0),
                Some(name) => {
                    put_number(&mut out, 1);
                    put_string(&mut out, name);
                }
            }
            put_number(&mut out, u.path.len());
            for segment in &u.path {
                put_string(&mut out, segment);
            }
        }
        put_number(&mut out, scanned.modules.len());
        for module in &scanned.modules {
            put_string(&mut out, module);
        }
        let _ = std::fs::create_dir_all(&self.dir).and_then(|()| crate::replace_file(&file, &out));
    }
}

/// Strings are written as `<length>:<bytes>`, numbers as `<digits>;`.
fn put_string(out: &mut String, s: &str) {
    let _ = write!(out, "{}:{s}", s.len());
}

fn put_number(out: &mut String, n: impl std::fmt::Display) {
    let _ = write!(out, "{n};");
}

struct Reader<'a>(&'a str);

impl<'a> Reader<'a> {
    fn number<T: std::str::FromStr>(&mut self) -> Option<T> {
        let (digits, rest) = self.0.split_once(';')?;
        self.0 = rest;
        digits.parse().ok()
    }

    fn string(&mut self) -> Option<&'a str> {
        let (len, rest) = self.0.split_once(':')?;
        let len: usize = len.parse().ok()?;
        let s = rest.get(..len)?;
        self.0 = &rest[len..];
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scanned(files: Vec<PathBuf>) -> Scanned {
        let mut s = Scanned { files, ..Scanned::default() };
        s.local_types.insert("World".into(), vec!["struct World { x: f32, label: String }".into()]);
        s.uses.push(UseEntry { name: Some("Vec2".into()), path: vec!["crate".into(), "math".into(), "Vec2".into()] });
        s.uses.push(UseEntry { name: None, path: vec!["other:crate;".into()] });
        s.modules.insert("math".into());
        s
    }

    /// A directory with a crate root and a cache next to it.
    fn crate_with_cache() -> (tempfile::TempDir, TypesCache, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let cache = TypesCache::new(dir.path().join("cache"));
        let lib = dir.path().join("lib.rs");
        std::fs::write(&lib, "pub struct World;").unwrap();
        (dir, cache, lib)
    }

    fn uses(s: &Scanned) -> Vec<(Option<String>, Vec<String>)> {
        s.uses.iter().map(|u| (u.name.clone(), u.path.clone())).collect()
    }

    #[test]
    fn an_entry_is_used_until_one_of_its_files_changes() {
        let (dir, cache, lib) = crate_with_cache();
        let cfg = Cfg::empty().with_feature("serde");
        let s = scanned(vec![lib.clone()]);
        // As if the file had been written a while before the scan.
        cache.put_at(dir.path(), &lib, &cfg, &s, SystemTime::now() + Duration::from_secs(10));
        let back = cache.get(dir.path(), &lib, &cfg).expect("a true entry is used");
        assert_eq!(back.files, s.files);
        assert_eq!(back.local_types, s.local_types);
        assert_eq!(back.modules, s.modules);
        assert_eq!(uses(&back), uses(&s));
        assert!(cache.get(dir.path(), &lib, &Cfg::empty()).is_none(), "another configuration, another entry");
        assert!(cache.get(dir.path(), &dir.path().join("main.rs"), &cfg).is_none(), "another root, another entry");
        // The same length, other contents: a new inode and times.
        std::fs::write(dir.path().join("new.rs"), "pub struct Other;").unwrap();
        std::fs::rename(dir.path().join("new.rs"), &lib).unwrap();
        assert!(cache.get(dir.path(), &lib, &cfg).is_none(), "a changed file makes the entry stale");
    }

    #[test]
    fn files_changed_just_now_are_not_relied_on() {
        let (dir, cache, lib) = crate_with_cache();
        let cfg = Cfg::empty();
        cache.put(dir.path(), &lib, &cfg, &scanned(vec![lib.clone()]));
        assert!(cache.get(dir.path(), &lib, &cfg).is_none(), "written within the file system's clock tick");
    }

    #[test]
    fn a_damaged_entry_is_a_miss() {
        let (dir, cache, lib) = crate_with_cache();
        let cfg = Cfg::empty();
        cache.put_at(dir.path(), &lib, &cfg, &scanned(vec![lib.clone()]), SystemTime::now() + Duration::from_secs(10));
        let (entry, _) = cache.entry(dir.path(), &lib, &cfg);
        let text = std::fs::read_to_string(&entry).unwrap();
        for cut in [0, 10, text.len() / 2, text.len() - 1] {
            std::fs::write(&entry, &text[..cut]).unwrap();
            assert!(cache.get(dir.path(), &lib, &cfg).is_none(), "cut at {cut}");
        }
        std::fs::write(&entry, format!("{text}1:x")).unwrap();
        assert!(cache.get(dir.path(), &lib, &cfg).is_none(), "trailing bytes");
    }
}
