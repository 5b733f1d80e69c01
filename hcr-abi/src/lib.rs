//! The binary contract between the hcr runtime and reloadable modules.
//!
//! The contract itself is `#[repr(C)]` and free of Rust-only types, so a
//! module built by another compiler version (or written in C) can talk to
//! the runtime. Modules depend on this crate only, never on the runtime.
//!
//! # The contract in short
//!
//! * A module is a dynamic library that exports one [`ModuleDescriptor`] under
//!   the symbol [`DESCRIPTOR_SYMBOL`] (or [`DESCRIPTOR_SYMBOL_PREFIX`] followed
//!   by its name). The descriptor names the module, lists the modules it
//!   imports and points at its init entry.
//! * When the module is loaded (and again every time a new build of it is
//!   loaded), the runtime calls the init entry with a [`HostApi`] table. Init
//!   registers the module's functions ("procs") and globals through it, and may
//!   look up procs and globals of its imports.
//! * Registering a proc gives it a stable *stub* in the runtime's jump table;
//!   callers in other modules and in the host only ever hold stub addresses,
//!   which the runtime re-points at the new code after a reload.
//! * Registering a global gives the module a pointer to runtime-owned memory
//!   that keeps its address and value across reloads. The first registration
//!   asks the module to initialise it ([`GlobalSlot::initialize`]).
//!
//! # Versioning
//!
//! [`ABI_MAJOR`] changes when a layout in this crate changes incompatibly; the
//! runtime refuses modules built for another major version. [`ABI_MINOR`]
//! changes when entries are appended to [`HostApi`]. The table records its own
//! size, and the wrappers on [`HostApi`] check it before they touch an entry,
//! so a module built against an older minor version works with a newer
//! runtime, and a module built against a newer one gets
//! [`Status::UNSUPPORTED`] (instead of undefined behaviour) from an entry the
//! runtime does not have.
//!
//! # Rust helpers
//!
//! Besides the C contract, this crate has the types that generated Rust code
//! uses (see `hcr-build`): [`Global`], a module's handle on a runtime-owned
//! global; [`ProcCell`], a cached stub address used by generated bindings;
//! [`ProcPanic`], a panic caught at the edge of a reloadable Rust function;
//! and [`HostAllocator`], the allocator through which a module allocates
//! from the host's heap.
//!
//! # Reloadable Rust functions
//!
//! With the default feature `macros`, the attributes [`reload`],
//! [`before_reload`], [`after_reload`] and [`first_load`] mark ordinary Rust
//! functions as reloadable procs and reload hooks; `hcr-build` generates the
//! registration. A proc keeps the Rust ABI and its Rust types (references,
//! `String`, `Vec`, the module's own structs), which is only sound between a
//! host and modules built by the same compiler with the same settings: every
//! module's descriptor carries a toolchain [`Fingerprint`] for the runtime to
//! compare with its own.
//!
//! # Features
//!
//! * `std` (default): the module-side panic capture (used by the generated
//!   code of reloadable Rust functions) and [`ProcPanic`]'s re-raising.
//! * `macros` (default): the attributes, from `hcr-macros`.
//! * `toolchain`: [`toolchain::toolchain_text`], the toolchain part of the
//!   fingerprint as a build script computes it (for build scripts; it runs
//!   `rustc -vV`).
//! * `global-allocator`: declares [`HostAllocator`] as the
//!   `#[global_allocator]` of every binary this crate is linked into. A
//!   module with reloadable Rust functions must enable it (its generated code
//!   refuses to compile otherwise), so that values it allocates can be freed
//!   by the host and the other way round. In the host it forwards to the
//!   system allocator; see the feature's documentation on [`HostAllocator`].
//!
//! Without default features the crate is `no_std` (it uses `alloc`).
//!
//! # Lifetimes
//!
//! The [`HostApi`] table and its `ctx` are valid only during the call of the
//! init entry, on the thread that made it. Strings passed to the runtime are
//! copied before the call returns. Reload handlers stay registered until the
//! module is reloaded or unloaded. The [`Services`] table (ABI 1.2) lives as
//! long as the runtime.
#![no_std]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod allocator;
#[cfg(feature = "std")]
mod capture;
mod helpers;
mod panic;
#[cfg(feature = "toolchain")]
pub mod toolchain;

pub use allocator::{HostAllocator, HostTarget};
pub use helpers::{Global, Migration, ProcCell};
pub use panic::ProcPanic;

/// Marks a free function as a reloadable Rust proc; see the crate
/// `hcr-macros`.
#[cfg(feature = "macros")]
pub use hcr_macros::reload;

/// Marks a `fn()` (or `fn(&ReloadEvent)`) as a hook that runs before every
/// reload; see the crate `hcr-macros`.
#[cfg(feature = "macros")]
pub use hcr_macros::before_reload;

/// Marks a `fn()` (or `fn(&ReloadEvent)`) as a hook that runs after every
/// reload; see the crate `hcr-macros`.
#[cfg(feature = "macros")]
pub use hcr_macros::after_reload;

/// Marks a `fn()` (or `fn(&ReloadEvent)`) as a hook that runs once, after the
/// first load of its module committed; see the crate `hcr-macros`.
#[cfg(feature = "macros")]
pub use hcr_macros::first_load;

#[doc(hidden)]
pub mod __private;

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

/// The version of this crate, which is part of every module's toolchain
/// [`Fingerprint`]: Rust types defined here ([`ProcPanic`]) cross between host
/// and module, so both must use the same version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Major ABI version. A runtime refuses modules whose major version differs.
pub const ABI_MAJOR: u16 = 1;

/// Minor ABI version: the number of append-only extensions to [`HostApi`].
///
/// * 0: the original table.
/// * 1: `register_global_migrating`.
/// * 2: `get_services` (the [`Services`] table: the host's allocator and
///   panic reports), [`Phase::FIRST_LOAD`], and the descriptor's `flags` and
///   toolchain fingerprint.
pub const ABI_MINOR: u16 = 2;

/// The first eight bytes of every [`ModuleDescriptor`].
pub const MAGIC: [u8; 8] = *b"HCRMODUL";

/// Name of the exported symbol that holds a module's [`ModuleDescriptor`]
/// when the module is written in C (`hcr_module.h`).
///
/// Modules generated by `hcr-build` export their descriptor as
/// [`DESCRIPTOR_SYMBOL`]`_<name>` ([`DESCRIPTOR_SYMBOL_PREFIX`] followed by the
/// module's name) instead, so that several module crates can be linked into
/// one binary (a host that depends on them to name their types) without a
/// duplicate symbol. A library built from a module crate that links other
/// module crates exports their descriptors too: the one to use is the one
/// named after the module (see `docs/design.md`, "Finding the descriptor").
pub const DESCRIPTOR_SYMBOL: &str = "HCR_MODULE_DESCRIPTOR";

/// [`DESCRIPTOR_SYMBOL`] with a trailing NUL, as `dlsym` wants it.
pub const DESCRIPTOR_SYMBOL_NUL: &[u8] = b"HCR_MODULE_DESCRIPTOR\0";

