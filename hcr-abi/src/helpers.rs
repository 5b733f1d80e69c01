//! Rust-side helpers used by generated code: [`Global`], [`Migration`] and
//! [`ProcCell`]. They are not part of the C contract.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicUsize, Ordering};

use crate::{GlobalDesc, GlobalSlot, HostApi, ProcImport, Status, Str};

const UNINIT: u8 = 0;
const RUNNING: u8 = 1;
const READY: u8 = 2;

/// A module's reloadable global: a handle on storage owned by the runtime.
///
/// Declare one as `static NAME: Global<T> = Global::new(|| initial_value);`.
/// When the module is loaded by the hcr runtime, the generated init registers
/// it: the first build to register `NAME` writes the initial value, and every
/// later build of the module sees the same storage with the value it has.
///
/// Outside the runtime (a static build, or the module's own unit tests) the
/// global lives in the static itself and is initialised on first use.
///
/// Access is through `Deref`, so the value is shared: use atomics, locks or
/// cells for mutation. The runtime never runs a global's destructor.
pub struct Global<T> {
    ptr: AtomicPtr<T>,
    init: fn() -> T,
    state: AtomicU8,
    local: UnsafeCell<MaybeUninit<T>>,
}

// SAFETY: a `Global<T>` hands out `&T` to any thread and may initialise the
// value on whichever thread comes first, exactly like a `OnceLock<T>`.
unsafe impl<T: Send + Sync> Sync for Global<T> {}
// SAFETY: as above; moving the handle moves at most an owned `T`.
unsafe impl<T: Send> Send for Global<T> {}

impl<T> Global<T> {
    /// A global whose first registration (or first standalone use) stores
    /// `init()`.
    pub const fn new(init: fn() -> T) -> Global<T> {
        Global {
            ptr: AtomicPtr::new(core::ptr::null_mut()),
            init,
            state: AtomicU8::new(UNINIT),
            local: UnsafeCell::new(MaybeUninit::uninit()),
        }
    }

    /// The value.
    #[inline]
    pub fn get(&self) -> &T {
        let ptr = self.ptr.load(Ordering::Acquire);
        if ptr.is_null() {
            return self.standalone();
        }
        // SAFETY: `ptr` is either a runtime slot registered for this global
        // (valid, aligned and initialised for as long as the module is
        // loaded) or our own initialised `local` storage.
        unsafe { &*ptr }
    }

    /// A raw pointer to the value, for code that manages its own
    /// synchronisation.
    pub fn as_ptr(&self) -> *mut T {
        core::ptr::from_ref(self.get()).cast_mut()
    }

