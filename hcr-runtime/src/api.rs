//! The `extern "C"` entry points of [`HostApi`] that module inits call.
//!
//! Each entry turns its raw arguments into references, runs the matching
//! [`InitContext`] method and converts the outcome into a [`Status`]. A panic
//! in the runtime is caught here and reported as [`Status::INTERNAL`]:
//! nothing unwinds into module code.

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};

use hcr_abi::{
    ABI_MAJOR, ABI_MINOR, GlobalDesc, GlobalImport, GlobalMigration, GlobalSlot, HandlerFn, HostApi, Phase, ProcDesc,
    ProcImport, Services, Status, Str,
};

use crate::error::Error;

/// What a module's init can ask of the runtime, with its arguments read and
/// checked for null: implemented by the runtime's init session.
pub(crate) trait InitContext {
    /// Records an error for the module being initialised.
    fn record(&mut self, error: Error);
    /// An invalid-argument error naming the module being initialised.
    fn invalid(&self, reason: String) -> Error;
    /// Registers one of the module's procs.
    fn register_proc(&mut self, desc: &ProcDesc) -> Result<(), Error>;
    /// The stub of another module's proc.
    fn get_proc(&mut self, import: &ProcImport) -> Result<*const c_void, Error>;
    /// Registers one of the module's globals, with migrations from older
    /// layouts.
    fn register_global(&mut self, desc: &GlobalDesc, migrations: &[GlobalMigration]) -> Result<GlobalSlot, Error>;
    /// The storage of another module's global.
    fn get_global(&mut self, import: &GlobalImport) -> Result<*mut c_void, Error>;
    /// Registers a reload handler.
    fn add_handler(&mut self, phase: Phase, f: HandlerFn, user: *mut c_void) -> Result<(), Error>;
    /// Adds a message explaining a failure.
    fn report(&mut self, message: Str);
    /// The runtime's services table, which lives as long as the runtime.
    fn services(&self) -> *const Services;
}

/// Builds the table for one init call. The table (and `context`) must
/// outlive the call and nothing else may touch `context` during it.
pub(crate) fn host_api<C: InitContext>(context: &mut C) -> HostApi {
    HostApi {
        size: size_of::<HostApi>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        ctx: (context as *mut C).cast(),
        register_proc: register_proc::<C>,
        get_proc: get_proc::<C>,
        register_global: register_global::<C>,
        get_global: get_global::<C>,
        add_handler: add_handler::<C>,
        report_error: report_error::<C>,
        register_global_migrating: register_global_migrating::<C>,
        get_services: get_services::<C>,
    }
}

/// The status a module sees for an error the runtime records.
fn status_of(error: &Error) -> Status {
    match error {
        Error::DuplicateProc { .. } | Error::DuplicateGlobal { .. } => Status::DUPLICATE,
        Error::GlobalLayoutMismatch { .. } => Status::LAYOUT_MISMATCH,
        Error::UnknownGlobal { .. } | Error::UnknownModule { .. } => Status::NOT_FOUND,
        Error::CapacityExhausted { .. } => Status::CAPACITY_EXHAUSTED,
        Error::SignatureMismatch { .. } => Status::SIGNATURE_MISMATCH,
        Error::InvalidArgument { .. } => Status::INVALID_ARGUMENT,
        _ => Status::INTERNAL,
    }
}

/// Runs `f` on the context behind `ctx`, recording an error and catching
/// panics.
///
/// # Safety
///
/// `ctx` must be the `ctx` of a table made by [`host_api`] for a `C` whose
/// init call is running on this thread.
unsafe fn with_session<C: InitContext>(ctx: *mut c_void, f: impl FnOnce(&mut C) -> Result<(), Error>) -> Status {
    let outcome = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: by the contract above, `ctx` is a live, exclusively
        // borrowed `C` for the duration of this call.
        let session = unsafe { &mut *ctx.cast::<C>() };
        match f(session) {
            Ok(()) => Status::OK,
            Err(error) => {
                let status = status_of(&error);
                session.record(error);
                status
            }
        }
    }));
    outcome.unwrap_or(Status::INTERNAL)
}

/// Reads a pointer argument that must not be null.
///
/// # Safety
///
/// A non-null `ptr` must point at a valid `T` for the duration of the call.
unsafe fn arg<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, String> {
    // SAFETY: forwarded from the caller.
    unsafe { ptr.as_ref() }.ok_or_else(|| format!("{what} is a null pointer"))
}

