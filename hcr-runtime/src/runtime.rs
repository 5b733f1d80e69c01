//! The runtime: loaded modules, the load/reload transaction and the public
//! [`Runtime`] API.

use std::collections::{HashMap, HashSet};
use std::ffi::c_void;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use hcr_abi::{
    GlobalDesc, GlobalImport, GlobalMigration, GlobalSlot, HandlerFn, InitFn, Phase, ProcDesc, ProcImport, Str,
};
use parking_lot::{Mutex, MutexGuard};

use crate::config::{Config, UnloadPolicy};
use crate::error::{Error, GlobalLayout, Result};
use crate::loader::{self, ModuleLibrary, PrivateCopy, PrivateDir, Quick, Stamp};
use crate::mapped_vec::MappedVec;
use crate::reclaim::{Reclaimer, ThreadGuard};
use crate::registry::{Binder, Caller, GlobalEntry, GlobalRegistry, ProcRegistry, ProcState};
use crate::table::{StubTable, Target};
use crate::watch::{FileWatcher, WatchSignal};
use crate::{api, arch, os};

/// The longest [`Runtime::perform_reload`] waits for module files that keep
/// being modified; after that they are tried as they are.
const MAX_SETTLE_WAIT: Duration = Duration::from_secs(5);

/// Longest proc, global or module name accepted from a module or the host.
const MAX_NAME: usize = 1024;

/// A reload handler registered by a module.
#[derive(Clone, Copy)]
struct Handler {
    phase: Phase,
    f: HandlerFn,
    user: usize,
}

/// A loaded module.
struct ModuleRecord {
    name: Arc<str>,
    source: PathBuf,
    stamp: Stamp,
    /// The quick stamp of a file whose load failed; not retried until the
    /// file changes again.
    failed: Option<Quick>,
    library: ModuleLibrary,
    build_id: String,
    abi_minor: u16,
    imports: Vec<Arc<str>>,
    /// Loaded by the host (as opposed to only imported).
    root: bool,
    globals: Vec<Box<str>>,
    handlers: Vec<Handler>,
    generation: u64,
}

/// Whether a module's file differs from the loaded code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FileStatus {
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

impl ModuleRecord {
    /// With `examine` (the size limit), a settled file whose `stat` changed
    /// is opened to compare its build id (or content); without, only
    /// `stat` is used.
    fn file_status(&mut self, settle: Duration, examine: Option<u64>) -> FileStatus {
        let quick = Quick::stat(&self.source);
        if quick == self.stamp.quick {
            return FileStatus::Clean;
        }
        if Some(quick) == self.failed {
            return FileStatus::FailedBefore;
        }
        let Quick::Present { modified, .. } = quick else { return FileStatus::Missing };
        // A modification time in the future (another machine's clock) or
        // unknown cannot be waited out.
        let age = modified.and_then(|m| SystemTime::now().duration_since(m).ok()).unwrap_or(settle);
        if age < settle {
            return FileStatus::Settling { left: settle - age };
        }
        let Some(limit) = examine else { return FileStatus::Changed };
        match loader::stamp_file(&self.source, limit) {
            Ok(stamp) if stamp.hash == self.stamp.hash => {
                // Touched, not changed: remember the new stamp so the next
                // check is a `stat` again.
                self.stamp.quick = stamp.quick;
                FileStatus::Clean
            }
            _ => FileStatus::Changed,
        }
    }

