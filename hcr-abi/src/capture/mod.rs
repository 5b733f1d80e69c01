//! The module side of panics in reloadable code: a panic hook for the
//! module's own copy of `std`, and the guards that generated code puts around
//! reloadable functions, reload hooks and migrations.
//!
//! # What happens on a panic in module code
//!
//! 1. The module's hook (installed by its generated init) records where the
//!    panic happened in a thread-local slot of plain data: no destructor is
//!    registered for it (a thread-local destructor would keep the library
//!    mapped until the thread exits), and nothing is allocated.
//! 2. The hook walks the thread's stack to see whether a guard of this
//!    module will catch the panic (a frame in one of the module's guarded
//!    functions). If none will (a thread the module started), it prints one
//!    line to stderr and reports the panic to the runtime. It never captures
//!    a backtrace or names the thread: std's backtrace cache (tens of MiB
//!    with `RUST_BACKTRACE=1`) and thread handles would stay with the
//!    module's `std` and keep its library mapped.
//! 3. The guard catches the unwinding panic and turns it into a
//!    [`ProcPanic`] with the recorded location and the payload's message (a
//!    [`ProcPanic`] payload, passed on from a proc this one called, stays as
//!    it is). The payload is freed; the [`ProcPanic`] goes to the caller.
//!
//! So a panic leaves nothing behind: the slot is overwritten by the next
//! panic, and the only allocation, the [`ProcPanic`], belongs to the caller.

use std::any::Any;
use std::boxed::Box;
use std::cell::Cell;
use std::io::Write;
use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::string::{String, ToString};
use std::sync::atomic::{AtomicPtr, Ordering};

use crate::{HostApi, ModuleFlags, PanicOrigin, PanicReport, ProcPanic, ReloadEvent, Services, Status, Str};

#[cfg(all(unix, not(target_arch = "arm")))]
#[path = "unix.rs"]
mod imp;

#[cfg(not(all(unix, not(target_arch = "arm"))))]
#[path = "other.rs"]
mod imp;

/// The start of a function whose panics a guard catches: a proc's guard, a
/// hook's, a migration's, the module's init.
#[derive(Clone, Copy, Debug)]
pub struct Catcher(pub *const ());

// SAFETY: a code address, only compared with others.
unsafe impl Sync for Catcher {}

/// What a module's generated code tells this crate about the module.
#[derive(Debug)]
pub struct ModuleInfo {
    /// The module's name.
    pub name: &'static str,
    /// Its flags, as in its descriptor.
    pub flags: ModuleFlags,
    /// Every function of the module that catches panics.
    pub catchers: &'static [Catcher],
}

/// The runtime's table, once the module's init installed it.
static SERVICES: AtomicPtr<Services> = AtomicPtr::new(core::ptr::null_mut());

/// What the module's generated code said about the module, once its init
/// started: the name that reports of init panics carry.
static MODULE: AtomicPtr<ModuleInfo> = AtomicPtr::new(core::ptr::null_mut());

/// Where the last panic of this thread in this module happened: a pointer
/// into the module's static data (a `&'static str` that the compiler
/// emitted), line and column. Plain `Copy` data, so no destructor is
/// registered for it.
#[derive(Clone, Copy)]
struct Site {
    file: *const u8,
    len: usize,
    line: u32,
    column: u32,
}

std::thread_local! {
    static SITE: Cell<Option<Site>> = const { Cell::new(None) };
}

/// Takes this thread's recorded panic location.
fn take_site() -> Option<(String, u32, u32)> {
    let site = SITE.try_with(Cell::take).ok().flatten()?;
    // SAFETY: the pointer and length are those of a `&str` the compiler
    // emitted into this library's static data (a panic location); the hook
    // of this library's `std` only sees panics raised by code of this
    // library, which is mapped while its guard runs.
    let bytes = unsafe { core::slice::from_raw_parts(site.file, site.len) };
    Some((String::from_utf8_lossy(bytes).into_owned(), site.line, site.column))
}

