//! Globals: runtime-owned, zeroed, aligned storage, by `(module, name)`.

use std::alloc::Layout;
use std::collections::HashMap;
use std::ptr::NonNull;
use std::sync::Arc;

use crate::error::{Error, GlobalLayout, Result};

/// Largest global the runtime allocates (1 GiB); anything bigger is refused
/// as an invalid argument rather than attempted.
const MAX_GLOBAL_SIZE: usize = 1 << 30;

/// Whether a global's storage, of layout `existing`, serves a registration
/// or a lookup asking for `requested`: the same size and alignment, and the
/// same layout hash unless the requested one is `0` (unknown). Anything else
/// needs a migration (for a registration) or is refused.
pub(crate) fn layout_fits(existing: &GlobalLayout, requested: &GlobalLayout) -> bool {
    existing.size == requested.size
        && existing.align == requested.align
        && (requested.hash == 0 || requested.hash == existing.hash)
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

    /// The addresses of the storage.
    pub(crate) fn range(&self) -> std::ops::Range<usize> {
        let start = self.ptr.as_ptr() as usize;
        start..start + self.layout.size()
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

    /// Records a global; hands back the storage of any previous one of
    /// that name (old code may still use it: the caller decides when to
    /// free it).
    #[must_use = "the old storage is freed when dropped"]
    pub(crate) fn insert(&mut self, module: Arc<str>, name: &str, entry: GlobalEntry) -> Option<GlobalBox> {
        self.by_name.entry(module).or_default().insert(name.into(), entry).map(|old| old.slot)
    }

    /// Forgets a global; hands back its storage (old code may still use
    /// it: the caller decides when to free it).
    #[must_use = "the storage is freed when dropped"]
    pub(crate) fn remove(&mut self, module: &str, name: &str) -> Option<GlobalBox> {
        let names = self.by_name.get_mut(module)?;
        let removed = names.remove(name);
        if names.is_empty() {
            self.by_name.remove(module);
        }
        removed.map(|entry| entry.slot)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_name.values().map(HashMap::len).sum()
    }
}