    /// Initialises the in-static storage the first time the global is used
    /// without a runtime.
    #[cold]
    fn standalone(&self) -> &T {
        loop {
            match self.state.compare_exchange(UNINIT, RUNNING, Ordering::Acquire, Ordering::Acquire) {
                Ok(_) => {
                    // Reset to UNINIT if `init` panics, so that others retry.
                    struct Reset<'a>(&'a AtomicU8);
                    impl Drop for Reset<'_> {
                        fn drop(&mut self) {
                            self.0.store(UNINIT, Ordering::Release);
                        }
                    }
                    let reset = Reset(&self.state);
                    let value = (self.init)();
                    let local = self.local.get().cast::<T>();
                    // SAFETY: we won the race to RUNNING, so no one else
                    // reads or writes `local` until we publish READY.
                    unsafe { local.write(value) };
                    core::mem::forget(reset);
                    let _ =
                        self.ptr.compare_exchange(core::ptr::null_mut(), local, Ordering::AcqRel, Ordering::Acquire);
                    self.state.store(READY, Ordering::Release);
                }
                Err(RUNNING) => core::hint::spin_loop(),
                Err(_) => {}
            }
            let ptr = self.ptr.load(Ordering::Acquire);
            if !ptr.is_null() && self.state.load(Ordering::Acquire) != RUNNING {
                // SAFETY: see `get`.
                return unsafe { &*ptr };
            }
        }
    }

    /// Registers the global with the runtime and points it at the runtime's
    /// storage, writing the initial value if this is the first registration.
    /// Returns whether it initialised. Called by generated init code.
    ///
    /// # Safety
    ///
    /// `api` must be the table passed to the running init, and `layout_hash`
    /// must describe `T` (generated code computes it from `T`'s definition).
    ///
    /// # Errors
    ///
    /// The status of a refused registration.
    pub unsafe fn register(&self, api: &HostApi, name: &str, layout_hash: u64, layout: &str) -> Result<bool, Status> {
        let desc = GlobalDesc {
            name: Str::new(name),
            size: size_of::<T>(),
            align: align_of::<T>(),
            layout_hash,
            layout: Str::new(layout),
        };
        let mut slot = GlobalSlot { ptr: core::ptr::null_mut(), initialize: 0 };
        // SAFETY: forwarded from the caller.
        unsafe { api.register_global(&desc, &mut slot) }.ok()?;
        let ptr = slot.ptr.cast::<T>();
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(Status::INTERNAL);
        }
        let fresh = slot.initialize == 1;
        if fresh {
            // SAFETY: the runtime handed us fresh storage of `T`'s size and
            // alignment to initialise.
            unsafe { ptr.write((self.init)()) };
        }
        self.ptr.store(ptr, Ordering::Release);
        Ok(fresh)
    }

    /// Like [`Global::register`], offering migrations from older layouts.
    /// Called by generated init code.
    ///
    /// # Safety
    ///
    /// As for [`Global::register`]; every migration must be a
    /// [`Migration`] into this global whose `from_layout_hash` describes its
    /// old type.
    ///
    /// # Errors
    ///
    /// The status of a refused registration.
    pub unsafe fn register_migrating(
        &self,
        api: &HostApi,
        name: &str,
        layout_hash: u64,
        layout: &str,
        migrations: &[crate::GlobalMigration],
    ) -> Result<bool, Status> {
        let desc = GlobalDesc {
            name: Str::new(name),
            size: size_of::<T>(),
            align: align_of::<T>(),
            layout_hash,
            layout: Str::new(layout),
        };
        let mut slot = GlobalSlot { ptr: core::ptr::null_mut(), initialize: 0 };
        // SAFETY: forwarded from the caller.
        unsafe { api.register_global_migrating(&desc, migrations, &mut slot) }.ok()?;
        let ptr = slot.ptr.cast::<T>();
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(Status::INTERNAL);
        }
        let fresh = slot.initialize == 1;
        if fresh {
            // SAFETY: fresh storage of `T`'s size and alignment to initialise.
            unsafe { ptr.write((self.init)()) };
        }
        self.ptr.store(ptr, Ordering::Release);
        Ok(fresh)
    }
}

/// How a [`Global`] of type `New` is carried over from a build where it had
/// type `Old`: declare one next to the global, keeping the old type's
/// definition (under any name) in the module:
///
/// ```ignore
/// struct WorldV1 { x: f32, y: f32 }           // the old layout
/// struct World { x: f32, y: f32, z: f32 }     // the new one
/// static WORLD: Global<Mutex<World>> = Global::new(|| Mutex::new(World::default()));
/// static WORLD_FROM_V1: Migration<Mutex<WorldV1>, Mutex<World>> =
///     Migration::new(&WORLD, |old| {
///         let old = old.lock().unwrap();
///         Mutex::new(World { x: old.x, y: old.y, z: 0.0 })
///     });
/// ```
///
/// When a reload finds the global with `Old`'s layout, the runtime stores
/// `convert(&old)` in new storage and switches the global to it when the
/// reload commits. The old value is left as it was (so that a rolled-back
/// reload keeps it) and is freed without being dropped.
pub struct Migration<Old, New: 'static> {
    global: &'static Global<New>,
    convert: fn(&Old) -> New,
}

impl<Old, New> Migration<Old, New> {
    /// A migration into `global`.
    pub const fn new(global: &'static Global<New>, convert: fn(&Old) -> New) -> Self {
        Migration { global, convert }
    }

    /// The global it migrates into.
    pub fn global(&self) -> &'static Global<New> {
        self.global
    }

    /// Size of the old value.
    pub const fn old_size(&self) -> usize {
        size_of::<Old>()
    }

    /// Alignment of the old value.
    pub const fn old_align(&self) -> usize {
        align_of::<Old>()
    }

    /// Runs the conversion on raw storage. Called by generated code.
    ///
    /// # Safety
    ///
    /// `old` must point at a valid `Old`, and `new` at storage for a `New`.
    pub unsafe fn run(&self, old: *const c_void, new: *mut c_void) {
        // SAFETY: guaranteed by the caller.
        let value = (self.convert)(unsafe { &*old.cast::<Old>() });
        // SAFETY: guaranteed by the caller.
        unsafe { new.cast::<New>().write(value) };
    }
}

