//! Name-keyed records of procs (stub indices) and globals (runtime-owned slots).

use std::alloc::Layout;
use std::cell::Cell;
use std::collections::HashMap;

use std::hash::{BuildHasher, RandomState};
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{Error, GlobalLayout, Result};
use crate::mapped_vec::MappedVec;

/// Largest global the runtime allocates (1 GiB); anything bigger is refused
/// as an invalid argument rather than attempted.
const MAX_GLOBAL_SIZE: usize = 1 << 30;

/// How a proc's stub is bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProcState {
    /// Asked for (or registered in an uncommitted load), not bound yet.
    Pending,
    /// Bound to the owning module's current code.
    Bound,
    /// The module no longer has it; the stub reports calls and aborts.
    Removed,
}

/// Who called `get_proc` (or bound bindings) for a proc.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Caller {
    /// The host program; never reloaded.
    Host,
    /// A module; its bindings are replaced when it is reloaded.
    Module(Arc<str>),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::Host => write!(f, "the host"),
            Caller::Module(m) => write!(f, "module `{m}`"),
        }
    }
}

/// A caller bound to a proc with the signature it was compiled against.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Binder {
    pub(crate) caller: Caller,
    pub(crate) hash: u64,
    pub(crate) signature: Arc<str>,
}

/// One proc, as the registry can describe it.
#[derive(Debug)]
pub(crate) struct ProcView<'a> {
    pub(crate) stub: u32,
    pub(crate) module: &'a Arc<str>,
    pub(crate) name: &'a str,
    pub(crate) state: ProcState,
    pub(crate) signature_hash: u64,
    pub(crate) signature: &'a str,
}

impl ProcView<'_> {
    /// `module::name`, as the unbound handler prints it.
    pub(crate) fn label(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
}

/// How many stubs share one name checkpoint.
const CHECKPOINT: u32 = 16;

/// The procs of one module.
#[derive(Debug)]
struct ModuleProcs {
    name: Arc<str>,
    /// Arena offsets of its merged procs' names, sorted by name.
    sorted: MappedVec<u32>,
}

/// Signature ids per stub: 16 bits while there are few distinct signatures.
#[derive(Debug)]
enum SigIds {
    Narrow(MappedVec<u16>),
    Wide(MappedVec<u32>),
}

impl SigIds {
    fn get(&self, stub: u32) -> u32 {
        match self {
            SigIds::Narrow(v) => u32::from(v[stub as usize]),
            SigIds::Wide(v) => v[stub as usize],
        }
    }

    fn set(&mut self, stub: u32, id: u32) {
        if let SigIds::Narrow(v) = self
            && id > u32::from(u16::MAX)
        {
            let mut wide = MappedVec::with_capacity(v.len());
            for &i in v.iter() {
                wide.push(u32::from(i));
            }
            *self = SigIds::Wide(wide);
        }
        match self {
            SigIds::Narrow(v) => v[stub as usize] = id as u16,
            SigIds::Wide(v) => v[stub as usize] = id,
        }
    }

    fn push(&mut self) {
        match self {
            SigIds::Narrow(v) => v.push(0),
            SigIds::Wide(v) => v.push(0),
        }
    }

    fn truncate(&mut self, len: usize) {
        match self {
            SigIds::Narrow(v) => v.truncate(len),
            SigIds::Wide(v) => v.truncate(len),
        }
    }
}

/// Marks a free slot of [`FreshIndex`].
const VACANT: u32 = u32::MAX;

/// An open-addressing hash index of the names not merged yet: slots hold
/// `(arena offset, module id)`. Dropped (and its mapping returned) at every
/// merge.
#[derive(Debug, Default)]
struct FreshIndex {
    slots: MappedVec<(u32, u32)>,
    len: usize,
}

impl FreshIndex {
    fn slot_of(&self, hash: u64) -> usize {
        (hash as usize) & (self.slots.len() - 1)
    }

