//! What a transaction checks before it commits: the module graph, the
//! signatures and procs callers are bound to, and the calling thread's
//! stack. Each failure says which new builds it is attributed to.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use super::graph::Graph;
use super::state::{ModuleRecord, State};
use super::stubs::Stubs;
use super::txn::{Staged, Txn};
use crate::error::Error;
use crate::os;
use crate::registry::{Binder, Caller, ProcState};

/// One reason a transaction failed, and whom it is attributed to.
pub(super) struct Failure {
    pub(super) error: Error,
    /// The modules, among those the transaction was asked to load, whose new
    /// builds caused it (empty when it is nobody's: the calling thread's
    /// stack, or a load of a file whose module is not known yet).
    pub(super) blame: Vec<Arc<str>>,
    /// Other modules it involved: a change of one of them may resolve it.
    pub(super) with: Vec<Arc<str>>,
}

impl Failure {
    /// A failure of no module in particular.
    pub(super) fn unattributed(error: Error) -> Failure {
        Failure { error, blame: Vec::new(), with: Vec::new() }
    }
}

/// The input module a staged module came with (itself, or the module that
/// imported it), by name.
pub(super) fn owners(staged: &[Staged]) -> HashMap<&str, Option<&Arc<str>>> {
    staged.iter().map(|s| (&*s.record.name, s.owner.as_ref())).collect()
}

impl State {
    /// The module graph as it would be after `staged` committed.
    pub(super) fn graph_after<'a>(&'a self, staged: &'a [Staged]) -> Graph<'a> {
        let loaded = self.modules.iter().map(|m| (&*m.name, m.imports.as_slice(), m.root));
        let staged = staged.iter().map(|s| (&*s.record.name, s.record.imports.as_slice(), s.record.root));
        Graph::new(loaded.chain(staged))
    }

    /// Refuses a module graph with a cycle, as it would be after `txn`.
    pub(super) fn check_graph(&self, txn: &Txn) -> Option<Failure> {
        let cycle = self.graph_after(&txn.staged).cycle(txn.staged.iter().map(|s| &*s.record.name))?;
        let owners = owners(&txn.staged);
        let on_cycle = |staged: bool| -> Vec<Arc<str>> {
            let mut names: Vec<Arc<str>> = cycle
                .iter()
                .filter(|n| owners.contains_key(n.as_str()) == staged)
                .map(|n| match owners.get(n.as_str()) {
                    Some(Some(owner)) => Arc::clone(owner),
                    _ => Arc::from(n.as_str()),
                })
                .collect();
            names.sort_unstable();
            names.dedup();
            names
        };
        let (blame, with) = (on_cycle(true), on_cycle(false));
        Some(Failure { error: Error::ImportCycle { cycle }, blame, with })
    }

    /// The loaded modules whose libraries committing `staged` would take
    /// away: those it replaces, and those nothing would need any more.
    pub(super) fn leaving(&self, staged: &[Staged]) -> Vec<&ModuleRecord> {
        let reachable = self.graph_after(staged).reachable();
        let replaced: HashSet<&str> = staged.iter().map(|s| &*s.record.name).collect();
        self.modules.iter().filter(|m| replaced.contains(&*m.name) || !reachable.contains(&*m.name)).collect()
    }
}

/// Who is bound to `stub` after `txn`: the recorded binders except those of
/// modules whose bindings go away (`departing`), plus the transaction's own.
fn binders_after<'a>(
    stubs: &'a Stubs,
    stub: u32,
    departing: &'a HashSet<&str>,
    new_binds: &'a HashMap<u32, Vec<&'a Binder>>,
) -> impl Iterator<Item = &'a Binder> {
    let kept = stubs
        .procs
        .binders(stub)
        .iter()
        .filter(move |b| !matches!(&b.caller, Caller::Module(m) if departing.contains(&**m)));
    kept.chain(new_binds.get(&stub).into_iter().flatten().copied())
}

/// Blame and context of a conflict between the proc `module` registers and
/// a `binder`: whichever of them the transaction loads is to blame.
fn conflict(
    owners: &HashMap<&str, Option<&Arc<str>>>,
    module: &Arc<str>,
    binder: &Caller,
) -> (Vec<Arc<str>>, Vec<Arc<str>>) {
    let mut parties = vec![Arc::clone(module)];
    if let Caller::Module(m) = binder {
        parties.push(Arc::clone(m));
    }
    let (mut blame, mut with) = (Vec::new(), Vec::new());
    for party in parties {
        match owners.get(&*party) {
            Some(owner) => blame.push(owner.map_or(party.clone(), Arc::clone)),
            None => with.push(party),
        }
    }
    (blame, with)
}

