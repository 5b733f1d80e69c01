//! What the state lock protects: the loaded modules, the proc and global
//! registries and the stub table.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::detect::{self, FileStatus};
use super::graph::Graph;
use super::handlers::Handler;
use super::report::ModuleInfo;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::loader::{self, ModuleLibrary, PrivateDir, Quick, Stamp};
use crate::registry::{GlobalRegistry, ProcRegistry, ProcState};
use crate::table::{StubTable, Target};
use crate::watch::FileWatcher;

/// A module: loaded, or staged by a transaction (then
/// [`Staged`](super::txn::Staged) adds what only the transaction needs).
pub(super) struct ModuleRecord {
    pub(super) name: Arc<str>,
    pub(super) source: PathBuf,
    pub(super) stamp: Stamp,
    /// The quick stamp of a file whose load failed; not retried until the
    /// file changes again.
    pub(super) failed: Option<Quick>,
    pub(super) library: ModuleLibrary,
    pub(super) build_id: String,
    pub(super) abi_minor: u16,
    pub(super) imports: Vec<Arc<str>>,
    /// Loaded by the host (as opposed to only imported).
    pub(super) root: bool,
    pub(super) globals: Vec<Box<str>>,
    pub(super) handlers: Vec<Handler>,
    /// The generation its code was loaded in (set at commit).
    pub(super) generation: u64,
}

impl ModuleRecord {
    /// Whether its file differs from the loaded code.
    pub(super) fn file_status(&mut self, settle: Duration) -> FileStatus {
        detect::file_status(&self.source, &mut self.stamp, self.failed, settle)
    }

    pub(super) fn info(&self, procs: &ProcRegistry, globals: &GlobalRegistry) -> ModuleInfo {
        let bound = procs.module_stubs(&self.name).filter(|&s| procs.state(s) == ProcState::Bound).count();
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
        }
    }
}

/// Everything behind the state lock.
pub(super) struct State {
    pub(super) config: Config,
    pub(super) modules: Vec<ModuleRecord>,
    pub(super) procs: ProcRegistry,
    pub(super) globals: GlobalRegistry,
    /// Libraries replaced or unloaded under
    /// [`UnloadPolicy::Never`](crate::UnloadPolicy::Never).
    pub(super) kept: Vec<ModuleLibrary>,
    pub(super) private: PrivateDir,
    pub(super) table: StubTable,
    /// Watches the loaded modules' files, if configured.
    pub(super) watcher: Option<FileWatcher>,
}

impl State {
    pub(super) fn new(config: Config, table: StubTable, private: PrivateDir, watcher: Option<FileWatcher>) -> State {
        State {
            config,
            modules: Vec::new(),
            procs: ProcRegistry::default(),
            globals: GlobalRegistry::default(),
            kept: Vec::new(),
            private,
            table,
            watcher,
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

    /// The stub of `(module, name)`, creating an entry (and taking a stub) if
    /// there is none. Outside a transaction a new entry is pending and
    /// committed at once; inside one, the transaction's commit or rollback
    /// settles it.
    pub(super) fn proc_stub(&mut self, module: &Arc<str>, name: &str, in_txn: bool) -> Result<u32> {
        if let Some(stub) = self.procs.lookup(module, name) {
            return Ok(stub);
        }
        let stub = self.table.allocate()?;
        debug_assert_eq!(stub, self.procs.len(), "stubs and procs are created together");
        self.procs.insert(module, name, stub);
        if !in_txn {
            self.procs.set_state(stub, ProcState::Pending);
            self.procs.merge();
        }
        Ok(stub)
    }

    /// Makes sure a stub whose address is about to be handed out has a
    /// target: its function, or its pad.
    pub(super) fn publish(&mut self, stub: u32) -> usize {
        if self.table.target(stub) == Target::Empty {
            let label = self.procs.get(stub).label();
            self.table.unbind(stub, &label);
        }
        self.table.stub_address(stub)
    }

    /// Points a proc's stub at its pad: it is no longer there.
    fn remove_proc(&mut self, stub: u32) {
        self.procs.set_state(stub, ProcState::Removed);
        let label = self.procs.get(stub).label();
        self.table.unbind(stub, &label);
    }

    /// Unbinds every bound stub of `module` for which `keep` is false: its
    /// proc is gone (a new build no longer registers it, or the module was
    /// unloaded).
    pub(super) fn remove_procs_of(&mut self, module: &str, keep: impl Fn(u32) -> bool) {
        let gone: Vec<u32> = self
            .procs
            .module_stubs(module)
            .filter(|&stub| !keep(stub) && self.procs.state(stub) == ProcState::Bound)
            .collect();
        for stub in gone {
            self.remove_proc(stub);
        }
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
            if let Some(record) = records[i].take() {
                record.library.close();
            }
        }
        for library in self.kept.drain(..).rev() {
            library.close();
        }
    }
}