    /// The offset of `(module, name)`, if indexed.
    fn find(&self, hash: u64, module: u32, name: &[u8], arena: &[u8]) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let mut at = self.slot_of(hash);
        loop {
            let (offset, m) = self.slots[at];
            if offset == VACANT {
                return None;
            }
            if m == module && record(arena, offset).0 == name {
                return Some(offset);
            }
            at = (at + 1) & (self.slots.len() - 1);
        }
    }

    /// Indexes a name known not to be there; `hash_of` hashes an entry.
    fn insert(&mut self, hash: u64, entry: (u32, u32), hash_of: impl Fn((u32, u32)) -> u64) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            let old = std::mem::take(&mut self.slots);
            let size = (old.len() * 2).max(16);
            self.slots = MappedVec::with_capacity(size);
            self.slots.resize(size, (VACANT, 0));
            for &e in old.iter().filter(|e| e.0 != VACANT) {
                self.place(hash_of(e), e);
            }
        }
        self.place(hash, entry);
        self.len += 1;
    }

    fn place(&mut self, hash: u64, entry: (u32, u32)) {
        let mut at = self.slot_of(hash);
        while self.slots[at].0 != VACANT {
            at = (at + 1) & (self.slots.len() - 1);
        }
        self.slots[at] = entry;
    }
}

/// Every proc (one per stub), compactly: a registered stub costs its name's
/// bytes plus about 6 bytes here.
///
/// * Names live in one arena, in stub order, each as `[varint length][bytes]`,
///   with the arena offset of every 16th stub's name kept as a checkpoint.
/// * Each module keeps the arena offsets of its procs' names sorted by name:
///   a lookup is a binary search. Names added since the last [`merge`]
///   (those of the running transaction) are found through a transient hash
///   index instead.
/// * The module of a stub comes from runs of consecutive stubs (a module's
///   procs are created together).
/// * Signatures are interned; each stub has a 16-bit (or 32-bit) id.
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
    names: MappedVec<u8>,
    checkpoints: MappedVec<u32>,
    sig_ids: SigIds,
    /// Interned signatures; id 0 is "unknown".
    sigs: Vec<(u64, Arc<str>)>,
    sig_index: HashMap<u64, Vec<u32>>,
    /// States of the stubs that are not bound.
    unbound: HashMap<u32, ProcState>,
    binders: HashMap<u32, Vec<Binder>>,
    /// Stubs `merged..len` are not in their module's sorted list yet.
    fresh: FreshIndex,
    merged: u32,
    hasher: RandomState,
    len: u32,
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
            names: MappedVec::new(),
            checkpoints: MappedVec::new(),
            sig_ids: SigIds::Narrow(MappedVec::new()),
            sigs: vec![(0, Arc::from(""))],
            sig_index: HashMap::new(),
            unbound: HashMap::new(),
            binders: HashMap::new(),
            fresh: FreshIndex::default(),
            merged: 0,
            hasher: RandomState::new(),
            len: 0,
            hint: Cell::new(None),
        }
    }
}

/// Reads a varint-prefixed record at `offset`: (bytes, offset of the next).
fn record(arena: &[u8], offset: u32) -> (&[u8], u32) {
    let mut at = offset as usize;
    let mut len = 0usize;
    let mut shift = 0;
    loop {
        let b = arena[at];
        at += 1;
        len |= usize::from(b & 0x7F) << shift;
        if b & 0x80 == 0 {
            break;
        }
        shift += 7;
    }
    (&arena[at..at + len], (at + len) as u32)
}

fn push_record(arena: &mut MappedVec<u8>, bytes: &[u8]) {
    let mut len = bytes.len();
    loop {
        let b = (len & 0x7F) as u8;
        len >>= 7;
        if len == 0 {
            arena.push(b);
            break;
        }
        arena.push(b | 0x80);
    }
    arena.extend_from_slice(bytes);
}

