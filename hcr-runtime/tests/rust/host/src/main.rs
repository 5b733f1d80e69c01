//! The fixture host: links modules `alpha` and `beta` (to name their
//! types), calls them through the generated bindings, and runs the
//! scenario named by its first argument. `tests/rust_modules.rs` prepares
//! the module directory (`HCR_MODULE_DIR`) and the other builds of `alpha`
//! (`RT_ARTIFACTS/<variant>/libalpha.so`), runs this program and checks what
//! it prints. Every check is an assertion here: a failed one exits with 101
//! and its message.

mod hcr {
    include!(concat!(env!("OUT_DIR"), "/hcr.rs"));
}

use std::alloc::{GlobalAlloc, Layout, System};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use alpha::{Score, Shape};
use hcr_runtime::{Error, PanicEvent, PanicKind, ReloadReport};
use rt_types::{Body, Event, Input, Logger, Vec2, World};

/// The host's allocator: the system's, counted. Module allocations reach
/// it through the runtime's services.
struct Counting {
    allocs: AtomicU64,
    frees: AtomicU64,
    live: AtomicI64,
    /// Allocations and frees of the sizes `allocate(WATCHED)` asks for.
    watched_allocs: AtomicU64,
    watched_frees: AtomicU64,
}

/// The length `allocate` is called with in the allocator scenario: its
/// `String` has exactly this capacity and its `Vec<u64>` eight times it.
const WATCHED: usize = 1237;

fn watched(size: usize) -> bool {
    size == WATCHED || size == WATCHED * 8
}

// SAFETY: forwards to `System` with the same arguments; the counters are
// atomics.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.allocs.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_add(layout.size() as i64, Ordering::Relaxed);
        if watched(layout.size()) {
            self.watched_allocs.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        self.frees.fetch_add(1, Ordering::Relaxed);
        self.live.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        if watched(layout.size()) {
            self.watched_frees.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: forwarded.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        self.live.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        // SAFETY: forwarded.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

static COUNTING: Counting = Counting {
    allocs: AtomicU64::new(0),
    frees: AtomicU64::new(0),
    live: AtomicI64::new(0),
    watched_allocs: AtomicU64::new(0),
    watched_frees: AtomicU64::new(0),
};

hcr_runtime::abi::global_allocator!(COUNTING);

struct Lines(Vec<String>);

impl Logger for Lines {
    fn log(&mut self, line: &str) {
        self.0.push(line.to_owned());
    }
}

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var_os(name).unwrap_or_else(|| panic!("{name} is not set")))
}

/// Puts build `variant` of `module` in place, as a linker does (a new file
/// renamed over the old one).
fn install(variant: &str, module: &str) {
    let file = format!("{}{module}{}", std::env::consts::DLL_PREFIX, std::env::consts::DLL_SUFFIX);
    let from = env_path("RT_ARTIFACTS").join(variant).join(&file);
    let dir = env_path("HCR_MODULE_DIR");
    let partial = dir.join(format!(".{file}.partial"));
    std::fs::copy(&from, &partial).unwrap_or_else(|e| panic!("copy {}: {e}", from.display()));
    std::fs::rename(&partial, dir.join(&file)).unwrap();
}

/// Waits until the runtime sees a changed file, then reloads.
fn reload(hcr: &hcr::Hcr) -> Result<ReloadReport, Error> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if hcr.runtime().reload_needed() {
            return hcr.runtime().perform_reload();
        }
        assert!(Instant::now() < deadline, "no reload was needed within 20 s");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn world() -> World {
    World {
        tick: 10,
        bodies: vec![
            Body { pos: Vec2 { x: 1.0, y: 0.0 }, name: "a".into() },
            Body { pos: Vec2::default(), name: "b".into() },
        ],
        ..World::default()
    }
}