    fn info(&self, procs: &ProcRegistry, globals: &GlobalRegistry) -> ModuleInfo {
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

/// A proc registered by a module in an uncommitted transaction.
#[derive(Clone, Copy)]
struct StagedProc {
    stub: u32,
    addr: usize,
    /// Interned signature id.
    signature: u32,
}

/// A set of stub indices, one bit each.
#[derive(Default)]
struct StubSet(MappedVec<u64>);

impl StubSet {
    /// Adds `stub`; false if it was there already.
    fn insert(&mut self, stub: u32) -> bool {
        let (word, bit) = ((stub / 64) as usize, 1u64 << (stub % 64));
        if word >= self.0.len() {
            self.0.resize((word + 1).max(self.0.len() * 2), 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    fn contains(&self, stub: u32) -> bool {
        self.0.get((stub / 64) as usize).is_some_and(|w| w & (1u64 << (stub % 64)) != 0)
    }
}

/// A module loaded by an uncommitted transaction.
struct Staged {
    name: Arc<str>,
    source: PathBuf,
    stamp: Stamp,
    library: ModuleLibrary,
    build_id: String,
    abi_minor: u16,
    imports: Vec<Arc<str>>,
    root: bool,
    procs: MappedVec<StagedProc>,
    globals: Vec<Box<str>>,
    handlers: Vec<Handler>,
    messages: Vec<String>,
    errors: Vec<Error>,
}

/// Everything a load or reload did that is not committed yet.
struct Txn {
    staged: Vec<Staged>,
    /// Stubs in use when the transaction started: every stub from here on
    /// was created by it (stubs are taken in order).
    watermark: u32,
    /// Stubs registered by the staged modules.
    registered: StubSet,
    created_globals: Vec<(Arc<str>, Box<str>)>,
    /// Bindings made by the staged inits (checked, then recorded, at commit).
    binds: Vec<(u32, Binder)>,
    /// Globals migrated to a new layout: new storage, installed at commit.
    migrated: Vec<(Arc<str>, Box<str>, GlobalEntry)>,
    load_time: Duration,
    copy_time: Duration,
    init_time: Duration,
}

impl Txn {
    fn new(state: &State) -> Txn {
        Txn {
            staged: Vec::new(),
            watermark: state.procs.len(),
            registered: StubSet::default(),
            created_globals: Vec::new(),
            binds: Vec::new(),
            migrated: Vec::new(),
            load_time: Duration::ZERO,
            copy_time: Duration::ZERO,
            init_time: Duration::ZERO,
        }
    }
}

/// How a module enters a transaction.
#[derive(Clone, PartialEq, Eq)]
enum Role {
    /// Loaded by the host.
    Root,
    /// Imported by another module.
    Import,
    /// A new build of the loaded module `expected`.
    Replace { root: bool, expected: Arc<str> },
}

/// What a commit changed.
#[derive(Default)]
struct Committed {
    reloaded: Vec<String>,
    loaded: Vec<String>,
    unloaded: Vec<String>,
    retired: Vec<ModuleLibrary>,
}

/// Everything behind the state lock.
struct State {
    config: Config,
    modules: Vec<ModuleRecord>,
    procs: ProcRegistry,
    globals: GlobalRegistry,
    /// Libraries replaced or unloaded under [`UnloadPolicy::Never`].
    kept: Vec<ModuleLibrary>,
    private: PrivateDir,
    table: StubTable,
    /// Watches the loaded modules' files, if configured.
    watcher: Option<FileWatcher>,
}

impl State {
    /// Points the file watcher (if any) at the files of the loaded modules.
    fn sync_watch(&mut self) {
        if let Some(watcher) = &mut self.watcher {
            watcher.set_files(self.modules.iter().map(|m| m.source.as_path()));
        }
    }

    fn module_index(&self, name: &str) -> Option<usize> {
        self.modules.iter().position(|m| &*m.name == name)
    }

    /// Module indices, every module after the modules it imports.
    fn topo_order(&self) -> Vec<usize> {
        let index: HashMap<&str, usize> = self.modules.iter().enumerate().map(|(i, m)| (&*m.name, i)).collect();
        let mut visited = vec![false; self.modules.len()];
        let mut order = Vec::with_capacity(self.modules.len());
        fn visit(
            i: usize,
            modules: &[ModuleRecord],
            index: &HashMap<&str, usize>,
            visited: &mut [bool],
            order: &mut Vec<usize>,
        ) {
            if std::mem::replace(&mut visited[i], true) {
                return;
            }
            for import in &modules[i].imports {
                if let Some(&j) = index.get(&**import) {
                    visit(j, modules, index, visited, order);
                }
            }
            order.push(i);
        }
        for i in 0..self.modules.len() {
            visit(i, &self.modules, &index, &mut visited, &mut order);
        }
        order
    }

    /// Handlers for `phase`, imports' handlers first.
    fn handlers(&self, phase: Phase) -> Vec<Handler> {
        self.topo_order()
            .into_iter()
            .flat_map(|i| self.modules[i].handlers.iter().copied())
            .filter(|h| h.phase == phase)
            .collect()
    }

    /// The stub of `(module, name)`, creating an entry (and taking a stub) if
    /// there is none. Outside a transaction a new entry is pending and
    /// committed at once; inside one, the transaction's commit or rollback
    /// settles it.
    fn proc_stub(&mut self, module: &Arc<str>, name: &str, in_txn: bool) -> Result<u32> {
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
    fn publish(&mut self, stub: u32) -> usize {
        if self.table.target(stub) == Target::Empty {
            let label = self.procs.get(stub).label();
            self.table.unbind(stub, &label);
        }
        self.table.stub_address(stub)
    }

    fn resolve_import(&self, importer: &str, importer_source: &Path, import: &str) -> Result<PathBuf> {
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

    /// Opens a private copy, loads the imports it needs that are not loaded,
    /// then runs its init. Everything it creates goes into `txn`.
    fn stage(
        &mut self,
        txn: &mut Txn,
        copy: PrivateCopy,
        source: PathBuf,
        role: Role,
        stack: &mut Vec<String>,
    ) -> std::result::Result<Arc<str>, Vec<Error>> {
        let stamp = copy.stamp;
        let started = Instant::now();
        let opened = ModuleLibrary::open(copy, &source);
        txn.load_time += started.elapsed();
        let (library, descriptor) = opened.map_err(|e| vec![e])?;
        let name = descriptor.name.as_str();

        let loaded = self.module_index(name);
        let staged = txn.staged.iter().any(|s| &*s.name == name);
        match &role {
            Role::Replace { expected, .. } => {
                if **expected != *name {
                    return Err(vec![Error::ModuleNameMismatch {
                        path: source,
                        expected: expected.to_string(),
                        found: name.to_owned(),
                    }]);
                }
            }
            Role::Root | Role::Import => {
                if let Some(index) = loaded {
                    return Err(vec![Error::DuplicateModule {
                        name: name.to_owned(),
                        existing: self.modules[index].source.clone(),
                        path: source,
                    }]);
                }
                if staged {
                    let existing = txn.staged.iter().find(|s| &*s.name == name).map(|s| s.source.clone());
                    return Err(vec![Error::DuplicateModule {
                        name: name.to_owned(),
                        existing: existing.unwrap_or_default(),
                        path: source,
                    }]);
                }
            }
        }
        if let Some(at) = stack.iter().position(|s| s == name) {
            let mut cycle = stack[at..].to_vec();
            cycle.push(name.to_owned());
            return Err(vec![Error::ImportCycle { cycle }]);
        }

        stack.push(name.to_owned());
        for import in &descriptor.imports {
            if let Some(at) = stack.iter().position(|s| s == import) {
                let mut cycle = stack[at..].to_vec();
                cycle.push(import.clone());
                return Err(vec![Error::ImportCycle { cycle }]);
            }
            if self.module_index(import).is_some() || txn.staged.iter().any(|s| &*s.name == import) {
                continue;
            }
            let path = self.resolve_import(name, &source, import).map_err(|e| vec![e])?;
            let started = Instant::now();
            let copy = self.private.copy_in(&path).map_err(|e| vec![e]);
            txn.copy_time += started.elapsed();
            self.stage(txn, copy?, path, Role::Import, stack)?;
        }
        stack.pop();

        let name: Arc<str> = Arc::from(name);
        let init = descriptor.init;
        txn.staged.push(Staged {
            name: name.clone(),
            source,
            stamp,
            library,
            build_id: descriptor.build_id,
            abi_minor: descriptor.abi_minor,
            imports: descriptor.imports.iter().map(|i| Arc::from(i.as_str())).collect(),
            root: match role {
                Role::Root => true,
                Role::Import => false,
                Role::Replace { root, .. } => root,
            },
            procs: MappedVec::new(),
            globals: Vec::new(),
            handlers: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
        });
        let index = txn.staged.len() - 1;
        let started = Instant::now();
        let outcome = self.run_init(txn, index, init);
        txn.init_time += started.elapsed();
        outcome.map(|()| name)
    }

    fn run_init(&mut self, txn: &mut Txn, index: usize, init: InitFn) -> std::result::Result<(), Vec<Error>> {
        let status = {
            let mut session = Session { state: self, txn, index };
            let api = api::host_api(&mut session);
            // SAFETY: `init` is the entry of a module whose descriptor passed
            // validation; by the module contract it is an `InitFn` that does
            // not unwind. `api` and the session it points at outlive the call,
            // and nothing else touches the session until it returns.
            unsafe { init(&api) }
        };
        let staged = &mut txn.staged[index];
        if !staged.errors.is_empty() {
            return Err(std::mem::take(&mut staged.errors));
        }
        if status.is_ok() {
            return Ok(());
        }
        let message = if staged.messages.is_empty() {
            format!("init returned status {}", status.0)
        } else {
            staged.messages.join("; ")
        };
        Err(vec![Error::InitFailed {
            module: staged.name.to_string(),
            path: staged.source.clone(),
            message,
            cause: None,
        }])
    }

    /// Refuses a module graph with a cycle, as it would be after `txn`.
    fn check_graph(&self, txn: &Txn) -> Result<()> {
        let mut graph: HashMap<&str, &[Arc<str>]> =
            self.modules.iter().map(|m| (&*m.name, m.imports.as_slice())).collect();
        for s in &txn.staged {
            graph.insert(&s.name, &s.imports);
        }
        let mut names: Vec<&str> = graph.keys().copied().collect();
        names.sort_unstable();
        let mut done = HashSet::new();
        for start in names {
            let mut path = Vec::new();
            find_cycle(start, &graph, &mut path, &mut done)?;
        }
        Ok(())
    }

    /// Refuses signature changes of procs in use: after `txn`, every caller
    /// bound with a known signature must match the proc's signature. The
    /// bindings of modules that `txn` replaces are replaced by theirs.
    fn check_signatures(&self, txn: &Txn) -> Vec<Error> {
        let replaced: HashSet<&str> = txn.staged.iter().map(|s| &*s.name).collect();
        // Only stubs someone is bound to can mismatch.
        let mut touched: Vec<u32> = self.procs.bound_stubs().chain(txn.binds.iter().map(|(s, _)| *s)).collect();
        touched.sort_unstable();
        touched.dedup();
        if touched.is_empty() {
            return Vec::new();
        }
        let mut new_binds: HashMap<u32, Vec<&Binder>> = HashMap::new();
        for (stub, binder) in &txn.binds {
            new_binds.entry(*stub).or_default().push(binder);
        }
        let mut registered: HashMap<u32, (u64, &str)> = HashMap::new();
        for staged in &txn.staged {
            for p in staged.procs.iter().filter(|p| touched.binary_search(&p.stub).is_ok()) {
                registered.insert(p.stub, self.procs.signature_of(p.signature));
            }
        }
        let mut errors = Vec::new();
        for stub in touched {
            let entry = self.procs.get(stub);
            let (hash, text) = match registered.get(&stub) {
                Some(&(hash, text)) => (hash, text),
                None if stub < txn.watermark
                    && entry.state == ProcState::Bound
                    && !replaced.contains(&**entry.module) =>
                {
                    (entry.signature_hash, entry.signature)
                }
                // Not registered (yet, or any more): nothing to compare with.
                None => continue,
            };
            if hash == 0 {
                continue;
            }
            let kept = self
                .procs
                .binders(stub)
                .iter()
                .filter(|b| !matches!(&b.caller, Caller::Module(m) if replaced.contains(&**m)));
            let new = new_binds.get(&stub).into_iter().flatten().copied();
            let mut reported = HashSet::new();
            for b in kept.chain(new) {
                if b.hash != 0 && b.hash != hash && reported.insert(b.caller.clone()) {
                    errors.push(Error::SignatureMismatch {
                        module: entry.module.to_string(),
                        name: entry.name.to_string(),
                        caller: b.caller.to_string(),
                        expected: b.signature.to_string(),
                        found: text.to_owned(),
                    });
                }
            }
        }
        errors
    }

    /// The loaded modules whose libraries `txn` would take away: those it
    /// replaces, and those nothing would need any more.
    fn unloaded_by(&self, txn: &Txn) -> Vec<&ModuleRecord> {
        let staged: HashMap<&str, &Staged> = txn.staged.iter().map(|s| (&*s.name, s)).collect();
        let mut reachable: HashSet<&str> = HashSet::new();
        let mut work: Vec<&str> = self
            .modules
            .iter()
            .filter(|m| staged.get(&*m.name).map_or(m.root, |s| s.root))
            .map(|m| &*m.name)
            .chain(txn.staged.iter().filter(|s| s.root).map(|s| &*s.name))
            .collect();
        while let Some(name) = work.pop() {
            if !reachable.insert(name) {
                continue;
            }
            let imports = match staged.get(name) {
                Some(s) => &s.imports,
                None => match self.module_index(name) {
                    Some(i) => &self.modules[i].imports,
                    None => continue,
                },
            };
            work.extend(imports.iter().map(|i| &**i));
        }
        self.modules.iter().filter(|m| staged.contains_key(&*m.name) || !reachable.contains(&*m.name)).collect()
    }

    /// Makes `txn` current: patch stubs, swap module records, retire old
    /// libraries, unload modules nothing needs any more. Cannot fail.
    fn commit(&mut self, txn: Txn, generation: u64) -> Committed {
        let mut out = Committed::default();
        if arch::WEAKLY_ORDERED {
            // Everything the inits wrote (globals above all) must be visible
            // to any thread that reaches new code through a patched stub.
            os::process_barrier();
        }
        let Txn { staged, binds, migrated, watermark, registered, .. } = txn;
        let replaced: HashSet<Arc<str>> = staged.iter().map(|s| s.name.clone()).collect();
        self.procs.forget_binders_of(&replaced);
        for (stub, binder) in binds {
            self.procs.add_binder(stub, binder);
        }
        for (module, name, entry) in migrated {
            self.globals.insert(module, &name, entry);
        }
        for staged in staged {
            for p in &staged.procs {
                self.procs.set_signature(p.stub, p.signature);
                self.procs.set_state(p.stub, ProcState::Bound);
                self.table.bind(p.stub, p.addr);
            }
            let record = ModuleRecord {
                name: staged.name.clone(),
                source: staged.source,
                stamp: staged.stamp,
                failed: None,
                library: staged.library,
                build_id: staged.build_id,
                abi_minor: staged.abi_minor,
                imports: staged.imports,
                root: staged.root,
                globals: staged.globals,
                handlers: staged.handlers,
                generation,
            };
            match self.module_index(&staged.name) {
                Some(index) => {
                    let old = std::mem::replace(&mut self.modules[index], record);
                    let gone: Vec<u32> = self
                        .procs
                        .module_stubs(&old.name)
                        .filter(|&stub| !registered.contains(stub) && self.procs.state(stub) == ProcState::Bound)
                        .collect();
                    for stub in gone {
                        self.remove_proc(stub);
                    }
                    let kept: HashSet<&str> = self.modules[index].globals.iter().map(|g| &**g).collect();
                    for global in old.globals.iter().filter(|g| !kept.contains(&***g)) {
                        self.globals.remove(&old.name, global);
                    }
                    out.reloaded.push(old.name.to_string());
                    out.retired.push(old.library);
                }
                None => {
                    out.loaded.push(staged.name.to_string());
                    self.modules.push(record);
                }
            }
        }
        // Stubs the transaction created only by asking for them wait, pending,
        // for a module to register them.
        for stub in watermark..self.procs.len() {
            if !registered.contains(stub) {
                self.procs.set_state(stub, ProcState::Pending);
            }
        }
        self.procs.merge();
        self.collect_unreachable(&mut out);
        self.sync_watch();
        out
    }

    /// Points a proc's stub at its pad: it is no longer there.
    fn remove_proc(&mut self, stub: u32) {
        self.procs.set_state(stub, ProcState::Removed);
        let label = self.procs.get(stub).label();
        self.table.unbind(stub, &label);
    }

    /// Unloads every module that is neither a root nor imported by one,
    /// dependents before their imports.
    fn collect_unreachable(&mut self, out: &mut Committed) {
        let mut reachable: HashSet<Arc<str>> = HashSet::new();
        let mut work: Vec<Arc<str>> = self.modules.iter().filter(|m| m.root).map(|m| m.name.clone()).collect();
        while let Some(name) = work.pop() {
            if reachable.insert(name.clone())
                && let Some(i) = self.module_index(&name)
            {
                work.extend(self.modules[i].imports.iter().cloned());
            }
        }
        let order = self.topo_order();
        let doomed: Vec<Arc<str>> =
            order.iter().rev().map(|&i| self.modules[i].name.clone()).filter(|n| !reachable.contains(n)).collect();
        self.procs.forget_binders_of(&doomed.iter().cloned().collect());
        for name in doomed {
            let index = self.module_index(&name).expect("module is loaded");
            let record = self.modules.remove(index);
            let gone: Vec<u32> =
                self.procs.module_stubs(&record.name).filter(|&s| self.procs.state(s) == ProcState::Bound).collect();
            for stub in gone {
                self.remove_proc(stub);
            }
            for global in &record.globals {
                self.globals.remove(&record.name, global);
            }
            out.unloaded.push(record.name.to_string());
            out.retired.push(record.library);
        }
    }

    /// Undoes everything `txn` created; the state is as before it started.
    fn rollback(&mut self, txn: Txn) {
        self.procs.truncate(txn.watermark);
        self.table.truncate(txn.watermark);
        for (module, name) in &txn.created_globals {
            self.globals.remove(module, name);
        }
        for staged in txn.staged.into_iter().rev() {
            staged.library.close();
        }
    }
}

/// Appends `line` to the report file at `path`; a failure is only logged.
fn append_line(path: &Path, line: &str) {
    loader::append_report(path, line);
}

/// Depth-first search for a cycle from `node`.
fn find_cycle<'a>(
    node: &'a str,
    graph: &HashMap<&'a str, &'a [Arc<str>]>,
    path: &mut Vec<&'a str>,
    done: &mut HashSet<&'a str>,
) -> Result<()> {
    if done.contains(node) {
        return Ok(());
    }
    if let Some(at) = path.iter().position(|&n| n == node) {
        let mut cycle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
        cycle.push(node.to_owned());
        return Err(Error::ImportCycle { cycle });
    }
    path.push(node);
    for import in graph.get(node).copied().unwrap_or_default() {
        find_cycle(import, graph, path, done)?;
    }
    path.pop();
    done.insert(node);
    Ok(())
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

/// The context of one module's init: the `ctx` of its [`hcr_abi::HostApi`].
pub(crate) struct Session<'a> {
    state: &'a mut State,
    txn: &'a mut Txn,
    index: usize,
}

impl Session<'_> {
    fn module(&self) -> Arc<str> {
        self.txn.staged[self.index].name.clone()
    }

    /// Records an error for the module being initialised.
    pub(crate) fn record(&mut self, error: Error) {
        self.txn.staged[self.index].errors.push(error);
    }

    /// An invalid-argument error for this module.
    pub(crate) fn invalid(&self, reason: String) -> Error {
        Error::InvalidArgument { module: self.module().to_string(), reason }
    }

    fn text(&self, s: Str, max: usize, what: &str) -> Result<String> {
        loader::read_str(s, max, what).map_err(|r| self.invalid(r))
    }

    fn name(&self, s: Str, what: &str) -> Result<String> {
        let name = self.text(s, MAX_NAME, what)?;
        if name.is_empty() {
            return Err(self.invalid(format!("its {what} is empty")));
        }
        Ok(name)
    }

    pub(crate) fn register_proc(&mut self, desc: &ProcDesc) -> Result<()> {
        let module = self.module();
        let name = self.name(desc.name, "proc name")?;
        if desc.addr.is_null() {
            return Err(self.invalid(format!("proc `{name}` has a null address")));
        }
        let signature = self.text(desc.signature, 4096, "signature")?;
        let stub = self.state.proc_stub(&module, &name, true)?;
        if !self.txn.registered.insert(stub) {
            return Err(Error::DuplicateProc { module: module.to_string(), name });
        }
        let signature = self.state.procs.intern_signature(desc.signature_hash, &signature);
        self.txn.staged[self.index].procs.push(StagedProc { stub, addr: desc.addr as usize, signature });
        Ok(())
    }

    pub(crate) fn get_proc(&mut self, import: &ProcImport) -> Result<*const c_void> {
        let module: Arc<str> = self.name(import.module, "module name")?.into();
        let name = self.name(import.name, "proc name")?;
        let signature = self.text(import.signature, 4096, "signature")?;
        let stub = self.state.proc_stub(&module, &name, true)?;
        if import.signature_hash != 0 {
            let binder = Binder {
                caller: Caller::Module(self.module()),
                hash: import.signature_hash,
                signature: signature.into(),
            };
            self.txn.binds.push((stub, binder));
        }
        Ok(self.state.publish(stub) as *const c_void)
    }

    pub(crate) fn register_global(&mut self, desc: &GlobalDesc, migrations: &[GlobalMigration]) -> Result<GlobalSlot> {
        let module = self.module();
        let name = self.name(desc.name, "global name")?;
        let requested = GlobalLayout {
            size: desc.size,
            align: desc.align,
            hash: desc.layout_hash,
            text: self.text(desc.layout, 4096, "layout")?,
        };
        if self.txn.staged[self.index].globals.iter().any(|g| **g == *name) {
            return Err(Error::DuplicateGlobal { module: module.to_string(), name });
        }
        let Some(existing) = self.state.globals.get(&module, &name) else {
            let slot = GlobalRegistry::new_slot(&module, &name, &requested)?;
            let ptr = slot.as_ptr();
            self.state.globals.insert(module.clone(), &name, GlobalEntry { slot, layout: requested });
            self.txn.created_globals.push((module, name.as_str().into()));
            self.txn.staged[self.index].globals.push(name.into());
            return Ok(GlobalSlot { ptr: ptr.cast(), initialize: 1 });
        };
        if same_layout(&existing.layout, &requested) {
            let ptr = existing.slot.as_ptr();
            self.txn.staged[self.index].globals.push(name.into());
            return Ok(GlobalSlot { ptr: ptr.cast(), initialize: 0 });
        }
        let from = &existing.layout;
        let migration = migrations
            .iter()
            .find(|m| m.from_layout_hash == from.hash && m.from_size == from.size && m.from_align == from.align);
        let Some(migration) = migration else {
            return Err(Error::GlobalLayoutMismatch {
                module: module.to_string(),
                name,
                existing: Box::new(existing.layout.clone()),
                requested: Box::new(requested),
            });
        };
        // The old value stays where it is (the old code keeps using it until
        // the commit, and keeps it after a rollback); the migration writes
        // the new value into new storage.
        let slot = GlobalRegistry::new_slot(&module, &name, &requested)?;
        let old = existing.slot.as_ptr();
        // SAFETY: `old` holds the global's value in the layout this migration
        // declares it reads (hash, size and alignment matched), and `slot` is
        // fresh storage of the new layout. Migrations are module code that
        // must not unwind; generated ones catch panics.
        let status = unsafe { (migration.migrate)(old.cast(), slot.as_ptr().cast()) };
        if !status.is_ok() {
            return Err(Error::MigrationFailed {
                module: module.to_string(),
                name,
                from: Box::new(existing.layout.clone()),
            });
        }
        let ptr = slot.as_ptr();
        self.txn.migrated.push((module, name.as_str().into(), GlobalEntry { slot, layout: requested }));
        self.txn.staged[self.index].globals.push(name.into());
        Ok(GlobalSlot { ptr: ptr.cast(), initialize: 0 })
    }

    pub(crate) fn get_global(&mut self, import: &GlobalImport) -> Result<*mut c_void> {
        let module = self.name(import.module, "module name")?;
        let name = self.name(import.name, "global name")?;
        let requested = GlobalLayout {
            size: import.size,
            align: import.align,
            hash: import.layout_hash,
            text: self.text(import.layout, 4096, "layout")?,
        };
        let Some(existing) = self.state.globals.get(&module, &name) else {
            return Err(Error::UnknownGlobal { module, name });
        };
        let matches = existing.layout.size == requested.size
            && existing.layout.align == requested.align
            && (requested.hash == 0 || requested.hash == existing.layout.hash);
        if !matches {
            return Err(Error::GlobalLayoutMismatch {
                module,
                name,
                existing: Box::new(existing.layout.clone()),
                requested: Box::new(requested),
            });
        }
        Ok(existing.slot.as_ptr().cast())
    }

    pub(crate) fn add_handler(&mut self, phase: Phase, f: HandlerFn, user: *mut c_void) -> Result<()> {
        if phase != Phase::BEFORE_RELOAD && phase != Phase::AFTER_RELOAD {
            return Err(self.invalid(format!("handler phase {} is unknown", phase.0)));
        }
        self.txn.staged[self.index].handlers.push(Handler { phase, f, user: user as usize });
        Ok(())
    }

    pub(crate) fn report(&mut self, message: Str) {
        let text = loader::read_str(message, 64 * 1024, "error message")
            .unwrap_or_else(|reason| format!("<unreadable message: {reason}>"));
        self.txn.staged[self.index].messages.push(text);
    }
}

/// Globals keep their storage only if size, alignment and layout hash all
/// stay the same.
fn same_layout(a: &GlobalLayout, b: &GlobalLayout) -> bool {
    a.size == b.size && a.align == b.align && a.hash == b.hash
}

/// A process-unique number for the calling thread (never zero).
fn thread_token() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    thread_local! {
        static TOKEN: u64 = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    TOKEN.with(|t| *t)
}

/// A lock guard that remembers which thread holds it, so re-entry from that
/// thread is an error instead of a deadlock.
struct Held<'a, T> {
    guard: MutexGuard<'a, T>,
    holder: &'a AtomicU64,
}

impl<T> Drop for Held<'_, T> {
    fn drop(&mut self) {
        self.holder.store(0, Ordering::Relaxed);
    }
}

impl<T> std::ops::Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> std::ops::DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

fn hold<'a, T>(mutex: &'a Mutex<T>, holder: &'a AtomicU64, others: &[&AtomicU64]) -> Result<Held<'a, T>> {
    let me = thread_token();
    if holder.load(Ordering::Relaxed) == me || others.iter().any(|o| o.load(Ordering::Relaxed) == me) {
        return Err(Error::Reentrant);
    }
    let guard = mutex.lock();
    holder.store(me, Ordering::Relaxed);
    Ok(Held { guard, holder })
}

/// A host-side reload callback.
type HostHandler = Box<dyn FnMut(&ReloadEvent) + Send>;

/// The hot code reloading runtime.
///
/// It owns the stub table, the globals and the loaded modules. Hosts usually
/// create one at start-up, [`load`](Runtime::load) their root modules, take
/// proc addresses with [`get_proc`](Runtime::get_proc), and call
/// [`perform_reload`](Runtime::perform_reload) at a point of their choosing
/// (typically once per frame or tick, when
/// [`reload_needed`](Runtime::reload_needed) says so).
///
/// All methods take `&self` and may be called from any thread; loads and
/// reloads are serialised. Calling through stubs never takes a lock.
///
/// # Dropping
///
/// Dropping the runtime unloads every module, frees every global and unmaps
/// the stub table. Every stub address and global pointer handed out becomes
/// invalid; make sure no thread still uses them.
pub struct Runtime {
    exclusive: Mutex<()>,
    exclusive_holder: AtomicU64,
    state: Mutex<State>,
    state_holder: AtomicU64,
    host_handlers: Mutex<Vec<HostHandler>>,
    generation: AtomicU64,
    reclaim: Arc<Reclaimer>,
    /// The file watcher's event count, if files are watched.
    watch: Option<Arc<WatchSignal>>,
    /// The event count at the last check that found no change.
    watch_checked: AtomicU64,
    report_file: Option<PathBuf>,
    /// [`Config::settle_time`].
    settle: Duration,
}

impl fmt::Debug for Runtime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Runtime").field("generation", &self.generation()).finish_non_exhaustive()
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // Threads may still be registered, but the runtime (and every stub)
        // goes away now: close what was retired; then the state's drop
        // closes the loaded modules and unmaps the table.
        self.reclaim.close_all();
    }
}

impl Runtime {
    /// Creates a runtime configured by [`Config::from_env`].
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`] for a bad environment variable, and the errors
    /// of [`Runtime::with_config`].
    pub fn new() -> Result<Runtime> {
        Runtime::with_config(Config::from_env()?)
    }

    /// Creates a runtime: reserves the stub table and creates the private
    /// directory for module copies, after removing the private directories
    /// that runtimes of processes which are gone left under the same parent
    /// (see `docs/design.md`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidConfig`], [`Error::Reserve`] when the address space
    /// cannot be reserved, [`Error::PrivateDir`] when the directory cannot be
    /// created.
    ///
    /// # Platform-specific behaviour
    ///
    /// The table is reserved with no access rights, without `MAP_FIXED` on
    /// Unix (an existing mapping at the preferred address is never replaced)
    /// and with `MEM_RESERVE` on Windows.
    pub fn with_config(config: Config) -> Result<Runtime> {
        config.validate()?;
        let table = StubTable::new(config.stub_base, config.stub_capacity)?;
        let parent = config.private_dir_parent.clone().unwrap_or_else(std::env::temp_dir);
        let limits =
            loader::Limits { max_size: config.max_module_size, allow_writable_code: config.allow_writable_code };
        let private = PrivateDir::create(&parent, limits)?;
        let watcher = if config.watch_files {
            FileWatcher::new()
                .inspect_err(|e| tracing::warn!(error = %e, "cannot watch module files; checking them instead"))
                .ok()
        } else {
            None
        };
        let watch = watcher.as_ref().map(FileWatcher::signal);
        let report_file = config.report_file.clone();
        let settle = config.settle_time;
        Ok(Runtime {
            exclusive: Mutex::new(()),
            exclusive_holder: AtomicU64::new(0),
            state: Mutex::new(State {
                config,
                modules: Vec::new(),
                procs: ProcRegistry::default(),
                globals: GlobalRegistry::default(),
                kept: Vec::new(),
                private,
                table,
                watcher,
            }),
            state_holder: AtomicU64::new(0),
            host_handlers: Mutex::new(Vec::new()),
            generation: AtomicU64::new(0),
            reclaim: Arc::new(Reclaimer::default()),
            watch,
            watch_checked: AtomicU64::new(0),
            report_file,
            settle,
        })
    }