impl ProcRegistry {
    /// Stubs known.
    pub(crate) fn len(&self) -> u32 {
        self.len
    }

    fn name_bytes(&self, offset: u32) -> &[u8] {
        record(&self.names, offset).0
    }

    /// The arena offset of `stub`'s name.
    fn offset(&self, stub: u32) -> u32 {
        let mut at = self.checkpoints[(stub / CHECKPOINT) as usize];
        for _ in 0..stub % CHECKPOINT {
            at = record(&self.names, at).1;
        }
        at
    }

    /// The stub whose name is at arena `offset`.
    fn stub_at(&self, offset: u32) -> u32 {
        let block = self.checkpoints.partition_point(|&c| c <= offset) - 1;
        let mut stub = block as u32 * CHECKPOINT;
        let mut at = self.checkpoints[block];
        while at != offset {
            at = record(&self.names, at).1;
            stub += 1;
        }
        stub
    }

    fn module_id_of(&self, stub: u32) -> u32 {
        let run = self.runs.partition_point(|&(start, _)| start <= stub) - 1;
        self.runs[run].1
    }

    fn fresh_hash(hasher: &RandomState, module: u32, name: &[u8]) -> u64 {
        hasher.hash_one((module, name))
    }

    /// The stub of `(module, name)`, if the registry has it.
    pub(crate) fn lookup(&self, module: &str, name: &str) -> Option<u32> {
        let &id = self.module_ids.get(module)?;
        let name = name.as_bytes();
        if let Some((stub, offset)) = self.hint.get()
            && stub + 1 < self.len
        {
            // Names are unique within a module: if the next stub is this
            // module's and has this name, it is the one.
            let next = record(&self.names, offset).1;
            if self.name_bytes(next) == name && self.module_id_of(stub + 1) == id {
                self.hint.set(Some((stub + 1, next)));
                return Some(stub + 1);
            }
        }
        let sorted = &self.modules[id as usize].sorted;
        let offset = match sorted.binary_search_by(|&o| self.name_bytes(o).cmp(name)) {
            Ok(i) => sorted[i],
            Err(_) => self.fresh.find(Self::fresh_hash(&self.hasher, id, name), id, name, &self.names)?,
        };
        let stub = self.stub_at(offset);
        self.hint.set(Some((stub, offset)));
        Some(stub)
    }

    /// Records proc `(module, name)` for `stub`, which must be the next stub
    /// ([`ProcRegistry::len`]). Its state is [`ProcState::Bound`] until set:
    /// the transaction that creates it settles it.
    pub(crate) fn insert(&mut self, module: &Arc<str>, name: &str, stub: u32) {
        assert_eq!(stub, self.len, "stubs are recorded in order");
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
        if stub.is_multiple_of(CHECKPOINT) {
            self.checkpoints.push(self.names.len() as u32);
        }
        let offset = self.names.len() as u32;
        push_record(&mut self.names, name.as_bytes());
        self.sig_ids.push();
        self.len += 1;
        let (names, hasher) = (&self.names, &self.hasher);
        let hash = Self::fresh_hash(hasher, id, name.as_bytes());
        self.fresh.insert(hash, (offset, id), |(o, m)| Self::fresh_hash(hasher, m, record(names, o).0));
    }

