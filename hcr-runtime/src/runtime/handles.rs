//! Handles the runtime gives out: proc stubs and global storage, borrowed
//! from the runtime so that safe code cannot keep them past its end.

use std::ffi::c_void;
use std::fmt;
use std::marker::PhantomData;
use std::sync::atomic::AtomicPtr;

use super::Runtime;
use crate::error::GlobalLayout;

/// A proc's stub: an address that always jumps to the proc's current code,
/// across any number of reloads, for as long as the runtime lives (`'rt`).
///
/// Make it callable with [`Proc::typed`] (or, for a raw function pointer
/// that outlives the borrow, [`Proc::cast`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Proc<'rt> {
    addr: usize,
    slot: usize,
    index: u32,
    runtime: PhantomData<&'rt Runtime>,
}

impl<'rt> Proc<'rt> {
    pub(super) fn new(addr: usize, slot: usize, index: u32) -> Proc<'rt> {
        Proc { addr, slot, index, runtime: PhantomData }
    }

    /// The stub's address, for callback tables and foreign code. It is valid
    /// while the runtime lives, which the raw pointer does not track: do not
    /// call through it after the runtime is dropped.
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
    /// call, GOT-style. Valid while the runtime lives, like
    /// [`Proc::addr`].
    pub fn slot(self) -> *const AtomicPtr<()> {
        self.slot as *const AtomicPtr<()>
    }

    /// The stub as a function pointer of type `F`, usable (safely) while the
    /// runtime is borrowed.
    ///
    /// ```no_run
    /// # fn main() -> Result<(), hcr_runtime::Error> {
    /// let runtime = hcr_runtime::Runtime::new()?;
    /// runtime.load("target/debug/libgame.so")?;
    /// // SAFETY: `game::update` is an `extern "C" fn(f32)`.
    /// let update = unsafe { runtime.get_proc("game", "update")?.typed::<extern "C" fn(f32)>() };
    /// update(1.0 / 60.0);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Safety
    ///
    /// `F` must be a function pointer type (`fn`, `extern "C" fn`, ...)
    /// whose signature is the proc's.
    ///
    /// # Panics
    ///
    /// If `F` is not pointer-sized.
    pub unsafe fn typed<F: Copy>(self) -> Stub<'rt, F> {
        // SAFETY: forwarded from the caller.
        let f = unsafe { self.cast::<F>() };
        Stub { f, proc: self }
    }

    /// The stub as a function pointer of type `F`, with no lifetime.
    ///
    /// # Safety
    ///
    /// `F` must be a function pointer type whose signature is the proc's,
    /// and the pointer must not be called after the runtime is dropped.
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

/// A proc's stub as a function of type `F`, valid while the runtime is
/// borrowed (like `libloading::Symbol`). Call it through `Deref`:
/// `stub(args)`, or take the pointer with [`Stub::get`].
#[derive(Clone, Copy)]
pub struct Stub<'rt, F> {
    f: F,
    proc: Proc<'rt>,
}

impl<'rt, F: Copy> Stub<'rt, F> {
    /// The function pointer. It stays valid as long as the runtime does; the
    /// borrow checker only tracks that through the `Stub`.
    pub fn get(&self) -> F {
        self.f
    }

    /// The untyped stub.
    pub fn proc(&self) -> Proc<'rt> {
        self.proc
    }
}

impl<F> std::ops::Deref for Stub<'_, F> {
    type Target = F;
    fn deref(&self) -> &F {
        &self.f
    }
}

impl<F> fmt::Debug for Stub<'_, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Stub").field("proc", &self.proc).field("type", &std::any::type_name::<F>()).finish()
    }
}

/// A global's runtime-owned storage, borrowed from the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalRef<'rt> {
    addr: usize,
    layout: GlobalLayout,
    runtime: PhantomData<&'rt Runtime>,
}

impl GlobalRef<'_> {
    pub(super) fn new(addr: usize, layout: GlobalLayout) -> Self {
        GlobalRef { addr, layout, runtime: PhantomData }
    }

    /// The storage. It is valid while the global stays registered (not
    /// after its module stops registering it, is unloaded, or migrates it to
    /// another layout) and the runtime lives; dereferencing it is up to the
    /// caller.
    pub fn as_ptr<T>(&self) -> *mut T {
        self.addr as *mut T
    }

    /// Size, alignment and layout hash.
    pub fn layout(&self) -> &GlobalLayout {
        &self.layout
    }
}