    fn exclusive(&self) -> Result<Held<'_, ()>> {
        hold(&self.exclusive, &self.exclusive_holder, &[&self.state_holder])
    }

    fn state(&self) -> Result<Held<'_, State>> {
        hold(&self.state, &self.state_holder, &[])
    }

    /// Refuses to take away a library the calling thread is running.
    fn check_stack<'a>(&self, leaving: impl IntoIterator<Item = &'a ModuleRecord>) -> Result<()> {
        let leaving: Vec<(&Path, &str)> = leaving.into_iter().map(|m| (m.library.path(), &*m.name)).collect();
        if leaving.is_empty() {
            return Ok(());
        }
        for (address, object) in os::stack_objects() {
            if let Some((_, module)) = leaving.iter().find(|(path, _)| *path == object) {
                return Err(Error::CalledFromModule { module: (*module).to_owned(), address });
            }
        }
        Ok(())
    }

    /// Loads a module (and, first, the modules it imports) from `path`.
    ///
    /// The file is copied into the runtime's private directory and the copy
    /// is loaded, so the build may overwrite `path` at any time. Loading a
    /// path that is already loaded just marks it as loaded by the host.
    ///
    /// # Errors
    ///
    /// Any load failure ([`Error::ReadModule`], [`Error::NotRegularFile`],
    /// [`Error::ModuleTooLarge`], [`Error::NotLoadable`],
    /// [`Error::WritableCode`], [`Error::NotAModule`],
    /// [`Error::AbiMismatch`], [`Error::InitFailed`],
    /// [`Error::ImportNotFound`], [`Error::ImportCycle`], a registration
    /// error...). Nothing of the failed load remains.
    pub fn load(&self, path: impl AsRef<Path>) -> Result<ModuleInfo> {
        let source = std::path::absolute(path.as_ref())
            .map_err(|e| Error::ReadModule { path: path.as_ref().to_owned(), source: e })?;
        let _exclusive = self.exclusive()?;
        let mut state = self.state()?;
        if let Some(index) = state.modules.iter().position(|m| m.source == source) {
            state.modules[index].root = true;
            return Ok(state.modules[index].info(&state.procs, &state.globals));
        }
        let copy = state.private.copy_in(&source)?;
        let mut txn = Txn::new(&state);
        let staged = state
            .stage(&mut txn, copy, source, Role::Root, &mut Vec::new())
            .and_then(|name| state.check_graph(&txn).map(|()| name).map_err(|e| vec![e]))
            .and_then(|name| {
                let mismatches = state.check_signatures(&txn);
                if mismatches.is_empty() { Ok(name) } else { Err(mismatches) }
            });
        match staged {
            Ok(name) => {
                let committed = state.commit(txn, self.generation());
                let index = state.module_index(&name).expect("just committed");
                let info = state.modules[index].info(&state.procs, &state.globals);
                tracing::info!(module = %name, loaded = ?committed.loaded, "loaded");
                let retired = self.retire(&mut state, committed.retired);
                drop(state);
                self.finish_retiring(retired);
                Ok(info)
            }
            Err(mut errors) => {
                state.rollback(txn);
                let error = if errors.len() == 1 {
                    errors.remove(0)
                } else {
                    Error::rolled_back(errors).expect("at least one error")
                };
                tracing::warn!(error = %error, "load failed");
                Err(error)
            }
        }
    }

    /// Sorts replaced libraries by policy: kept for good under
    /// [`UnloadPolicy::Never`], otherwise returned with the policy for
    /// [`Runtime::finish_retiring`] (once the state lock is released).
    fn retire(&self, state: &mut State, retired: Vec<ModuleLibrary>) -> (UnloadPolicy, Vec<ModuleLibrary>) {
        let policy = state.config.unload_policy;
        if policy == UnloadPolicy::Never {
            state.kept.extend(retired);
            return (policy, Vec::new());
        }
        (policy, retired)
    }

    fn finish_retiring(&self, (policy, retired): (UnloadPolicy, Vec<ModuleLibrary>)) {
        match policy {
            UnloadPolicy::Immediate => self.reclaim.close_now(retired),
            _ => self.reclaim.retire(retired),
        }
    }

    /// Registers the calling thread as one that runs module code, so that
    /// under [`UnloadPolicy::Deferred`] replaced libraries stay loaded until
    /// it passes a quiescent point ([`ThreadGuard::quiescent`]). Register a
    /// thread before it first calls module code.
    ///
    /// Threads that are not registered are not waited for: if one of them
    /// runs a module's code while a reload replaces that module, it may
    /// return into an unloaded library and crash.
    pub fn register_thread(&self) -> ThreadGuard {
        ThreadGuard::register(&self.reclaim)
    }

    /// Closes every replaced library that no registered thread can still be
    /// running; returns how many. Quiescent points and reloads do this too.
    pub fn collect_retired(&self) -> usize {
        self.reclaim.collect()
    }

    /// Stops treating module `name` as loaded by the host. It is unloaded,
    /// with every import nothing else needs, unless another module imports
    /// it. Returns the modules that were unloaded.
    ///
    /// The procs of unloaded modules keep their stubs, which then report a
    /// call and abort; their globals are freed.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownModule`], or [`Error::Reentrant`] from a handler.
    pub fn unload(&self, name: &str) -> Result<Vec<String>> {
        let _exclusive = self.exclusive()?;
        let mut state = self.state()?;
        let index = state.module_index(name).ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        state.modules[index].root = false;
        let leaving = state.unloaded_by(&Txn::new(&state));
        if let Err(e) = self.check_stack(leaving) {
            state.modules[index].root = true;
            return Err(e);
        }
        let mut committed = Committed::default();
        state.collect_unreachable(&mut committed);
        state.sync_watch();
        let retired = self.retire(&mut state, committed.retired);
        drop(state);
        self.finish_retiring(retired);
        Ok(committed.unloaded)
    }

    /// Whether any loaded module's file changed since it was loaded (or since
    /// a failed attempt to reload it) and has gone [`Config::settle_time`]
    /// unmodified since. Costs one `stat` per module, and never opens or
    /// reads a file, so it cannot block on one: a file whose `stat` changed
    /// counts as changed, and [`Runtime::perform_reload`] then finds out
    /// whether its build really did (a file rewritten with the same build
    /// makes one reload that does nothing). With [`Config::watch_files`],
    /// one atomic load until the system reports an event on one of the
    /// files.
    ///
    /// A file that was deleted is no change: the loaded code keeps running
    /// until a file is back (a build deletes its output before it writes the
    /// new one, and leaves nothing when it fails).
    pub fn reload_needed(&self) -> bool {
        let events = self.watch.as_ref().and_then(|w| w.events());
        if let Some(events) = events
            && events == self.watch_checked.load(Ordering::Acquire)
        {
            return false;
        }
        let Ok(mut state) = self.state() else { return false };
        let mut changed = false;
        let mut settling = false;
        for module in &mut state.modules {
            match module.file_status(self.settle, None) {
                FileStatus::Changed => changed = true,
                // No event may come when it settles: ask again next time.
                FileStatus::Settling { .. } => settling = true,
                FileStatus::Clean | FileStatus::Missing | FileStatus::FailedBefore => {}
            }
        }
        if let Some(events) = events
            && !changed
            && !settling
        {
            // Everything up to `events` is accounted for.
            self.watch_checked.fetch_max(events, Ordering::AcqRel);
        }
        changed
    }

    /// Whether the file of module `name` differs from the code that is loaded
    /// (including a file still settling, or one that failed to load; not a
    /// file that is missing).
    ///
    /// # Errors
    ///
    /// [`Error::UnknownModule`].
    pub fn has_module_changed(&self, name: &str) -> Result<bool> {
        let mut state = self.state()?;
        let index = state.module_index(name).ok_or_else(|| Error::UnknownModule { name: name.to_owned() })?;
        let limit = state.private.max_size();
        Ok(!matches!(
            state.modules[index].file_status(self.settle, Some(limit)),
            FileStatus::Clean | FileStatus::Missing
        ))
    }

    /// The number of reloads that committed.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Reloads every module whose file changed, as one transaction.
    ///
    /// In order: detect changed files (`stat`, confirmed by the linker's
    /// build id, or by a content hash for files without one), copy them,
    /// run every module's before-reload handlers (imports first), check the
    /// new builds (see `docs/safety.md`), load them (and any new imports)
    /// and run their inits. If all of that succeeded, commit: re-point the stubs,
    /// unbind procs that disappeared, free globals that disappeared, unload
    /// replaced libraries and modules nothing imports any more, then run the
    /// after-reload handlers of the new code.
    ///
    /// Returns an empty report when nothing changed.
    ///
    /// # Errors
    ///
    /// [`Error::ReloadFailed`] listing every failure. Then nothing was
    /// patched, no global was touched, everything the attempt allocated was
    /// released, the after-reload handlers ran with
    /// [`ReloadStage::RolledBack`], and the same files are not tried again
    /// until they change. [`Error::Reentrant`] when called from a handler.
    ///
    /// # Reports
    ///
    /// With [`Config::report_file`] set, every reload that did something
    /// appends one line to that file, tab-separated:
    ///
    /// ```text
    /// reloaded<TAB><generation><TAB><milliseconds><TAB><module>,<module>...
    /// failed<TAB><milliseconds><TAB><error, newlines replaced by " | ">
    /// ```
    pub fn perform_reload(&self) -> Result<ReloadReport> {
        let started = Instant::now();
        let result = self.reload();
        if let Some(path) = &self.report_file {
            let line = match &result {
                Ok(report) if report.is_empty() => None,
                Ok(report) => Some(format!(
                    "reloaded\t{}\t{:.1}\t{}",
                    report.generation,
                    report.timings.total.as_secs_f64() * 1e3,
                    report.reloaded.join(",")
                )),
                Err(Error::Reentrant) => None,
                Err(e) => Some(format!(
                    "failed\t{:.1}\t{}",
                    started.elapsed().as_secs_f64() * 1e3,
                    e.to_string().replace('\n', " | ")
                )),
            };
            if let Some(line) = line {
                append_line(path, &line);
            }
        }
        result
    }

    fn reload(&self) -> Result<ReloadReport> {
        let started = Instant::now();
        let _exclusive = self.exclusive()?;
        let generation = self.generation();
        let mut timings = ReloadTimings::default();
        let mut state = self.state()?;

        let t = Instant::now();
        let (trigger, candidates) = loop {
            let mut trigger = false;
            let mut candidates = Vec::new();
            let mut wait = Duration::ZERO;
            let limit = state.private.max_size();
            for i in state.topo_order() {
                match state.modules[i].file_status(self.settle, Some(limit)) {
                    FileStatus::Clean | FileStatus::Missing => {}
                    FileStatus::Changed => {
                        trigger = true;
                        candidates.push(i);
                    }
                    FileStatus::Settling { left } if t.elapsed() < MAX_SETTLE_WAIT => wait = wait.max(left),
                    // Still being modified after all this time: try it as it is.
                    FileStatus::Settling { .. } => {
                        trigger = true;
                        candidates.push(i);
                    }
                    FileStatus::FailedBefore => candidates.push(i),
                }
            }
            if wait.is_zero() {
                break (trigger, candidates);
            }
            // A file is being written: wait for it, without holding up the
            // threads that need the state, and look at everything again.
            drop(state);
            std::thread::sleep(wait);
            state = self.state()?;
        };
        timings.detect = t.elapsed();
        if !trigger {
            timings.total = started.elapsed();
            self.reclaim.collect();
            return Ok(ReloadReport::unchanged(generation, timings));
        }
        self.check_stack(candidates.iter().map(|&i| &state.modules[i]))?;

        let t = Instant::now();
        let mut prepared = Vec::new();
        let mut failures = Vec::new();
        for i in candidates {
            let source = state.modules[i].source.clone();
            match state.private.copy_in(&source) {
                Ok(copy) if copy.stamp.hash == state.modules[i].stamp.hash => {
                    state.modules[i].stamp.quick = copy.stamp.quick;
                    state.modules[i].failed = None;
                }
                Ok(copy) => prepared.push((i, copy)),
                Err(e) => {
                    state.modules[i].failed = Some(Quick::stat(&source));
                    failures.push(e);
                }
            }
        }
        timings.copy = t.elapsed();
        if let Some(error) = Error::rolled_back(failures) {
            tracing::warn!(error = %error, "reload failed before loading anything");
            return Err(error);
        }
        if prepared.is_empty() {
            timings.total = started.elapsed();
            return Ok(ReloadReport::unchanged(generation, timings));
        }

        let before = state.handlers(Phase::BEFORE_RELOAD);
        drop(state);
        let t = Instant::now();
        self.run_handlers(&before, ReloadStage::Before, generation);
        timings.handlers = t.elapsed();
        let mut state = self.state()?;

        let mut txn = Txn::new(&state);
        let mut failures = Vec::new();
        let attempted: Vec<(usize, Quick)> = prepared.iter().map(|(i, c)| (*i, c.stamp.quick)).collect();
        for (i, copy) in prepared {
            let role = Role::Replace { root: state.modules[i].root, expected: state.modules[i].name.clone() };
            let source = state.modules[i].source.clone();
            if let Err(errors) = state.stage(&mut txn, copy, source, role, &mut Vec::new()) {
                failures.extend(errors);
            }
        }
        if failures.is_empty()
            && let Err(e) = state.check_graph(&txn)
        {
            failures.push(e);
        }
        if failures.is_empty() {
            failures.extend(state.check_signatures(&txn));
        }
        if failures.is_empty()
            && let Err(e) = self.check_stack(state.unloaded_by(&txn))
        {
            failures.push(e);
        }
        timings.copy += txn.copy_time;
        timings.load = txn.load_time;
        timings.register = txn.init_time;

        if let Some(error) = Error::rolled_back(failures) {
            state.rollback(txn);
            for (i, quick) in attempted {
                state.modules[i].failed = Some(quick);
            }
            let after = state.handlers(Phase::AFTER_RELOAD);
            drop(state);
            self.run_handlers(&after, ReloadStage::RolledBack, generation);
            tracing::warn!(error = %error, "reload rolled back");
            return Err(error);
        }

        let t = Instant::now();
        let new_generation = generation + 1;
        let committed = state.commit(txn, new_generation);
        self.generation.store(new_generation, Ordering::Release);
        timings.patch = t.elapsed();
        let after = state.handlers(Phase::AFTER_RELOAD);
        let retired = self.retire(&mut state, committed.retired);
        drop(state);

        let t = Instant::now();
        self.finish_retiring(retired);
        timings.unload = t.elapsed();
        let t = Instant::now();
        self.run_handlers(&after, ReloadStage::Committed, new_generation);
        timings.handlers += t.elapsed();
        timings.total = started.elapsed();
        tracing::info!(
            generation = new_generation,
            reloaded = ?committed.reloaded,
            total_ms = timings.total.as_secs_f64() * 1e3,
            "reload committed"
        );
        Ok(ReloadReport {
            generation: new_generation,
            reloaded: committed.reloaded,
            loaded: committed.loaded,
            unloaded: committed.unloaded,
            timings,
        })
    }

    fn run_handlers(&self, handlers: &[Handler], stage: ReloadStage, generation: u64) {
        let (phase, outcome) = match stage {
            ReloadStage::Before => (Phase::BEFORE_RELOAD, hcr_abi::Outcome::PENDING),
            ReloadStage::Committed => (Phase::AFTER_RELOAD, hcr_abi::Outcome::COMMITTED),
            ReloadStage::RolledBack => (Phase::AFTER_RELOAD, hcr_abi::Outcome::ROLLED_BACK),
        };
        let event = hcr_abi::ReloadEvent {
            size: size_of::<hcr_abi::ReloadEvent>() as u32,
            phase,
            outcome,
            reserved: 0,
            generation,
        };
        for handler in handlers {
            // SAFETY: the handler was registered by a module that is still
            // loaded (loads and reloads are excluded while handlers run), and
            // the module contract makes it callable with its `user` pointer
            // from any thread, without unwinding.
            unsafe { (handler.f)(handler.user as *mut c_void, &event) };
        }
        let mut host = std::mem::take(&mut *self.host_handlers.lock());
        let event = ReloadEvent { stage, generation };
        for handler in &mut host {
            handler(&event);
        }
        let mut slot = self.host_handlers.lock();
        host.append(&mut slot);
        *slot = host;
    }

    /// Registers a host callback run before every reload attempt and after it
    /// committed or rolled back, after the modules' own handlers.
    pub fn on_reload(&self, handler: impl FnMut(&ReloadEvent) + Send + 'static) {
        self.host_handlers.lock().push(Box::new(handler));
    }

    /// The stable address of proc `name` of `module`: a stub that always jumps
    /// to the current code. If the proc is not registered (yet), the stub is
    /// created unbound and bound when the proc is registered; calling it
    /// before that prints `hcr: call to unbound function module::name` and
    /// aborts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or overlong name,
    /// [`Error::CapacityExhausted`], [`Error::Reentrant`] from a module init.
    pub fn get_proc(&self, module: &str, name: &str) -> Result<Proc> {
        self.get_proc_with_signature(module, name, 0, "")
    }

    /// Like [`Runtime::get_proc`], for a caller compiled against a known
    /// signature (`signature_hash` as generated by `hcr-build`, `0` for
    /// unknown). The host stays bound with that signature: a reload that
    /// would change the proc's signature is refused.
    ///
    /// # Errors
    ///
    /// As for [`Runtime::get_proc`], and [`Error::SignatureMismatch`] if the
    /// proc is registered with another signature.
    pub fn get_proc_with_signature(
        &self,
        module: &str,
        name: &str,
        signature_hash: u64,
        signature: &str,
    ) -> Result<Proc> {
        for (what, value) in [("module name", module), ("proc name", name)] {
            if value.is_empty() || value.len() > MAX_NAME {
                return Err(Error::InvalidArgument {
                    module: "<host>".into(),
                    reason: format!("{what} {value:?} is empty or longer than {MAX_NAME} bytes"),
                });
            }
        }
        let mut state = self.state()?;
        let module = state.procs.module_name(module).unwrap_or_else(|| Arc::from(module));
        let stub = state.proc_stub(&module, name, false)?;
        if signature_hash != 0 {
            let entry = state.procs.get(stub);
            if entry.state == ProcState::Bound && entry.signature_hash != 0 && entry.signature_hash != signature_hash {
                return Err(Error::SignatureMismatch {
                    module: entry.module.to_string(),
                    name: entry.name.to_string(),
                    caller: Caller::Host.to_string(),
                    expected: signature.to_owned(),
                    found: entry.signature.to_owned(),
                });
            }
            let binder = Binder { caller: Caller::Host, hash: signature_hash, signature: signature.into() };
            state.procs.add_binder(stub, binder);
        }
        let addr = state.publish(stub);
        Ok(Proc { addr, slot: state.table.slot_address(stub), index: stub })
    }

    /// The storage of global `name` of `module`.
    ///
    /// # Errors
    ///
    /// [`Error::UnknownGlobal`], or [`Error::Reentrant`] from a module init.
    pub fn get_global(&self, module: &str, name: &str) -> Result<GlobalRef> {
        let state = self.state()?;
        let entry = state
            .globals
            .get(module, name)
            .ok_or_else(|| Error::UnknownGlobal { module: module.to_owned(), name: name.to_owned() })?;
        Ok(GlobalRef { addr: entry.slot.as_ptr() as usize, layout: entry.layout.clone() })
    }

    /// The loaded modules, imports before their importers.
    pub fn modules(&self) -> Vec<ModuleInfo> {
        let Ok(state) = self.state() else { return Vec::new() };
        state.topo_order().into_iter().map(|i| state.modules[i].info(&state.procs, &state.globals)).collect()
    }

    /// A listing of every stub, for debugging: index, module, proc, target
    /// and (on x86-64) the decoded stub instruction.
    pub fn inspect(&self) -> Inspection {
        let Ok(state) = self.state() else {
            return Inspection::default();
        };
        let stubs: Vec<StubInfo> = (0..state.procs.len())
            .map(|stub| {
                let entry = state.procs.get(stub);
                let address = state.table.stub_address(entry.stub);
                let target = match state.table.target(entry.stub) {
                    Target::Function(t) => Some(t),
                    Target::Empty | Target::Unbound => None,
                };
                StubInfo {
                    index: entry.stub,
                    address,
                    slot: state.table.slot_address(entry.stub),
                    module: entry.module.to_string(),
                    name: entry.name.to_string(),
                    state: match entry.state {
                        ProcState::Pending => StubState::Pending,
                        ProcState::Bound => StubState::Bound,
                        ProcState::Removed => StubState::Removed,
                    },
                    signature: entry.signature.to_string(),
                    signature_hash: entry.signature_hash,
                    target,
                    instruction: arch::describe_stub(&state.table.code(entry.stub), address as u64),
                }
            })
            .collect();
        Inspection {
            region: state.table.range(),
            capacity: state.table.capacity(),
            in_use: state.table.in_use(),
            stubs,
        }
    }

    /// Counters describing what the runtime holds.
    pub fn stats(&self) -> Stats {
        let unloads = self.reclaim.unloads();
        let retired_pending = self.reclaim.pending();
        let threads = self.reclaim.thread_count();
        let Ok(state) = self.state() else {
            return Stats { unloads, retired_pending, threads, ..Stats::default() };
        };
        Stats {
            modules: state.modules.len(),
            stubs_in_use: state.table.in_use(),
            stub_capacity: state.table.capacity(),
            globals: state.globals.len(),
            kept_libraries: state.kept.len(),
            retired_pending,
            threads,
            unloads,
        }
    }

    /// The address range reserved for the stub table.
    pub fn stub_region(&self) -> std::ops::Range<usize> {
        self.state.lock().table.range()
    }

    /// The private directory holding copies of the loaded modules.
    pub fn private_dir(&self) -> PathBuf {
        self.state.lock().private.path().to_owned()
    }
}

