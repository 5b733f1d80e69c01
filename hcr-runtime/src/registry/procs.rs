//! The proc registry: one record per stub, looked up by `(module, name)`.

use std::collections::{HashMap, HashSet};
use std::hash::RandomState;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// `stub << 32 | arena offset` of the last proc looked up ([`NO_HINT`]
    /// for none): a new build of a module registers its procs in the order
    /// the last one did, so the next lookup is most often for the next stub.
    /// Atomic so that lookups can share the registry.
    hint: AtomicU64,
}

/// [`ProcRegistry::hint`] when there is none.
const NO_HINT: u64 = u64::MAX;

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
            hint: AtomicU64::new(NO_HINT),
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
        // Relaxed: the hint is one word holding a consistent pair, checked
        // against the names before it is trusted; any value a racing lookup
        // left is a valid pair.
        let hint = self.hint.load(Ordering::Relaxed);
        let (stub, offset) = ((hint >> 32) as u32, hint as u32);
        if hint != NO_HINT && stub + 1 < self.len() {
            // Names are unique within a module: if the next stub is this
            // module's and has this name, it is the one.
            let next = self.names.next(offset);
            if self.names.get(next) == name && self.module_id_of(stub + 1) == id {
                self.set_hint(stub + 1, next);
                return Some(stub + 1);
            }
        }
        let sorted = &self.modules[id as usize].sorted;
        let offset = match sorted.binary_search_by(|&o| self.names.get(o).cmp(name)) {
            Ok(i) => sorted[i],
            Err(_) => self.fresh.find(FreshIndex::hash(&self.hasher, id, name), id, name, &self.names)?,
        };
        let stub = self.names.index_at(offset);
        self.set_hint(stub, offset);
        Some(stub)
    }

    fn set_hint(&self, stub: u32, offset: u32) {
        // Relaxed: see `lookup`.
        self.hint.store(u64::from(stub) << 32 | u64::from(offset), Ordering::Relaxed);
    }

    /// Records proc `(module, name)` for `stub`, which must be the next stub
    /// ([`ProcRegistry::len`]). It is [`ProcState::Pending`] until a commit
    /// binds it, and keeps its name for good: the registry only grows.
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
        self.unbound.insert(stub, ProcState::Pending);
        self.fresh.insert(&self.hasher, &self.names, offset, id);
    }

    /// Moves the names added since the last merge into their modules' sorted
    /// lists. Called when a transaction ends and when a stub is created
    /// outside one.
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
}

/// The registry against a model made of plain maps: random inserts,
/// lookups, merges, rollbacks (which keep every name), state changes,
/// signatures, binders and per-module listings.
#[cfg(test)]
mod model_tests {
    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::ProcRegistry;
    use crate::registry::{Binder, Caller, ProcState};