/// The start of a Rust module's descriptor symbol:
/// `HCR_MODULE_DESCRIPTOR_<module name>`.
pub const DESCRIPTOR_SYMBOL_PREFIX: &str = "HCR_MODULE_DESCRIPTOR_";

/// A borrowed UTF-8 string: pointer and length in bytes, not NUL-terminated.
///
/// Strings in descriptors point at static data of the module. Strings passed
/// to [`HostApi`] entries only need to live for the duration of the call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Str {
    /// First byte; may be dangling when `len` is zero.
    pub ptr: *const u8,
    /// Length in bytes.
    pub len: usize,
}

// SAFETY: a `Str` is a read-only view of immutable bytes (module rodata or a
// caller's buffer that outlives the call); sharing it between threads cannot
// cause a data race.
unsafe impl Sync for Str {}
// SAFETY: see `Sync`; the view carries no thread affinity.
unsafe impl Send for Str {}

impl Str {
    /// The empty string.
    pub const EMPTY: Str = Str::new("");

    /// Borrows a Rust string.
    pub const fn new(s: &str) -> Str {
        Str { ptr: s.as_ptr(), len: s.len() }
    }

    /// Views the string's bytes.
    ///
    /// # Safety
    ///
    /// `ptr` must point at `len` initialised bytes that stay valid and
    /// unmodified for `'a`. A zero `len` is always fine.
    pub unsafe fn as_bytes<'a>(self) -> &'a [u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: the caller guarantees `ptr..ptr+len` is valid for `'a`.
        unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
    }
}

/// Result code of a [`HostApi`] entry and of a module's init entry.
///
/// Zero is success; everything else is a failure. The runtime keeps a precise
/// description of every failure it reports, so a module only needs to pass a
/// non-zero status on.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Status(pub i32);

impl Status {
    /// Success.
    pub const OK: Status = Status(0);
    /// A pointer was null, a string was not UTF-8, a size or alignment was
    /// invalid, or a name was empty or too long.
    pub const INVALID_ARGUMENT: Status = Status(1);
    /// The name was already registered by this module during this init.
    pub const DUPLICATE: Status = Status(2);
    /// A global exists with another size, alignment or layout hash.
    pub const LAYOUT_MISMATCH: Status = Status(3);
    /// A proc exists with another signature hash.
    pub const SIGNATURE_MISMATCH: Status = Status(4);
    /// The requested module or global does not exist.
    pub const NOT_FOUND: Status = Status(5);
    /// The runtime's stub table is full.
    pub const CAPACITY_EXHAUSTED: Status = Status(6);
    /// Memory for a global could not be allocated.
    pub const OUT_OF_MEMORY: Status = Status(7);
    /// The runtime's [`HostApi`] is too old to have this entry.
    pub const UNSUPPORTED: Status = Status(8);
    /// The runtime failed internally; details are in the runtime's error.
    pub const INTERNAL: Status = Status(9);
    /// The module's init failed; it should call `report_error` first.
    pub const FAILED: Status = Status(10);

    /// Whether this is [`Status::OK`].
    pub const fn is_ok(self) -> bool {
        self.0 == 0
    }

    /// `Ok(())` for [`Status::OK`], `Err(self)` otherwise, for `?`.
    ///
    /// # Errors
    ///
    /// Any status other than [`Status::OK`].
    pub const fn ok(self) -> Result<(), Status> {
        if self.is_ok() { Ok(()) } else { Err(self) }
    }
}

/// A proc (function) that a module registers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcDesc {
    /// Name, unique within the module.
    pub name: Str,
    /// The function's address in the module.
    pub addr: *const c_void,
    /// Hash of the function's normalised signature; `0` means "unknown".
    pub signature_hash: u64,
    /// The signature as text, for error messages; may be empty.
    pub signature: Str,
}

/// A proc that a module (or the host) wants to call: it receives its stub.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcImport {
    /// Name of the module that registers the proc.
    pub module: Str,
    /// Name of the proc.
    pub name: Str,
    /// Hash of the signature the caller was compiled against; `0` = unknown.
    pub signature_hash: u64,
    /// That signature as text; may be empty.
    pub signature: Str,
}

/// A global that a module registers.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GlobalDesc {
    /// Name, unique within the module.
    pub name: Str,
    /// Size of the value in bytes.
    pub size: usize,
    /// Alignment of the value; a power of two.
    pub align: usize,
    /// Hash of the value's type layout; `0` means "unknown".
    pub layout_hash: u64,
    /// The layout as text, for error messages; may be empty.
    pub layout: Str,
}

/// Converts a global's value from an older layout: reads the old value at
/// `old_value` (which it must leave intact) and writes the new value to
/// `new_value`.
/// Returns [`Status::OK`] on success. Must not unwind.
pub type MigrateFn = unsafe extern "C" fn(old_value: *const c_void, new_value: *mut c_void) -> Status;

/// A way to carry a global over from an older layout: used when the global
/// exists with exactly this size, alignment and layout hash.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GlobalMigration {
    /// Layout hash of the old value.
    pub from_layout_hash: u64,
    /// Size of the old value.
    pub from_size: usize,
    /// Alignment of the old value.
    pub from_align: usize,
    /// The conversion.
    pub migrate: MigrateFn,
}

/// What [`HostApi::register_global`] hands back.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GlobalSlot {
    /// Runtime-owned, zeroed, aligned storage of the requested size.
    pub ptr: *mut c_void,
    /// `1` when this is the first registration and the module must write the
    /// initial value; `0` when the slot already holds a value to keep.
    pub initialize: u32,
}

/// A global of another module that a module wants to use.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GlobalImport {
    /// Name of the module that registers the global.
    pub module: Str,
    /// Name of the global.
    pub name: Str,
    /// Expected size in bytes.
    pub size: usize,
    /// Expected alignment.
    pub align: usize,
    /// Expected layout hash; `0` skips the check.
    pub layout_hash: u64,
    /// Expected layout as text; may be empty.
    pub layout: Str,
}

/// When a reload handler runs.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Phase(pub u32);

impl Phase {
    /// Before the changed modules are loaded; the old code is still current.
    pub const BEFORE_RELOAD: Phase = Phase(0);
    /// After the reload committed or rolled back.
    pub const AFTER_RELOAD: Phase = Phase(1);
    /// Once per module, after the load that first brought it in committed
    /// (not after later reloads). Since ABI 1.2; an older runtime refuses the
    /// registration.
    pub const FIRST_LOAD: Phase = Phase(2);
}

/// How a reload ended, as seen by an after-reload handler.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Outcome(pub u32);

impl Outcome {
    /// The reload has not happened yet (before-reload handlers).
    pub const PENDING: Outcome = Outcome(0);
    /// The new code is current.
    pub const COMMITTED: Outcome = Outcome(1);
    /// The reload failed; the old code and all state were kept.
    pub const ROLLED_BACK: Outcome = Outcome(2);
}

