//! The C API: the runtime for hosts written in C, C++, Zig or anything else
//! that calls C. Declared in `include/hcr.h`, which is generated from this
//! file (a test regenerates it and compares).
//!
//! Every function catches panics, checks its pointers and strings, and
//! reports failures with an [`HcrResult`] (or a null pointer) plus a message
//! that [`hcr_last_error`] returns on the same thread.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;

use hcr_abi::{Outcome, Phase, ReloadEvent as HcrReloadEvent};

use crate::config::{Config, UnloadPolicy};
use crate::runtime::{ReloadStage, Runtime};

/// How a call of the C API ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HcrResult {
    /// Success.
    Ok = 0,
    /// The runtime refused or failed: a module did not load, a reload was
    /// rolled back (the old code keeps running with its state), a name is
    /// unknown... `hcr_last_error` says what happened.
    Failed = 1,
    /// A pointer was null, or a string was not valid UTF-8.
    InvalidArgument = 2,
    /// The runtime panicked (a bug in hcr); the runtime is still usable.
    Panicked = 3,
}

/// `HcrConfig::unload_policy`: close a replaced library once every thread
/// registered with the runtime passed a quiescent point (no thread is
/// registered through the C API, so for C hosts this is the same as
/// `HCR_UNLOAD_IMMEDIATE`).
pub const HCR_UNLOAD_DEFERRED: u32 = 0;
/// `HcrConfig::unload_policy`: close a replaced library as soon as the
/// reload commits.
pub const HCR_UNLOAD_IMMEDIATE: u32 = 1;
/// `HcrConfig::unload_policy`: keep replaced libraries loaded until the
/// runtime is freed.
pub const HCR_UNLOAD_NEVER: u32 = 2;

/// A reload handler: called with the `user` pointer it was registered with.
pub type HcrHandler = Option<unsafe extern "C" fn(user: *mut c_void, event: *const HcrReloadEvent)>;

/// Settings for `hcr_runtime_new`. Fill it with `hcr_config_from_env` (or
/// `hcr_config_default`), then change what you need.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HcrConfig {
    /// Preferred address of the stub table; 0 lets the system choose.
    pub stub_base: usize,
    /// Number of stubs the table can hold.
    pub stub_capacity: usize,
    /// What happens to replaced libraries: one of the `HCR_UNLOAD_*`
    /// constants.
    pub unload_policy: u32,
    /// Watch the modules' files so that `hcr_reload_needed` costs one atomic
    /// load while nothing changes.
    pub watch_files: bool,
    /// Milliseconds a changed module file must go unmodified before it is
    /// loaded (a linker may still be writing it); at most 10000.
    pub settle_ms: u32,
    /// A file to which every reload that did something appends one line, or
    /// null. Copied by `hcr_runtime_new`.
    pub report_file: *const c_char,
}

/// What `hcr_perform_reload` did.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct HcrReloadSummary {
    /// The generation after the reload (the number of committed reloads).
    pub generation: u64,
    /// Modules whose new build is now current; 0 when nothing changed.
    pub reloaded: u32,
    /// Modules loaded for the first time (new imports).
    pub loaded: u32,
    /// Modules unloaded because nothing imports them any more.
    pub unloaded: u32,
    /// Milliseconds the reload took.
    pub total_ms: f64,
}

/// A runtime, created by `hcr_runtime_new` and freed by `hcr_runtime_free`.
/// It may be used from several threads at once.
pub struct HcrRuntime {
    runtime: Runtime,
}