/// The address of a proc's stub: valid for the life of the runtime, across
/// any number of reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    addr: usize,
    slot: usize,
    index: u32,
}

impl Proc {
    /// The stub's address.
    pub fn addr(self) -> *const c_void {
        self.addr as *const c_void
    }

    /// The stub's index in the table.
    pub fn index(self) -> u32 {
        self.index
    }

    /// The 8-byte slot holding the stub's current target. Loading it
    /// atomically gives the address of the proc's current code (or of the
    /// handler that reports an unbound call): what generated host bindings
    /// call, GOT-style. Valid for the life of the runtime.
    pub fn slot(self) -> *const std::sync::atomic::AtomicPtr<()> {
        self.slot as *const std::sync::atomic::AtomicPtr<()>
    }

    /// The stub as a typed function pointer.
    ///
    /// # Safety
    ///
    /// `F` must be an `extern "C" fn` pointer type whose signature is the
    /// proc's signature.
    ///
    /// # Panics
    ///
    /// If `F` is not pointer-sized.
    pub unsafe fn cast<F: Copy>(self) -> F {
        assert_eq!(size_of::<F>(), size_of::<usize>(), "F must be a function pointer type");
        // SAFETY: sizes match (checked); the caller guarantees `F` is a
        // function pointer type for this proc's signature.
        unsafe { std::mem::transmute_copy(&self.addr) }
    }
}