    /// Moves the names added since the last merge into their modules' sorted
    /// lists. Called when a transaction commits.
    pub(crate) fn merge(&mut self) {
        if self.merged == self.len {
            return;
        }
        self.fresh = FreshIndex::default();
        // (module id, offset) of every new name, by module.
        let mut fresh: MappedVec<(u32, u32)> = MappedVec::with_capacity((self.len - self.merged) as usize);
        let mut at = self.offset(self.merged);
        for stub in self.merged..self.len {
            fresh.push((self.module_id_of(stub), at));
            at = record(&self.names, at).1;
        }
        fresh.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| self.name_bytes(a.1).cmp(self.name_bytes(b.1))));
        let mut start = 0;
        while start < fresh.len() {
            let id = fresh[start].0;
            let end = start + fresh[start..].partition_point(|&(m, _)| m == id);
            let added = &fresh[start..end];
            let old = std::mem::take(&mut self.modules[id as usize].sorted);
            let mut merged = MappedVec::with_capacity(old.len() + added.len());
            let (mut i, mut j) = (0, 0);
            while i < old.len() && j < added.len() {
                if self.name_bytes(old[i]) <= self.name_bytes(added[j].1) {
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
        self.merged = self.len;
    }

    /// Forgets every stub from `len` on (a rolled-back transaction's). They
    /// must not have been merged.
    pub(crate) fn truncate(&mut self, len: u32) {
        debug_assert!(len >= self.merged, "merged stubs are never truncated");
        let len = len.max(self.merged);
        if len >= self.len {
            return;
        }
        let offset = self.offset(len);
        self.names.truncate(offset as usize);
        self.checkpoints.truncate(len.div_ceil(CHECKPOINT) as usize);
        self.sig_ids.truncate(len as usize);
        while self.runs.last().is_some_and(|&(start, _)| start >= len) {
            self.runs.pop();
        }
        self.unbound.retain(|&s, _| s < len);
        self.binders.retain(|&s, _| s < len);
        self.len = len;
        if self.hint.get().is_some_and(|(stub, _)| stub >= len) {
            self.hint.set(None);
        }
        // Re-index what is left unmerged.
        self.fresh = FreshIndex::default();
        if self.merged == self.len {
            return;
        }
        let mut at = self.offset(self.merged);
        for stub in self.merged..self.len {
            let id = self.module_id_of(stub);
            let (names, hasher) = (&self.names, &self.hasher);
            let hash = Self::fresh_hash(hasher, id, record(names, at).0);
            self.fresh.insert(hash, (at, id), |(o, m)| Self::fresh_hash(hasher, m, record(names, o).0));
            at = record(&self.names, at).1;
        }
    }

    /// Everything known about `stub`.
    pub(crate) fn get(&self, stub: u32) -> ProcView<'_> {
        let (hash, signature) = self.signature(stub);
        ProcView {
            stub,
            module: &self.modules[self.module_id_of(stub) as usize].name,
            name: std::str::from_utf8(self.name_bytes(self.offset(stub))).unwrap_or("<invalid name>"),
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
        if hash == 0 && text.is_empty() {
            return 0;
        }
        if let Some(ids) = self.sig_index.get(&hash)
            && let Some(&id) = ids.iter().find(|&&id| &*self.sigs[id as usize].1 == text)
        {
            return id;
        }
        let id = self.sigs.len() as u32;
        self.sigs.push((hash, Arc::from(text)));
        self.sig_index.entry(hash).or_default().push(id);
        id
    }

    /// An interned signature.
    pub(crate) fn signature_of(&self, id: u32) -> (u64, &str) {
        let (hash, text) = &self.sigs[id as usize];
        (*hash, text)
    }

    /// The signature `stub` was last registered with.
    pub(crate) fn signature(&self, stub: u32) -> (u64, &str) {
        self.signature_of(self.sig_ids.get(stub))
    }

    pub(crate) fn set_signature(&mut self, stub: u32, id: u32) {
        self.sig_ids.set(stub, id);
    }

    /// The merged procs of `module`, by name.
    pub(crate) fn module_stubs(&self, module: &str) -> impl Iterator<Item = u32> + '_ {
        let sorted: &[u32] = self.module_ids.get(module).map_or(&[], |&id| &self.modules[id as usize].sorted);
        sorted.iter().map(|&o| self.stub_at(o))
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
    pub(crate) fn forget_binders_of(&mut self, modules: &std::collections::HashSet<Arc<str>>) {
        self.binders.retain(|_, list| {
            list.retain(|b| !matches!(&b.caller, Caller::Module(m) if modules.contains(m)));
            !list.is_empty()
        });
    }
}

#[cfg(test)]
mod proc_tests {
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

    #[test]
    fn signatures_are_interned_and_ids_widen() {
        let mut r = ProcRegistry::default();
        let a = module("a");
        r.insert(&a, "f", 0);
        let id = r.intern_signature(1, "extern \"C\" fn()");
        assert_eq!(r.intern_signature(1, "extern \"C\" fn()"), id);
        assert_ne!(r.intern_signature(1, "extern \"C\" fn(u8)"), id, "same hash, other text");
        for i in 0..70_000u64 {
            r.intern_signature(i + 10, &i.to_string());
        }
        let wide = r.intern_signature(99_999_999, "wide");
        r.set_signature(0, wide);
        assert_eq!(r.signature(0), (99_999_999, "wide"));
    }
}

/// Zeroed, aligned heap memory for one global; freed on drop.
pub(crate) struct GlobalBox {
    ptr: NonNull<u8>,
    layout: Layout,
}

// SAFETY: a `GlobalBox` exclusively owns its allocation, like a `Box<[u8]>`;
// what modules do through the pointer is their contract, not this type's.
unsafe impl Send for GlobalBox {}
// SAFETY: the box itself is never mutated through `&self`.
unsafe impl Sync for GlobalBox {}

impl GlobalBox {
    pub(crate) fn new_zeroed(size: usize, align: usize) -> Option<GlobalBox> {
        // Zero-sized globals still get a unique, aligned address.
        let layout = Layout::from_size_align(size.max(1), align).ok()?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = NonNull::new(unsafe { std::alloc::alloc_zeroed(layout) })?;
        Some(GlobalBox { ptr, layout })
    }

    pub(crate) fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for GlobalBox {
    fn drop(&mut self) {
        // SAFETY: allocated in `new_zeroed` with this layout, freed once.
        unsafe { std::alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

/// One global's storage and layout.
pub(crate) struct GlobalEntry {
    pub(crate) slot: GlobalBox,
    pub(crate) layout: GlobalLayout,
}

/// Globals by `(module, name)`.
#[derive(Default)]
pub(crate) struct GlobalRegistry {
    by_name: HashMap<Arc<str>, HashMap<Box<str>, GlobalEntry>>,
}

impl GlobalRegistry {
    pub(crate) fn get(&self, module: &str, name: &str) -> Option<&GlobalEntry> {
        self.by_name.get(module)?.get(name)
    }

    /// Allocates zeroed storage for a global of `layout`, checking the
    /// layout. Nothing is recorded until [`GlobalRegistry::insert`].
    pub(crate) fn new_slot(module: &str, name: &str, layout: &GlobalLayout) -> Result<GlobalBox> {
        let invalid = |reason: String| Error::InvalidArgument { module: module.to_owned(), reason };
        if !layout.align.is_power_of_two() {
            return Err(invalid(format!("global `{name}` has alignment {}, not a power of two", layout.align)));
        }
        if layout.size > MAX_GLOBAL_SIZE || !layout.size.is_multiple_of(layout.align) {
            return Err(invalid(format!("global `{name}` has size {} with alignment {}", layout.size, layout.align)));
        }
        GlobalBox::new_zeroed(layout.size, layout.align)
            .ok_or_else(|| invalid(format!("cannot allocate {} bytes for global `{name}`", layout.size)))
    }

    /// Records a global, replacing (and freeing) any previous one of that
    /// name.
    pub(crate) fn insert(&mut self, module: Arc<str>, name: &str, entry: GlobalEntry) {
        self.by_name.entry(module).or_default().insert(name.into(), entry);
    }

    /// Frees a global.
    pub(crate) fn remove(&mut self, module: &str, name: &str) {
        if let Some(names) = self.by_name.get_mut(module) {
            names.remove(name);
            if names.is_empty() {
                self.by_name.remove(module);
            }
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }
}