/// Calls every binding and checks the answers of build `build`.
fn check_every_signature(build: u64) {
    let b = build as f32;
    assert_eq!(hcr::alpha::version(), build);
    let mut w = world();
    assert_eq!(hcr::alpha::tick(&w, 5), 10 + 5 * build);
    let input = Input { dt: 0.5, keys: b"xq".to_vec() };
    let events = hcr::alpha::update(&mut w, &input);
    assert_eq!(
        events,
        [
            Event::Spawned(2),
            Event::Moved { index: 0, x: 1.0 + 0.5 * b },
            Event::Moved { index: 1, x: 0.5 * b },
            Event::Quit
        ]
    );
    assert_eq!(w.tick, 10 + build);
    assert_eq!(hcr::alpha::try_update(&mut w, &input).map(|e| e.len()), Ok(4));
    let by_pointer = hcr::alpha::update_ptr();
    assert_eq!(by_pointer(&mut w, &input).map(|e| e.len()), Ok(4));
    assert_eq!(hcr::alpha::describe(&w), format!("v{build}: tick {} with 2 bodies", 10 + 3 * build));
    assert_eq!(hcr::alpha::first_key(&input), input.keys.get(build as usize - 1));
    assert_eq!(hcr::alpha::total(&[1, 2, 3]), (6 * build, 3));
    assert_eq!(hcr::alpha::parse(" 21 "), Ok(Score(21 * build)));
    assert_eq!(hcr::alpha::parse("x").unwrap_err(), format!("v{build}: not a score: invalid digit found in string"));
    assert_eq!(hcr::alpha::area(&Shape::Square(3.0)), 9.0 * b);
    assert_eq!(hcr::alpha::area(&Shape::Rect { w: 2.0, h: 0.5 }), b);
    assert_eq!(*hcr::alpha::boxed("four".into(), vec![10, 20]), Score(34 + build));
    let mut lines = Lines(Vec::new());
    hcr::alpha::log_to(&mut lines, 2);
    assert_eq!(lines.0, [format!("v{build} line 0"), format!("v{build} line 1")]);
    let value = 7u64;
    // SAFETY: a valid pointer.
    assert_eq!(unsafe { hcr::alpha::peek(&value) }, 7 * build);
    assert_eq!(hcr::alpha::alpha_c_build(), build);
    assert_eq!(hcr::beta::version(), 10 * build);
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// The module libraries mapped from the runtime's private directory.
fn mapped_modules(private: &Path) -> usize {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    let private = private.to_string_lossy();
    let mut paths: Vec<&str> = maps.lines().filter_map(|l| l.find(&*private).map(|i| &l[i..])).collect();
    paths.sort_unstable();
    paths.dedup();
    paths.len()
}

fn kinds(panics: &[PanicEvent]) -> Vec<(PanicKind, &str)> {
    panics.iter().map(|p| (p.kind, p.name.as_str())).collect()
}

fn assert_in_alpha(p: &PanicEvent) {
    assert_eq!(p.module, "alpha", "{p}");
    assert!(p.file.ends_with("lib.rs") && p.file.contains("src"), "{p}");
    assert!(p.line > 0 && p.column > 0, "{p}");
}

/// Every kind of signature round-trips through a reload; the shared type
/// changed under the host is refused.
fn roundtrip() {
    let hcr = hcr::Hcr::start().expect("start");
    check_every_signature(1);
    assert_eq!(hcr::alpha::bump(), 1);
    assert_eq!(hcr::alpha::hooks(), (0, 0, 1), "the first-load hook ran once");

    install("v2", "alpha");
    let report = reload(&hcr).expect("reload to v2");
    assert_eq!(report.reloaded, ["alpha"]);
    println!("reloaded: {report}");
    check_every_signature(2);
    assert_eq!(hcr::alpha::bump(), 2, "the global kept its value");
    assert_eq!(hcr::alpha::hooks(), (1, 1, 1), "hooks: before and after the reload, first load once");

    // A module built with another `World` than the host's.
    install("extra", "alpha");
    let error = reload(&hcr).expect_err("a changed shared type is refused");
    let text = error.to_string();
    println!("refused: {text}");
    assert!(
        error.failures().iter().any(|e| matches!(e, Error::SignatureMismatch { caller, .. } if caller == "the host")),
        "{text}"
    );
    assert!(text.contains("struct World { tick: u64, bodies: Vec<Body> }"), "the host's definition: {text}");
    assert!(text.contains("struct World { tick: u64, bodies: Vec<Body>, gravity: f32 }"), "the new one: {text}");
    check_every_signature(2);
    println!("roundtrip ok");
}

/// Panics in procs, across modules, in init, in hooks and in a migration.
fn panics() {
    // The module directory starts with the `hook-panics` build: its
    // first-load hook panics, which is reported and loads anyway.
    let hcr = hcr::Hcr::start().expect("start");
    let first = hcr.panics();
    assert_eq!(kinds(&first), [(PanicKind::Hook, "hello")], "{first:?}");
    assert_eq!(first[0].message, "first-load hook refused");
    assert_in_alpha(&first[0]);
    assert_eq!(hcr::alpha::bump(), 1);

    // A proc's panic, as an error.
    let p = hcr::alpha::try_fail("on purpose".into()).unwrap_err();
    assert_eq!((p.module(), p.proc_name(), p.message()), ("alpha", "fail", "alpha failed: on purpose"));
    assert!(p.file().ends_with("lib.rs") && p.line() > 0, "{p}");
    println!("try_fail: {p}");
    // ... raised again in the host, where the host's `catch_unwind` catches it.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let caught = catch_unwind(|| hcr::alpha::fail("raised".into())).unwrap_err();
    let text = caught.downcast_ref::<String>().expect("a formatted panic");
    assert!(text.starts_with("panic in alpha::fail at ") && text.ends_with(": alpha failed: raised"), "{text}");
    println!("fail: {text}");
    let caught = catch_unwind(|| hcr::alpha::pick(7)).unwrap_err();
    let text = caught.downcast_ref::<String>().unwrap();
    assert!(text.ends_with("index out of bounds: the len is 3 but the index is 7"), "{text}");
    std::panic::set_hook(hook);
    // From `alpha`, through `beta`, to the host, with alpha's location.
    let relayed = hcr::beta::try_relay(5).unwrap_err();
    assert_eq!((relayed.module(), relayed.proc_name(), relayed.message()), ("alpha", "explode", "exploded 5"));
    assert!(relayed.file().ends_with("lib.rs") && relayed.line() > 0, "{relayed}");
    println!("relay: {relayed}");
    // Outside any proc: on a thread of the module.
    assert!(hcr::alpha::panic_in_thread());
    let seen = hcr.panics();
    assert_eq!(
        kinds(&seen),
        [(PanicKind::Proc, "fail"), (PanicKind::Proc, "fail"), (PanicKind::Proc, "pick"), (PanicKind::Proc, "explode"), (PanicKind::Uncaught, "")],
        "{seen:?}"
    );
    assert_eq!(seen[3].to_string(), relayed.to_string());
    assert_eq!(seen[4].message, "thread of alpha gave up");
    // Every global is intact and the host goes on.
    assert_eq!(hcr::alpha::bump(), 2);
    assert_eq!(hcr::alpha::add_points(5), 5);

    // A reload: the old build's before-reload hook panics; the reload goes on.
    install("default", "alpha");
    let report = reload(&hcr).expect("a hook's panic does not stop a reload");
    assert_eq!(report.reloaded, ["alpha"]);
    assert_eq!(kinds(&report.panics), [(PanicKind::Hook, "save")], "{report}");
    assert_eq!(report.panics[0].message, "before-reload hook refused");
    assert_eq!(hcr.panics(), report.panics);

    // An init that panics: rolled back, the old code and its state stay.
    install("init-panics", "alpha");
    let error = reload(&hcr).expect_err("an init panic rolls back");
    let text = error.to_string();
    assert!(
        matches!(error.failures()[0], Error::InitFailed { message, .. }
            if message.starts_with("init panicked at ") && message.ends_with(": no initial value for BOOM")),
        "{text}"
    );
    let init = hcr.panics();
    assert_eq!(kinds(&init), [(PanicKind::Init, "init")]);
    assert_in_alpha(&init[0]);
    println!("init: {}", init[0]);
    assert_eq!((hcr::alpha::version(), hcr::alpha::bump()), (1, 3));

    // A migration that panics: rolled back, the value is as it was.
    install("migrate-panics", "alpha");
    let error = reload(&hcr).expect_err("a migration panic rolls back");
    let Error::MigrationFailed { name, reason, .. } = error.failures()[0] else { panic!("{error}") };
    assert_eq!(name, "SCORE");
    assert!(reason.starts_with("it panicked at ") && reason.ends_with(": migration refused 5 points"), "{reason}");
    println!("migration: {reason}");
    let migration = hcr.panics();
    assert_eq!(kinds(&migration), [(PanicKind::Migration, "SCORE_FROM_V1")]);
    assert_in_alpha(&migration[0]);
    assert_eq!((hcr::alpha::add_points(0), hcr::alpha::bonus()), (5, 0));

    // The next save reloads as usual.
    install("v2", "alpha");
    reload(&hcr).expect("the next build loads");
    assert_eq!((hcr::alpha::version(), hcr::alpha::bump(), hcr::alpha::add_points(0)), (2, 4, 5));

    // An after-reload hook that panics: reported after the commit, which
    // stands.
    install("hook-panics", "alpha");
    let report = reload(&hcr).expect("committed");
    assert_eq!(kinds(&report.panics), [(PanicKind::Hook, "restore")], "{report}");
    assert_eq!(hcr::alpha::version(), 1);
    assert_eq!(hcr::alpha::hooks().2, 1, "the first-load hook ran only once");
    println!("panics ok");
}

/// Many panics over many reloads leave nothing behind.
fn leak() {
    let rounds: u32 = std::env::var("RT_ROUNDS").map_or(100, |r| r.parse().unwrap());
    let hcr = hcr::Hcr::start().expect("start");
    let private = hcr.runtime().private_dir();
    std::panic::set_hook(Box::new(|_| {}));
    let mut panics = 0;
    for round in 1..=rounds {
        install(if round % 2 == 0 { "v2" } else { "default" }, "alpha");
        reload(&hcr).expect("reload");
        install("init-panics", "alpha");
        reload(&hcr).expect_err("the init panics");
        for i in 0..9 {
            let err = match i % 4 {
                0 => hcr::alpha::try_fail(format!("round {round}")).map(|_| ()),
                1 => hcr::alpha::try_pick(3 + i).map(|_| ()),
                2 => hcr::beta::try_relay(round).map(|_| ()),
                _ => catch_unwind(AssertUnwindSafe(|| hcr::alpha::explode(i as u32))).map(|_| ()).map_err(|_| {
                    hcr_runtime::abi::ProcPanic::new("alpha", "explode", "raised in the host")
                }),
            };
            assert!(err.is_err());
        }
        panics += hcr.panics().len();
        if round % (rounds / 5).max(1) == 0 {
            // Replaced libraries are freed by the runtime's collector thread,
            // a moment after the reload: wait for that before counting.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while hcr.runtime().stats().retired_pending > 0 && std::time::Instant::now() < deadline {
                hcr.runtime().collect_retired();
            }
            println!(
                "sample round={round} rss_kib={} modules={} live_bytes={} panics={panics}",
                rss_kib(),
                mapped_modules(&private),
                COUNTING.live.load(Ordering::Relaxed),
            );
        }
    }
    assert_eq!(panics, 10 * rounds as usize, "every panic was reported");
    println!("leak ok");
}