/// A global's runtime-owned storage.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalRef {
    addr: usize,
    layout: GlobalLayout,
}

impl GlobalRef {
    /// The storage, valid while the global stays registered.
    pub fn as_ptr<T>(&self) -> *mut T {
        self.addr as *mut T
    }

    /// Size, alignment and layout hash.
    pub fn layout(&self) -> &GlobalLayout {
        &self.layout
    }
}

/// A loaded module.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ModuleInfo {
    /// The module's name.
    pub name: String,
    /// The file it is loaded from (and watched at).
    pub path: PathBuf,
    /// The build id from its descriptor.
    pub build_id: String,
    /// The ABI minor version it was built against.
    pub abi_minor: u16,
    /// The modules it imports.
    pub imports: Vec<String>,
    /// Whether the host loaded it (rather than only another module).
    pub root: bool,
    /// Procs it has registered.
    pub procs: usize,
    /// Globals it has registered.
    pub globals: usize,
    /// The generation its current code was loaded in.
    pub generation: u64,
}

/// Where a reload is, as told to host callbacks ([`Runtime::on_reload`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReloadStage {
    /// Changed modules were found; nothing was loaded yet.
    Before,
    /// The new code is current.
    Committed,
    /// The reload failed; the old code and all state were kept.
    RolledBack,
}

