//! Reloadable Rust functions as a module sees them: the guards that
//! `#[reload]` and the hook attributes generate, the module's panic hook
//! (installed as a generated init does, through a runtime table made here),
//! and what reaches the caller and the runtime.
//!
//! The panic hook is process-wide, so everything that needs it runs in a
//! child process of this test binary, one scenario per child.

use std::ffi::c_void;
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use hcr_abi::__private::{Catcher, ModuleInfo, init_module};
use hcr_abi::{
    ABI_MAJOR, ABI_MINOR, GlobalDesc, GlobalImport, GlobalMigration, GlobalSlot, HandlerFn, HostApi, ModuleFlags,
    Outcome, PanicOrigin, PanicReport, Phase, ProcDesc, ProcImport, ProcPanic, ReloadEvent, Services, Status, Str,
};

// ---- the "module": procs and hooks as a module crate writes them ----

#[hcr_abi::reload]
fn add(a: &u64, b: u64) -> u64 {
    a + b
}

#[hcr_abi::reload]
fn explode(n: u32) -> String {
    if n > 0 {
        panic!("exploded with {n}");
    }
    String::from("fine")
}

/// Calls "another module" whose binding re-raises its `ProcPanic`, as
/// generated module-to-module bindings do.
#[hcr_abi::reload]
fn relay() -> u8 {
    hcr_abi::__private::raise_in_module(ProcPanic::new("physics", "step", "inner failure").with_location("p.rs", 1, 2))
}

#[hcr_abi::reload]
unsafe fn read(p: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { *p }
}

static SAVES: AtomicUsize = AtomicUsize::new(0);

#[hcr_abi::before_reload]
fn save() {
    SAVES.fetch_add(1, Ordering::Relaxed);
}

#[hcr_abi::after_reload]
fn check(event: &ReloadEvent) {
    assert_eq!(event.outcome, Outcome::COMMITTED, "the hook sees the event");
    panic!("after-reload hook failed on purpose");
}

static MODULE: ModuleInfo = ModuleInfo {
    name: "capture",
    flags: ModuleFlags::NONE,
    catchers: &[
        Catcher(__hcr_capture__add as *const ()),
        Catcher(__hcr_capture__explode as *const ()),
        Catcher(__hcr_capture__relay as *const ()),
        Catcher(__hcr_capture__read as *const ()),
        Catcher(__hcr_capture__save__before_reload as *const ()),
        Catcher(__hcr_capture__check__after_reload as *const ()),
    ],
};

// ---- the "runtime": a HostApi and a Services table that record reports ----

static REPORTS: Mutex<Vec<(PanicOrigin, String, String, String)>> = Mutex::new(Vec::new());
static ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());

unsafe fn text(s: Str) -> String {
    // SAFETY: the module passes strings valid for the call.
    String::from_utf8_lossy(unsafe { s.as_bytes() }).into_owned()
}

unsafe extern "C" fn report_panic(_: *mut c_void, report: *const PanicReport) {
    // SAFETY: the module passes a valid report for the call.
    let r = unsafe { &*report };
    assert_eq!(r.size as usize, size_of::<PanicReport>());
    // SAFETY: as above.
    let entry = unsafe { (r.origin, text(r.module), text(r.proc_), format!("{}@{}", text(r.message), r.line)) };
    REPORTS.lock().unwrap().push(entry);
}

unsafe extern "C" fn no_alloc(_: *mut c_void, _: usize, _: usize) -> *mut u8 {
    std::ptr::null_mut()
}
unsafe extern "C" fn no_dealloc(_: *mut c_void, _: *mut u8, _: usize, _: usize) {}
unsafe extern "C" fn no_realloc(_: *mut c_void, _: *mut u8, _: usize, _: usize, _: usize) -> *mut u8 {
    std::ptr::null_mut()
}

static SERVICES: Services = Services {
    size: size_of::<Services>() as u32,
    reserved: 0,
    ctx: std::ptr::null_mut(),
    alloc: no_alloc,
    dealloc: no_dealloc,
    realloc: no_realloc,
    alloc_zeroed: no_alloc,
    report_panic,
};

unsafe extern "C" fn register_proc(_: *mut c_void, _: *const ProcDesc) -> Status {
    Status::OK
}
unsafe extern "C" fn get_proc(_: *mut c_void, _: *const ProcImport, _: *mut *const c_void) -> Status {
    Status::OK
}
unsafe extern "C" fn register_global(_: *mut c_void, _: *const GlobalDesc, _: *mut GlobalSlot) -> Status {
    Status::OK
}
unsafe extern "C" fn get_global(_: *mut c_void, _: *const GlobalImport, _: *mut *mut c_void) -> Status {
    Status::OK
}
unsafe extern "C" fn add_handler(_: *mut c_void, _: Phase, _: HandlerFn, _: *mut c_void) -> Status {
    Status::OK
}
unsafe extern "C" fn report_error(_: *mut c_void, message: Str) {
    // SAFETY: valid for the call.
    ERRORS.lock().unwrap().push(unsafe { text(message) });
}
unsafe extern "C" fn migrating(
    _: *mut c_void,
    _: *const GlobalDesc,
    _: *const GlobalMigration,
    _: usize,
    _: *mut GlobalSlot,
) -> Status {
    Status::OK
}
unsafe extern "C" fn get_services(_: *mut c_void) -> *const Services {
    &SERVICES
}