/// What a reload handler is told.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ReloadEvent {
    /// `size_of::<ReloadEvent>()` as the runtime knows it.
    pub size: u32,
    /// Which handlers are running.
    pub phase: Phase,
    /// How the reload ended.
    pub outcome: Outcome,
    /// Reserved, zero.
    pub reserved: u32,
    /// The runtime's generation: the number of committed reloads, counting
    /// this one if it committed.
    pub generation: u64,
}

/// A reload handler: called with the `user` pointer it was registered with.
///
/// Handlers must not unwind; a Rust handler catches its own panics.
pub type HandlerFn = unsafe extern "C" fn(user: *mut c_void, event: *const ReloadEvent);

/// Where a panic that a module reports was caught.
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PanicOrigin(pub u32);

impl PanicOrigin {
    /// By the guard of a reloadable Rust function: its caller receives the
    /// panic as a [`ProcPanic`].
    pub const PROC: PanicOrigin = PanicOrigin(0);
    /// By the guard of a reload hook ([`Phase`]); the hook did not finish.
    pub const HOOK: PanicOrigin = PanicOrigin(1);
    /// Not by hcr: the panic happened outside any reloadable function (on a
    /// thread the module started, for example). The module printed it.
    pub const UNCAUGHT: PanicOrigin = PanicOrigin(2);
    /// By the guard of a global's migration; the reload rolls back.
    pub const MIGRATION: PanicOrigin = PanicOrigin(3);
    /// By the module's init (a global's initial value, for example); the
    /// load or reload rolls back. `proc_` is `"init"`.
    pub const INIT: PanicOrigin = PanicOrigin(4);
}

/// A panic in module code, as a module reports it to the runtime
/// ([`Services::report_panic`]). All strings are valid for the call only.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PanicReport {
    /// `size_of::<PanicReport>()` as the module was built.
    pub size: u32,
    /// Where it was caught.
    pub origin: PanicOrigin,
    /// Line of the panic, from 1; 0 when unknown.
    pub line: u32,
    /// Column of the panic, from 1; 0 when unknown.
    pub column: u32,
    /// The module's name.
    pub module: Str,
    /// The proc or hook that panicked; empty for [`PanicOrigin::UNCAUGHT`].
    pub proc_: Str,
    /// The panic message (`"Box<dyn Any>"` when the payload is not a string).
    pub message: Str,
    /// Source file of the panic; empty when unknown.
    pub file: Str,
}

/// Entry `alloc` of [`Services`]: like `GlobalAlloc::alloc` with the layout's
/// size (never zero) and alignment; null on failure. Must not unwind.
pub type AllocFn = unsafe extern "C" fn(ctx: *mut c_void, size: usize, align: usize) -> *mut u8;
/// Entry `dealloc` of [`Services`]: like `GlobalAlloc::dealloc`. Must not
/// unwind.
pub type DeallocFn = unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut u8, size: usize, align: usize);
/// Entry `realloc` of [`Services`]: like `GlobalAlloc::realloc` (the old
/// layout is `size`, `align`); null on failure. Must not unwind.
pub type ReallocFn =
    unsafe extern "C" fn(ctx: *mut c_void, ptr: *mut u8, size: usize, align: usize, new_size: usize) -> *mut u8;
/// Entry `report_panic` of [`Services`]. Must not unwind.
pub type ReportPanicFn = unsafe extern "C" fn(ctx: *mut c_void, report: *const PanicReport);

/// What the runtime offers modules for as long as it lives (not only during
/// init): the host's allocator, and a place to report panics.
///
/// A module receives it from [`HostApi::services`] in its init, keeps the
/// pointer, and calls the entries from any thread until it is unloaded. Like
/// [`HostApi`], the table records its size and is only ever appended to: a
/// module checks `size` before it uses an entry.
///
/// The allocator entries are the host's global allocator. A module's
/// [`HostAllocator`] forwards every allocation to them, so that memory can
/// change hands between host and module (a `Vec` returned by a reloadable
/// function, freed by the host) and outlive the module's library.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Services {
    /// `size_of::<Services>()` as the runtime was built.
    pub size: u32,
    /// Reserved, zero.
    pub reserved: u32,
    /// Opaque context; the first argument of every entry.
    pub ctx: *mut c_void,
    /// The host's allocator: allocate.
    pub alloc: AllocFn,
    /// The host's allocator: free.
    pub dealloc: DeallocFn,
    /// The host's allocator: grow or shrink.
    pub realloc: ReallocFn,
    /// The host's allocator: allocate zeroed memory.
    pub alloc_zeroed: AllocFn,
    /// Tells the runtime about a panic in module code (for its log and its
    /// reload reports); the module has already dealt with the panic.
    pub report_panic: ReportPanicFn,
}

// SAFETY: the table is immutable after the runtime made it, and its entries
// are documented as callable from any thread.
unsafe impl Sync for Services {}
// SAFETY: see `Sync`.
unsafe impl Send for Services {}

impl Services {
    /// Whether the table contains the entry ending at `end` bytes.
    pub const fn provides(&self, end: usize) -> bool {
        self.size as usize >= end
    }

    /// Whether the table has the four allocator entries.
    pub const fn has_allocator(&self) -> bool {
        self.provides(offset_of!(Services, alloc_zeroed) + size_of::<AllocFn>())
    }

    /// Whether the table has [`Services::report_panic`].
    pub const fn has_report_panic(&self) -> bool {
        self.provides(offset_of!(Services, report_panic) + size_of::<ReportPanicFn>())
    }
}

/// Entry `get_services` (ABI 1.2): the runtime's [`Services`] table, valid for
/// as long as the runtime lives.
pub type GetServicesFn = unsafe extern "C" fn(ctx: *mut c_void) -> *const Services;

/// Entry `register_proc`: register a proc of the module being initialised.
pub type RegisterProcFn = unsafe extern "C" fn(ctx: *mut c_void, proc_: *const ProcDesc) -> Status;
/// Entry `get_proc`: write the stub address of a proc to `out`.
pub type GetProcFn =
    unsafe extern "C" fn(ctx: *mut c_void, import: *const ProcImport, out: *mut *const c_void) -> Status;
/// Entry `register_global`: register a global and receive its slot.
pub type RegisterGlobalFn =
    unsafe extern "C" fn(ctx: *mut c_void, global: *const GlobalDesc, out: *mut GlobalSlot) -> Status;
/// Entry `get_global`: write the address of another module's global to `out`.
pub type GetGlobalFn =
    unsafe extern "C" fn(ctx: *mut c_void, import: *const GlobalImport, out: *mut *mut c_void) -> Status;
/// Entry `add_handler`: register a reload handler for `phase`.
pub type AddHandlerFn =
    unsafe extern "C" fn(ctx: *mut c_void, phase: Phase, handler: HandlerFn, user: *mut c_void) -> Status;