/// What host callbacks receive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReloadEvent {
    /// Where the reload is.
    pub stage: ReloadStage,
    /// The generation after the reload if it committed, the current one
    /// otherwise.
    pub generation: u64,
}

/// Time spent in each phase of a reload.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReloadTimings {
    /// Checking files for changes.
    pub detect: Duration,
    /// Copying changed files into the private directory.
    pub copy: Duration,
    /// Checking and opening the copies.
    pub load: Duration,
    /// Running the new inits (registration).
    pub register: Duration,
    /// Committing: re-pointing stubs, swapping records.
    pub patch: Duration,
    /// Running before- and after-reload handlers.
    pub handlers: Duration,
    /// Closing replaced libraries.
    pub unload: Duration,
    /// The whole call.
    pub total: Duration,
}

impl fmt::Display for ReloadTimings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(
            f,
            "total {:.2} ms (detect {:.2}, copy {:.2}, load {:.2}, register {:.2}, patch {:.2}, handlers {:.2}, unload {:.2})",
            ms(self.total),
            ms(self.detect),
            ms(self.copy),
            ms(self.load),
            ms(self.register),
            ms(self.patch),
            ms(self.handlers),
            ms(self.unload)
        )
    }
}

/// What a committed reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReloadReport {
    /// The generation after the reload.
    pub generation: u64,
    /// Modules whose new build is now current.
    pub reloaded: Vec<String>,
    /// Modules loaded for the first time (new imports).
    pub loaded: Vec<String>,
    /// Modules unloaded because nothing imports them any more.
    pub unloaded: Vec<String>,
    /// Time per phase.
    pub timings: ReloadTimings,
}