thread_local! {
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

fn set_last_error(message: String) {
    let message = CString::new(message.replace('\0', "\\0")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(message));
}

fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// A failure that becomes an [`HcrResult`] and the thread's last error.
struct Failure(HcrResult, String);

impl From<crate::Error> for Failure {
    fn from(e: crate::Error) -> Failure {
        Failure(HcrResult::Failed, e.to_string())
    }
}

fn invalid(message: impl Into<String>) -> Failure {
    Failure(HcrResult::InvalidArgument, message.into())
}

/// Runs `f`, catching panics and recording failures; `on_failure` is what
/// the C caller gets back then.
fn guard<T>(on_failure: T, f: impl FnOnce() -> Result<T, Failure>) -> (T, HcrResult) {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(value)) => (value, HcrResult::Ok),
        Ok(Err(Failure(code, message))) => {
            set_last_error(message);
            (on_failure, code)
        }
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(format!("hcr panicked: {what}"));
            (on_failure, HcrResult::Panicked)
        }
    }
}

fn status(f: impl FnOnce() -> Result<(), Failure>) -> HcrResult {
    guard((), f).1
}

/// # Safety
///
/// `runtime` is null or was returned by `hcr_runtime_new` and not freed.
unsafe fn runtime_ref<'a>(runtime: *const HcrRuntime) -> Result<&'a Runtime, Failure> {
    // SAFETY: per this function's contract.
    unsafe { runtime.as_ref() }.map(|r| &r.runtime).ok_or_else(|| invalid("the runtime pointer is null"))
}

/// # Safety
///
/// `s` is null or points at a NUL-terminated string valid for `'a`.
unsafe fn text<'a>(s: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if s.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: per this function's contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    bytes.to_str().map_err(|_| invalid(format!("{what} is not valid UTF-8")))
}

/// # Safety
///
/// As for [`text`].
unsafe fn path(s: *const c_char, what: &str) -> Result<PathBuf, Failure> {
    if s.is_null() {
        return Err(invalid(format!("{what} is null")));
    }
    // SAFETY: per this function's contract.
    let bytes = unsafe { CStr::from_ptr(s) };
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        Ok(PathBuf::from(std::ffi::OsStr::from_bytes(bytes.to_bytes())))
    }
    #[cfg(not(unix))]
    {
        bytes.to_str().map(PathBuf::from).map_err(|_| invalid(format!("{what} is not valid UTF-8")))
    }
}

fn c_config(config: &Config) -> HcrConfig {
    HcrConfig {
        stub_base: config.stub_base,
        stub_capacity: config.stub_capacity,
        unload_policy: match config.unload_policy {
            UnloadPolicy::Immediate => HCR_UNLOAD_IMMEDIATE,
            UnloadPolicy::Never => HCR_UNLOAD_NEVER,
            _ => HCR_UNLOAD_DEFERRED,
        },
        watch_files: config.watch_files,
        settle_ms: u32::try_from(config.settle_time.as_millis()).unwrap_or(u32::MAX),
        report_file: std::ptr::null(),
    }
}

/// Writes the built-in defaults to `*config` (ignoring the environment).
///
/// # Safety
///
/// `config` is null or points at writable memory for an `HcrConfig`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_config_default(config: *mut HcrConfig) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let out = unsafe { config.as_mut() }.ok_or_else(|| invalid("the config pointer is null"))?;
        *out = c_config(&Config::new());
        Ok(())
    })
}

/// Writes the defaults overridden by the environment (`HCR_STUB_BASE`,
/// `HCR_STUB_CAPACITY`, `HCR_WATCH`, `HCR_SETTLE_MS`) to `*config`. `report_file` is left
/// null: `hcr_runtime_new(NULL)` reads `HCR_REPORT_FILE` itself.
///
/// # Safety
///
/// `config` is null or points at writable memory for an `HcrConfig`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_config_from_env(config: *mut HcrConfig) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let out = unsafe { config.as_mut() }.ok_or_else(|| invalid("the config pointer is null"))?;
        *out = c_config(&Config::from_env()?);
        Ok(())
    })
}

