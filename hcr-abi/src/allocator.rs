//! [`HostAllocator`]: a module's global allocator, forwarding to the host's.

use core::alloc::{GlobalAlloc, Layout};
use core::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use crate::{Services, Status};

/// A global allocator that allocates from the host's allocator once the
/// runtime's [`Services`] table is installed, and from `F` before that.
///
/// Every module has its own copy of the standard library and so, by default,
/// its own global allocator. Values that change hands between a module and
/// its host (a `Vec` returned by a reloadable function, a `Box` stored in a
/// global) must be freed by the allocator that allocated them, and may
/// outlive the module's library. A module's generated init therefore installs
/// the runtime's [`Services`] in its `HostAllocator`, and from then on every
/// allocation of the module is one of the host's.
///
/// With the feature `global-allocator`, this crate declares
/// `HostAllocator<std::alloc::System>` as the `#[global_allocator]`: a
/// module crate enables the feature, and its generated init installs the
/// table. Because a host that depends on module crates (to name their types)
/// links them, the host's global allocator is then this one too, with
/// nothing installed: it allocates from `System` directly. Such a host
/// cannot declare another `#[global_allocator]` (rustc reports the conflict).
///
/// # The edges
///
/// * **Before init.** Until the table is installed, allocations come from
///   `F`. A block from `F` must never reach the host's allocator, so
///   [`HostAllocator::install`] refuses once `F` has allocated anything (a
///   module's static constructor, for example) and the module keeps `F`;
///   the generated init then fails with a message. A Rust `cdylib` runs no
///   Rust code before its init unless a crate adds a constructor.
/// * **The module's threads.** After init every allocation, on any thread,
///   goes to the host's allocator, which is thread-safe; the table lives as
///   long as the runtime.
/// * **After unload.** Memory the module allocated belongs to the host's
///   allocator and may be freed after the library is gone.
///
/// # Thread-safety
///
/// Installing publishes the table with a release store that every
/// allocation reads with an acquire load. The check that `F` was never used
/// is exact when no other thread of the module allocates during the install,
/// which holds for the generated init (it runs before any of the module's
/// code).
pub struct HostAllocator<F> {
    fallback: F,
    services: AtomicPtr<Services>,
    /// The host's own allocator, chosen with [`global_allocator!`]
    /// (a pointer to a `'static` reference to it).
    ///
    /// [`global_allocator!`]: crate::global_allocator
    target: AtomicPtr<HostTarget>,
    fallback_used: AtomicBool,
}

/// The allocator a host chose with [`global_allocator!`](crate::global_allocator).
pub type HostTarget = &'static (dyn GlobalAlloc + Sync);

impl<F: core::fmt::Debug> core::fmt::Debug for HostAllocator<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("HostAllocator")
            .field("fallback", &self.fallback)
            .field("forwarding", &self.is_forwarding())
            .field("host_target", &!self.target.load(Ordering::Relaxed).is_null())
            .finish()
    }
}

impl<F> HostAllocator<F> {
    /// An allocator that uses `fallback` until a table is installed.
    pub const fn new(fallback: F) -> HostAllocator<F> {
        HostAllocator {
            fallback,
            services: AtomicPtr::new(core::ptr::null_mut()),
            target: AtomicPtr::new(core::ptr::null_mut()),
            fallback_used: AtomicBool::new(false),
        }
    }

