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

/// Procs by `(module, name)` and by stub index.
#[derive(Default)]
pub(crate) struct ProcRegistry {
    by_name: HashMap<Arc<str>, HashMap<Box<str>, u32>>,
    by_stub: HashMap<u32, ProcEntry>,
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
    fn new_zeroed(size: usize, align: usize) -> Option<GlobalBox> {
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

    /// Allocates a new zeroed global. The caller has checked it does not exist.
    pub(crate) fn allocate(&mut self, module: Arc<str>, name: &str, layout: GlobalLayout) -> Result<*mut u8> {
        let invalid = |reason: String| Error::InvalidArgument { module: module.to_string(), reason };
        if !layout.align.is_power_of_two() {
            return Err(invalid(format!("global `{name}` has alignment {}, not a power of two", layout.align)));
        }
        if layout.size > MAX_GLOBAL_SIZE || !layout.size.is_multiple_of(layout.align) {
            return Err(invalid(format!("global `{name}` has size {} with alignment {}", layout.size, layout.align)));
        }
        let slot = GlobalBox::new_zeroed(layout.size, layout.align)
            .ok_or_else(|| invalid(format!("cannot allocate {} bytes for global `{name}`", layout.size)))?;
        let ptr = slot.as_ptr();
        self.by_name.entry(module).or_default().insert(name.into(), GlobalEntry { slot, layout });
        Ok(ptr)
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