/// Creates a runtime: reserves the stub table and creates the private
/// directory for module copies. With a null `config`, the configuration
/// comes from the environment. Returns null on failure (see
/// `hcr_last_error`).
///
/// # Safety
///
/// `config` is null or points at a valid `HcrConfig` whose `report_file` is
/// null or a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_runtime_new(config: *const HcrConfig) -> *mut HcrRuntime {
    guard(std::ptr::null_mut(), || {
        // SAFETY: per this function's contract.
        let config = match unsafe { config.as_ref() } {
            None => Config::from_env()?,
            Some(c) => {
                let mut config = Config::new()
                    .with_stub_base(c.stub_base)
                    .with_stub_capacity(c.stub_capacity)
                    .with_unload_policy(match c.unload_policy {
                        HCR_UNLOAD_DEFERRED => UnloadPolicy::Deferred,
                        HCR_UNLOAD_IMMEDIATE => UnloadPolicy::Immediate,
                        HCR_UNLOAD_NEVER => UnloadPolicy::Never,
                        other => return Err(invalid(format!("unload_policy {other} is not an HCR_UNLOAD_* value"))),
                    })
                    .with_watch_files(c.watch_files)
                    .with_settle_time(std::time::Duration::from_millis(c.settle_ms.into()));
                if !c.report_file.is_null() {
                    // SAFETY: per this function's contract.
                    config = config.with_report_file(unsafe { path(c.report_file, "report_file") }?);
                }
                config
            }
        };
        let runtime = Runtime::with_config(config)?;
        Ok(Box::into_raw(Box::new(HcrRuntime { runtime })))
    })
    .0
}

/// Frees a runtime: closes every module and releases the stub table. Every
/// stub address and global pointer it handed out becomes invalid. Null is
/// ignored.
///
/// # Safety
///
/// `runtime` is null or was returned by `hcr_runtime_new` and not freed, and
/// no other thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_runtime_free(runtime: *mut HcrRuntime) {
    if runtime.is_null() {
        return;
    }
    status(|| {
        // SAFETY: per this function's contract, the box is ours to drop.
        drop(unsafe { Box::from_raw(runtime) });
        Ok(())
    });
}

/// Loads the module at `path` (and the modules it imports). Loading a file
/// that is already loaded does nothing.
///
/// # Safety
///
/// `runtime` is a live runtime; `path` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_load(runtime: *const HcrRuntime, path: *const c_char) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let (runtime, path) = unsafe { (runtime_ref(runtime)?, self::path(path, "path")?) };
        runtime.load(path)?;
        Ok(())
    })
}

/// Unloads module `name` unless another module imports it.
///
/// # Safety
///
/// `runtime` is a live runtime; `name` is a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_unload(runtime: *const HcrRuntime, name: *const c_char) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let (runtime, name) = unsafe { (runtime_ref(runtime)?, text(name, "name")?) };
        runtime.unload(name)?;
        Ok(())
    })
}

/// Whether a loaded module's file changed since it was loaded. False for a
/// null runtime.
///
/// # Safety
///
/// `runtime` is null or a live runtime.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_reload_needed(runtime: *const HcrRuntime) -> bool {
    guard(false, || {
        // SAFETY: per this function's contract.
        Ok(unsafe { runtime_ref(runtime) }?.reload_needed())
    })
    .0
}

/// Reloads every module whose file changed, as one transaction, and writes
/// what it did to `*summary` (if not null). On failure nothing changed: the
/// old code keeps running with all its state.
///
/// # Safety
///
/// `runtime` is a live runtime; `summary` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_perform_reload(runtime: *const HcrRuntime, summary: *mut HcrReloadSummary) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let runtime = unsafe { runtime_ref(runtime) }?;
        let report = runtime.perform_reload()?;
        // SAFETY: per this function's contract.
        if let Some(out) = unsafe { summary.as_mut() } {
            let count = |v: &Vec<String>| u32::try_from(v.len()).unwrap_or(u32::MAX);
            *out = HcrReloadSummary {
                generation: report.generation,
                reloaded: count(&report.reloaded),
                loaded: count(&report.loaded),
                unloaded: count(&report.unloaded),
                total_ms: report.timings.total.as_secs_f64() * 1e3,
            };
        }
        Ok(())
    })
}