impl fmt::Display for ReloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "nothing changed");
        }
        write!(f, "generation {}: reloaded [{}]", self.generation, self.reloaded.join(", "))?;
        if !self.loaded.is_empty() {
            write!(f, ", loaded [{}]", self.loaded.join(", "))?;
        }
        if !self.unloaded.is_empty() {
            write!(f, ", unloaded [{}]", self.unloaded.join(", "))?;
        }
        write!(f, " in {}", self.timings)
    }
}

impl ReloadReport {
    fn unchanged(generation: u64, timings: ReloadTimings) -> ReloadReport {
        ReloadReport { generation, timings, ..ReloadReport::default() }
    }

    /// Whether nothing was reloaded, loaded or unloaded.
    pub fn is_empty(&self) -> bool {
        self.reloaded.is_empty() && self.loaded.is_empty() && self.unloaded.is_empty()
    }
}

/// Counters from [`Runtime::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Loaded modules.
    pub modules: usize,
    /// Stubs handed out (bound, pending or removed).
    pub stubs_in_use: usize,
    /// The table's capacity.
    pub stub_capacity: usize,
    /// Live globals.
    pub globals: usize,
    /// Replaced libraries kept loaded under [`UnloadPolicy::Never`].
    pub kept_libraries: usize,
    /// Replaced libraries waiting for registered threads to pass a
    /// quiescent point.
    pub retired_pending: usize,
    /// Threads registered with [`Runtime::register_thread`].
    pub threads: usize,
    /// Libraries closed so far (replaced, unloaded or rolled back).
    pub unloads: u64,
}

