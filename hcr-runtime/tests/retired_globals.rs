//! Global storage that a reload takes out of use (a migration moved it, the
//! global disappeared from the new build, its module was unloaded) is freed
//! together with the old library, once no thread can reach it: a registered
//! thread still running the old code keeps reading valid memory until it
//! passes a quiescent point.
//!
//! This test binary poisons every block it frees (its global allocator
//! overwrites the block before handing it back), so old code reading freed
//! storage would see the poison instead of the value.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hcr_runtime::{Config, Runtime, UnloadPolicy};
use support::{Scratch, fixture, fn0, fn1, runtime};

/// The system allocator, writing [`POISON`] over every block it frees.
struct Poisoning;

const POISON: u8 = 0xA5;

// SAFETY: forwards to the system allocator; `dealloc` only writes the
// block being freed, which the caller owns until then.
unsafe impl GlobalAlloc for Poisoning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the block is `layout.size()` bytes at `ptr`, still ours.
        unsafe {
            ptr.write_bytes(POISON, layout.size());
            System.dealloc(ptr, layout);
        }
    }
}

static ALLOCATOR: Poisoning = Poisoning;
// Not `#[global_allocator]`: when module crates in the same build enable
// hcr-abi's `global-allocator`, the process's allocator is chosen this way.
hcr_runtime::abi::global_allocator!(ALLOCATOR);

/// The tests share the gate below: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What old module code read, and when it may read again.
static READS: AtomicU64 = AtomicU64::new(0);
static LAST: AtomicU64 = AtomicU64::new(0);
static ALLOWED: AtomicU64 = AtomicU64::new(0);
static STOP: AtomicBool = AtomicBool::new(false);