/// The number of reloads that committed. 0 for a null runtime.
///
/// # Safety
///
/// `runtime` is null or a live runtime.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_generation(runtime: *const HcrRuntime) -> u64 {
    // SAFETY: per this function's contract.
    guard(0, || Ok(unsafe { runtime_ref(runtime) }?.generation())).0
}

/// The stable address of proc `name` of `module`: a stub that always jumps
/// to the current code, valid until the runtime is freed. Cast it to the
/// function's type. A proc that is not registered yet gets a stub that is
/// bound when it is; calling it before then aborts with a message. Null on
/// failure.
///
/// # Safety
///
/// `runtime` is a live runtime; `module` and `name` are NUL-terminated
/// strings.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_get_proc(
    runtime: *const HcrRuntime,
    module: *const c_char,
    name: *const c_char,
) -> *const c_void {
    guard(std::ptr::null(), || {
        // SAFETY: per this function's contract.
        let (runtime, module, name) = unsafe { (runtime_ref(runtime)?, text(module, "module")?, text(name, "name")?) };
        Ok(runtime.get_proc(module, name)?.addr())
    })
    .0
}

/// The storage of global `name` of `module`, and its size in `*size` (if
/// not null). It keeps its address and value across reloads, until the
/// module stops registering it. Null if there is no such global.
///
/// # Safety
///
/// `runtime` is a live runtime; `module` and `name` are NUL-terminated
/// strings; `size` is null or writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_get_global(
    runtime: *const HcrRuntime,
    module: *const c_char,
    name: *const c_char,
    size: *mut usize,
) -> *mut c_void {
    guard(std::ptr::null_mut(), || {
        // SAFETY: per this function's contract.
        let (runtime, module, name) = unsafe { (runtime_ref(runtime)?, text(module, "module")?, text(name, "name")?) };
        let global = runtime.get_global(module, name)?;
        // SAFETY: per this function's contract.
        if let Some(out) = unsafe { size.as_mut() } {
            *out = global.layout().size;
        }
        Ok(global.as_ptr::<c_void>())
    })
    .0
}

/// The `user` pointer of a C handler, which the C caller shares with the
/// reloading thread.
struct UserData(*mut c_void);

// SAFETY: the pointer is only handed back to the caller's handler; the
// caller accepted (see `hcr_add_handler`) that the handler runs on whichever
// thread reloads.
unsafe impl Send for UserData {}

/// Registers `handler`, called with `user` before every reload attempt
/// (phase `HcrPhase_BEFORE_RELOAD`) and after it committed or rolled back
/// (`HcrPhase_AFTER_RELOAD`, with the outcome), on the thread that calls
/// `hcr_perform_reload`, after the modules' own handlers. Host handlers are
/// not called for first loads: `HcrPhase_FIRST_LOAD` is for modules'
/// handlers (`hcr_api_add_handler`), which run once after the load that
/// brought their module in.
///
/// # Safety
///
/// `runtime` is a live runtime. `handler` must not unwind, and may be
/// called with `user` from any thread that reloads until the runtime is
/// freed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn hcr_add_handler(
    runtime: *const HcrRuntime,
    handler: HcrHandler,
    user: *mut c_void,
) -> HcrResult {
    status(|| {
        // SAFETY: per this function's contract.
        let runtime = unsafe { runtime_ref(runtime) }?;
        let handler = handler.ok_or_else(|| invalid("the handler is null"))?;
        let user = UserData(user);
        runtime.on_reload(move |event| {
            let (phase, outcome) = match event.stage {
                ReloadStage::Before => (Phase::BEFORE_RELOAD, Outcome::PENDING),
                ReloadStage::Committed => (Phase::AFTER_RELOAD, Outcome::COMMITTED),
                ReloadStage::RolledBack => (Phase::AFTER_RELOAD, Outcome::ROLLED_BACK),
            };
            let event = HcrReloadEvent {
                size: size_of::<HcrReloadEvent>() as u32,
                phase,
                outcome,
                reserved: 0,
                generation: event.generation,
            };
            let user = &user;
            // SAFETY: the caller promised `handler` may be called with `user`
            // from this thread; the event lives through the call.
            unsafe { handler(user.0, &event) };
        });
        Ok(())
    })
}

