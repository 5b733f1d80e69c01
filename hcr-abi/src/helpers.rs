//! Rust-side helpers used by generated code: [`Global`], [`Migration`] and
//! [`ProcCell`]. They are not part of the C contract.

use core::cell::UnsafeCell;
use core::ffi::c_void;
use core::mem::MaybeUninit;
use core::ops::Deref;
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

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
    /// synchronisation; the value is initialised first if needed.
    ///
    /// The pointer is the storage's own (the runtime's slot, or the static's
    /// cell when the global runs standalone), not derived from a reference,
    /// so writing through it is sound for a `T` with interior mutability
    /// (atomics, `UnsafeCell`-based types) under that type's rules. For any
    /// other `T`, a write is sound only while no reference to the value
    /// (from [`Global::get`] or `Deref`, on any thread) is alive.
    pub fn as_ptr(&self) -> *mut T {
        let ptr = self.ptr.load(Ordering::Acquire);
        if !ptr.is_null() {
            return ptr;
        }
        let _ = self.standalone();
        // Acquire: `standalone` published the pointer (to `local`) before it
        // returned; this load sees it or a runtime slot stored since.
        self.ptr.load(Ordering::Acquire)
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
        self.register_with(name, layout_hash, layout, |desc, slot| {
            // SAFETY: forwarded from the caller.
            unsafe { api.register_global(desc, slot) }
        })
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
        self.register_with(name, layout_hash, layout, |desc, slot| {
            // SAFETY: forwarded from the caller.
            unsafe { api.register_global_migrating(desc, migrations, slot) }
        })
    }

    /// Describes `T` to `register` (one of the runtime's registration
    /// entries), then points the global at the storage it returned, writing
    /// the initial value if the storage is fresh. Whether it initialised.
    fn register_with(
        &self,
        name: &str,
        layout_hash: u64,
        layout: &str,
        register: impl FnOnce(&GlobalDesc, &mut GlobalSlot) -> Status,
    ) -> Result<bool, Status> {
        let desc = GlobalDesc {
            name: Str::new(name),
            size: size_of::<T>(),
            align: align_of::<T>(),
            layout_hash,
            layout: Str::new(layout),
        };
        let mut slot = GlobalSlot { ptr: core::ptr::null_mut(), initialize: 0 };
        register(&desc, &mut slot).ok()?;
        let ptr = slot.ptr.cast::<T>();
        if ptr.is_null() || !ptr.is_aligned() {
            return Err(Status::INTERNAL);
        }
        let fresh = slot.initialize == 1;
        if fresh {
            // SAFETY: the runtime handed us fresh storage of `T`'s size and
            // alignment (checked non-null and aligned above) to initialise.
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

/// What an unbound [`ProcCell`] calls: bindings used before the runtime (or
/// the importing module's init) bound them. It cannot know which proc was
/// meant; the message says what happened, and the process aborts (a panic
/// cannot unwind out of an `extern "C"` function).
extern "C" fn unbound_binding() -> ! {
    panic!(
        "hcr: a proc was called through bindings that are not bound yet (start the runtime and load the module first)"
    )
}

/// The slot every cell reads until it is bound: it holds [`unbound_binding`].
static UNBOUND_SLOT: AtomicPtr<()> = AtomicPtr::new(unbound_binding as *mut ());

/// A proc as generated bindings see it: one per proc they call.
///
/// It holds the proc's stub (its stable address, handed out as a function
/// pointer) and a pointer to the slot that holds the proc's current code.
/// Hosts bind cells through the runtime, which gives them the stub's own
/// slot: a call is then one load of the target and one indirect call, like a
/// call through a GOT entry. Modules bind the cells of their imports in their
/// init, where only the stub is known: a call then goes through the stub.
/// Before a cell is bound, calling through it aborts with a message.
pub struct ProcCell {
    stub: AtomicPtr<()>,
    slot: AtomicPtr<AtomicPtr<()>>,
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
            .field("stub", &self.stub.load(Ordering::Relaxed))
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
        ProcCell {
            stub: AtomicPtr::new(unbound_binding as *mut ()),
            slot: AtomicPtr::new(core::ptr::from_ref(&UNBOUND_SLOT).cast_mut()),
            module,
            name,
            signature_hash,
            signature,
        }
    }

    /// The address of the proc's current code: what a call jumps to.
    #[inline(always)]
    pub fn target(&self) -> *const () {
        let slot = self.slot.load(Ordering::Acquire);
        // SAFETY: `slot` is `UNBOUND_SLOT`, this cell's own `stub` field, or
        // a stub slot of the runtime that bound the cell; each lives as long
        // as calls through the cell are allowed.
        unsafe { (*slot).load(Ordering::Acquire) }
    }

    /// The proc's stub: its stable address, valid across reloads.
    #[inline(always)]
    pub fn stub(&self) -> *const () {
        self.stub.load(Ordering::Acquire)
    }

    /// Binds the cell to a stub and the slot holding that stub's target.
    ///
    /// # Safety
    ///
    /// `slot` must be the slot of the stub at `stub`, and stay valid for as
    /// long as anything calls through the cell.
    pub unsafe fn bind_slot(&'static self, stub: *const (), slot: *const AtomicPtr<()>) {
        self.stub.store(stub.cast_mut(), Ordering::Release);
        self.slot.store(slot.cast_mut(), Ordering::Release);
    }

    /// Binds the cell to a stub alone: calls go through the stub.
    pub fn bind_stub(&'static self, stub: *const ()) {
        self.stub.store(stub.cast_mut(), Ordering::Release);
        self.slot.store(core::ptr::from_ref(&self.stub).cast_mut(), Ordering::Release);
    }

    /// Whether the cell was bound.
    pub fn is_bound(&self) -> bool {
        self.stub.load(Ordering::Acquire) != unbound_binding as *mut ()
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
    pub unsafe fn bind(&'static self, api: &HostApi) -> Result<(), Status> {
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
        self.bind_stub(out.cast());
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
    fn as_ptr_initialises_and_is_the_storage_itself() {
        use core::cell::Cell;
        struct Shared(Cell<u32>);
        // SAFETY: test-only: accessed from one thread.
        unsafe impl Sync for Shared {}
        static CELL: Global<Shared> = Global::new(|| Shared(Cell::new(7)));
        let ptr = CELL.as_ptr();
        // SAFETY: the pointer is the global's initialised storage; `Shared`
        // has interior mutability and no reference to it is held across the
        // write.
        unsafe { (*ptr).0.set(8) };
        assert_eq!(CELL.0.get(), 8);
        assert_eq!(core::ptr::from_ref(CELL.get()), ptr.cast_const());
    }

    #[test]
    fn a_cell_bound_to_a_stub_reads_the_stub_and_one_bound_to_a_slot_reads_the_slot() {
        static STUB_ONLY: ProcCell = ProcCell::new("m", "f", 1, "extern \"C\" fn()");
        static WITH_SLOT: ProcCell = ProcCell::new("m", "g", 2, "extern \"C\" fn()");
        static SLOT: AtomicPtr<()> = AtomicPtr::new(0x2000 as *mut ());
        assert!(!STUB_ONLY.is_bound());
        assert_eq!(STUB_ONLY.target(), unbound_binding as *const ());
        STUB_ONLY.bind_stub(0x1000 as *const ());
        assert!(STUB_ONLY.is_bound());
        assert_eq!((STUB_ONLY.stub(), STUB_ONLY.target()), (0x1000 as *const (), 0x1000 as *const ()));
        // SAFETY: `SLOT` is a static.
        unsafe { WITH_SLOT.bind_slot(0x1000 as *const (), &SLOT) };
        assert_eq!(WITH_SLOT.target(), 0x2000 as *const ());
        SLOT.store(0x3000 as *mut (), Ordering::Release);
        assert_eq!(WITH_SLOT.target(), 0x3000 as *const (), "a re-pointed slot is seen at once");
        assert_eq!((WITH_SLOT.module(), WITH_SLOT.name(), WITH_SLOT.signature_hash()), ("m", "g", 2));
    }
}