fn host_api() -> HostApi {
    HostApi {
        size: size_of::<HostApi>() as u32,
        abi_major: ABI_MAJOR,
        abi_minor: ABI_MINOR,
        ctx: std::ptr::null_mut(),
        register_proc,
        get_proc,
        register_global,
        get_global,
        add_handler,
        report_error,
        register_global_migrating: migrating,
        get_services,
    }
}

/// Installs the runtime table and the panic hook, as a generated init does.
fn init() {
    let api = host_api();
    // SAFETY: `api` is a complete table.
    let api = unsafe { HostApi::from_raw(&api) }.unwrap();
    // SAFETY: the table's entries are the functions above; `MODULE`
    // describes this test's procs.
    unsafe { init_module(&api, &MODULE) }.unwrap();
}

fn reports() -> Vec<(PanicOrigin, String, String, String)> {
    REPORTS.lock().unwrap().clone()
}

// ---- child processes ----

const CHILD: &str = "HCR_CAPTURE_CHILD";

/// The target's cargo runner (e.g. qemu), if one is configured for this
/// architecture and OS: `CARGO_TARGET_<TRIPLE>_RUNNER`.
fn runner() -> Option<String> {
    let arch = std::env::consts::ARCH.to_uppercase();
    let os = std::env::consts::OS.to_uppercase();
    std::env::vars().find_map(|(key, value)| {
        let triple = key.strip_prefix("CARGO_TARGET_")?.strip_suffix("_RUNNER")?;
        (triple.starts_with(&arch) && triple.contains(&os) && !value.trim().is_empty()).then_some(value)
    })
}

/// Runs test `name` of this binary alone in a child process with `CHILD`
/// set (through the target's runner, if any), and returns (stdout, stderr)
/// after checking that it passed.
fn run_child(name: &str) -> (String, String) {
    let exe = std::env::current_exe().unwrap();
    let runner = runner().unwrap_or_default();
    let mut parts = runner.split_whitespace();
    let mut command = match parts.next() {
        Some(program) => {
            let mut command = Command::new(program);
            command.args(parts).arg(&exe);
            command
        }
        None => Command::new(&exe),
    };
    let out = command
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "child {name} failed:\n{stdout}\n{stderr}");
    (stdout, stderr)
}

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

#[test]
fn guards_return_values_and_panics_without_a_hook() {
    // No hook installed in this process: the guard still catches, but the
    // location is unknown.
    assert_eq!(__hcr_capture__add(&40, 2), Ok(42));
    assert_eq!(__hcr_capture__explode(0).as_deref(), Ok("fine"));
    let value = 7u32;
    // SAFETY: a valid pointer.
    assert_eq!(unsafe { __hcr_capture__read(&value) }, Ok(7));
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let p = __hcr_capture__explode(3).unwrap_err();
    std::panic::set_hook(previous);
    assert_eq!((p.module(), p.proc_name(), p.message()), ("capture", "explode", "exploded with 3"));
    assert!(!p.has_location());
}

#[test]
fn with_the_hook_a_proc_panic_has_its_location_and_is_reported_not_printed() {
    if !in_child() {
        let (stdout, stderr) = run_child("with_the_hook_a_proc_panic_has_its_location_and_is_reported_not_printed");
        assert!(stdout.contains("child done"), "{stdout}");
        // Caught panics are the caller's business: the module prints nothing,
        // and captures no backtrace despite RUST_BACKTRACE=1.
        assert!(!stderr.contains("exploded"), "{stderr}");
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
        return;
    }
    init();
    let p = __hcr_capture__explode(5).unwrap_err();
    assert_eq!(p.message(), "exploded with 5");
    assert!(p.file().ends_with("tests/capture.rs"), "{p:?}");
    let source = include_str!("capture.rs");
    let expected = source.lines().position(|l| l.contains("panic!(\"exploded with {n}\")")).unwrap() + 1;
    assert_eq!(p.line() as usize, expected);
    assert_eq!(
        p.to_string(),
        format!("panic in capture::explode at {}:{}:{}: exploded with 5", p.file(), p.line(), p.column())
    );
    assert_eq!(
        reports(),
        vec![(PanicOrigin::PROC, "capture".into(), "explode".into(), format!("exploded with 5@{expected}"))]
    );

    // A ProcPanic raised by a binding to another module is passed on as it
    // is, and not reported again (the other module reported it).
    let passed = __hcr_capture__relay().unwrap_err();
    assert_eq!(passed, ProcPanic::new("physics", "step", "inner failure").with_location("p.rs", 1, 2));
    assert_eq!(reports().len(), 1);

    // Hooks: one runs, one panics and is reported.
    let event = ReloadEvent {
        size: size_of::<ReloadEvent>() as u32,
        phase: Phase::AFTER_RELOAD,
        outcome: Outcome::COMMITTED,
        reserved: 0,
        generation: 1,
    };
    let before: HandlerFn = __hcr_capture__save__before_reload;
    let after: HandlerFn = __hcr_capture__check__after_reload;
    // SAFETY: handlers called as the runtime does, with a valid event.
    unsafe {
        before(std::ptr::null_mut(), &event);
        after(std::ptr::null_mut(), &event);
    }
    assert_eq!(SAVES.load(Ordering::Relaxed), 1);
    let last = reports().pop().unwrap();
    assert_eq!((last.0, last.2.as_str()), (PanicOrigin::HOOK, "check"));
    assert!(last.3.starts_with("after-reload hook failed on purpose@"), "{last:?}");
    println!("child done");
}