/// The transaction's new bindings, by stub.
fn new_binds(txn: &Txn) -> HashMap<u32, Vec<&Binder>> {
    let mut binds: HashMap<u32, Vec<&Binder>> = HashMap::new();
    for (stub, binder) in &txn.binds {
        binds.entry(*stub).or_default().push(binder);
    }
    binds
}

/// Refuses signature changes of procs in use: after `txn`, every caller
/// bound with a known signature must match the proc's signature. The
/// bindings of modules that `txn` replaces are replaced by theirs.
pub(super) fn check_signatures(stubs: &Stubs, txn: &Txn) -> Vec<Failure> {
    let replaced: HashSet<&str> = txn.staged.iter().map(|s| &*s.record.name).collect();
    // Only stubs someone is bound to can mismatch.
    let mut touched: Vec<u32> = stubs.procs.bound_stubs().chain(txn.binds.iter().map(|(s, _)| *s)).collect();
    touched.sort_unstable();
    touched.dedup();
    if touched.is_empty() {
        return Vec::new();
    }
    let new_binds = new_binds(txn);
    let owners = owners(&txn.staged);
    let mut registered: HashMap<u32, (u64, &str)> = HashMap::new();
    for staged in &txn.staged {
        for p in staged.procs.iter().filter(|p| touched.binary_search(&p.stub).is_ok()) {
            registered.insert(p.stub, stubs.procs.signature_of(p.signature));
        }
    }
    let mut failures = Vec::new();
    for stub in touched {
        let entry = stubs.procs.get(stub);
        let (hash, text) = match registered.get(&stub) {
            Some(&(hash, text)) => (hash, text),
            None if entry.state == ProcState::Bound && !replaced.contains(&**entry.module) => {
                (entry.signature_hash, entry.signature)
            }
            // Not registered (yet, or any more): nothing to compare with.
            None => continue,
        };
        if hash == 0 {
            continue;
        }
        let mut reported = HashSet::new();
        for b in binders_after(stubs, stub, &replaced, &new_binds) {
            if b.hash != 0 && b.hash != hash && reported.insert(b.caller.clone()) {
                let (blame, with) = conflict(&owners, entry.module, &b.caller);
                let error = Error::SignatureMismatch {
                    module: entry.module.to_string(),
                    name: entry.name.to_string(),
                    caller: b.caller.to_string(),
                    expected: b.signature.to_string(),
                    found: text.to_owned(),
                };
                failures.push(Failure { error, blame, with });
            }
        }
    }
    failures
}

/// Refuses to remove a proc a caller is bound to with its signature: the
/// procs of `leaving` modules that `txn` does not register again, and that
/// a caller staying after `txn` is bound to.
pub(super) fn check_removals(stubs: &Stubs, txn: &Txn, leaving: &[&ModuleRecord]) -> Vec<Failure> {
    let departing: HashSet<&str> = leaving.iter().map(|m| &*m.name).collect();
    let new_binds = new_binds(txn);
    let owners = owners(&txn.staged);
    let mut failures = Vec::new();
    for module in leaving {
        for stub in stubs.procs.module_stubs(&module.name) {
            if txn.registered.contains(stub) || stubs.procs.state(stub) != ProcState::Bound {
                continue;
            }
            let mut reported = HashSet::new();
            for b in binders_after(stubs, stub, &departing, &new_binds) {
                if b.hash != 0 && reported.insert(b.caller.clone()) {
                    let entry = stubs.procs.get(stub);
                    let (blame, with) = conflict(&owners, entry.module, &b.caller);
                    let error = Error::BoundProcRemoved {
                        module: entry.module.to_string(),
                        name: entry.name.to_string(),
                        binder: b.caller.to_string(),
                    };
                    failures.push(Failure { error, blame, with });
                }
            }
        }
    }
    failures
}

/// Refuses to take away a library the calling thread is running.
pub(super) fn check_stack<'a>(leaving: impl IntoIterator<Item = &'a ModuleRecord>) -> Result<(), Error> {
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
