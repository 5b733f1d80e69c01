//! What the state lock protects: the loaded modules, the proc and global
//! registries and the stub table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hcr_abi::InitFn;
use parking_lot::RwLock;

use super::detect::{self, FileStatus};
use super::graph::Graph;
use super::handlers::Handler;
use super::report::ModuleInfo;
use super::stubs::Stubs;
use super::txn::StagedProc;
use crate::config::Config;
use crate::error::{Error, GlobalLayout, Result};
use crate::loader::{self, ModuleLibrary, PrivateDir, Quick, Stamp};
use crate::registry::{Binder, GlobalRegistry};
use crate::services::HostServices;
use crate::watch::FileWatcher;

/// What a build registered in its init, kept (with
/// [`Config::keep_previous_builds`]) so that the build can become current
/// again, after a newer one, without its init running again.
#[derive(Default)]
pub(super) struct Registration {
    /// Its procs: stub, address, signature.
    pub(super) procs: Vec<StagedProc>,
    /// Its bindings to other modules' procs.
    pub(super) binds: Vec<(u32, Binder)>,
    /// Its globals, the storage each was given (the build keeps that
    /// pointer) and the layout it asked for.
    pub(super) globals: Vec<(Box<str>, usize, GlobalLayout)>,
}

/// A module: loaded, or staged by a transaction (then
/// [`Staged`](super::txn::Staged) adds what only the transaction needs).
pub(super) struct ModuleRecord {
    pub(super) name: Arc<str>,
    pub(super) source: PathBuf,
    pub(super) stamp: Stamp,
    /// The quick stamp of a file whose load failed; not retried until the
    /// file changes again (or a module in `failed_with` commits).
    pub(super) failed: Option<Quick>,
    /// The other modules that failure involved: a commit of one of them may
    /// make the same file load.
    pub(super) failed_with: Vec<Arc<str>>,
    pub(super) library: ModuleLibrary,
    /// The init entry of its library.
    pub(super) init: InitFn,
    pub(super) build_id: String,
    pub(super) abi_minor: u16,
    pub(super) imports: Vec<Arc<str>>,
    /// Loaded by the host (as opposed to only imported).
    pub(super) root: bool,
    pub(super) globals: Vec<Box<str>>,
    pub(super) handlers: Vec<Handler>,
    /// The generation its code was loaded in (set at commit).
    pub(super) generation: u64,
    /// What its init registered; kept only with
    /// [`Config::keep_previous_builds`].
    pub(super) registration: Option<Registration>,
    /// The build it replaced, still loaded, with
    /// [`Config::keep_previous_builds`] (never more than one).
    pub(super) previous: Option<Box<ModuleRecord>>,
}

impl ModuleRecord {
    /// Whether its file differs from the loaded code.
    pub(super) fn file_status(&mut self, settle: Duration, limit: u64) -> FileStatus {
        detect::file_status(&self.source, &mut self.stamp, self.failed, settle, limit)
    }

    pub(super) fn info(&self, stubs: &Stubs, globals: &GlobalRegistry) -> ModuleInfo {
        let bound = stubs.bound_count(&self.name);
        ModuleInfo {
            name: self.name.to_string(),
            path: self.source.clone(),
            build_id: self.build_id.clone(),
            abi_minor: self.abi_minor,
            imports: self.imports.iter().map(|i| i.to_string()).collect(),
            root: self.root,
            procs: bound,
            globals: self.globals.iter().filter(|g| globals.get(&self.name, g).is_some()).count(),
            generation: self.generation,
            previous_build: self.previous.as_ref().map(|p| p.build_id.clone()),
        }
    }
}

/// Everything behind the state lock.
pub(super) struct State {
    pub(super) config: Config,
    pub(super) modules: Vec<ModuleRecord>,
    /// Shared with readers, who lock it alone (never after the state lock is
    /// requested: the order is state, then stubs).
    pub(super) stubs: Arc<RwLock<Stubs>>,
    pub(super) globals: GlobalRegistry,
    /// Libraries replaced or unloaded under
    /// [`UnloadPolicy::Never`](crate::UnloadPolicy::Never).
    pub(super) kept: Vec<ModuleLibrary>,
    pub(super) private: PrivateDir,
    /// Watches the loaded modules' files, if configured.
    pub(super) watcher: Option<FileWatcher>,
    /// The services table modules receive, and the panics they report.
    pub(super) services: Arc<HostServices>,
}

impl State {
    pub(super) fn new(
        config: Config,
        stubs: Arc<RwLock<Stubs>>,
        private: PrivateDir,
        watcher: Option<FileWatcher>,
        services: Arc<HostServices>,
    ) -> State {
        State {
            config,
            modules: Vec::new(),
            stubs,
            globals: GlobalRegistry::default(),
            kept: Vec::new(),
            private,
            watcher,
            services,
        }
    }

    /// Points the file watcher (if any) at the files of the loaded modules.
    pub(super) fn sync_watch(&mut self) {
        if let Some(watcher) = &mut self.watcher {
            watcher.set_files(self.modules.iter().map(|m| m.source.as_path()));
        }
    }

    pub(super) fn module_index(&self, name: &str) -> Option<usize> {
        self.modules.iter().position(|m| &*m.name == name)
    }

    /// The graph of the loaded modules.
    pub(super) fn graph(&self) -> Graph<'_> {
        Graph::new(self.modules.iter().map(|m| (&*m.name, m.imports.as_slice(), m.root)))
    }

    /// Module indices, every module after the modules it imports.
    pub(super) fn topo_order(&self) -> Vec<usize> {
        self.graph().order()
    }

    /// Where the file of module `import`, imported by `importer` (loaded
    /// from `importer_source`), is: next to the importer, then in the
    /// search paths.
    pub(super) fn resolve_import(&self, importer: &str, importer_source: &Path, import: &str) -> Result<PathBuf> {
        let file = loader::library_file_name(import);
        let mut searched = Vec::new();
        let dirs = importer_source.parent().into_iter().chain(self.config.search_paths.iter().map(PathBuf::as_path));
        for dir in dirs {
            let candidate = dir.join(&file);
            if candidate.is_file() {
                return Ok(candidate);
            }
            searched.push(candidate);
        }
        Err(Error::ImportNotFound { importer: importer.to_owned(), import: import.to_owned(), searched })
    }
}

impl Drop for State {
    fn drop(&mut self) {
        // Close libraries while the stub table and the globals they may
        // still reference exist: dependents first, then what they import.
        let order = self.topo_order();
        let mut records: Vec<Option<ModuleRecord>> = self.modules.drain(..).map(Some).collect();
        for i in order.into_iter().rev() {
            if let Some(mut record) = records[i].take() {
                if let Some(previous) = record.previous.take() {
                    previous.library.close();
                }
                record.library.close();
            }
        }
        for library in self.kept.drain(..).rev() {
            library.close();
        }
    }
}