/// The message of a panic payload.
fn payload_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else if let Some(p) = payload.downcast_ref::<ProcPanic>() {
        p.to_string()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Frees a panic payload, even one whose destructor panics.
fn dispose(payload: Box<dyn Any + Send>) {
    if let Err(nested) = std::panic::catch_unwind(AssertUnwindSafe(move || drop(payload))) {
        // A payload whose destructor panicked: leak the nested payload
        // rather than risk a third panic.
        core::mem::forget(nested);
    }
}

/// Turns a caught payload into a [`ProcPanic`] of `module::name`.
fn to_proc_panic(module: &str, name: &str, payload: Box<dyn Any + Send>) -> (ProcPanic, bool) {
    let site = take_site();
    match payload.downcast::<ProcPanic>() {
        Ok(passed_on) => (*passed_on, true),
        Err(payload) => {
            let mut panic = ProcPanic::new(module, name, &payload_message(&*payload));
            if let Some((file, line, column)) = site {
                panic = panic.with_location(&file, line, column);
            }
            dispose(payload);
            (panic, false)
        }
    }
}

fn str_of(s: &str) -> Str {
    Str::new(s)
}

/// Tells the runtime about a panic; without a runtime table, prints what
/// nobody else would see (a hook's panic).
fn report(origin: PanicOrigin, panic: &ProcPanic) {
    // Acquire: pairs with the release in `init_module`, so the table's
    // entries are visible here.
    let services = SERVICES.load(Ordering::Acquire);
    // SAFETY: a non-null pointer is the table the runtime handed to init,
    // valid for as long as the runtime lives, which outlives the module.
    if let Some(services) = unsafe { services.as_ref() }
        && services.has_report_panic()
    {
        let report = PanicReport {
            size: size_of::<PanicReport>() as u32,
            origin,
            line: panic.line(),
            column: panic.column(),
            module: str_of(panic.module()),
            proc_: str_of(panic.proc_name()),
            message: str_of(panic.message()),
            file: str_of(panic.file()),
        };
        // SAFETY: the entry exists (checked) and the strings outlive the call.
        unsafe { (services.report_panic)(services.ctx, &report) };
    } else if origin == PanicOrigin::HOOK {
        print_line(&std::format!("hcr: reload hook {}::{} failed: {panic}", panic.module(), panic.proc_name()));
    }
}

/// Writes one line to stderr, ignoring failures (there is nobody to tell).
fn print_line(line: &str) {
    let mut text = String::with_capacity(line.len() + 1);
    text.push_str(line);
    text.push('\n');
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// The module's panic hook, as installed: the module comes from `MODULE`.
fn hook(info: &PanicHookInfo<'_>) {
    // Acquire: pairs with the release in `init_module`, which stores it
    // before it installs this hook.
    // SAFETY: a non-null pointer is the `&'static ModuleInfo` stored there.
    if let Some(module) = unsafe { MODULE.load(Ordering::Acquire).as_ref() } {
        on_panic(info, module);
    }
}

/// The module's panic hook.
fn on_panic(info: &PanicHookInfo<'_>, module: &'static ModuleInfo) {
    let location = info.location();
    let site =
        location.map(|l| Site { file: l.file().as_ptr(), len: l.file().len(), line: l.line(), column: l.column() });
    let _ = SITE.try_with(|slot| slot.set(site));
    let caught = imp::frame_in(&|start| module.catchers.iter().any(|c| c.0 as usize == start));
    if caught == Some(true) {
        return;
    }
    let message = payload_message(info.payload());
    let mut panic = ProcPanic::new(module.name, "", &message);
    let place = match location {
        Some(l) => {
            panic = panic.with_location(l.file(), l.line(), l.column());
            std::format!(" at {}:{}:{}", l.file(), l.line(), l.column())
        }
        None => String::new(),
    };
    print_line(&std::format!(
        "hcr: panic in module `{}` outside any reloadable function{place}: {message}",
        module.name
    ));
    report(PanicOrigin::UNCAUGHT, &panic);
}

/// Installs the runtime's services (the host's allocator, panic reports)
/// and the module's panic hook. The first thing a generated init does.
///
/// # Safety
///
/// `api` must be the table of the running init (copied with
/// [`HostApi::from_raw`]), and `module` must describe this module.
///
/// # Errors
///
/// A failure status after telling the runtime why (`report_error`).
pub(crate) unsafe fn init_module(api: &HostApi, module: &'static ModuleInfo) -> Result<(), Status> {
    // Release: publishes the (static, immutable) description to the acquire
    // load in `init_panic_message`.
    MODULE.store(core::ptr::from_ref(module).cast_mut(), Ordering::Release);
    // SAFETY: forwarded from the caller.
    let services = unsafe { api.services() };
    let refuse = |status: Status, message: &str| {
        // SAFETY: forwarded from the caller.
        unsafe { api.report_error(message) };
        Err(status)
    };
    let rust_abi = module.flags.contains(ModuleFlags::RUST_ABI);
    if !services.is_null() {
        // Release: publishes the table to the acquire loads in `report`,
        // possibly on other threads of the module.
        SERVICES.store(services.cast_mut(), Ordering::Release);
        #[cfg(feature = "global-allocator")]
        // SAFETY: the runtime's table lives as long as the runtime, which
        // outlives every module it loads.
        if let Err(status) = unsafe { crate::allocator::GLOBAL.install(services) }
            && rust_abi
        {
            // A module without Rust-ABI procs exchanges no Rust-owned values
            // with the host: it may keep its own allocator.
            return refuse(
                status,
                &std::format!(
                    "module `{}` cannot allocate from the host's allocator: {}",
                    module.name,
                    if status == Status::FAILED {
                        "it allocated before its init (a static constructor?); such memory could later be freed by the wrong allocator"
                    } else {
                        "the runtime's services table has no allocator"
                    }
                ),
            );
        }
    }
    if rust_abi {
        // SAFETY: a non-null table is valid (see above).
        let allocator = unsafe { services.as_ref() }.is_some_and(Services::has_allocator);
        if !allocator || !cfg!(feature = "global-allocator") {
            return refuse(
                Status::UNSUPPORTED,
                &std::format!(
                    "module `{}` has reloadable Rust functions, which need a runtime of ABI 1.2 or newer (its allocator and panic reports); this runtime is ABI {}.{} and offers no services",
                    module.name,
                    api.abi_major,
                    api.abi_minor
                ),
            );
        }
    }
    // A hook that captures nothing is a zero-sized box: installing it
    // allocates nothing, so the box the library's `std` keeps (and never
    // frees: it goes away with the library) costs nothing per load.
    std::panic::set_hook(Box::new(hook));
    Ok(())
}

/// The guard around a reloadable Rust function. Generated shims call it
/// with a closure that calls the function; it is inlined into the shim, so
/// the shim is where the panic is caught.
///
/// # Errors
///
/// The panic of `f`, as a [`ProcPanic`].
#[inline(always)]
pub fn guard<R>(module: &'static str, name: &'static str, f: impl FnOnce() -> R) -> Result<R, ProcPanic> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Ok(value),
        Err(payload) => Err(caught(module, name, payload)),
    }
}