    /// Makes `target` the allocator of every later allocation, in a host:
    /// what [`global_allocator!`](crate::global_allocator) does from a
    /// constructor that runs before `main`.
    ///
    /// # Errors
    ///
    /// [`Status::FAILED`] when something was allocated before (from the
    /// fallback: such a block could later reach `target`), when a target is
    /// set already, or when a [`Services`] table is installed (a module
    /// allocates through its host and must not choose an allocator).
    pub fn set_target(&self, target: &'static HostTarget) -> Result<(), Status> {
        // Relaxed: a monotonic flag; a constructor runs before any other
        // thread of the program exists.
        if self.fallback_used.load(Ordering::Relaxed) || !self.services.load(Ordering::Relaxed).is_null() {
            return Err(Status::FAILED);
        }
        // Release: publishes the target (a static) to the acquire loads of
        // later allocations. Relaxed on failure: nothing is read through it.
        self.target
            .compare_exchange(
                core::ptr::null_mut(),
                core::ptr::from_ref(target).cast_mut(),
                Ordering::Release,
                Ordering::Relaxed,
            )
            .map(|_| ())
            .map_err(|_| Status::FAILED)
    }

    /// The host's target, or null.
    #[inline(always)]
    fn target(&self) -> *const HostTarget {
        // Acquire: pairs with the release in `set_target`.
        self.target.load(Ordering::Acquire)
    }

    /// Forwards every later allocation to `services`.
    ///
    /// Installing the table that is already installed does nothing.
    ///
    /// # Safety
    ///
    /// `services` must point at a runtime's [`Services`] table that stays
    /// valid, with entries callable from any thread, for as long as anything
    /// allocates through this allocator (for a module: until it is unloaded).
    ///
    /// # Errors
    ///
    /// * [`Status::INVALID_ARGUMENT`]: `services` is null.
    /// * [`Status::UNSUPPORTED`]: the table has no allocator entries.
    /// * [`Status::FAILED`]: the fallback allocated before (its blocks could
    ///   later be freed by the host's allocator), another table is
    ///   installed, or a host target was set
    ///   ([`global_allocator!`](crate::global_allocator), which modules must
    ///   not use).
    pub unsafe fn install(&self, services: *const Services) -> Result<(), Status> {
        if services.is_null() {
            return Err(Status::INVALID_ARGUMENT);
        }
        if !self.target().is_null() {
            return Err(Status::FAILED);
        }
        // SAFETY: the caller guarantees a valid table; `has_allocator` reads
        // its `size`, which every version of the table has.
        if !unsafe { (*services).has_allocator() } {
            return Err(Status::UNSUPPORTED);
        }
        // Relaxed: the flag only ever goes from false to true; the ordering
        // argument for the install is in the type's documentation.
        if self.fallback_used.load(Ordering::Relaxed) {
            return Err(Status::FAILED);
        }
        // Release: publishes the table (written by the runtime before it
        // handed it over) to the acquire loads of later allocations. Relaxed
        // on failure: then nothing is read through the value.
        match self.services.compare_exchange(
            core::ptr::null_mut(),
            services.cast_mut(),
            Ordering::Release,
            Ordering::Relaxed,
        ) {
            Ok(_) => Ok(()),
            Err(existing) if existing == services.cast_mut() => Ok(()),
            Err(_) => Err(Status::FAILED),
        }
    }

    /// Whether allocations go to the host's allocator.
    pub fn is_forwarding(&self) -> bool {
        // Relaxed: an answer, not a way to reach the table.
        !self.services.load(Ordering::Relaxed).is_null()
    }

    /// The installed table, or null.
    #[inline(always)]
    fn services(&self) -> *const Services {
        // Acquire: pairs with the release in `install`, so the table's
        // entries are visible to this thread.
        self.services.load(Ordering::Acquire)
    }

    #[inline(always)]
    fn note_fallback(&self) {
        // Relaxed: a monotonic flag read by `install`; checking before
        // storing keeps the cache line shared in a host that never installs.
        if !self.fallback_used.load(Ordering::Relaxed) {
            self.fallback_used.store(true, Ordering::Relaxed);
        }
    }
}