/// The `wait` the fixture's holding procs call with each value they read:
/// records it, then waits until the test allows another read (1) or stops
/// (0).
extern "C" fn gate(value: u64) -> u64 {
    LAST.store(value, Ordering::SeqCst);
    let reads = READS.fetch_add(1, Ordering::SeqCst) + 1;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if STOP.load(Ordering::SeqCst) || Instant::now() > deadline {
            return 0;
        }
        if ALLOWED.load(Ordering::SeqCst) > reads {
            return 1;
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Waits (with a deadline) until old code has read `reads` times; returns
/// the last value it read.
fn read_number(reads: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    while READS.load(Ordering::SeqCst) < reads {
        assert!(Instant::now() < deadline, "the module code never read the global");
        std::thread::sleep(Duration::from_micros(100));
    }
    LAST.load(Ordering::SeqCst)
}

type Holder = extern "C" fn(extern "C" fn(u64) -> u64) -> u64;

/// Runs the scenario: `holder` (a proc reading a global through the address
/// it took first) runs on a registered thread; `change` (a reload or an
/// unload) takes the global's storage out of use while it runs; the old
/// code keeps reading `expected` until it returns and its thread passes a
/// quiescent point, after which the storage (`retired` globals) is freed.
fn old_code_keeps_reading(rt: &Runtime, holder: Holder, expected: u64, retired: usize, change: impl FnOnce()) {
    READS.store(0, Ordering::SeqCst);
    ALLOWED.store(0, Ordering::SeqCst);
    STOP.store(false, Ordering::SeqCst);
    let freed_before = rt.stats().globals_freed;
    let quiescent = AtomicBool::new(false);
    std::thread::scope(|scope| {
        // Lets the old code return even when an assertion fails.
        let _stop = support::SetOnDrop(&STOP);
        let worker = scope.spawn(|| {
            let guard = rt.register_thread();
            let last = holder(gate);
            // Out of the old code: every reload so far is complete here.
            guard.quiescent();
            quiescent.store(true, Ordering::SeqCst);
            last
        });
        assert_eq!(read_number(1), expected, "the value before the change");
        change();
        let stats = rt.stats();
        assert_eq!(stats.retired_globals_pending, retired, "the storage waits for the registered thread: {stats:?}");
        assert_eq!(stats.globals_freed, freed_before);
        // A collection meanwhile frees nothing: the thread is still inside.
        rt.collect_retired();
        assert_eq!(rt.stats().retired_globals_pending, retired);
        // The old code reads again, after the change committed.
        ALLOWED.store(2, Ordering::SeqCst);
        assert_eq!(read_number(2), expected, "the old code still reads the old storage, intact");
        ALLOWED.store(3, Ordering::SeqCst);
        assert_eq!(read_number(3), expected);
        STOP.store(true, Ordering::SeqCst);
        assert_eq!(worker.join().unwrap(), expected);
    });
    assert!(quiescent.load(Ordering::SeqCst));
    support::wait_until_reclaimed(rt);
    let stats = rt.stats();
    assert_eq!(stats.globals_freed, freed_before + retired as u64, "the storage was freed after the quiescent point");
    assert_eq!(stats.retired_globals_pending, 0);
}

/// The value `ADDED` is set to: its initial 1000 plus this.
const CANARY: u64 = 0x5AFE_C0DE_0000;

#[test]
fn a_global_that_disappears_stays_valid_for_old_code_until_a_quiescent_point() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("retired-removed");
    let path = s.install(&fixture("counter", &["v2"]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    assert_eq!(fn1(&rt, "counter", "add_to_added")(CANARY), 1000 + CANARY);
    // SAFETY: the fixture registers `hold_added` with this signature.
    let holder: Holder = unsafe { rt.get_proc("counter", "hold_added").unwrap().cast() };
    old_code_keeps_reading(&rt, holder, 1000 + CANARY, 1, || {
        // v1 has no `ADDED`.
        s.install(&fixture("counter", &[]), "counter");
        assert_eq!(rt.perform_reload().unwrap().reloaded, ["counter"]);
        assert!(rt.get_global("counter", "ADDED").is_err(), "the global is gone for new code");
    });
    assert_eq!(rt.stats().unloads, 1, "the old library went with it");
}

#[test]
fn a_migrated_global_stays_valid_for_old_code_until_a_quiescent_point() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("retired-migrated");
    let path = s.install(&fixture("state", &[]), "state");
    let rt = runtime();
    rt.load(&path).unwrap();
    // SAFETY: the fixture exports `set` with this signature.
    let set: extern "C" fn(u32, u32) = unsafe { rt.get_proc("state", "set").unwrap().cast() };
    set(0xC0DE, 0xBEEF);
    let expected = 0xC0DE | 0xBEEF << 16;
    // SAFETY: the fixture exports `hold` with this signature.
    let holder: Holder = unsafe { rt.get_proc("state", "hold").unwrap().cast() };
    old_code_keeps_reading(&rt, holder, expected, 1, || {
        // `gain` adds a field, with a migration into new storage.
        s.install(&fixture("state", &["gain"]), "state");
        assert_eq!(rt.perform_reload().unwrap().reloaded, ["state"]);
        assert_eq!(fn0(&rt, "state", "packed")(), expected | 100 << 32, "new code reads the migrated value");
    });
}

#[test]
fn the_globals_of_an_unloaded_module_stay_valid_for_old_code_until_a_quiescent_point() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let s = Scratch::new("retired-unloaded");
    let path = s.install(&fixture("counter", &["v2"]), "counter");
    let rt = runtime();
    rt.load(&path).unwrap();
    fn1(&rt, "counter", "add_to_added")(CANARY);
    // SAFETY: the fixture registers `hold_added` with this signature.
    let holder: Holder = unsafe { rt.get_proc("counter", "hold_added").unwrap().cast() };
    // Every global of the module goes.
    let globals = rt.stats().globals;
    assert!(globals > 1);
    old_code_keeps_reading(&rt, holder, 1000 + CANARY, globals, || {
        assert_eq!(rt.unload("counter").unwrap(), ["counter"]);
        assert_eq!(rt.stats().globals, 0);
    });
    assert_eq!(rt.stats().unloads, 1);
}

#[test]
fn under_the_never_policy_old_globals_are_kept_and_under_immediate_freed_at_once() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    for (policy, name) in [(UnloadPolicy::Never, "retired-never"), (UnloadPolicy::Immediate, "retired-immediate")] {
        let s = Scratch::new(name);
        let path = s.install(&fixture("counter", &["v2"]), "counter");
        let rt = Runtime::with_config(Config::new().with_stub_base(0).with_unload_policy(policy)).unwrap();
        rt.load(&path).unwrap();
        s.install(&fixture("counter", &[]), "counter");
        rt.perform_reload().unwrap();
        let stats = rt.stats();
        assert_eq!(stats.retired_globals_pending, 0, "{policy:?}");
        match policy {
            UnloadPolicy::Never => {
                assert_eq!((stats.kept_libraries, stats.kept_globals, stats.globals_freed), (1, 1, 0));
            }
            _ => {
                assert_eq!((stats.kept_libraries, stats.kept_globals, stats.globals_freed, stats.unloads), (0, 0, 1, 1))
            }
        }
    }
}