/// Entry `report_error`: attach a message to the module's failure.
pub type ReportErrorFn = unsafe extern "C" fn(ctx: *mut c_void, message: Str);
/// Entry `register_global_migrating` (ABI 1.1): like `register_global`, with
/// migrations from older layouts.
pub type RegisterGlobalMigratingFn = unsafe extern "C" fn(
    ctx: *mut c_void,
    global: *const GlobalDesc,
    migrations: *const GlobalMigration,
    migration_count: usize,
    out: *mut GlobalSlot,
) -> Status;

/// The table of runtime entry points handed to a module's init.
///
/// Entries are only ever appended (each append bumps [`ABI_MINOR`]). Call them
/// through the methods, which check [`HostApi::size`] first.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HostApi {
    /// `size_of::<HostApi>()` as the runtime was built.
    pub size: u32,
    /// The runtime's [`ABI_MAJOR`].
    pub abi_major: u16,
    /// The runtime's [`ABI_MINOR`].
    pub abi_minor: u16,
    /// Opaque context; the first argument of every entry.
    pub ctx: *mut c_void,
    /// See [`HostApi::register_proc`].
    pub register_proc: RegisterProcFn,
    /// See [`HostApi::get_proc`].
    pub get_proc: GetProcFn,
    /// See [`HostApi::register_global`].
    pub register_global: RegisterGlobalFn,
    /// See [`HostApi::get_global`].
    pub get_global: GetGlobalFn,
    /// See [`HostApi::add_handler`].
    pub add_handler: AddHandlerFn,
    /// See [`HostApi::report_error`].
    pub report_error: ReportErrorFn,
    /// See [`HostApi::register_global_migrating`]. Since ABI 1.1.
    pub register_global_migrating: RegisterGlobalMigratingFn,
    /// See [`HostApi::services`]. Since ABI 1.2.
    pub get_services: GetServicesFn,
}

/// What every entry of a [`HostApi`] made by [`HostApi::from_raw`] does when
/// the runtime's table does not have it.
mod unsupported {
    use super::*;

    pub(super) unsafe extern "C" fn register_proc(_: *mut c_void, _: *const ProcDesc) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn get_proc(_: *mut c_void, _: *const ProcImport, _: *mut *const c_void) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn register_global(
        _: *mut c_void,
        _: *const GlobalDesc,
        _: *mut GlobalSlot,
    ) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn get_global(_: *mut c_void, _: *const GlobalImport, _: *mut *mut c_void) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn add_handler(_: *mut c_void, _: Phase, _: HandlerFn, _: *mut c_void) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn report_error(_: *mut c_void, _: Str) {}
    pub(super) unsafe extern "C" fn register_global_migrating(
        _: *mut c_void,
        _: *const GlobalDesc,
        _: *const GlobalMigration,
        _: usize,
        _: *mut GlobalSlot,
    ) -> Status {
        Status::UNSUPPORTED
    }
    pub(super) unsafe extern "C" fn get_services(_: *mut c_void) -> *const Services {
        core::ptr::null()
    }
}

impl HostApi {
    /// Copies the runtime's table into one of this crate's layout, reading
    /// only the bytes the runtime's table has: entries that a runtime built
    /// against an older minor version lacks return [`Status::UNSUPPORTED`]
    /// (or nothing, or null) in the copy, and the copy keeps the runtime's
    /// `size`, so the wrappers refuse them before calling as well.
    ///
    /// This is how a module's init must read the table: a reference to a
    /// whole `HostApi` of this crate's size would claim bytes that a shorter
    /// table does not have.
    ///
    /// # Safety
    ///
    /// `api` must be null or point at a table made by an hcr runtime, whose
    /// first `size` bytes are readable for the duration of the call.
    ///
    /// # Errors
    ///
    /// [`Status::INVALID_ARGUMENT`] for a null or misaligned pointer or a
    /// table too short to hold its own header and context;
    /// [`Status::UNSUPPORTED`] for a runtime of another major ABI version.
    pub unsafe fn from_raw(api: *const HostApi) -> Result<HostApi, Status> {
        if api.is_null() || !api.is_aligned() {
            return Err(Status::INVALID_ARGUMENT);
        }
        // SAFETY: `size` is the first field (offset 0, checked below) of every
        // version of the table, which is readable by the caller's contract.
        let size = unsafe { api.cast::<u32>().read() } as usize;
        // SAFETY: as above; `abi_major` is at offset 4 of every version.
        let major = unsafe { api.cast::<u8>().add(offset_of!(HostApi, abi_major)).cast::<u16>().read() };
        if major != ABI_MAJOR {
            return Err(Status::UNSUPPORTED);
        }
        let entries = offset_of!(HostApi, ctx) + size_of::<*mut c_void>();
        if size < entries {
            return Err(Status::INVALID_ARGUMENT);
        }
        // Whole entries only: every entry after `ctx` is one pointer.
        let pointer = size_of::<usize>();
        let copied = entries + (size.min(size_of::<HostApi>()) - entries) / pointer * pointer;
        let mut table = HostApi {
            size: 0,
            abi_major: 0,
            abi_minor: 0,
            ctx: core::ptr::null_mut(),
            register_proc: unsupported::register_proc,
            get_proc: unsupported::get_proc,
            register_global: unsupported::register_global,
            get_global: unsupported::get_global,
            add_handler: unsupported::add_handler,
            report_error: unsupported::report_error,
            register_global_migrating: unsupported::register_global_migrating,
            get_services: unsupported::get_services,
        };
        // SAFETY: the runtime's table has at least `copied` readable bytes
        // (`copied <= size`), the destination is a `HostApi` of at least that
        // size, and the bytes copied form whole fields of the same layout
        // (the header, `ctx` and whole entries), each a valid value.
        unsafe {
            core::ptr::copy_nonoverlapping(api.cast::<u8>(), core::ptr::from_mut(&mut table).cast::<u8>(), copied)
        };
        Ok(table)
    }

    /// Whether the runtime's table contains the entry ending at `end` bytes.
    const fn provides(&self, end: usize) -> bool {
        self.size as usize >= end
    }

    /// The runtime's [`Services`] table, which lives as long as the runtime;
    /// null from a runtime older than ABI 1.2.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`].
    pub unsafe fn services(&self) -> *const Services {
        if !self.provides(offset_of!(HostApi, get_services) + size_of::<GetServicesFn>()) {
            return core::ptr::null();
        }
        // SAFETY: the entry exists (checked above) and the caller upholds its
        // contract.
        unsafe { (self.get_services)(self.ctx) }
    }

    /// Registers a proc of the module being initialised.
    ///
    /// The stub is bound to `addr` when the load or reload commits.
    ///
    /// # Safety
    ///
    /// `self` must be the table passed to the running init; `proc_`'s strings
    /// must be valid for the call and `addr` must be a function of the module
    /// with the signature that `signature_hash` describes.
    pub unsafe fn register_proc(&self, proc_: &ProcDesc) -> Status {
        if !self.provides(offset_of!(HostApi, register_proc) + size_of::<RegisterProcFn>()) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists (checked above) and the caller upholds its
        // contract.
        unsafe { (self.register_proc)(self.ctx, proc_) }
    }

