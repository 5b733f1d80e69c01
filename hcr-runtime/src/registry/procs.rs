//! The proc registry: one record per stub, looked up by `(module, name)`.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::hash::RandomState;
use std::sync::Arc;

use super::arena::{FreshIndex, NameArena};
use super::signatures::Signatures;
use super::{Binder, Caller, ProcState, ProcView};
use crate::mapped_vec::MappedVec;

/// The procs of one module.
#[derive(Debug)]
struct ModuleProcs {
    name: Arc<str>,
    /// Arena offsets of its merged procs' names, sorted by name.
    sorted: MappedVec<u32>,
}

/// Every proc (one per stub), compactly: a registered stub costs its name's
/// bytes plus about 6 bytes here.
///
/// * Names live in a [`NameArena`], in stub order.
/// * Each module keeps the arena offsets of its procs' names sorted by name:
///   a lookup is a binary search. Names added since the last [`merge`]
///   (those of the running transaction) are found through a transient
///   [`FreshIndex`] instead.
/// * The module of a stub comes from runs of consecutive stubs (a module's
///   procs are created together).
/// * Signatures are interned ([`Signatures`]); each stub has a 16-bit (or
///   32-bit) id.
/// * Only stubs that are not bound have an entry for their state.
///
/// The large arrays are [`MappedVec`]s, so what a big transaction allocated
/// and freed goes back to the OS.
///
/// [`merge`]: ProcRegistry::merge
#[derive(Debug)]
pub(crate) struct ProcRegistry {
    modules: Vec<ModuleProcs>,
    module_ids: HashMap<Arc<str>, u32>,
    /// `(first stub, module id)`, by first stub.
    runs: Vec<(u32, u32)>,
    names: NameArena,
    signatures: Signatures,
    /// States of the stubs that are not bound.
    unbound: HashMap<u32, ProcState>,
    binders: HashMap<u32, Vec<Binder>>,
    /// Stubs `merged..len` are not in their module's sorted list yet.
    fresh: FreshIndex,
    merged: u32,
    hasher: RandomState,
    /// `(stub, arena offset)` of the last proc looked up: a new build of a
    /// module registers its procs in the order the last one did, so the next
    /// lookup is most often for the next stub.
    hint: Cell<Option<(u32, u32)>>,
}

impl Default for ProcRegistry {
    fn default() -> ProcRegistry {
        ProcRegistry {
            modules: Vec::new(),
            module_ids: HashMap::new(),
            runs: Vec::new(),
            names: NameArena::default(),
            signatures: Signatures::default(),
            unbound: HashMap::new(),
            binders: HashMap::new(),
            fresh: FreshIndex::default(),
            merged: 0,
            hasher: RandomState::new(),
            hint: Cell::new(None),
        }
    }
}

impl ProcRegistry {
    /// Stubs known.
    pub(crate) fn len(&self) -> u32 {
        self.names.len()
    }

    fn module_id_of(&self, stub: u32) -> u32 {
        let run = self.runs.partition_point(|&(start, _)| start <= stub) - 1;
        self.runs[run].1
    }

    /// The stub of `(module, name)`, if the registry has it.
    pub(crate) fn lookup(&self, module: &str, name: &str) -> Option<u32> {
        let &id = self.module_ids.get(module)?;
        let name = name.as_bytes();
        if let Some((stub, offset)) = self.hint.get()
            && stub + 1 < self.len()
        {
            // Names are unique within a module: if the next stub is this
            // module's and has this name, it is the one.
            let next = self.names.next(offset);
            if self.names.get(next) == name && self.module_id_of(stub + 1) == id {
                self.hint.set(Some((stub + 1, next)));
                return Some(stub + 1);
            }
        }
        let sorted = &self.modules[id as usize].sorted;
        let offset = match sorted.binary_search_by(|&o| self.names.get(o).cmp(name)) {
            Ok(i) => sorted[i],
            Err(_) => self.fresh.find(FreshIndex::hash(&self.hasher, id, name), id, name, &self.names)?,
        };
        let stub = self.names.index_at(offset);
        self.hint.set(Some((stub, offset)));
        Some(stub)
    }

    /// Records proc `(module, name)` for `stub`, which must be the next stub
    /// ([`ProcRegistry::len`]). Its state is [`ProcState::Bound`] until set:
    /// the transaction that creates it settles it.
    pub(crate) fn insert(&mut self, module: &Arc<str>, name: &str, stub: u32) {
        assert_eq!(stub, self.len(), "stubs are recorded in order");
        let id = match self.module_ids.get(module) {
            Some(&id) => id,
            None => {
                let id = self.modules.len() as u32;
                self.modules.push(ModuleProcs { name: module.clone(), sorted: MappedVec::new() });
                self.module_ids.insert(module.clone(), id);
                id
            }
        };
        if self.runs.last().is_none_or(|&(_, m)| m != id) {
            self.runs.push((stub, id));
        }
        let offset = self.names.push(name.as_bytes());
        self.signatures.push();
        self.fresh.insert(&self.hasher, &self.names, offset, id);
    }