/// How a stub is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StubState {
    /// Jumps to its module's current code.
    Bound,
    /// Asked for before its proc was registered; calls abort with a message.
    Pending,
    /// Its proc disappeared in a reload or unload; calls abort with a message.
    Removed,
}

/// One line of [`Runtime::inspect`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubInfo {
    /// Index in the table.
    pub index: u32,
    /// The stub's address.
    pub address: usize,
    /// The address of the 8-byte slot holding the stub's target.
    pub slot: usize,
    /// The module the proc belongs to.
    pub module: String,
    /// The proc's name.
    pub name: String,
    /// How it is bound.
    pub state: StubState,
    /// The signature it was last registered with, as text.
    pub signature: String,
    /// That signature's hash (0 when unknown).
    pub signature_hash: u64,
    /// The code it jumps to, when bound.
    pub target: Option<usize>,
    /// The stub's instruction(s), decoded.
    pub instruction: String,
}

/// The whole stub table, from [`Runtime::inspect`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Inspection {
    /// The reserved address range.
    pub region: std::ops::Range<usize>,
    /// Maximum number of stubs.
    pub capacity: usize,
    /// Stubs handed out.
    pub in_use: usize,
    /// One entry per stub, by index.
    pub stubs: Vec<StubInfo>,
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "stub table {:#x}..{:#x}: {} of {} stubs in use",
            self.region.start, self.region.end, self.in_use, self.capacity
        )?;
        for s in &self.stubs {
            let target = match (s.state, s.target) {
                (StubState::Bound, Some(t)) => format!("{t:#014x}"),
                (StubState::Pending, _) => "unbound (pending)".to_owned(),
                _ => "unbound (removed)".to_owned(),
            };
            writeln!(
                f,
                "{:>6}  {:#012x}  {:<32}  -> {:<18}  {}",
                s.index,
                s.address,
                format!("{}::{}", s.module, s.name),
                target,
                s.instruction
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<Runtime>();
        check::<Proc>();
        check::<GlobalRef>();
        check::<Error>();
    }

    #[test]
    fn host_get_proc_before_load_hands_out_a_pending_stub() {
        let rt = Runtime::with_config(Config::new().with_stub_base(0).with_stub_capacity(100)).unwrap();
        let p = rt.get_proc("later", "f").unwrap();
        assert_eq!(rt.get_proc("later", "f").unwrap(), p, "same stub every time");
        let listing = rt.inspect();
        assert_eq!(listing.stubs.len(), 1);
        assert_eq!(listing.stubs[0].state, StubState::Pending);
        assert_eq!(listing.stubs[0].address, p.addr() as usize);
        assert!(listing.to_string().contains("later::f"));
        assert!(rt.get_proc("", "f").is_err());
    }

    #[test]
    fn cycles_are_found_in_a_graph() {
        let a: [Arc<str>; 1] = [Arc::from("b")];
        let b: [Arc<str>; 1] = [Arc::from("c")];
        let c: [Arc<str>; 1] = [Arc::from("a")];
        let graph: HashMap<&str, &[Arc<str>]> = [("a", &a[..]), ("b", &b[..]), ("c", &c[..])].into_iter().collect();
        let err = find_cycle("a", &graph, &mut Vec::new(), &mut HashSet::new()).unwrap_err();
        match err {
            Error::ImportCycle { cycle } => assert_eq!(cycle, ["a", "b", "c", "a"]),
            other => panic!("{other}"),
        }
    }
}