    /// Looks up the stub of a proc, allocating an unbound stub if the proc is
    /// not registered yet; the stub is bound when the proc is registered.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`]; `out` receives the stub address on
    /// success.
    pub unsafe fn get_proc(&self, import: &ProcImport, out: &mut *const c_void) -> Status {
        if !self.provides(offset_of!(HostApi, get_proc) + size_of::<GetProcFn>()) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists and the caller upholds its contract.
        unsafe { (self.get_proc)(self.ctx, import, out) }
    }

    /// Registers a global of the module being initialised.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`]. On success `out.ptr` is valid for
    /// `size` bytes at `align` for as long as the global stays registered, and
    /// the module must write its initial value when `out.initialize` is `1`.
    pub unsafe fn register_global(&self, global: &GlobalDesc, out: &mut GlobalSlot) -> Status {
        if !self.provides(offset_of!(HostApi, register_global) + size_of::<RegisterGlobalFn>()) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists and the caller upholds its contract.
        unsafe { (self.register_global)(self.ctx, global, out) }
    }

    /// Looks up a global that another module registered.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`].
    pub unsafe fn get_global(&self, import: &GlobalImport, out: &mut *mut c_void) -> Status {
        if !self.provides(offset_of!(HostApi, get_global) + size_of::<GetGlobalFn>()) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists and the caller upholds its contract.
        unsafe { (self.get_global)(self.ctx, import, out) }
    }

    /// Registers a reload handler of the module being initialised.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`]; `handler` must be safe to call with
    /// `user` from any thread until the module is reloaded or unloaded.
    pub unsafe fn add_handler(&self, phase: Phase, handler: HandlerFn, user: *mut c_void) -> Status {
        if !self.provides(offset_of!(HostApi, add_handler) + size_of::<AddHandlerFn>()) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists and the caller upholds its contract.
        unsafe { (self.add_handler)(self.ctx, phase, handler, user) }
    }

    /// Registers a global that may exist with an older layout: if it does and
    /// one of `migrations` matches that layout, the runtime allocates storage
    /// for the new layout, calls the migration with the old and the new
    /// storage, and (if the load commits) replaces the old storage. `out` is
    /// as for [`HostApi::register_global`]; after a migration `initialize`
    /// is `0`. A global whose layout did not change is kept as usual.
    ///
    /// Returns [`Status::UNSUPPORTED`] from a runtime older than ABI 1.1.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_global`]; each migration must read a value
    /// of exactly the layout it declares and write a valid new value.
    pub unsafe fn register_global_migrating(
        &self,
        global: &GlobalDesc,
        migrations: &[GlobalMigration],
        out: &mut GlobalSlot,
    ) -> Status {
        let end = offset_of!(HostApi, register_global_migrating) + size_of::<RegisterGlobalMigratingFn>();
        if !self.provides(end) {
            return Status::UNSUPPORTED;
        }
        // SAFETY: the entry exists (checked above) and the caller upholds its
        // contract.
        unsafe { (self.register_global_migrating)(self.ctx, global, migrations.as_ptr(), migrations.len(), out) }
    }

    /// Attaches a message to the module's failure; the runtime includes it in
    /// the error it returns.
    ///
    /// # Safety
    ///
    /// As for [`HostApi::register_proc`].
    pub unsafe fn report_error(&self, message: &str) {
        if !self.provides(offset_of!(HostApi, report_error) + size_of::<ReportErrorFn>()) {
            return;
        }
        // SAFETY: the entry exists and the caller upholds its contract.
        unsafe { (self.report_error)(self.ctx, Str::new(message)) }
    }
}

/// A module's init entry. It must not unwind: a Rust init catches panics and
/// returns a failure status instead.
pub type InitFn = unsafe extern "C" fn(api: *const HostApi) -> Status;

/// How many bytes of toolchain fingerprint a [`ModuleDescriptor`] holds.
pub const FINGERPRINT_CAPACITY: usize = 256;

/// The longest toolchain text that [`Fingerprint::new`] accepts: what is left
/// of [`FINGERPRINT_CAPACITY`] after `"; hcr-abi <version>"`. `hcr-build`
/// shortens longer texts (see `hcr_build::toolchain_fingerprint`).
pub const TOOLCHAIN_TEXT_CAPACITY: usize = FINGERPRINT_CAPACITY - 48;

/// The toolchain a module (or the runtime) was built with, as text:
/// `rustc <release> (<commit-hash>); <target>; panic=<strategy>;
/// target-features=<list>[; <layout flags>]; hcr-abi <version>`.
///
/// Two builds can exchange Rust-ABI calls and Rust types only if their
/// fingerprints are equal. It is stored inline (no pointers) at the end of
/// the [`ModuleDescriptor`], so the runtime can compare it with its own
/// before it opens the library.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    len: usize,
    bytes: [u8; FINGERPRINT_CAPACITY],
}

impl Fingerprint {
    /// No fingerprint: what modules without Rust-ABI procs carry.
    pub const EMPTY: Fingerprint = Fingerprint { len: 0, bytes: [0; FINGERPRINT_CAPACITY] };

    /// `toolchain` followed by `"; hcr-abi "` and [`VERSION`].
    ///
    /// # Panics
    ///
    /// If `toolchain` is longer than [`TOOLCHAIN_TEXT_CAPACITY`] (at compile
    /// time when used in a constant).
    pub const fn new(toolchain: &str) -> Fingerprint {
        assert!(toolchain.len() <= TOOLCHAIN_TEXT_CAPACITY, "the toolchain text is too long for a fingerprint");
        let mut out = Fingerprint::EMPTY;
        out = out.push(toolchain.as_bytes());
        out = out.push(b"; hcr-abi ");
        out.push(VERSION.as_bytes())
    }

    const fn push(mut self, bytes: &[u8]) -> Fingerprint {
        let mut i = 0;
        while i < bytes.len() {
            self.bytes[self.len] = bytes[i];
            self.len += 1;
            i += 1;
        }
        self
    }

    /// The text's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The text (lossy for bytes that are not UTF-8, which only a corrupt
    /// descriptor has).
    pub fn as_str(&self) -> &str {
        match core::str::from_utf8(self.as_bytes()) {
            Ok(s) => s,
            Err(e) => {
                // SAFETY: `valid_up_to` bytes were checked to be UTF-8.
                unsafe { core::str::from_utf8_unchecked(&self.as_bytes()[..e.valid_up_to()]) }
            }
        }
    }
}

impl core::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        core::fmt::Debug::fmt(self.as_str(), f)
    }
}

impl core::fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flags of a [`ModuleDescriptor`] (ABI 1.2).
#[repr(transparent)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ModuleFlags(pub u32);

impl ModuleFlags {
    /// No flag.
    pub const NONE: ModuleFlags = ModuleFlags(0);
    /// The module has procs that use the Rust ABI and Rust types: the runtime
    /// must refuse it unless its fingerprint equals the runtime's.
    pub const RUST_ABI: ModuleFlags = ModuleFlags(1 << 0);
    /// The module allocates through the host's allocator ([`HostAllocator`]
    /// declared as its global allocator, with the [`Services`] table).
    pub const HOST_ALLOCATOR: ModuleFlags = ModuleFlags(1 << 1);