// SAFETY: every method delegates to exactly one of: the installed table's
// entries (which implement the host's `GlobalAlloc` with the same
// contract), the host's target (a `GlobalAlloc`), or `F`, with the same
// arguments. Which one is fixed for every block: a table is only installed
// while neither `F` nor a target was used (`install`), and a target only
// set while neither `F` nor a table was (`set_target`); both are never
// removed. So every block passed to `dealloc`/`realloc` came from the
// allocator it is given back to.
unsafe impl<F: GlobalAlloc> GlobalAlloc for HostAllocator<F> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.route(true) {
            // SAFETY: an installed table's entries implement the host's
            // `GlobalAlloc` (checked by `install`); forwarded from the caller.
            Route::Table(s) => unsafe { (s.alloc)(s.ctx, layout.size(), layout.align()) },
            // SAFETY: forwarded from the caller.
            Route::Target(target) => unsafe { target.alloc(layout) },
            // SAFETY: forwarded from the caller.
            Route::Fallback(fallback) => unsafe { fallback.alloc(layout) },
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        match self.route(true) {
            // SAFETY: as in `alloc`.
            Route::Table(s) => unsafe { (s.alloc_zeroed)(s.ctx, layout.size(), layout.align()) },
            // SAFETY: forwarded from the caller.
            Route::Target(target) => unsafe { target.alloc_zeroed(layout) },
            // SAFETY: forwarded from the caller.
            Route::Fallback(fallback) => unsafe { fallback.alloc_zeroed(layout) },
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match self.route(false) {
            // SAFETY: as in `alloc`; the route never changes once anything
            // was allocated, so the block came from the table's allocator.
            Route::Table(s) => unsafe { (s.dealloc)(s.ctx, ptr, layout.size(), layout.align()) },
            // SAFETY: forwarded from the caller; the block came from the target.
            Route::Target(target) => unsafe { target.dealloc(ptr, layout) },
            // SAFETY: forwarded from the caller; the block came from `F`.
            Route::Fallback(fallback) => unsafe { fallback.dealloc(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match self.route(false) {
            // SAFETY: as in `dealloc`.
            Route::Table(s) => unsafe { (s.realloc)(s.ctx, ptr, layout.size(), layout.align(), new_size) },
            // SAFETY: as in `dealloc`.
            Route::Target(target) => unsafe { target.realloc(ptr, layout, new_size) },
            // SAFETY: as in `dealloc`.
            Route::Fallback(fallback) => unsafe { fallback.realloc(ptr, layout, new_size) },
        }
    }
}

/// Where a [`HostAllocator`]'s blocks go: fixed for every block (see the
/// `GlobalAlloc` impl).
enum Route<'a, F> {
    /// The installed table of a runtime.
    Table(&'a Services),
    /// The host's target.
    Target(HostTarget),
    /// The fallback `F`.
    Fallback(&'a F),
}

impl<F> HostAllocator<F> {
    /// The installed table, else the host's target, else the fallback
    /// (noted as used when `allocating`, so that `install` and `set_target`
    /// refuse from then on).
    #[inline(always)]
    fn route(&self, allocating: bool) -> Route<'_, F> {
        let services = self.services();
        if !services.is_null() {
            // SAFETY: an installed table stays valid for as long as anything
            // allocates through this allocator (`install`'s contract).
            return Route::Table(unsafe { &*services });
        }
        let target = self.target();
        if !target.is_null() {
            // SAFETY: a set target points at a `'static` `HostTarget` (see
            // `set_target`).
            return Route::Target(unsafe { *target });
        }
        if allocating {
            self.note_fallback();
        }
        Route::Fallback(&self.fallback)
    }
}

/// The global allocator of every binary this crate is linked into, with the
/// feature `global-allocator`; modules' generated inits install the
/// runtime's table in it, and hosts choose its target with
/// [`global_allocator!`](crate::global_allocator).
#[cfg(feature = "global-allocator")]
#[global_allocator]
pub(crate) static GLOBAL: HostAllocator<std::alloc::System> = HostAllocator::new(std::alloc::System);

/// Makes the host's allocator the target of this crate's global allocator;
/// stops the process with a message if it cannot. What
/// [`global_allocator!`](crate::global_allocator) runs before `main`.
#[cfg(feature = "global-allocator")]
#[doc(hidden)]
pub fn register_host_allocator(target: &'static HostTarget, name: &str) {
    if GLOBAL.set_target(target).is_ok() {
        return;
    }
    let mut stderr = std::io::stderr();
    for part in [
        "hcr: global_allocator!(",
        name,
        ") cannot take over the process's allocations: something was allocated before it ran (another constructor?), it is used more than once, or it is used in a module (modules allocate through their host). Stopping rather than let two allocators free each other's memory.\n",
    ] {
        let _ = std::io::Write::write_all(&mut stderr, part.as_bytes());
    }
    std::process::abort();
}

/// A global allocator that forwards to the host's choice: what
/// [`global_allocator!`](crate::global_allocator) declares when this crate
/// does not declare [`HostAllocator`] (no feature `global-allocator`).
#[derive(Clone, Copy)]
pub struct Forward(pub HostTarget);

impl core::fmt::Debug for Forward {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Forward")
    }
}

// SAFETY: every method forwards to the wrapped `GlobalAlloc` with the same
// arguments, so every block goes back to the allocator it came from.
unsafe impl GlobalAlloc for Forward {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.alloc(layout) }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.alloc_zeroed(layout) }
    }
    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.dealloc(ptr, layout) }
    }
    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded from the caller.
        unsafe { self.0.realloc(ptr, layout, new_size) }
    }
}