/// Back to the previous build after a panic; refused after a layout change.
fn revert() {
    let hcr = hcr::Hcr::start().expect("start");
    assert_eq!(hcr::alpha::bump(), 1);
    let error = hcr.revert("alpha").expect("a hot build").expect_err("nothing to revert to");
    assert!(matches!(error, Error::NoPreviousBuild { keeping: true, .. }), "{error}");

    install("v2", "alpha");
    reload(&hcr).expect("v2");
    assert_eq!(hcr::alpha::version(), 2);
    let info = hcr.runtime().modules().into_iter().find(|m| m.name == "alpha").unwrap();
    assert!(info.previous_build.is_some(), "{info:?}");
    assert!(hcr::alpha::try_fail("in v2".into()).is_err());
    assert_eq!(hcr.runtime().panicked_modules(), ["alpha"]);
    // `HCR_REVERT_ON_PANIC=1`: the next update reverts, and says so.
    let report = hcr.update().expect("an update after a panic").expect("reverted");
    println!("update: {report}");
    assert_eq!(report.reverted, ["alpha"]);
    assert!(report.to_string().contains("reverted [alpha]"), "{report}");
    assert_eq!(hcr::alpha::version(), 1);
    assert_eq!(hcr::alpha::bump(), 2, "globals kept");
    assert_eq!(hcr::alpha::hooks(), (2, 2, 1), "a revert runs the reload hooks, not the first-load one");
    assert!(hcr.update().is_none(), "the reverted build's file is not loaded again");
    assert!(hcr.runtime().panicked_modules().is_empty());
    let error = hcr.revert("alpha").expect("a hot build").expect_err("one build back only");
    assert!(matches!(error, Error::NoPreviousBuild { .. }), "{error}");

    // The next save loads as usual; then a build that migrates a global.
    install("v2", "alpha");
    reload(&hcr).expect("v2 again");
    assert_eq!(hcr::alpha::add_points(3), 3);
    install("migrate", "alpha");
    reload(&hcr).expect("migrate");
    assert_eq!((hcr::alpha::add_points(0), hcr::alpha::bonus()), (3, 7));
    // The previous build would read `SCORE` with its old layout: refused.
    let error = hcr.revert("alpha").expect("a hot build").expect_err("a layout changed");
    println!("refused: {error}");
    assert!(
        error
            .failures()
            .iter()
            .any(|e| matches!(e, Error::RevertGlobalChanged { name, change, .. }
                if name == "SCORE" && change.starts_with("changed layout from"))),
        "{error}"
    );
    assert!(error.to_string().contains("fix the code and rebuild"), "{error}");
    assert_eq!((hcr::alpha::add_points(0), hcr::alpha::bonus(), hcr::alpha::bump()), (3, 7, 3));
    println!("revert ok");
}