/// The message of the last failure of an `hcr_*` call on this thread, or
/// null if the last call succeeded. Valid until the next `hcr_*` call on
/// this thread.
#[unsafe(no_mangle)]
pub extern "C" fn hcr_last_error() -> *const c_char {
    LAST_ERROR.with(|e| e.borrow().as_ref().map_or(std::ptr::null(), |m| m.as_ptr()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        // SAFETY: non-null results of `hcr_last_error` are NUL-terminated.
        unsafe { CStr::from_ptr(hcr_last_error()) }.to_string_lossy().into_owned()
    }

    #[test]
    fn bad_pointers_are_refused_with_a_message() {
        // SAFETY: null pointers are what is being tested.
        unsafe {
            assert_eq!(hcr_load(std::ptr::null(), c"x".as_ptr()), HcrResult::InvalidArgument);
            assert_eq!(last_error(), "the runtime pointer is null");
            assert!(!hcr_reload_needed(std::ptr::null()));
            assert_eq!(hcr_config_default(std::ptr::null_mut()), HcrResult::InvalidArgument);
        }
        let mut config = HcrConfig {
            stub_base: 1,
            stub_capacity: 1,
            unload_policy: HCR_UNLOAD_NEVER,
            watch_files: true,
            settle_ms: 7,
            report_file: std::ptr::null(),
        };
        // SAFETY: `config` is writable.
        assert_eq!(unsafe { hcr_config_default(&mut config) }, HcrResult::Ok);
        assert!(hcr_last_error().is_null(), "a success clears the last error");
        assert_eq!(config.stub_base, crate::DEFAULT_STUB_BASE);
        assert_eq!(u128::from(config.settle_ms), crate::DEFAULT_SETTLE_TIME.as_millis());
        config.stub_base = 0;
        config.stub_capacity = 64;
        config.unload_policy = 9;
        // SAFETY: `config` is valid.
        assert!(unsafe { hcr_runtime_new(&config) }.is_null());
        assert_eq!(last_error(), "unload_policy 9 is not an HCR_UNLOAD_* value");
        config.unload_policy = HCR_UNLOAD_IMMEDIATE;
        // SAFETY: `config` is valid; the runtime is freed once.
        unsafe {
            let rt = hcr_runtime_new(&config);
            assert!(!rt.is_null());
            let invalid_utf8 = [0xFFu8, 0];
            assert_eq!(hcr_unload(rt, invalid_utf8.as_ptr().cast()), HcrResult::InvalidArgument);
            assert_eq!(last_error(), "name is not valid UTF-8");
            assert_eq!(hcr_unload(rt, c"nothing".as_ptr()), HcrResult::Failed);
            assert!(last_error().contains("nothing"), "{}", last_error());
            assert!(hcr_get_global(rt, c"m".as_ptr(), c"g".as_ptr(), std::ptr::null_mut()).is_null());
            assert!(!hcr_get_proc(rt, c"m".as_ptr(), c"f".as_ptr()).is_null(), "a pending stub");
            hcr_runtime_free(rt);
        }
        config.stub_capacity = 0;
        // SAFETY: `config` is valid.
        assert!(unsafe { hcr_runtime_new(&config) }.is_null());
        assert!(last_error().contains("stub_capacity"), "{}", last_error());
    }
}
