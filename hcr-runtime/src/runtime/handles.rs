//! Handles the runtime gives out: proc stubs and global storage.

use std::ffi::c_void;

use crate::error::GlobalLayout;

/// The address of a proc's stub: valid for the life of the runtime, across
/// any number of reloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc {
    pub(super) addr: usize,
    pub(super) slot: usize,
    pub(super) index: u32,
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
    pub(super) addr: usize,
    pub(super) layout: GlobalLayout,
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
