//! A scratch copy of a module crate that can be edited and rebuilt without
//! touching the original: what the demo (and tests of reloads) work on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

/// What can go wrong with a scratch crate.
#[derive(Debug)]
pub enum ScratchError {
    /// A file could not be read or written.
    Io(PathBuf, std::io::Error),
    /// A manifest could not be understood.
    Manifest(String),
    /// `cargo build` failed; its output.
    Build(String),
    /// An edit did not find the text it was to replace.
    EditNotFound(String),
}

impl fmt::Display for ScratchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ScratchError::Io(path, e) => write!(f, "cannot access {}: {e}", path.display()),
            ScratchError::Manifest(m) => write!(f, "cannot rewrite the manifest: {m}"),
            ScratchError::Build(out) => write!(f, "the build failed:\n{out}"),
            ScratchError::EditNotFound(text) => write!(f, "the edit did not find {text:?}"),
        }
    }
}

impl std::error::Error for ScratchError {}

fn io<T>(path: &Path, r: std::io::Result<T>) -> Result<T, ScratchError> {
    r.map_err(|e| ScratchError::Io(path.to_owned(), e))
}

/// A module crate copied into a directory of its own, standing alone.
#[derive(Debug)]
pub struct ScratchCrate {
    dir: PathBuf,
    target_dir: PathBuf,
    lib_name: String,
}

impl ScratchCrate {
    /// Copies the crate at `source` (a member of `workspace`) into `dir`,
    /// replacing what is there. Its manifest is rewritten to build on its
    /// own: inherited fields and dependencies are resolved from the
    /// workspace, relative paths made absolute, and the workspace's lock
    /// file is copied so that the build needs no network. Builds go to
    /// `target_dir`.
    ///
    /// # Errors
    ///
    /// [`ScratchError::Io`] or [`ScratchError::Manifest`].
    pub fn copy(source: &Path, workspace: &Path, dir: &Path, target_dir: &Path) -> Result<ScratchCrate, ScratchError> {
        if dir.exists() {
            io(dir, std::fs::remove_dir_all(dir))?;
        }
        copy_tree(&source.join("src"), &dir.join("src"))?;
        if source.join("build.rs").is_file() {
            io(dir, std::fs::copy(source.join("build.rs"), dir.join("build.rs")))?;
        }
        let (manifest, lib_name) = standalone_manifest(source, workspace)?;
        io(dir, std::fs::write(dir.join("Cargo.toml"), manifest))?;
        let lock = workspace.join("Cargo.lock");
        if lock.is_file() {
            io(dir, std::fs::copy(&lock, dir.join("Cargo.lock")))?;
        }
        Ok(ScratchCrate { dir: dir.to_owned(), target_dir: target_dir.to_owned(), lib_name })
    }

    /// Reopens a copy made earlier (keeping its edits), or makes one.
    ///
    /// # Errors
    ///
    /// As for [`ScratchCrate::copy`].
    pub fn open_or_copy(
        source: &Path,
        workspace: &Path,
        dir: &Path,
        target_dir: &Path,
    ) -> Result<ScratchCrate, ScratchError> {
        if dir.join("Cargo.toml").is_file() {
            let (_, lib_name) = standalone_manifest(source, workspace)?;
            return Ok(ScratchCrate { dir: dir.to_owned(), target_dir: target_dir.to_owned(), lib_name });
        }
        ScratchCrate::copy(source, workspace, dir, target_dir)
    }

    /// The copy's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The copy's `src/lib.rs`.
    pub fn lib_rs(&self) -> PathBuf {
        self.dir.join("src/lib.rs")
    }

    /// Replaces `from` with `to` in `src/lib.rs`.
    ///
    /// # Errors
    ///
    /// [`ScratchError::EditNotFound`] if `from` is not there.
    pub fn edit(&self, from: &str, to: &str) -> Result<(), ScratchError> {
        let path = self.lib_rs();
        let text = io(&path, std::fs::read_to_string(&path))?;
        if !text.contains(from) {
            return Err(ScratchError::EditNotFound(from.to_owned()));
        }
        io(&path, std::fs::write(&path, text.replace(from, to)))
    }