    /// Both sets of flags.
    pub const fn union(self, other: ModuleFlags) -> ModuleFlags {
        ModuleFlags(self.0 | other.0)
    }

    /// Whether every flag of `other` is set.
    pub const fn contains(self, other: ModuleFlags) -> bool {
        self.0 & other.0 == other.0
    }
}

/// The descriptor every module exports (under [`DESCRIPTOR_SYMBOL`] or
/// [`DESCRIPTOR_SYMBOL_PREFIX`]`<name>`).
///
/// The first 16 bytes (magic, versions, size) contain no pointers, so the
/// runtime reads and checks them from the file before it opens the library;
/// so are the fields from `flags` on (ABI 1.2), which follow the pointers:
/// the runtime reads them from the file when `size` covers them.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ModuleDescriptor {
    /// Always [`MAGIC`].
    pub magic: [u8; 8],
    /// The [`ABI_MAJOR`] the module was built against.
    pub abi_major: u16,
    /// The [`ABI_MINOR`] the module was built against.
    pub abi_minor: u16,
    /// `size_of::<ModuleDescriptor>()` as the module was built.
    pub size: u32,
    /// The module's name: what other modules import it by.
    pub name: Str,
    /// A label of this build, for diagnostics (`hcr-build` writes the
    /// package's name and version).
    pub build_id: Str,
    /// Names of the modules this module imports.
    pub imports: *const Str,
    /// Number of entries at `imports`.
    pub import_count: usize,
    /// The init entry ([`InitFn`], written out so that C headers generated
    /// from this file see a nullable function pointer); never null in a
    /// valid module.
    pub init: Option<unsafe extern "C" fn(api: *const HostApi) -> Status>,
    /// [`ModuleFlags`] bits. Since ABI 1.2.
    pub flags: u32,
    /// Number of bytes used in `fingerprint`. Since ABI 1.2.
    pub fingerprint_len: u32,
    /// The toolchain [`Fingerprint`] as text (not NUL-terminated); required
    /// when `flags` has [`ModuleFlags::RUST_ABI`]. Since ABI 1.2.
    pub fingerprint: [u8; FINGERPRINT_CAPACITY],
}

// SAFETY: a descriptor is immutable static data (strings and an import list in
// the module's rodata, and a function pointer); reading it from any thread is
// free of data races.
unsafe impl Sync for ModuleDescriptor {}
// SAFETY: see `Sync`.
unsafe impl Send for ModuleDescriptor {}

impl ModuleDescriptor {
    /// A descriptor for the current ABI version, without flags or
    /// fingerprint.
    pub const fn new(name: &'static str, build_id: &'static str, imports: &'static [Str], init: InitFn) -> Self {
        ModuleDescriptor {
            magic: MAGIC,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            size: size_of::<ModuleDescriptor>() as u32,
            name: Str::new(name),
            build_id: Str::new(build_id),
            imports: imports.as_ptr(),
            import_count: imports.len(),
            init: Some(init),
            flags: 0,
            fingerprint_len: 0,
            fingerprint: [0; FINGERPRINT_CAPACITY],
        }
    }

    /// The descriptor with `flags` and the fingerprint of `toolchain` (see
    /// [`Fingerprint::new`]).
    ///
    /// # Panics
    ///
    /// As [`Fingerprint::new`].
    pub const fn with_toolchain(mut self, flags: ModuleFlags, toolchain: &str) -> Self {
        let fingerprint = Fingerprint::new(toolchain);
        self.flags = flags.0;
        self.fingerprint_len = fingerprint.len as u32;
        self.fingerprint = fingerprint.bytes;
        self
    }

    /// The flags.
    pub const fn flags(&self) -> ModuleFlags {
        ModuleFlags(self.flags)
    }

    /// The fingerprint's bytes (clamped to the capacity).
    pub fn fingerprint(&self) -> &[u8] {
        let len = (self.fingerprint_len as usize).min(FINGERPRINT_CAPACITY);
        &self.fingerprint[..len]
    }
}