/// Chooses the process's global allocator in a host program: every
/// allocation of the host, of the runtime, and of every module it loads
/// (through the runtime's services) goes to `$alloc`, a `static` whose type
/// implements [`GlobalAlloc`] (and `Sync`).
///
/// ```ignore
/// static COUNTING: Counting = Counting::new();
/// hcr_runtime::abi::global_allocator!(COUNTING);
/// ```
///
/// A host that links module crates (to name their types) gets this crate's
/// [`HostAllocator`] as its `#[global_allocator]` (feature
/// `global-allocator`, which module crates enable), so a
/// `#[global_allocator]` of its own is refused by rustc ("the
/// `#[global_allocator]` in this crate conflicts with global allocator
/// in: hcr_abi"). Write this macro instead, in the binary crate (not in a
/// library it links: the linker may leave a library's constructor out):
///
/// * with the feature, it registers `$alloc` as the target of
///   [`HostAllocator`] from a constructor that runs before `main`
///   (`.init_array` on Linux and the other ELF systems,
///   `__DATA,__mod_init_func` on macOS, `.CRT$XCU` on Windows; only Linux
///   is tested). If anything was allocated before it ran (another
///   constructor), if it is used twice, or if it ends up in a module, the
///   process stops with a message: allocators never mix silently;
/// * without the feature, it declares a `#[global_allocator]` that forwards
///   to `$alloc`.
///
/// # Platform-specific behaviour
///
/// The constructor is tested on Linux (x86-64 and AArch64); the macOS and
/// Windows sections are written as the `ctor` crate writes them, untested.
#[cfg(feature = "global-allocator")]
#[macro_export]
macro_rules! global_allocator {
    ($alloc:path) => {
        const _: () = {
            static __HCR_TARGET: $crate::HostTarget = &$alloc;
            extern "C" fn __hcr_register_allocator() {
                $crate::__private::register_host_allocator(&__HCR_TARGET, ::core::stringify!($alloc));
            }
            #[used]
            #[cfg_attr(
                any(
                    target_os = "linux",
                    target_os = "android",
                    target_os = "freebsd",
                    target_os = "netbsd",
                    target_os = "openbsd",
                    target_os = "dragonfly",
                    target_os = "illumos",
                    target_os = "solaris"
                ),
                unsafe(link_section = ".init_array")
            )]
            #[cfg_attr(target_vendor = "apple", unsafe(link_section = "__DATA,__mod_init_func"))]
            #[cfg_attr(windows, unsafe(link_section = ".CRT$XCU"))]
            static __HCR_REGISTER_ALLOCATOR: extern "C" fn() = __hcr_register_allocator;
        };
    };
}