#[test]
fn a_panic_outside_any_guard_is_printed_on_one_line_and_reported() {
    if !in_child() {
        let (stdout, stderr) = run_child("a_panic_outside_any_guard_is_printed_on_one_line_and_reported");
        assert!(stdout.contains("child done"), "{stdout}");
        let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("worker gave up")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with("hcr: panic in module `capture` outside any reloadable function at ")
                && lines[0].contains("tests/capture.rs:")
                && lines[0].ends_with(": worker gave up"),
            "{stderr}"
        );
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
        return;
    }
    init();
    let worker = std::thread::spawn(|| panic!("worker gave up"));
    assert!(worker.join().is_err());
    let reported = reports();
    assert_eq!(reported.len(), 1);
    assert_eq!((reported[0].0, reported[0].2.as_str()), (PanicOrigin::UNCAUGHT, ""));
    println!("child done");
}

#[test]
fn a_rust_abi_module_refuses_a_runtime_without_services() {
    if !in_child() {
        let (stdout, _) = run_child("a_rust_abi_module_refuses_a_runtime_without_services");
        assert!(stdout.contains("child done"), "{stdout}");
        return;
    }
    static RUST: ModuleInfo = ModuleInfo { name: "needs", flags: ModuleFlags::RUST_ABI, catchers: &[] };
    let mut api = host_api();
    // An ABI 1.1 runtime: the table ends before `get_services`.
    api.size = std::mem::offset_of!(HostApi, get_services) as u32;
    api.abi_minor = 1;
    // SAFETY: the table is complete; its size says less.
    let api = unsafe { HostApi::from_raw(&api) }.unwrap();
    // SAFETY: as in `init`.
    let status = unsafe { init_module(&api, &RUST) }.unwrap_err();
    assert_eq!(status, Status::UNSUPPORTED);
    let errors = ERRORS.lock().unwrap().clone();
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].contains("module `needs` has reloadable Rust functions") && errors[0].contains("ABI 1.1"),
        "{errors:?}"
    );
    println!("child done");
}

/// Counts the heap blocks each thread allocates and frees, so that the
/// count of the thread under test is not disturbed by the test harness's
/// other threads.
#[cfg(not(feature = "global-allocator"))]
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    std::thread_local! {
        static LIVE: Cell<isize> = const { Cell::new(0) };
    }

    /// Blocks this thread allocated minus blocks it freed.
    pub fn live() -> isize {
        LIVE.with(Cell::get)
    }

    fn count(delta: isize) {
        let _ = LIVE.try_with(|live| live.set(live.get() + delta));
    }

    pub struct Counting;

    // SAFETY: delegates to `System` with the same arguments.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            count(1);
            // SAFETY: forwarded.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            count(-1);
            // SAFETY: forwarded.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static GLOBAL: Counting = Counting;
}

/// A thousand panics through a guard leave no heap block behind. (With
/// `global-allocator`, this crate's allocator is the global one and the
/// count comes from the real-library tests of the runtime instead.)
#[cfg(not(feature = "global-allocator"))]
#[test]
fn a_thousand_panics_leak_nothing() {
    if !in_child() {
        let (stdout, _) = run_child("a_thousand_panics_leak_nothing");
        assert!(stdout.contains("child done"), "{stdout}");
        return;
    }
    init();
    // Warm up: the first panic initialises std's panic machinery.
    for _ in 0..3 {
        drop(__hcr_capture__explode(1));
    }
    REPORTS.lock().unwrap().clear();
    REPORTS.lock().unwrap().shrink_to_fit();
    let before = counting::live();
    for i in 1..=1000 {
        let p = __hcr_capture__explode(i).unwrap_err();
        assert!(p.has_location());
    }
    let reported = REPORTS.lock().unwrap().len();
    REPORTS.lock().unwrap().clear();
    REPORTS.lock().unwrap().shrink_to_fit();
    let after = counting::live();
    assert_eq!(reported, 1000);
    assert_eq!(after - before, 0, "heap blocks left after 1000 panics");
    println!("child done");
}