/// Layout checks: any change here is an ABI break and needs a new major.
const _: () = {
    const P: usize = size_of::<usize>();
    assert!(size_of::<*const c_void>() == P);
    assert!(size_of::<Str>() == 2 * P);
    assert!(size_of::<Status>() == 4);
    assert!(size_of::<Phase>() == 4 && size_of::<Outcome>() == 4);
    assert!(size_of::<Option<InitFn>>() == P);

    assert!(offset_of!(ProcDesc, name) == 0);
    assert!(offset_of!(ProcDesc, addr) == 2 * P);
    assert!(offset_of!(ProcDesc, signature_hash) == 3 * P);
    assert!(offset_of!(ProcDesc, signature) == 3 * P + 8);
    assert!(size_of::<ProcDesc>() == 5 * P + 8);

    assert!(offset_of!(ProcImport, module) == 0);
    assert!(offset_of!(ProcImport, name) == 2 * P);
    assert!(offset_of!(ProcImport, signature_hash) == 4 * P);
    assert!(offset_of!(ProcImport, signature) == 4 * P + 8);
    assert!(size_of::<ProcImport>() == 6 * P + 8);

    assert!(offset_of!(GlobalDesc, name) == 0);
    assert!(offset_of!(GlobalDesc, size) == 2 * P);
    assert!(offset_of!(GlobalDesc, align) == 3 * P);
    assert!(offset_of!(GlobalDesc, layout_hash) == 4 * P);
    assert!(offset_of!(GlobalDesc, layout) == 4 * P + 8);
    assert!(size_of::<GlobalDesc>() == 6 * P + 8);

    assert!(offset_of!(GlobalSlot, ptr) == 0);
    assert!(offset_of!(GlobalSlot, initialize) == P);
    assert!(size_of::<GlobalSlot>() == 2 * P);

    assert!(offset_of!(GlobalImport, module) == 0);
    assert!(offset_of!(GlobalImport, name) == 2 * P);
    assert!(offset_of!(GlobalImport, size) == 4 * P);
    assert!(offset_of!(GlobalImport, align) == 5 * P);
    assert!(offset_of!(GlobalImport, layout_hash) == 6 * P);
    assert!(offset_of!(GlobalImport, layout) == 6 * P + 8);
    assert!(size_of::<GlobalImport>() == 8 * P + 8);

    assert!(offset_of!(ReloadEvent, size) == 0);
    assert!(offset_of!(ReloadEvent, phase) == 4);
    assert!(offset_of!(ReloadEvent, outcome) == 8);
    assert!(offset_of!(ReloadEvent, reserved) == 12);
    assert!(offset_of!(ReloadEvent, generation) == 16);
    assert!(size_of::<ReloadEvent>() == 24);

    assert!(offset_of!(HostApi, size) == 0);
    assert!(offset_of!(HostApi, abi_major) == 4);
    assert!(offset_of!(HostApi, abi_minor) == 6);
    assert!(offset_of!(HostApi, ctx) == 8);
    assert!(offset_of!(HostApi, register_proc) == 8 + P);
    assert!(offset_of!(HostApi, get_proc) == 8 + 2 * P);
    assert!(offset_of!(HostApi, register_global) == 8 + 3 * P);
    assert!(offset_of!(HostApi, get_global) == 8 + 4 * P);
    assert!(offset_of!(HostApi, add_handler) == 8 + 5 * P);
    assert!(offset_of!(HostApi, report_error) == 8 + 6 * P);
    assert!(offset_of!(HostApi, register_global_migrating) == 8 + 7 * P);
    assert!(offset_of!(HostApi, get_services) == 8 + 8 * P);
    assert!(size_of::<HostApi>() == 8 + 9 * P);

    assert!(offset_of!(Services, size) == 0);
    assert!(offset_of!(Services, reserved) == 4);
    assert!(offset_of!(Services, ctx) == 8);
    assert!(offset_of!(Services, alloc) == 8 + P);
    assert!(offset_of!(Services, dealloc) == 8 + 2 * P);
    assert!(offset_of!(Services, realloc) == 8 + 3 * P);
    assert!(offset_of!(Services, alloc_zeroed) == 8 + 4 * P);
    assert!(offset_of!(Services, report_panic) == 8 + 5 * P);
    assert!(size_of::<Services>() == 8 + 6 * P);

    assert!(size_of::<PanicOrigin>() == 4);
    assert!(offset_of!(PanicReport, size) == 0);
    assert!(offset_of!(PanicReport, origin) == 4);
    assert!(offset_of!(PanicReport, line) == 8);
    assert!(offset_of!(PanicReport, column) == 12);
    assert!(offset_of!(PanicReport, module) == 16);
    assert!(offset_of!(PanicReport, proc_) == 16 + 2 * P);
    assert!(offset_of!(PanicReport, message) == 16 + 4 * P);
    assert!(offset_of!(PanicReport, file) == 16 + 6 * P);
    assert!(size_of::<PanicReport>() == 16 + 8 * P);

    // A proc's panic is one thin pointer, so `Result<u64, ProcPanic>` comes
    // back in two registers and `Result<(), ProcPanic>` in one.
    assert!(size_of::<ProcPanic>() == P);
    assert!(size_of::<Result<(), ProcPanic>>() == P);
    #[cfg(target_pointer_width = "64")]
    assert!(size_of::<Result<u64, ProcPanic>>() == 16);

    assert!(offset_of!(GlobalMigration, from_layout_hash) == 0);
    assert!(offset_of!(GlobalMigration, from_size) == 8);
    assert!(offset_of!(GlobalMigration, from_align) == 8 + P);
    assert!(offset_of!(GlobalMigration, migrate) == 8 + 2 * P);
    assert!(size_of::<GlobalMigration>() == 8 + 3 * P);

    assert!(offset_of!(ModuleDescriptor, magic) == 0);
    assert!(offset_of!(ModuleDescriptor, abi_major) == 8);
    assert!(offset_of!(ModuleDescriptor, abi_minor) == 10);
    assert!(offset_of!(ModuleDescriptor, size) == 12);
    assert!(offset_of!(ModuleDescriptor, name) == 16);
    assert!(offset_of!(ModuleDescriptor, build_id) == 16 + 2 * P);
    assert!(offset_of!(ModuleDescriptor, imports) == 16 + 4 * P);
    assert!(offset_of!(ModuleDescriptor, import_count) == 16 + 5 * P);
    assert!(offset_of!(ModuleDescriptor, init) == 16 + 6 * P);
    assert!(offset_of!(ModuleDescriptor, flags) == 16 + 7 * P);
    assert!(offset_of!(ModuleDescriptor, fingerprint_len) == 20 + 7 * P);
    assert!(offset_of!(ModuleDescriptor, fingerprint) == 24 + 7 * P);
    assert!(size_of::<ModuleDescriptor>() == 24 + 7 * P + FINGERPRINT_CAPACITY);
};

#[cfg(test)]
mod tests {
    use super::*;

    unsafe extern "C" fn reject(_ctx: *mut c_void, _p: *const ProcDesc) -> Status {
        Status::FAILED
    }
    unsafe extern "C" fn get_proc(_: *mut c_void, _: *const ProcImport, _: *mut *const c_void) -> Status {
        Status::OK
    }
    unsafe extern "C" fn reg_global(_: *mut c_void, _: *const GlobalDesc, _: *mut GlobalSlot) -> Status {
        Status::OK
    }
    unsafe extern "C" fn get_global(_: *mut c_void, _: *const GlobalImport, _: *mut *mut c_void) -> Status {
        Status::OK
    }
    unsafe extern "C" fn add_handler(_: *mut c_void, _: Phase, _: HandlerFn, _: *mut c_void) -> Status {
        Status::OK
    }
    unsafe extern "C" fn report(_: *mut c_void, _: Str) {}
    unsafe extern "C" fn migrating(
        _: *mut c_void,
        _: *const GlobalDesc,
        _: *const GlobalMigration,
        _: usize,
        _: *mut GlobalSlot,
    ) -> Status {
        Status::OK
    }

    unsafe extern "C" fn services(_: *mut c_void) -> *const Services {
        core::ptr::dangling()
    }

    fn table(size: u32) -> HostApi {
        HostApi {
            size,
            abi_major: ABI_MAJOR,
            abi_minor: ABI_MINOR,
            ctx: core::ptr::null_mut(),
            register_proc: reject,
            get_proc,
            register_global: reg_global,
            get_global,
            add_handler,
            report_error: report,
            register_global_migrating: migrating,
            get_services: services,
        }
    }

    #[test]
    fn wrappers_refuse_entries_beyond_the_table_size() {
        let desc = ProcDesc { name: Str::new("f"), addr: core::ptr::null(), signature_hash: 0, signature: Str::EMPTY };
        let full = table(size_of::<HostApi>() as u32);
        // SAFETY: the table's entries are the test functions above, which
        // ignore their arguments.
        assert_eq!(unsafe { full.register_proc(&desc) }, Status::FAILED);
        // A runtime whose table ends before `register_proc`.
        let old = table(offset_of!(HostApi, register_proc) as u32);
        // SAFETY: as above; the wrapper must not even call the entry.
        assert_eq!(unsafe { old.register_proc(&desc) }, Status::UNSUPPORTED);
        // An ABI 1.0 runtime has no `register_global_migrating`.
        let v1_0 = table(offset_of!(HostApi, register_global_migrating) as u32);
        let global = GlobalDesc { name: Str::new("g"), size: 8, align: 8, layout_hash: 1, layout: Str::EMPTY };
        let mut slot = GlobalSlot { ptr: core::ptr::null_mut(), initialize: 0 };
        // SAFETY: as above.
        assert_eq!(unsafe { v1_0.register_global_migrating(&global, &[], &mut slot) }, Status::UNSUPPORTED);
        // SAFETY: as above.
        assert_eq!(unsafe { full.register_global_migrating(&global, &[], &mut slot) }, Status::OK);
    }