/// Module allocations go to the host's allocator, and balance.
fn allocator() {
    let hcr = hcr::Hcr::start().expect("start");
    let counts = || {
        (
            COUNTING.allocs.load(Ordering::Relaxed),
            COUNTING.frees.load(Ordering::Relaxed),
            COUNTING.live.load(Ordering::Relaxed),
            COUNTING.watched_allocs.load(Ordering::Relaxed),
            COUNTING.watched_frees.load(Ordering::Relaxed),
        )
    };
    let before = counts();
    let (text, numbers, boxed) = hcr::alpha::allocate(WATCHED);
    let during = counts();
    assert_eq!(during.0 - before.0, 3, "three allocations, made in the module, counted by the host");
    assert_eq!(during.3 - before.3, 2, "the string and the vector, by their sizes");
    assert_eq!(during.2 - before.2, (WATCHED + 8 * WATCHED + 40) as i64);
    assert_eq!((text.len(), numbers.len(), boxed[0]), (WATCHED, WATCHED, 1));
    drop((text, numbers, boxed));
    let after = counts();
    assert_eq!((after.1 - during.1, after.4 - during.4), (3, 2), "freed by the host");
    assert_eq!(after.2, before.2, "balanced");

    // A value outlives the library that allocated it.
    let kept = hcr::alpha::allocate(WATCHED);
    install("v2", "alpha");
    reload(&hcr).expect("v2");
    assert_eq!(hcr::alpha::version(), 2);
    drop(kept);
    let end = counts();
    assert_eq!(end.3 - end.4, 0, "every watched block was freed");
    println!("allocations={} frees={}", end.0, end.1);
    println!("allocator ok");
}

fn main() {
    let scenario = std::env::args().nth(1).unwrap_or_default();
    match scenario.as_str() {
        "roundtrip" => roundtrip(),
        "panics" => panics(),
        "leak" => leak(),
        "revert" => revert(),
        "allocator" => allocator(),
        other => panic!("unknown scenario {other:?}"),
    }
}