    /// The newest modification time of the copy's sources.
    pub fn sources_modified(&self) -> SystemTime {
        fn walk(dir: &Path, newest: &mut SystemTime) {
            let Ok(entries) = std::fs::read_dir(dir) else { return };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, newest);
                } else if let Ok(time) = entry.metadata().and_then(|m| m.modified()) {
                    *newest = (*newest).max(time);
                }
            }
        }
        let mut newest = SystemTime::UNIX_EPOCH;
        walk(&self.dir.join("src"), &mut newest);
        newest
    }

    /// Builds the copy (debug profile, offline) and returns how long it took.
    ///
    /// # Errors
    ///
    /// [`ScratchError::Build`] with cargo's output if the build fails.
    pub fn build(&self) -> Result<Duration, ScratchError> {
        let started = Instant::now();
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let out = Command::new(cargo)
            .args(["build", "--quiet", "--offline", "--manifest-path"])
            .arg(self.dir.join("Cargo.toml"))
            .arg("--target-dir")
            .arg(&self.target_dir)
            .env_remove("CARGO_TARGET_DIR")
            .output();
        let out = io(&self.dir, out)?;
        if !out.status.success() {
            return Err(ScratchError::Build(String::from_utf8_lossy(&out.stderr).into_owned()));
        }
        Ok(started.elapsed())
    }

    /// Where the build puts the module's library.
    pub fn library(&self) -> PathBuf {
        self.target_dir.join("debug").join(format!(
            "{}{}{}",
            std::env::consts::DLL_PREFIX,
            self.lib_name,
            std::env::consts::DLL_SUFFIX
        ))
    }
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), ScratchError> {
    io(to, std::fs::create_dir_all(to))?;
    for entry in io(from, std::fs::read_dir(from))? {
        let entry = io(from, entry)?;
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_tree(&entry.path(), &target)?;
        } else {
            io(&target, std::fs::copy(entry.path(), &target))?;
        }
    }
    Ok(())
}

fn read_toml(path: &Path) -> Result<toml::Table, ScratchError> {
    let text = io(path, std::fs::read_to_string(path))?;
    text.parse().map_err(|e| ScratchError::Manifest(format!("{}: {e}", path.display())))
}

/// The crate's manifest made standalone, and its library name.
fn standalone_manifest(source: &Path, workspace: &Path) -> Result<(String, String), ScratchError> {
    let mut manifest = read_toml(&source.join("Cargo.toml"))?;
    let root = read_toml(&workspace.join("Cargo.toml"))?;
    let ws = root.get("workspace").and_then(|w| w.as_table());
    let ws_package = ws.and_then(|w| w.get("package")).and_then(|p| p.as_table());
    let ws_deps = ws.and_then(|w| w.get("dependencies")).and_then(|d| d.as_table());

    if let Some(package) = manifest.get_mut("package").and_then(|p| p.as_table_mut()) {
        for (key, value) in package.iter_mut() {
            if is_inherited(value) {
                *value = ws_package
                    .and_then(|p| p.get(key.as_str()))
                    .cloned()
                    .ok_or_else(|| ScratchError::Manifest(format!("the workspace has no package.{key}")))?;
            }
        }
    }
    for section in ["dependencies", "build-dependencies", "dev-dependencies"] {
        let Some(deps) = manifest.get_mut(section).and_then(|d| d.as_table_mut()) else { continue };
        for (name, spec) in deps.iter_mut() {
            if is_inherited(spec) {
                let mut resolved = ws_deps
                    .and_then(|d| d.get(name.as_str()))
                    .cloned()
                    .ok_or_else(|| ScratchError::Manifest(format!("the workspace has no dependency {name}")))?;
                absolutize(&mut resolved, workspace);
                // Keep what the member adds (features, optional).
                if let (Some(extra), Some(target)) = (spec.as_table(), resolved.as_table_mut()) {
                    for (k, v) in extra.iter().filter(|(k, _)| k.as_str() != "workspace") {
                        target.insert(k.clone(), v.clone());
                    }
                }
                *spec = resolved;
            } else {
                absolutize(spec, source);
            }
        }
    }
    manifest.remove("lints");
    manifest.insert("workspace".into(), toml::Value::Table(toml::Table::new()));
    let lib_name = manifest
        .get("lib")
        .and_then(|l| l.get("name"))
        .and_then(|n| n.as_str())
        .map(str::to_owned)
        .or_else(|| {
            manifest.get("package").and_then(|p| p.get("name")).and_then(|n| n.as_str()).map(|n| n.replace('-', "_"))
        })
        .ok_or_else(|| ScratchError::Manifest("no package name".into()))?;
    Ok((manifest.to_string(), lib_name))
}

fn is_inherited(value: &toml::Value) -> bool {
    value.get("workspace").and_then(|w| w.as_bool()) == Some(true)
}

fn absolutize(spec: &mut toml::Value, base: &Path) {
    if let Some(path) = spec.get_mut("path")
        && let Some(relative) = path.as_str()
    {
        *path = toml::Value::String(base.join(relative).to_string_lossy().into_owned());
    }
}
