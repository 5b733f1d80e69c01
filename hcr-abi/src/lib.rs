//! The binary contract between the hcr runtime and reloadable modules.
//!
//! Everything here is `#[repr(C)]` and free of Rust-only types, so a module
//! built by another compiler version (or written in C) can talk to the
//! runtime. Modules depend on this crate only, never on the runtime.
//!
//! # The contract in short
//!
//! * A module is a dynamic library that exports one [`ModuleDescriptor`] under
//!   the symbol [`DESCRIPTOR_SYMBOL`]. The descriptor names the module, lists
//!   the modules it imports and points at its init entry.
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
//! Besides the C contract, this crate has the two types that generated Rust
//! code uses (see `hcr-build`): [`Global`], a module's handle on a
//! runtime-owned global, and [`ProcCell`], a cached stub address used by
//! generated bindings.
//!
//! # Lifetimes
//!
//! The [`HostApi`] table and its `ctx` are valid only during the call of the
//! init entry, on the thread that made it. Strings passed to the runtime are
//! copied before the call returns. Reload handlers stay registered until the
//! module is reloaded or unloaded.
#![no_std]

mod helpers;

pub use helpers::{Global, Migration, ProcCell};

use core::ffi::c_void;
use core::mem::{offset_of, size_of};

/// Major ABI version. A runtime refuses modules whose major version differs.
pub const ABI_MAJOR: u16 = 1;

/// Minor ABI version: the number of append-only extensions to [`HostApi`].
///
/// * 0: the original table.
/// * 1: `register_global_migrating`.
pub const ABI_MINOR: u16 = 1;

/// The first eight bytes of every [`ModuleDescriptor`].
pub const MAGIC: [u8; 8] = *b"HCRMODUL";

/// Name of the exported symbol that holds a module's [`ModuleDescriptor`].
pub const DESCRIPTOR_SYMBOL: &str = "HCR_MODULE_DESCRIPTOR";

/// [`DESCRIPTOR_SYMBOL`] with a trailing NUL, as `dlsym` wants it.
pub const DESCRIPTOR_SYMBOL_NUL: &[u8] = b"HCR_MODULE_DESCRIPTOR\0";

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
}

impl HostApi {
    /// Whether the runtime's table contains the entry ending at `end` bytes.
    const fn provides(&self, end: usize) -> bool {
        self.size as usize >= end
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

/// The descriptor every module exports under [`DESCRIPTOR_SYMBOL`].
///
/// The first 16 bytes (magic, versions, size) contain no pointers, so the
/// runtime reads and checks them from the file before it opens the library.
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
    /// An identifier of this build, for diagnostics.
    pub build_id: Str,
    /// Names of the modules this module imports.
    pub imports: *const Str,
    /// Number of entries at `imports`.
    pub import_count: usize,
    /// The init entry ([`InitFn`], written out so that C headers generated
    /// from this file see a nullable function pointer); never null in a
    /// valid module.
    pub init: Option<unsafe extern "C" fn(api: *const HostApi) -> Status>,
}

// SAFETY: a descriptor is immutable static data (strings and an import list in
// the module's rodata, and a function pointer); reading it from any thread is
// free of data races.
unsafe impl Sync for ModuleDescriptor {}
// SAFETY: see `Sync`.
unsafe impl Send for ModuleDescriptor {}

impl ModuleDescriptor {
    /// A descriptor for the current ABI version.
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
        }
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
    assert!(size_of::<HostApi>() == 8 + 8 * P);

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
    assert!(size_of::<ModuleDescriptor>() == 16 + 7 * P);
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
