//! Name-keyed records of procs (stub indices) and globals (runtime-owned slots).

use std::alloc::Layout;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{Error, GlobalLayout, Result};

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

/// One proc: its stub and what is known about it.
#[derive(Debug)]
pub(crate) struct ProcEntry {
    pub(crate) module: Arc<str>,
    pub(crate) name: Box<str>,
    pub(crate) stub: u32,
    pub(crate) state: ProcState,
    pub(crate) signature_hash: u64,
    pub(crate) signature: Box<str>,
}

impl ProcEntry {
    /// `module::name`, as the unbound handler prints it.
    pub(crate) fn label(&self) -> String {
        format!("{}::{}", self.module, self.name)
    }
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

/// Procs by `(module, name)` and by stub index.
#[derive(Default)]
pub(crate) struct ProcRegistry {
    by_name: HashMap<Arc<str>, HashMap<Box<str>, u32>>,
    by_stub: HashMap<u32, ProcEntry>,
    /// Callers bound with a known signature, for the few stubs that have them.
    binders: HashMap<u32, Vec<Binder>>,
}

impl ProcRegistry {
    pub(crate) fn lookup(&self, module: &str, name: &str) -> Option<u32> {
        self.by_name.get(module)?.get(name).copied()
    }

    pub(crate) fn get(&self, stub: u32) -> &ProcEntry {
        &self.by_stub[&stub]
    }

    pub(crate) fn get_mut(&mut self, stub: u32) -> &mut ProcEntry {
        self.by_stub.get_mut(&stub).expect("registered stub")
    }

    pub(crate) fn insert(&mut self, module: Arc<str>, name: &str, stub: u32) {
        self.by_name.entry(module.clone()).or_default().insert(name.into(), stub);
        self.by_stub.insert(
            stub,
            ProcEntry {
                module,
                name: name.into(),
                stub,
                state: ProcState::Pending,
                signature_hash: 0,
                signature: "".into(),
            },
        );
    }

    /// Forgets a proc entirely (rollback of an entry created by a failed
    /// transaction).
    pub(crate) fn remove(&mut self, stub: u32) {
        self.binders.remove(&stub);
        let Some(entry) = self.by_stub.remove(&stub) else { return };
        if let Some(names) = self.by_name.get_mut(&*entry.module) {
            names.remove(&*entry.name);
            if names.is_empty() {
                self.by_name.remove(&*entry.module);
            }
        }
    }

    /// The interned name of `module` if any proc of it is known.
    pub(crate) fn module_name(&self, module: &str) -> Option<Arc<str>> {
        self.by_name.get_key_value(module).map(|(k, _)| k.clone())
    }

    pub(crate) fn entries(&self) -> impl Iterator<Item = &ProcEntry> {
        self.by_stub.values()
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