    #[derive(Clone, Debug)]
    enum Op {
        /// Looks `(module, name)` up and, if it is not there, inserts it.
        Get(u8, u8),
        Lookup(u8, u8),
        Merge,
        /// What a rolled-back transaction does to the registry: names stay.
        Rollback,
        SetState(u16, u8),
        Sign(u16, u8, u8),
        Bind(u16, Option<u8>, u8),
        Forget(u8),
        List(u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..4u8, 0..40u8).prop_map(|(m, n)| Op::Get(m, n)),
            3 => (0..5u8, 0..45u8).prop_map(|(m, n)| Op::Lookup(m, n)),
            1 => Just(Op::Merge),
            1 => Just(Op::Rollback),
            1 => (any::<u16>(), 0..3u8).prop_map(|(s, k)| Op::SetState(s, k)),
            1 => (any::<u16>(), 0..4u8, 0..3u8).prop_map(|(s, h, t)| Op::Sign(s, h, t)),
            1 => (any::<u16>(), proptest::option::of(0..4u8), 0..3u8).prop_map(|(s, c, h)| Op::Bind(s, c, h)),
            1 => (0..4u8).prop_map(Op::Forget),
            1 => (0..5u8).prop_map(Op::List),
        ]
    }

    fn module(m: u8) -> Arc<str> {
        Arc::from(format!("module{m}").as_str())
    }

    /// Names of different lengths (some past 127 bytes), not in insertion
    /// order.
    fn name(n: u8) -> String {
        format!("{}{}", "p".repeat(usize::from(n % 7) * 23), 97 - n)
    }

    #[derive(Default)]
    struct Model {
        stubs: HashMap<(u8, u8), u32>,
        by_stub: Vec<(u8, u8)>,
        merged: usize,
        states: Vec<ProcState>,
        sigs: HashMap<(u64, String), u32>,
        sig_of: Vec<(u64, String)>,
        binders: BTreeMap<u32, Vec<Binder>>,
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn the_registry_behaves_like_its_model(ops in proptest::collection::vec(op(), 1..300)) {
            let mut r = ProcRegistry::default();
            let mut m = Model::default();
            for op in ops {
                match op {
                    Op::Get(mo, n) => {
                        let found = r.lookup(&module(mo), &name(n));
                        prop_assert_eq!(found, m.stubs.get(&(mo, n)).copied());
                        if found.is_none() {
                            let stub = r.len();
                            r.insert(&module(mo), &name(n), stub);
                            m.stubs.insert((mo, n), stub);
                            m.by_stub.push((mo, n));
                            m.states.push(ProcState::Pending);
                            m.sig_of.push((0, String::new()));
                        }
                    }
                    Op::Lookup(mo, n) => prop_assert_eq!(r.lookup(&module(mo), &name(n)), m.stubs.get(&(mo, n)).copied()),
                    Op::Merge | Op::Rollback => {
                        r.merge();
                        m.merged = m.by_stub.len();
                    }
                    Op::SetState(s, k) if !m.by_stub.is_empty() => {
                        let stub = u32::from(s) % r.len();
                        let state = [ProcState::Pending, ProcState::Bound, ProcState::Removed][usize::from(k)];
                        r.set_state(stub, state);
                        m.states[stub as usize] = state;
                    }
                    Op::Sign(s, h, t) if !m.by_stub.is_empty() => {
                        let stub = u32::from(s) % r.len();
                        let (hash, text) = (u64::from(h), format!("fn({t})"));
                        let id = r.intern_signature(hash, &text);
                        let known = *m.sigs.entry((hash, text.clone())).or_insert(id);
                        prop_assert_eq!(id, known, "one id per signature");
                        r.set_signature(stub, id);
                        m.sig_of[stub as usize] = (hash, text);
                    }
                    Op::Bind(s, caller, h) if !m.by_stub.is_empty() => {
                        let stub = u32::from(s) % r.len();
                        let caller = caller.map_or(Caller::Host, |c| Caller::Module(module(c)));
                        let binder = Binder { caller, hash: u64::from(h) + 1, signature: Arc::from("fn()") };
                        r.add_binder(stub, binder.clone());
                        let list = m.binders.entry(stub).or_default();
                        if !list.contains(&binder) {
                            list.push(binder);
                        }
                    }
                    Op::Forget(mo) => {
                        r.forget_binders_of(&HashSet::from([module(mo)]));
                        m.binders.retain(|_, list| {
                            list.retain(|b| b.caller != Caller::Module(module(mo)));
                            !list.is_empty()
                        });
                    }
                    Op::List(mo) => {
                        let listed: Vec<u32> = r.module_stubs(&module(mo)).collect();
                        let mut expected: Vec<(String, u32)> = m.by_stub[..m.merged]
                            .iter()
                            .enumerate()
                            .filter(|(_, (x, _))| *x == mo)
                            .map(|(stub, &(_, n))| (name(n), stub as u32))
                            .collect();
                        expected.sort();
                        prop_assert_eq!(listed, expected.into_iter().map(|(_, s)| s).collect::<Vec<_>>());
                    }
                    Op::SetState(..) | Op::Sign(..) | Op::Bind(..) => {}
                }
                prop_assert_eq!(r.len() as usize, m.by_stub.len());
            }
            for (stub, &(mo, n)) in m.by_stub.iter().enumerate() {
                let view = r.get(stub as u32);
                let (expected_module, expected_name) = (module(mo), name(n));
                prop_assert_eq!((view.module.as_ref(), view.name), (expected_module.as_ref(), expected_name.as_str()));
                prop_assert_eq!(view.state, m.states[stub]);
                let (hash, text) = &m.sig_of[stub];
                prop_assert_eq!((view.signature_hash, view.signature), (*hash, text.as_str()));
                prop_assert_eq!(r.binders(stub as u32), m.binders.get(&(stub as u32)).map_or(&[][..], Vec::as_slice));
            }
            let mut bound: Vec<u32> = r.bound_stubs().collect();
            bound.sort_unstable();
            prop_assert_eq!(bound, m.binders.keys().copied().collect::<Vec<_>>());
        }
    }
}
