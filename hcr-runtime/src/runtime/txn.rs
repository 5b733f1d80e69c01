//! The transaction shared by loads and reloads: stage (open every new
//! library, then run the inits), check, then commit or roll back.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hcr_abi::Phase;

use super::checks::{self, Failure, check_stack};
use super::handlers::Handler;
use super::session::Session;
use super::state::{ModuleRecord, Registration, State};
use crate::error::{Error, GlobalLayout};
use crate::loader::{ModuleLibrary, PrivateCopy};
use crate::mapped_vec::MappedVec;
use crate::registry::{Binder, Caller, GlobalEntry, ProcState};
use crate::{api, arch, os};

/// A proc registered by a module in an uncommitted transaction.
#[derive(Clone, Copy, Debug)]
pub(super) struct StagedProc {
    pub(super) stub: u32,
    pub(super) addr: usize,
    /// Interned signature id.
    pub(super) signature: u32,
}

/// A set of stub indices, one bit each.
#[derive(Default)]
pub(super) struct StubSet(MappedVec<u64>);

impl StubSet {
    /// Adds `stub`; false if it was there already.
    pub(super) fn insert(&mut self, stub: u32) -> bool {
        let (word, bit) = ((stub / 64) as usize, 1u64 << (stub % 64));
        if word >= self.0.len() {
            self.0.resize((word + 1).max(self.0.len() * 2), 0);
        }
        let fresh = self.0[word] & bit == 0;
        self.0[word] |= bit;
        fresh
    }

    pub(super) fn contains(&self, stub: u32) -> bool {
        self.0.get((stub / 64) as usize).is_some_and(|w| w & (1u64 << (stub % 64)) != 0)
    }
}

/// A module opened by an uncommitted transaction: its record-to-be, plus
/// what only the transaction needs.
pub(super) struct Staged {
    pub(super) record: ModuleRecord,
    /// The input it came with: itself, or the module that imported it
    /// (`None` for a load, whose module is not known before it is opened).
    pub(super) owner: Option<Arc<str>>,
    /// Opening it (or an import it needed) failed: its init does not run.
    pub(super) broken: bool,
    pub(super) procs: MappedVec<StagedProc>,
    /// The globals it registered, the storage each was given and the
    /// layout it asked for.
    pub(super) global_slots: Vec<(Box<str>, usize, GlobalLayout)>,
    pub(super) messages: Vec<String>,
    pub(super) errors: Vec<Error>,
}

/// Everything a load or reload did that is not committed yet.
pub(super) struct Txn {
    pub(super) staged: Vec<Staged>,
    /// Stubs registered by the staged modules.
    pub(super) registered: StubSet,
    pub(super) created_globals: Vec<(Arc<str>, Box<str>)>,
    /// Bindings made by the staged inits (checked, then recorded, at commit).
    pub(super) binds: Vec<(u32, Binder)>,
    /// Globals migrated to a new layout: new storage, installed at commit.
    pub(super) migrated: Vec<(Arc<str>, Box<str>, GlobalEntry)>,
    pub(super) times: TxnTimes,
}

impl Txn {
    pub(super) fn new() -> Txn {
        Txn {
            staged: Vec::new(),
            registered: StubSet::default(),
            created_globals: Vec::new(),
            binds: Vec::new(),
            migrated: Vec::new(),
            times: TxnTimes::default(),
        }
    }
}

/// Time a transaction spent, by phase.
#[derive(Clone, Copy, Default)]
pub(super) struct TxnTimes {
    /// Copying imports into the private directory.
    pub(super) copy: Duration,
    /// Checking and opening libraries.
    pub(super) load: Duration,
    /// Running inits.
    pub(super) init: Duration,
    /// Committing.
    pub(super) commit: Duration,
}

/// How a module enters a transaction.
#[derive(Clone, PartialEq, Eq)]
pub(super) enum Role {
    /// Loaded by the host.
    Root,
    /// Imported by another module.
    Import,
    /// A new build of the loaded module `expected`.
    Replace { root: bool, expected: Arc<str> },
}