/// See the other definition: without the feature `global-allocator`, a
/// `#[global_allocator]` forwarding to `$alloc`.
#[cfg(not(feature = "global-allocator"))]
#[macro_export]
macro_rules! global_allocator {
    ($alloc:path) => {
        #[global_allocator]
        static __HCR_GLOBAL_ALLOCATOR: $crate::__private::Forward = $crate::__private::Forward(&$alloc);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::ffi::c_void;
    use core::sync::atomic::AtomicUsize;

    /// A fallback that counts and hands out blocks from a static arena.
    struct Arena {
        next: AtomicUsize,
        frees: AtomicUsize,
    }

    #[repr(align(64))]
    struct Memory(#[allow(dead_code)] [u8; 4096]);
    static mut MEMORY: Memory = Memory([0; 4096]);

    // SAFETY: bump allocation of disjoint, aligned blocks from a static
    // buffer; frees are only counted.
    unsafe impl GlobalAlloc for Arena {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let start = self.next.fetch_add(layout.size().next_multiple_of(64), Ordering::Relaxed);
            assert!(layout.align() <= 64 && start + layout.size() <= 4096);
            // SAFETY: in bounds of the static buffer (asserted above).
            unsafe { core::ptr::addr_of_mut!(MEMORY).cast::<u8>().add(start) }
        }
        unsafe fn dealloc(&self, _: *mut u8, _: Layout) {
            self.frees.fetch_add(1, Ordering::Relaxed);
        }
    }

    static HOST_ALLOCS: AtomicUsize = AtomicUsize::new(0);
    static HOST_FREES: AtomicUsize = AtomicUsize::new(0);
    static HOST_REALLOCS: AtomicUsize = AtomicUsize::new(0);

    unsafe extern "C" fn host_alloc(ctx: *mut c_void, size: usize, align: usize) -> *mut u8 {
        assert_eq!(ctx as usize, 0x5eed);
        HOST_ALLOCS.fetch_add(1, Ordering::Relaxed);
        assert!(size == 24 && align == 8);
        0x1000 as *mut u8
    }
    unsafe extern "C" fn host_dealloc(_: *mut c_void, ptr: *mut u8, size: usize, align: usize) {
        assert_eq!((ptr as usize, size, align), (0x1000, 24, 8));
        HOST_FREES.fetch_add(1, Ordering::Relaxed);
    }
    unsafe extern "C" fn host_realloc(_: *mut c_void, ptr: *mut u8, size: usize, align: usize, new: usize) -> *mut u8 {
        assert_eq!((ptr as usize, size, align, new), (0x1000, 24, 8, 48));
        HOST_REALLOCS.fetch_add(1, Ordering::Relaxed);
        0x2000 as *mut u8
    }
    unsafe extern "C" fn report(_: *mut c_void, _: *const crate::PanicReport) {}

    fn services(size: usize) -> Services {
        Services {
            size: size as u32,
            reserved: 0,
            ctx: 0x5eed as *mut c_void,
            alloc: host_alloc,
            dealloc: host_dealloc,
            realloc: host_realloc,
            alloc_zeroed: host_alloc,
            report_panic: report,
        }
    }

    #[test]
    fn forwards_once_installed_and_refuses_after_a_fallback_allocation() {
        static TABLE: Services = Services {
            size: size_of::<Services>() as u32,
            reserved: 0,
            ctx: 0x5eed as *mut c_void,
            alloc: host_alloc,
            dealloc: host_dealloc,
            realloc: host_realloc,
            alloc_zeroed: host_alloc,
            report_panic: report,
        };
        let fresh = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        assert!(!fresh.is_forwarding());
        // SAFETY: `TABLE` is a static table of test entries.
        unsafe { fresh.install(&TABLE) }.unwrap();
        // SAFETY: installing the same table again is allowed.
        unsafe { fresh.install(&TABLE) }.unwrap();
        assert!(fresh.is_forwarding());
        let layout = Layout::from_size_align(24, 8).unwrap();
        // SAFETY: the test entries hand out fake addresses that are never
        // dereferenced, only passed back.
        unsafe {
            let p = fresh.alloc(layout);
            assert_eq!(p as usize, 0x1000);
            assert_eq!(fresh.realloc(p, layout, 48) as usize, 0x2000);
            fresh.dealloc(p, layout);
        }
        assert_eq!(
            (
                HOST_ALLOCS.load(Ordering::Relaxed),
                HOST_REALLOCS.load(Ordering::Relaxed),
                HOST_FREES.load(Ordering::Relaxed)
            ),
            (1, 1, 1)
        );
        assert_eq!(fresh.fallback.next.load(Ordering::Relaxed), 0, "the fallback was never used");

        // A fallback that allocated cannot be replaced.
        let used = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        // SAFETY: a block of the static arena, freed to the same allocator.
        unsafe {
            let p = used.alloc(Layout::from_size_align(16, 8).unwrap());
            used.dealloc(p, Layout::from_size_align(16, 8).unwrap());
        }
        assert_eq!(used.fallback.frees.load(Ordering::Relaxed), 1);
        // SAFETY: as above.
        assert_eq!(unsafe { used.install(&TABLE) }, Err(Status::FAILED));
        assert!(!used.is_forwarding());
    }

    #[test]
    fn a_host_target_takes_every_allocation_and_excludes_the_rest() {
        static TARGET_ARENA: Arena = Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) };
        static TARGET: HostTarget = &TARGET_ARENA;
        static TABLE: Services = Services {
            size: size_of::<Services>() as u32,
            reserved: 0,
            ctx: 0x5eed as *mut c_void,
            alloc: host_alloc,
            dealloc: host_dealloc,
            realloc: host_realloc,
            alloc_zeroed: host_alloc,
            report_panic: report,
        };
        let host = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        host.set_target(&TARGET).unwrap();
        assert_eq!(host.set_target(&TARGET), Err(Status::FAILED), "a second target");
        let layout = Layout::from_size_align(16, 8).unwrap();
        // SAFETY: blocks of the target's static arena, freed to it.
        unsafe {
            let p = host.alloc(layout);
            assert!(!p.is_null());
            host.dealloc(p, layout);
        }
        assert_eq!(TARGET_ARENA.frees.load(Ordering::Relaxed), 1);
        assert_eq!(host.fallback.next.load(Ordering::Relaxed), 0, "the fallback was never used");
        // SAFETY: the table is refused before it is used.
        assert_eq!(unsafe { host.install(&TABLE) }, Err(Status::FAILED), "a host does not forward");

        // Too late: the fallback allocated first.
        let late = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        // SAFETY: a block of the static arena, freed to the same allocator.
        unsafe { late.dealloc(late.alloc(layout), layout) };
        assert_eq!(late.set_target(&TARGET), Err(Status::FAILED));
        // A module that installed services cannot choose a target either.
        let module = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        // SAFETY: a static table of test entries.
        unsafe { module.install(&TABLE) }.unwrap();
        assert_eq!(module.set_target(&TARGET), Err(Status::FAILED));
    }

    #[test]
    fn refuses_tables_without_allocator_entries() {
        let a = HostAllocator::new(Arena { next: AtomicUsize::new(0), frees: AtomicUsize::new(0) });
        let short = services(core::mem::offset_of!(Services, alloc_zeroed));
        // SAFETY: null and a short table are refused before anything else.
        unsafe {
            assert_eq!(a.install(core::ptr::null()), Err(Status::INVALID_ARGUMENT));
            assert_eq!(a.install(&short), Err(Status::UNSUPPORTED));
        }
        assert!(!a.is_forwarding());
    }
}