    #[test]
    fn from_raw_copies_only_the_entries_the_runtime_has() {
        let full = table(size_of::<HostApi>() as u32);
        // SAFETY: `full` is a whole table.
        let copy = unsafe { HostApi::from_raw(&full) }.unwrap();
        assert_eq!(copy.size, full.size);
        // SAFETY: the entries are the test functions above.
        assert_eq!(unsafe { copy.services() }, core::ptr::dangling());

        // An ABI 1.1 runtime's table ends after `register_global_migrating`:
        // only that many bytes are its own. Put it in a buffer whose
        // following bytes would be garbage entries if they were copied.
        #[repr(C, align(16))]
        struct Buffer([u8; size_of::<HostApi>() + 8]);
        let v1_1 = offset_of!(HostApi, get_services);
        let mut buffer = Buffer([0xA5; size_of::<HostApi>() + 8]);
        // SAFETY: the table's first `v1_1` bytes are copied into the buffer,
        // which is large enough; the rest keeps the garbage pattern.
        unsafe {
            core::ptr::copy_nonoverlapping(
                core::ptr::from_ref(&table(v1_1 as u32)).cast::<u8>(),
                buffer.0.as_mut_ptr(),
                v1_1,
            )
        };
        // SAFETY: the buffer is aligned and starts with a valid table of
        // `v1_1` bytes.
        let copy = unsafe { HostApi::from_raw(buffer.0.as_ptr().cast()) }.unwrap();
        assert_eq!(
            copy.get_services as *const (),
            unsupported::get_services as *const (),
            "the garbage was not copied"
        );
        // SAFETY: the entry is the refusal, and the size check comes first.
        assert!(unsafe { copy.services() }.is_null(), "a 1.1 table has no services");
        let global = GlobalDesc { name: Str::new("g"), size: 8, align: 8, layout_hash: 1, layout: Str::EMPTY };
        let mut slot = GlobalSlot { ptr: core::ptr::null_mut(), initialize: 0 };
        // SAFETY: the copied entry is the test function `migrating`.
        assert_eq!(unsafe { copy.register_global_migrating(&global, &[], &mut slot) }, Status::OK);

        // A table too short for its context, another major version, null.
        let short = table(8);
        // SAFETY: `short` is a whole table; only its header is read.
        assert_eq!(unsafe { HostApi::from_raw(&short) }.unwrap_err(), Status::INVALID_ARGUMENT);
        let mut other = table(size_of::<HostApi>() as u32);
        other.abi_major = ABI_MAJOR + 1;
        // SAFETY: as above.
        assert_eq!(unsafe { HostApi::from_raw(&other) }.unwrap_err(), Status::UNSUPPORTED);
        // SAFETY: null is refused before anything is read.
        assert_eq!(unsafe { HostApi::from_raw(core::ptr::null()) }.unwrap_err(), Status::INVALID_ARGUMENT);
    }

    #[test]
    fn a_partial_entry_is_not_copied() {
        // A size that ends in the middle of `get_services` (a corrupt table)
        // must not give the copy half a pointer.
        let mut t = table(size_of::<HostApi>() as u32);
        t.size = (offset_of!(HostApi, get_services) + 3) as u32;
        // SAFETY: `t` is a whole table.
        let copy = unsafe { HostApi::from_raw(&t) }.unwrap();
        assert_eq!(copy.get_services as *const (), unsupported::get_services as *const ());
    }

    #[test]
    fn fingerprints_append_the_abi_version_and_fit_the_descriptor() {
        const TOOLCHAIN: &str = "rustc 1.95.0 (59807616e1fa2540724bfbac14d7976d7e4a3860); x86_64-unknown-linux-gnu; panic=unwind; target-features=fxsr,sse,sse2";
        static IMPORTS: [Str; 0] = [];
        unsafe extern "C" fn init(_: *const HostApi) -> Status {
            Status::OK
        }
        const D: ModuleDescriptor =
            ModuleDescriptor::new("m", "b", &IMPORTS, init).with_toolchain(ModuleFlags::RUST_ABI, TOOLCHAIN);
        let expected = alloc::format!("{TOOLCHAIN}; hcr-abi {VERSION}");
        assert_eq!(D.fingerprint(), expected.as_bytes());
        assert_eq!(Fingerprint::new(TOOLCHAIN).as_str(), expected);
        assert!(D.flags().contains(ModuleFlags::RUST_ABI));
        assert!(!D.flags().contains(ModuleFlags::RUST_ABI.union(ModuleFlags::HOST_ALLOCATOR)));
        // The longest accepted text still fits with the version.
        let longest = "x".repeat(TOOLCHAIN_TEXT_CAPACITY);
        assert!(Fingerprint::new(&longest).as_bytes().len() <= FINGERPRINT_CAPACITY);
        let plain = ModuleDescriptor::new("m", "b", &IMPORTS, init);
        assert_eq!((plain.flags(), plain.fingerprint()), (ModuleFlags::NONE, &[][..]));
    }

    #[test]
    fn services_report_which_entries_they_have() {
        unsafe extern "C" fn a(_: *mut c_void, _: usize, _: usize) -> *mut u8 {
            core::ptr::null_mut()
        }
        unsafe extern "C" fn d(_: *mut c_void, _: *mut u8, _: usize, _: usize) {}
        unsafe extern "C" fn r(_: *mut c_void, _: *mut u8, _: usize, _: usize, _: usize) -> *mut u8 {
            core::ptr::null_mut()
        }
        unsafe extern "C" fn p(_: *mut c_void, _: *const PanicReport) {}
        let mut s = Services {
            size: size_of::<Services>() as u32,
            reserved: 0,
            ctx: core::ptr::null_mut(),
            alloc: a,
            dealloc: d,
            realloc: r,
            alloc_zeroed: a,
            report_panic: p,
        };
        assert!(s.has_allocator() && s.has_report_panic());
        s.size = offset_of!(Services, report_panic) as u32;
        assert!(s.has_allocator() && !s.has_report_panic());
        s.size = offset_of!(Services, alloc_zeroed) as u32;
        assert!(!s.has_allocator());
    }

    #[test]
    fn descriptor_header_is_pointer_free_and_current() {
        static IMPORTS: [Str; 1] = [Str::new("dep")];
        unsafe extern "C" fn init(_: *const HostApi) -> Status {
            Status::OK
        }
        let d = ModuleDescriptor::new("m", "b1", &IMPORTS, init);
        assert_eq!(d.magic, MAGIC);
        assert_eq!((d.abi_major, d.abi_minor), (ABI_MAJOR, ABI_MINOR));
        assert_eq!(d.size as usize, size_of::<ModuleDescriptor>());
        assert_eq!(d.import_count, 1);
        // SAFETY: the name points at a static string literal.
        assert_eq!(unsafe { d.name.as_bytes() }, b"m");
        assert_eq!(&DESCRIPTOR_SYMBOL_NUL[..DESCRIPTOR_SYMBOL.len()], DESCRIPTOR_SYMBOL.as_bytes());
    }
}