/// A file a transaction loads: its private copy, the file the user knows,
/// and why it is loaded.
pub(super) struct Input {
    pub(super) copy: PrivateCopy,
    pub(super) source: PathBuf,
    pub(super) role: Role,
}

impl Input {
    /// The module the input is known as before it is opened.
    fn owner(&self) -> Option<Arc<str>> {
        match &self.role {
            Role::Replace { expected, .. } => Some(expected.clone()),
            Role::Root | Role::Import => None,
        }
    }
}

/// What a commit changed.
#[derive(Default)]
pub(super) struct Committed {
    pub(super) reloaded: Vec<String>,
    pub(super) loaded: Vec<String>,
    pub(super) unloaded: Vec<String>,
    pub(super) reverted: Vec<String>,
    pub(super) retired: Vec<ModuleLibrary>,
    /// The first-load handlers of the modules loaded, imports first.
    pub(super) first_load: Vec<Handler>,
}

/// What a commit does with the builds it replaces.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Replace {
    /// A reload: the replaced build is retired, or kept as the previous one
    /// with [`Config::keep_previous_builds`](crate::Config::keep_previous_builds).
    Reload,
    /// A revert: the staged record is the previous build; the replaced one
    /// is retired.
    Revert,
}

impl State {
    /// Runs one transaction: opens `inputs` (and the imports they need),
    /// checks the module graph, runs the inits, checks signatures, removed
    /// procs and the calling thread's stack, then commits (as `generation`)
    /// or rolls back. On failure nothing changed (except that stubs the
    /// attempt created stay, pending), and every failure found is returned.
    pub(super) fn transact(
        &mut self,
        inputs: Vec<Input>,
        generation: u64,
    ) -> (std::result::Result<Committed, Vec<Failure>>, TxnTimes) {
        let mut txn = Txn::new();
        let mut failures = Vec::new();
        for input in inputs {
            let owner = input.owner();
            let Input { copy, source, role } = input;
            if let Err(errors) = self.open(&mut txn, copy, source, role, owner.clone()) {
                let blame: Vec<Arc<str>> = owner.into_iter().collect();
                failures.extend(errors.into_iter().map(|error| Failure {
                    error,
                    blame: blame.clone(),
                    with: Vec::new(),
                }));
            }
        }
        match self.check_graph(&txn) {
            None => failures.extend(self.init_all(&mut txn)),
            Some(cycle) => failures.push(cycle),
        }
        if failures.is_empty() {
            let leaving = self.leaving(&txn.staged);
            let stubs = self.stubs.read();
            failures.extend(checks::check_signatures(&stubs, &txn));
            failures.extend(checks::check_removals(&stubs, &txn, &leaving));
            drop(stubs);
            if failures.is_empty()
                && let Err(error) = check_stack(leaving)
            {
                failures.push(Failure::unattributed(error));
            }
        }
        let mut times = txn.times;
        if failures.is_empty() {
            let started = Instant::now();
            let committed = self.commit(txn, generation, Replace::Reload);
            times.commit = started.elapsed();
            (Ok(committed), times)
        } else {
            self.rollback(txn);
            (Err(failures), times)
        }
    }