unsafe extern "C" fn register_proc<C: InitContext>(ctx: *mut c_void, proc_: *const ProcDesc) -> Status {
    // SAFETY: `ctx` comes from `host_api` (module contract); `proc_` is
    // checked for null and otherwise valid by the module contract.
    unsafe {
        with_session::<C>(ctx, |s| {
            let desc = arg(proc_, "the proc descriptor").map_err(|r| s.invalid(r))?;
            s.register_proc(desc)
        })
    }
}

unsafe extern "C" fn get_proc<C: InitContext>(
    ctx: *mut c_void,
    import: *const ProcImport,
    out: *mut *const c_void,
) -> Status {
    // SAFETY: as for `register_proc`; `out` is checked for null.
    unsafe {
        with_session::<C>(ctx, |s| {
            let import = arg(import, "the proc import").map_err(|r| s.invalid(r))?;
            if out.is_null() {
                return Err(s.invalid("the output pointer is null".into()));
            }
            let stub = s.get_proc(import)?;
            out.write(stub);
            Ok(())
        })
    }
}

unsafe extern "C" fn register_global<C: InitContext>(
    ctx: *mut c_void,
    global: *const GlobalDesc,
    out: *mut GlobalSlot,
) -> Status {
    // SAFETY: as for `register_proc`; `out` is checked for null.
    unsafe {
        with_session::<C>(ctx, |s| {
            let desc = arg(global, "the global descriptor").map_err(|r| s.invalid(r))?;
            if out.is_null() {
                return Err(s.invalid("the output pointer is null".into()));
            }
            let slot = s.register_global(desc, &[])?;
            out.write(slot);
            Ok(())
        })
    }
}

unsafe extern "C" fn register_global_migrating<C: InitContext>(
    ctx: *mut c_void,
    global: *const GlobalDesc,
    migrations: *const GlobalMigration,
    migration_count: usize,
    out: *mut GlobalSlot,
) -> Status {
    // SAFETY: as for `register_global`; `migrations` is checked for null and
    // otherwise points at `migration_count` entries (module contract).
    unsafe {
        with_session::<C>(ctx, |s| {
            let desc = arg(global, "the global descriptor").map_err(|r| s.invalid(r))?;
            if out.is_null() || (migrations.is_null() && migration_count > 0) {
                return Err(s.invalid("a null pointer was passed".into()));
            }
            if migration_count > 64 {
                return Err(s.invalid(format!("{migration_count} migrations for one global (at most 64)")));
            }
            let migrations =
                if migration_count == 0 { &[][..] } else { std::slice::from_raw_parts(migrations, migration_count) };
            let slot = s.register_global(desc, migrations)?;
            out.write(slot);
            Ok(())
        })
    }
}

unsafe extern "C" fn get_global<C: InitContext>(
    ctx: *mut c_void,
    import: *const GlobalImport,
    out: *mut *mut c_void,
) -> Status {
    // SAFETY: as for `register_proc`; `out` is checked for null.
    unsafe {
        with_session::<C>(ctx, |s| {
            let import = arg(import, "the global import").map_err(|r| s.invalid(r))?;
            if out.is_null() {
                return Err(s.invalid("the output pointer is null".into()));
            }
            let ptr = s.get_global(import)?;
            out.write(ptr);
            Ok(())
        })
    }
}

unsafe extern "C" fn add_handler<C: InitContext>(
    ctx: *mut c_void,
    phase: Phase,
    handler: HandlerFn,
    user: *mut c_void,
) -> Status {
    // SAFETY: as for `register_proc`.
    unsafe { with_session::<C>(ctx, |s| s.add_handler(phase, handler, user)) }
}

unsafe extern "C" fn report_error<C: InitContext>(ctx: *mut c_void, message: Str) {
    // SAFETY: as for `register_proc`; `message` is valid for the call.
    let _ = unsafe {
        with_session::<C>(ctx, |s| {
            s.report(message);
            Ok(())
        })
    };
}

/// The runtime's [`Services`] table; null only if looking it up panicked.
unsafe extern "C" fn get_services<C: InitContext>(ctx: *mut c_void) -> *const Services {
    let services = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: as for `with_session`: `ctx` is a live `C` for this call.
        let session = unsafe { &*ctx.cast::<C>() };
        session.services()
    }));
    services.unwrap_or(std::ptr::null())
}