impl<Old, New> core::fmt::Debug for Migration<Old, New> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Migration").finish_non_exhaustive()
    }
}

impl<T> Deref for Global<T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        self.get()
    }
}

/// A cached stub address, used by generated bindings: one per proc they call.
///
/// Hosts bind cells through the runtime; modules bind the cells of their
/// imports in their init. After that a call is one load and one indirect
/// call through the stub, with no lock and no lookup.
pub struct ProcCell {
    addr: AtomicUsize,
    module: &'static str,
    name: &'static str,
    signature_hash: u64,
    signature: &'static str,
}

impl core::fmt::Debug for ProcCell {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("ProcCell")
            .field("module", &self.module)
            .field("name", &self.name)
            .field("addr", &(self.addr.load(Ordering::Relaxed) as *const c_void))
            .finish()
    }
}

impl<T> core::fmt::Debug for Global<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Global").field("ptr", &self.ptr.load(Ordering::Relaxed)).finish_non_exhaustive()
    }
}

impl ProcCell {
    /// An unbound cell for proc `name` of `module`.
    pub const fn new(module: &'static str, name: &'static str, signature_hash: u64, signature: &'static str) -> Self {
        ProcCell { addr: AtomicUsize::new(0), module, name, signature_hash, signature }
    }

    /// The stub address.
    ///
    /// # Panics
    ///
    /// If the cell was never bound: the bindings were used before the
    /// runtime loaded the module (or before the module's init ran).
    #[inline(always)]
    pub fn get(&self) -> usize {
        let addr = self.addr.load(Ordering::Acquire);
        if addr == 0 {
            self.unbound();
        }
        addr
    }

    #[cold]
    #[inline(never)]
    fn unbound(&self) -> ! {
        panic!(
            "hcr: {}::{} was called through bindings that are not bound yet (start the runtime and load the module first)",
            self.module, self.name
        )
    }

    /// Stores the stub address.
    pub fn set(&self, addr: usize) {
        self.addr.store(addr, Ordering::Release);
    }

    /// Whether the cell holds an address.
    pub fn is_bound(&self) -> bool {
        self.addr.load(Ordering::Acquire) != 0
    }

    /// The module that registers the proc.
    pub fn module(&self) -> &'static str {
        self.module
    }

    /// The proc's name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The signature hash the caller was compiled against.
    pub fn signature_hash(&self) -> u64 {
        self.signature_hash
    }

    /// The signature the caller was compiled against, as text.
    pub fn signature(&self) -> &'static str {
        self.signature
    }

    /// Binds the cell from a module's init, through the runtime's table.
    ///
    /// # Safety
    ///
    /// `api` must be the table passed to the running init.
    ///
    /// # Errors
    ///
    /// The status of a refused lookup.
    pub unsafe fn bind(&self, api: &HostApi) -> Result<(), Status> {
        let import = ProcImport {
            module: Str::new(self.module),
            name: Str::new(self.name),
            signature_hash: self.signature_hash,
            signature: Str::new(self.signature),
        };
        let mut out: *const c_void = core::ptr::null();
        // SAFETY: forwarded from the caller.
        unsafe { api.get_proc(&import, &mut out) }.ok()?;
        if out.is_null() {
            return Err(Status::INTERNAL);
        }
        self.set(out as usize);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::sync::atomic::AtomicU64;

    static COUNTER: Global<AtomicU64> = Global::new(|| AtomicU64::new(41));

    #[test]
    fn a_global_works_standalone() {
        assert_eq!(COUNTER.fetch_add(1, Ordering::Relaxed), 41);
        assert_eq!(COUNTER.load(Ordering::Relaxed), 42);
        assert_eq!(COUNTER.as_ptr(), COUNTER.as_ptr(), "one storage");
    }

    #[test]
    #[should_panic(expected = "hcr: m::f was called through bindings that are not bound yet")]
    fn an_unbound_cell_panics_with_its_name() {
        static CELL: ProcCell = ProcCell::new("m", "f", 1, "extern \"C\" fn()");
        CELL.get();
    }

    #[test]
    fn a_bound_cell_returns_its_address() {
        let cell = ProcCell::new("m", "f", 1, "extern \"C\" fn()");
        assert!(!cell.is_bound());
        cell.set(0x1000);
        assert_eq!(cell.get(), 0x1000);
        assert_eq!((cell.module(), cell.name(), cell.signature_hash()), ("m", "f", 1));
    }
}