#[cold]
#[inline(never)]
fn caught(module: &'static str, name: &'static str, payload: Box<dyn Any + Send>) -> ProcPanic {
    let (panic, passed_on) = to_proc_panic(module, name, payload);
    if !passed_on {
        report(PanicOrigin::PROC, &panic);
    }
    panic
}

/// The guard around a reload hook: a panic is reported, not propagated.
///
/// # Safety
///
/// `event` must be null or valid for the call (the runtime's contract for
/// handlers).
#[inline(always)]
pub unsafe fn hook_guard(
    module: &'static str,
    name: &'static str,
    event: *const ReloadEvent,
    f: impl FnOnce(&ReloadEvent),
) {
    // SAFETY: forwarded from the caller.
    let Some(event) = (unsafe { event.as_ref() }) else { return };
    if let Err(payload) = std::panic::catch_unwind(AssertUnwindSafe(|| f(event))) {
        hook_failed(module, name, payload);
    }
}

#[cold]
#[inline(never)]
fn hook_failed(module: &'static str, name: &'static str, payload: Box<dyn Any + Send>) {
    let (panic, _) = to_proc_panic(module, name, payload);
    report(PanicOrigin::HOOK, &panic);
}

/// The guard around a migration: a panic becomes [`Status::FAILED`] and is
/// reported.
#[inline(always)]
pub fn migration_guard(module: &'static str, name: &'static str, f: impl FnOnce()) -> Status {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(()) => Status::OK,
        Err(payload) => {
            let (panic, _) = to_proc_panic(module, name, payload);
            report(PanicOrigin::MIGRATION, &panic);
            Status::FAILED
        }
    }
}

/// The message an init reports for a panic it caught: with the location
/// the hook recorded, if any. The panic is also reported to the runtime
/// ([`PanicOrigin::INIT`]) once the init has installed its services.
pub fn init_panic_message(payload: Box<dyn Any + Send>) -> String {
    let site = take_site();
    let message = payload_message(&*payload);
    dispose(payload);
    // Acquire: pairs with the release in `init_module`.
    // SAFETY: a non-null pointer is the `&'static ModuleInfo` stored there.
    if let Some(module) = unsafe { MODULE.load(Ordering::Acquire).as_ref() } {
        let mut panic = ProcPanic::new(module.name, "init", &message);
        if let Some((file, line, column)) = &site {
            panic = panic.with_location(file, *line, *column);
        }
        report(PanicOrigin::INIT, &panic);
    }
    match site {
        Some((file, line, column)) => std::format!("init panicked at {file}:{line}:{column}: {message}"),
        None => std::format!("init panicked: {message}"),
    }
}

/// Raises a [`ProcPanic`] as a panic of the caller's `std`, located at the
/// caller's call site: what a host's `<proc>()` binding does on `Err`.
#[cold]
#[inline(never)]
#[track_caller]
pub fn raise(panic: ProcPanic) -> ! {
    std::panic!("{panic}")
}

/// Raises a [`ProcPanic`] in a module, as the payload itself, so that the
/// calling proc's guard passes the same [`ProcPanic`] on: what a module's
/// `<proc>()` binding to another module does on `Err`. The module's panic
/// hook sees it, and prints it if no guard will catch it.
#[cold]
#[inline(never)]
#[track_caller]
pub fn raise_in_module(panic: ProcPanic) -> ! {
    std::panic::panic_any(panic)
}

/// Like [`raise_in_module`] without running the panic hook: for static
/// builds, where the panic was already reported by the hook of the one
/// `std` of the program.
#[cold]
#[inline(never)]
pub fn resume_in_module(panic: ProcPanic) -> ! {
    std::panic::resume_unwind(Box::new(panic))
}