    /// Opens a private copy and, depth first, the imports it needs that are
    /// neither loaded nor staged. Nothing of the module runs yet.
    fn open(
        &mut self,
        txn: &mut Txn,
        copy: PrivateCopy,
        source: PathBuf,
        role: Role,
        owner: Option<Arc<str>>,
    ) -> std::result::Result<(), Vec<Error>> {
        let stamp = copy.stamp;
        let started = Instant::now();
        let opened = ModuleLibrary::open(copy, &source);
        txn.times.load += started.elapsed();
        let (library, descriptor) = opened.map_err(|e| vec![e])?;
        let name = descriptor.name.as_str();
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
                let existing = match self.module_index(name) {
                    Some(index) => Some(self.modules[index].source.clone()),
                    None => txn.staged.iter().find(|s| &*s.record.name == name).map(|s| s.record.source.clone()),
                };
                if let Some(existing) = existing {
                    return Err(vec![Error::DuplicateModule { name: name.to_owned(), existing, path: source }]);
                }
            }
        }
        let name: Arc<str> = Arc::from(name);
        let imports: Vec<Arc<str>> = descriptor.imports.iter().map(|i| Arc::from(i.as_str())).collect();
        let owner = owner.unwrap_or_else(|| name.clone());
        txn.staged.push(Staged {
            owner: Some(owner.clone()),
            record: ModuleRecord {
                name: name.clone(),
                source: source.clone(),
                stamp,
                failed: None,
                failed_with: Vec::new(),
                library,
                init: descriptor.init,
                build_id: descriptor.build_id,
                abi_minor: descriptor.abi_minor,
                imports: imports.clone(),
                root: match role {
                    Role::Root => true,
                    Role::Import => false,
                    Role::Replace { root, .. } => root,
                },
                globals: Vec::new(),
                handlers: Vec::new(),
                generation: 0,
                registration: None,
                previous: None,
            },
            broken: false,
            procs: MappedVec::new(),
            global_slots: Vec::new(),
            messages: Vec::new(),
            errors: Vec::new(),
        });
        let index = txn.staged.len() - 1;
        for import in &imports {
            if self.module_index(import).is_some() || txn.staged.iter().any(|s| s.record.name == *import) {
                continue;
            }
            let opened = self.resolve_import(&name, &source, import).map_err(|e| vec![e]).and_then(|path| {
                let started = Instant::now();
                let copy = self.private.copy_in(&path).map_err(|e| vec![e]);
                txn.times.copy += started.elapsed();
                self.open(txn, copy?, path, Role::Import, Some(owner.clone()))
            });
            if let Err(errors) = opened {
                txn.staged[index].broken = true;
                return Err(errors);
            }
        }
        Ok(())
    }

    /// Puts the staged modules in dependency order, then runs the init of
    /// every one that opened, imports first.
    fn init_all(&mut self, txn: &mut Txn) -> Vec<Failure> {
        let order: Vec<usize> = {
            let graph = self.graph_after(&txn.staged);
            let names = graph.ordered_names();
            names.iter().filter_map(|n| txn.staged.iter().position(|s| &*s.record.name == *n)).collect()
        };
        let mut slots: Vec<Option<Staged>> = std::mem::take(&mut txn.staged).into_iter().map(Some).collect();
        txn.staged = order.into_iter().filter_map(|i| slots[i].take()).collect();
        let mut failures = Vec::new();
        for index in 0..txn.staged.len() {
            if txn.staged[index].broken {
                continue;
            }
            let started = Instant::now();
            let outcome = self.run_init(txn, index);
            txn.times.init += started.elapsed();
            if let Err(e) = outcome {
                let staged = &txn.staged[index];
                let blame: Vec<Arc<str>> = staged.owner.iter().cloned().collect();
                for error in e {
                    // What the init may have depended on: the modules the
                    // error names, and the module's imports.
                    let mut with: Vec<Arc<str>> = staged.record.imports.clone();
                    with.extend(error.modules_named().into_iter().map(Arc::from));
                    with.retain(|m| *m != staged.record.name);
                    failures.push(Failure { error, blame: blame.clone(), with });
                }
            }
        }
        failures
    }

    fn run_init(&mut self, txn: &mut Txn, index: usize) -> std::result::Result<(), Vec<Error>> {
        let init = txn.staged[index].record.init;
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
            module: staged.record.name.to_string(),
            path: staged.record.source.clone(),
            message,
            cause: None,
        }])
    }

    /// Makes `txn` current: patch stubs, swap module records, retire old
    /// libraries (or keep each replaced one as its module's previous build),
    /// unload modules nothing needs any more. Cannot fail.
    pub(super) fn commit(&mut self, txn: Txn, generation: u64, replace: Replace) -> Committed {
        let mut out = Committed::default();
        if arch::WEAKLY_ORDERED {
            // Everything the inits wrote (globals above all) must be visible
            // to any thread that reaches new code through a patched stub.
            os::process_barrier();
        }
        let keep = self.config.keep_previous_builds;
        let Txn { staged, binds, migrated, registered, .. } = txn;
        let replaced: HashSet<Arc<str>> = staged.iter().map(|s| s.record.name.clone()).collect();
        let stubs = self.stubs.clone();
        let mut stubs = stubs.write();
        stubs.procs.forget_binders_of(&replaced);
        let mut binds_of: HashMap<Arc<str>, Vec<(u32, Binder)>> = HashMap::new();
        for (stub, binder) in binds {
            if keep
                && replace == Replace::Reload
                && let Caller::Module(module) = &binder.caller
            {
                binds_of.entry(module.clone()).or_default().push((stub, binder.clone()));
            }
            stubs.procs.add_binder(stub, binder);
        }
        for (module, name, entry) in migrated {
            self.globals.insert(module, &name, entry);
        }
        for staged in staged {
            for p in &staged.procs {
                stubs.procs.set_signature(p.stub, p.signature);
                stubs.procs.set_state(p.stub, ProcState::Bound);
                stubs.table.bind(p.stub, p.addr);
            }
            let mut record = staged.record;
            record.generation = generation;
            if keep && replace == Replace::Reload {
                record.registration = Some(Registration {
                    procs: staged.procs.iter().copied().collect(),
                    binds: binds_of.remove(&record.name).unwrap_or_default(),
                    globals: staged.global_slots,
                });
            }
            match self.module_index(&record.name) {
                Some(index) => {
                    let mut old = std::mem::replace(&mut self.modules[index], record);
                    stubs.remove_procs_of(&old.name, |stub| registered.contains(stub));
                    let kept: HashSet<&str> = self.modules[index].globals.iter().map(|g| &**g).collect();
                    for global in old.globals.iter().filter(|g| !kept.contains(&***g)) {
                        self.globals.remove(&old.name, global);
                    }
                    if let Some(older) = old.previous.take() {
                        out.retired.push(older.library);
                    }
                    match replace {
                        Replace::Reload => out.reloaded.push(old.name.to_string()),
                        Replace::Revert => out.reverted.push(old.name.to_string()),
                    }
                    if keep && replace == Replace::Reload {
                        self.modules[index].previous = Some(Box::new(old));
                    } else {
                        out.retired.push(old.library);
                    }
                }
                None => {
                    out.loaded.push(record.name.to_string());
                    out.first_load.extend(record.handlers.iter().copied().filter(|h| h.phase == Phase::FIRST_LOAD));
                    self.modules.push(record);
                }
            }
        }
        stubs.procs.merge();
        drop(stubs);
        self.services.panics.forget(out.reloaded.iter().chain(&out.reverted));
        self.collect_unreachable(&mut out);
        self.sync_watch();
        out
    }

    /// Unloads every module that is neither a root nor imported by one,
    /// dependents before their imports.
    pub(super) fn collect_unreachable(&mut self, out: &mut Committed) {
        let doomed: Vec<Arc<str>> = {
            let graph = self.graph();
            let reachable = graph.reachable();
            let order = graph.ordered_names();
            order.into_iter().rev().filter(|n| !reachable.contains(n)).map(Arc::from).collect()
        };
        if doomed.is_empty() {
            return;
        }
        let stubs = self.stubs.clone();
        let mut stubs = stubs.write();
        stubs.procs.forget_binders_of(&doomed.iter().cloned().collect());
        for name in doomed {
            let index = self.module_index(&name).expect("module is loaded");
            let record = self.modules.remove(index);
            stubs.remove_procs_of(&record.name, |_| false);
            for global in &record.globals {
                self.globals.remove(&record.name, global);
            }
            out.unloaded.push(record.name.to_string());
            let mut record = record;
            if let Some(previous) = record.previous.take() {
                out.retired.push(previous.library);
            }
            out.retired.push(record.library);
        }
    }

    /// Undoes what `txn` did. The stubs it created stay, pending, with their
    /// names: a later registration of the same proc gets the same stub, and
    /// an address a failed init was given never leads to another proc.
    fn rollback(&mut self, txn: Txn) {
        self.stubs.write().procs.merge();
        for (module, name) in &txn.created_globals {
            self.globals.remove(module, name);
        }
        for staged in txn.staged.into_iter().rev() {
            staged.record.library.close();
        }
    }
}