    /// Moves the names added since the last merge into their modules' sorted
    /// lists. Called when a transaction commits.
    pub(crate) fn merge(&mut self) {
        let len = self.len();
        if self.merged == len {
            return;
        }
        self.fresh = FreshIndex::default();
        // (module id, offset) of every new name, by module.
        let mut fresh: MappedVec<(u32, u32)> = MappedVec::with_capacity((len - self.merged) as usize);
        let mut at = self.names.offset(self.merged);
        for stub in self.merged..len {
            fresh.push((self.module_id_of(stub), at));
            at = self.names.next(at);
        }
        fresh.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| self.names.get(a.1).cmp(self.names.get(b.1))));
        let mut start = 0;
        while start < fresh.len() {
            let id = fresh[start].0;
            let end = start + fresh[start..].partition_point(|&(m, _)| m == id);
            let added = &fresh[start..end];
            let old = std::mem::take(&mut self.modules[id as usize].sorted);
            let mut merged = MappedVec::with_capacity(old.len() + added.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < added.len() {
                if self.names.get(old[i]) <= self.names.get(added[j].1) {
                    merged.push(old[i]);
                    i += 1;
                } else {
                    merged.push(added[j].1);
                    j += 1;
                }
            }
            merged.extend_from_slice(&old[i..]);
            for &(_, o) in &added[j..] {
                merged.push(o);
            }
            self.modules[id as usize].sorted = merged;
            start = end;
        }
        self.merged = len;
    }

    /// Forgets every stub from `len` on (a rolled-back transaction's). They
    /// must not have been merged.
    pub(crate) fn truncate(&mut self, len: u32) {
        debug_assert!(len >= self.merged, "merged stubs are never truncated");
        let len = len.max(self.merged);
        if len >= self.len() {
            return;
        }
        self.names.truncate(len);
        self.signatures.truncate(len as usize);
        while self.runs.last().is_some_and(|&(start, _)| start >= len) {
            self.runs.pop();
        }
        self.unbound.retain(|&s, _| s < len);
        self.binders.retain(|&s, _| s < len);
        if self.hint.get().is_some_and(|(stub, _)| stub >= len) {
            self.hint.set(None);
        }
        // Re-index what is left unmerged.
        self.fresh = FreshIndex::default();
        if self.merged == len {
            return;
        }
        let mut at = self.names.offset(self.merged);
        for stub in self.merged..len {
            let id = self.module_id_of(stub);
            self.fresh.insert(&self.hasher, &self.names, at, id);
            at = self.names.next(at);
        }
    }

    /// Everything known about `stub`.
    pub(crate) fn get(&self, stub: u32) -> ProcView<'_> {
        let (hash, signature) = self.signature(stub);
        ProcView {
            stub,
            module: &self.modules[self.module_id_of(stub) as usize].name,
            name: std::str::from_utf8(self.names.get(self.names.offset(stub))).unwrap_or("<invalid name>"),
            state: self.state(stub),
            signature_hash: hash,
            signature,
        }
    }

    pub(crate) fn state(&self, stub: u32) -> ProcState {
        self.unbound.get(&stub).copied().unwrap_or(ProcState::Bound)
    }

    pub(crate) fn set_state(&mut self, stub: u32, state: ProcState) {
        if state == ProcState::Bound {
            self.unbound.remove(&stub);
        } else {
            self.unbound.insert(stub, state);
        }
    }

    /// Interns a signature; `0` for an unknown one.
    pub(crate) fn intern_signature(&mut self, hash: u64, text: &str) -> u32 {
        self.signatures.intern(hash, text)
    }

    /// An interned signature.
    pub(crate) fn signature_of(&self, id: u32) -> (u64, &str) {
        self.signatures.get(id)
    }

    /// The signature `stub` was last registered with.
    pub(crate) fn signature(&self, stub: u32) -> (u64, &str) {
        self.signatures.get(self.signatures.id_of(stub))
    }

    pub(crate) fn set_signature(&mut self, stub: u32, id: u32) {
        self.signatures.set(stub, id);
    }

    /// The merged procs of `module`, by name.
    pub(crate) fn module_stubs(&self, module: &str) -> impl Iterator<Item = u32> + '_ {
        let sorted: &[u32] = self.module_ids.get(module).map_or(&[], |&id| &self.modules[id as usize].sorted);
        sorted.iter().map(|&o| self.names.index_at(o))
    }

    /// The interned name of `module` if any proc of it is known.
    pub(crate) fn module_name(&self, module: &str) -> Option<Arc<str>> {
        self.module_ids.get_key_value(module).map(|(k, _)| k.clone())
    }

    /// The stubs some caller is bound to with a known signature.
    pub(crate) fn bound_stubs(&self) -> impl Iterator<Item = u32> + '_ {
        self.binders.keys().copied()
    }

    /// Callers bound to a stub with a known signature.
    pub(crate) fn binders(&self, stub: u32) -> &[Binder] {
        self.binders.get(&stub).map_or(&[], Vec::as_slice)
    }

    /// Records a caller's binding (once per caller and signature).
    pub(crate) fn add_binder(&mut self, stub: u32, binder: Binder) {
        let list = self.binders.entry(stub).or_default();
        if !list.contains(&binder) {
            list.push(binder);
        }
    }

    /// Forgets the bindings of modules that are replaced or unloaded.
    pub(crate) fn forget_binders_of(&mut self, modules: &HashSet<Arc<str>>) {
        self.binders.retain(|_, list| {
            list.retain(|b| !matches!(&b.caller, Caller::Module(m) if modules.contains(m)));
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str) -> Arc<str> {
        Arc::from(name)
    }

    #[test]
    fn lookups_find_fresh_and_merged_names() {
        let mut r = ProcRegistry::default();
        let (a, b) = (module("a"), module("b"));
        for (i, name) in ["zeta", "alpha", "mid", "x".repeat(300).as_str()].iter().enumerate() {
            r.insert(&a, name, i as u32);
        }
        r.insert(&b, "alpha", 4);
        assert_eq!(r.lookup("a", "alpha"), Some(1));
        assert_eq!(r.lookup("b", "alpha"), Some(4));
        r.merge();
        for stub in 5..40 {
            r.insert(&a, &format!("p{stub}"), stub);
        }
        assert_eq!(r.lookup("a", "mid"), Some(2), "merged");
        assert_eq!(r.lookup("a", &"x".repeat(300)), Some(3), "long names use a multi-byte length");
        assert_eq!(r.lookup("a", "p17"), Some(17), "fresh");
        assert_eq!(r.lookup("a", "nope"), None);
        assert_eq!(r.lookup("c", "alpha"), None);
        r.merge();
        assert_eq!(r.lookup("a", "p17"), Some(17));
        // In creation order (the hint), across a module boundary, and back.
        for stub in 5..40 {
            assert_eq!(r.lookup("a", &format!("p{stub}")), Some(stub));
        }
        assert_eq!(r.lookup("a", &"x".repeat(300)), Some(3));
        assert_eq!(r.lookup("a", "alpha"), Some(1), "the next stub's name, but not its module");
        assert_eq!(r.lookup("a", "mid"), Some(2));
        assert_eq!(r.lookup("a", "x"), None);
        let stubs: Vec<u32> = r.module_stubs("a").collect();
        assert_eq!(stubs.len(), 39);
        assert_eq!(r.get(stubs[0]).name, "alpha", "sorted by name");
        assert_eq!(r.get(33).label(), "a::p33");
        assert_eq!(r.get(4).module.as_ref(), "b");
    }

    #[test]
    fn truncation_forgets_a_transaction() {
        let mut r = ProcRegistry::default();
        let a = module("a");
        for stub in 0..20 {
            r.insert(&a, &format!("keep{stub}"), stub);
        }
        r.merge();
        let watermark = r.len();
        for stub in 20..50 {
            r.insert(&a, &format!("drop{stub}"), stub);
        }
        let sig = r.intern_signature(7, "extern \"C\" fn()");
        r.set_signature(25, sig);
        r.truncate(watermark);
        assert_eq!(r.len(), 20);
        assert_eq!(r.lookup("a", "drop25"), None);
        assert_eq!(r.lookup("a", "keep19"), Some(19));
        r.insert(&a, "again", 20);
        r.insert(&a, "more", 21);
        r.truncate(21);
        assert_eq!(r.lookup("a", "again"), Some(20), "still indexed after a partial truncation");
        assert_eq!(r.lookup("a", "more"), None);
        assert_eq!(r.get(20).name, "again");
        let mut empty = ProcRegistry::default();
        for stub in 0..3 {
            empty.insert(&a, "x", stub);
        }
        empty.truncate(0);
        assert_eq!((empty.len(), empty.lookup("a", "x")), (0, None), "back to nothing");
        assert_eq!(r.signature(20).0, 0);
    }
}
